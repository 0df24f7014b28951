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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mmicl_interp.config import ConfigError

DType = Literal["float32", "float16", "bfloat16"]
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")


@dataclass
class LoadedModel:
    """A loaded model: the hooked bridge and what turns data into its inputs."""

    name: str
    """The hub name or folder it was loaded from (the ``model`` column of the tables)."""
    bridge: Any
    """The ``TransformerBridge`` (``run_with_hooks``, ``cfg.n_layers``, ``cfg.n_heads``)."""
    tokenizer: Any
    processor: Any = None
    """The multimodal processor of a VLM (None for a text model)."""
    is_vlm: bool = False


def torch_dtype(name: str):
    """The torch dtype of a ``--dtype`` name (ConfigError for another name)."""
    import torch

    if name not in DTYPES:
        raise ConfigError("--dtype", f"must be one of {', '.join(DTYPES)}; got {name!r}")
    return getattr(torch, name)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists() or name.count("/") > 1


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

    name = str(name_or_path)
    dt = torch_dtype(dtype)
    if _looks_like_path(name):
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise ConfigError(
                "model", f"{name}: no such model folder (give a folder with config.json or a hub name)"
            )
        if not (folder / "config.json").is_file():
            raise ConfigError("model", f"{name}: the folder has no config.json; it is not a saved HF model")
        name = str(folder)
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


__all__ = ["DTYPES", "LoadedModel", "load_model", "torch_dtype"]
