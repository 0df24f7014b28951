"""Devices: which one a name means, whether it is here, and moving models and batches to it.

Names are ``auto`` (CUDA if present, else the CPU), ``cpu``, ``cuda`` (the current GPU),
``cuda:N`` and ``mps``. :func:`resolve_device` turns a name into a ``torch.device`` and refuses
one that is not on this machine with a :class:`~mmicl_interp.config.ConfigError` naming the
device and what is available, so the CLI prints one line and exits with status 2.
"""

from __future__ import annotations

import re

import torch

from mmicl_interp.config import DEVICE_CHOICES, DEVICE_PATTERN, ConfigError


def available_devices() -> list[str]:
    """The devices this process can use: ``cpu``, then ``cuda:0`` ... and ``mps`` when present."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def _missing(name: str, why: str, field: str) -> ConfigError:
    found = ", ".join(available_devices())
    return ConfigError(field, f"{name} is not available here ({why}); available: {found}")


def resolve_device(name: str | torch.device | None, field: str = "device") -> torch.device:
    """The ``torch.device`` a device name means on this machine (None: the CPU).

    Raises ConfigError(``field``, ...) for a name outside ``auto, cpu, cuda, cuda:N, mps`` or
    a device this machine lacks.
    """
    if name is None:
        return torch.device("cpu")
    text = str(name) if isinstance(name, torch.device) else name
    if not isinstance(text, str) or not re.fullmatch(DEVICE_PATTERN, text):
        raise ConfigError(field, f"must be {DEVICE_CHOICES}; got {name!r}")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            build = f"torch {torch.__version__} has no CUDA" if torch.version.cuda is None else "no GPU found"
            raise _missing(text, build, field)
        count = torch.cuda.device_count()
        index = int(text.split(":")[1]) if ":" in text else None
        if index is not None and index >= count:
            raise _missing(text, f"{count} GPU{'s' if count != 1 else ''}", field)
    if text == "mps" and not torch.backends.mps.is_available():
        raise _missing(text, "no Apple GPU", field)
    return torch.device(text)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a model's parameters (else its buffers) live; the CPU for a model with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (for timing); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


__all__ = ["available_devices", "model_device", "resolve_device", "synchronize"]
