"""Load a Hugging Face model (hub name or local folder) as a TransformerLens ``TransformerBridge``.

``load_model(name_or_path, device=, dtype=)`` first asks :func:`mmicl_interp.real.vlm.load_vlm`
(the vision-language loader of the ``vlm`` extra), which returns None for a model that is
not a VLM; otherwise it boots a text model with ``TransformerBridge.boot_transformers``,
which loads the weights with eager attention (so attention patterns exist and equal HF's
``output_attentions``) and the model's tokenizer. Any architecture the bridge supports
works, with its own sizes (no hard-coded layer or head counts).

An unknown model, a missing folder or an architecture the bridge does not support raises
:class:`~mmicl_interp.config.ConfigError` (field ``model``): the CLI prints one line, exit 2.
"""

from __future__ import annotations

import importlib
import os
import socket
from pathlib import Path
from typing import Any

from mmicl_interp.config import ConfigError
from mmicl_interp.real.loaded import DTYPES, DType, LoadedModel, torch_dtype  # noqa: F401  (re-exported)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists() or name.count("/") > 1


_TRUE = {"1", "true", "yes", "on"}
HUB_TIMEOUT_S = 3.0
"""How long :func:`check_hub_access` waits for the hub before calling it unreachable."""


def offline_mode() -> bool:
    """Whether the environment asks for no hub access (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in flags)


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache this process reads (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
    ``~/.cache/huggingface/hub``), from the environment now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def in_local_cache(name: str) -> bool:
    """Whether hub model ``name`` has its ``config.json`` in the local cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json", cache_dir=str(hub_cache_dir()))
    except Exception:  # an invalid repo id, an unreadable cache: not there
        return False
    return isinstance(found, str)


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub (``HF_ENDPOINT``, default huggingface.co:443) opens
    within ``timeout`` seconds."""
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _go_offline() -> None:
    """Make this process load from the local cache without asking the hub (no retries)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as constants

        constants.HF_HUB_OFFLINE = True
    except Exception:  # pragma: no cover
        pass


def check_hub_access(name: str) -> None:
    """Before booting hub model ``name``: fail at once, in one line, when it is not in the local
    cache and the hub cannot be used (``HF_HUB_OFFLINE=1``, or no connection within
    :data:`HUB_TIMEOUT_S`), instead of a minute of retries. A cached model with the hub
    unreachable loads from the cache in offline mode."""
    cached = in_local_cache(name)
    if offline_mode():
        if not cached:
            raise ConfigError(
                "model",
                f"{name} is not in the local Hugging Face cache ({hub_cache_dir()}) and HF_HUB_OFFLINE=1; "
                f"download it where there is network (`hf download {name}`, then copy the cache) or give "
                "a local model folder",
            )
        return
    if hub_reachable():
        return
    if cached:
        _go_offline()
        return
    raise ConfigError(
        "model",
        f"{name} is not in the local Hugging Face cache ({hub_cache_dir()}) and the hub cannot be reached "
        f"(no connection within {HUB_TIMEOUT_S:g} s); download it where there is network (`hf download "
        f"{name}`) or give a local model folder",
    )


def check_model_source(name_or_path: str | Path) -> str:
    """Where ``name_or_path`` loads from, checked before anything slow: a local folder with a
    ``config.json`` (returned expanded), or a hub name that is in the local cache or reachable
    (:func:`check_hub_access`). ConfigError (field ``model``) otherwise."""
    name = str(name_or_path)
    if _looks_like_path(name):
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise ConfigError(
                "model", f"{name}: no such model folder (give a folder with config.json or a hub name)"
            )
        if not (folder / "config.json").is_file():
            raise ConfigError("model", f"{name}: the folder has no config.json; it is not a saved HF model")
        return str(folder)
    check_hub_access(name)
    return name


def _vlm_loader():
    """``mmicl_interp.real.vlm.load_vlm``, or None when the VLM module is not installed."""
    try:
        module = importlib.import_module("mmicl_interp.real.vlm")
    except ModuleNotFoundError as err:
        if err.name in ("mmicl_interp.real.vlm",):
            return None
        raise
    return getattr(module, "load_vlm", None)


def load_model(
    name_or_path: str | Path, *, device: Any = "cpu", dtype: str = "float32", progress: bool = True
) -> LoadedModel:
    """Load ``name_or_path`` (hub name or local folder) for the analyses, in eval mode.

    Vision-language models go through :func:`mmicl_interp.real.vlm.load_vlm`; text causal
    LMs through ``TransformerBridge.boot_transformers``. ``progress=False`` silences
    transformers' weight-loading bars.
    """
    if not progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

    dt = torch_dtype(dtype)
    name = check_model_source(name_or_path)
    load_vlm = _vlm_loader()
    if load_vlm is not None:
        loaded = load_vlm(name, device, dtype)
        if loaded is not None:
            loaded.bridge.eval()
            return loaded
    bridge = _boot_text(name, device, dt)
    bridge.eval()
    return LoadedModel(name=str(name_or_path), bridge=bridge, tokenizer=bridge.tokenizer)


def _boot_text(name: str, device: Any, dt: Any):
    from transformer_lens.model_bridge import TransformerBridge

    try:
        return TransformerBridge.boot_transformers(name, device=str(device), dtype=dt)
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "architecture" in first.lower():
            archs = _architectures(name)
            raise ConfigError(
                "model",
                f"{name}: TransformerLens's TransformerBridge does not support the architecture "
                f"{archs or 'of this config'} (see transformer_lens.model_bridge for the supported ones)",
            ) from None
        raise ConfigError(
            "model",
            f"{name!r} is neither a local model folder nor a model that could be loaded from the "
            f"Hugging Face hub ({first[:160]})",
        ) from None


def _architectures(name: str) -> str:
    try:
        from transformers import AutoConfig

        archs = AutoConfig.from_pretrained(name).architectures or []
    except Exception:  # the name is already known to fail; this only improves the message
        return ""
    return ", ".join(archs)


__all__ = ["DTYPES", "LoadedModel", "check_hub_access", "check_model_source", "load_model", "torch_dtype"]
