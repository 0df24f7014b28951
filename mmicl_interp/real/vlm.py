"""Vision-language models (the ``vlm`` extra): load them through TransformerLens's bridge.

``load_vlm(name_or_path, device, dtype)`` returns a
:class:`~mmicl_interp.real.loaded.LoadedModel` (``is_vlm=True``) for a model whose Hugging Face
config names a vision-language architecture the bridge supports (Qwen2.5-VL, LLaVA,
LLaVA-NeXT, Idefics3, Gemma 3, ...), and None for any other model (the text loader then
takes over). The config is read with ``transformers.AutoConfig`` (local files only when
``HF_HUB_OFFLINE`` is set); weights load with ``TransformerBridge.boot_transformers``,
which forces eager attention so that ``blocks.{l}.attn.hook_pattern`` exists.

torchvision: Qwen2.5-VL's bridge adapter (and the model's full processor, through its
video processor) needs ``torchvision``. On a GPU machine install the build that matches
your torch, e.g. ``pip install torchvision --index-url https://download.pytorch.org/whl/cu124``
(CPU-only torch: ``.../whl/cpu``); a torchvision built for another torch fails to import.
Without it the loader raises one-line :class:`~mmicl_interp.config.ConfigError` saying so.
TransformerLens would otherwise run ``pip install torchvision`` inside the process when a
multimodal processor fails to load; this loader never lets it (and, with no full processor,
falls back to the model's image processor alone, which serves Qwen2-VL-style models).

Batched image prompts: a processor returns the images of one prompt concatenated, not
batch-first (Qwen2.5-VL: ``pixel_values`` [patches of all images, d] and ``image_grid_thw``
[images, 3]; LLaVA: ``pixel_values`` [images, 3, h, w]). So that prompt sets slice like any
:class:`~mmicl_interp.prompts.ICLPrompts` (chunked measures take ``prompts[a:b]``), image
prompts keep such a tensor per prompt, zero-padded ``[batch, rows, ...]``, with its row count
per prompt in ``<key>__rows`` [batch]; :func:`install_vision_batching` (done by ``load_vlm``)
puts a forward pre-hook on the HF model that concatenates the real rows back into the layout
the model expects. Calls with the model's own (flat) layout pass through unchanged.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path
from typing import Any

import torch

from mmicl_interp.config import ConfigError

ROWS_SUFFIX = "__rows"
"""``model_kwargs[key + ROWS_SUFFIX]`` [batch]: the real rows of the padded per-prompt ``key``."""

FLAT_VISION_KEYS: dict[str, tuple[str, ...]] = {
    "qwen2_vl": ("pixel_values", "image_grid_thw"),
    "qwen2_5_vl": ("pixel_values", "image_grid_thw"),
    "qwen3_vl": ("pixel_values", "image_grid_thw"),
    "llava": ("pixel_values",),
    "llava_next": ("pixel_values", "image_sizes"),
    "llava_onevision": ("pixel_values", "image_sizes"),
    "gemma3": ("pixel_values",),
    "mistral3": ("pixel_values", "image_sizes"),
}
"""Per model type, the processor outputs whose first dim runs over all images of a prompt
(not over prompts). Other outputs (e.g. Idefics3's ``pixel_values`` [batch, images, ...])
are batch-first already."""

VLM_MODEL_TYPES: frozenset[str] = frozenset(
    {
        *FLAT_VISION_KEYS,
        "idefics3",
        "gemma4",
        "qwen3_5",
        "qwen3_5_moe",
        "glm4v",
        "llama4",
        "florence2",
        "emu3",
    }
)
"""Model types treated as vision-language models even when ``architectures`` is missing."""

_TRUE = {"1", "true", "yes", "on"}


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def read_config(name_or_path: str) -> Any | None:
    """The model's HF config (None when it cannot be read: not a model we can judge)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(name_or_path), local_files_only=_offline())
    except Exception:  # unknown name, missing folder, no network: the text loader reports it
        return None


def vlm_architecture(config: Any) -> str | None:
    """The vision-language architecture a config names, or None for any other model."""
    from transformer_lens.utilities.architectures import MULTIMODAL_ARCHITECTURES

    archs = list(getattr(config, "architectures", None) or [])
    for arch in archs:
        if arch in MULTIMODAL_ARCHITECTURES:
            return arch
    model_type = getattr(config, "model_type", "")
    if model_type in VLM_MODEL_TYPES:
        return archs[0] if archs else f"{model_type} (no architectures in config.json)"
    return None


def _adapter_class(arch: str) -> Any | None:
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES

    return SUPPORTED_ARCHITECTURES.get(arch)


def torchvision_problem() -> str | None:
    """Why torchvision cannot be used here (None when it imports)."""
    try:
        importlib.import_module("torchvision")
    except ModuleNotFoundError:
        return "torchvision is not installed"
    except Exception as err:  # e.g. a CUDA build beside a CPU torch
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return f"torchvision is installed but fails to import ({first[:120]})"
    return None


@contextlib.contextmanager
def no_torchvision_install():
    """Stop TransformerLens from running ``pip install torchvision`` inside this process."""
    from transformer_lens.model_bridge.sources.transformers import helpers

    original = helpers._ensure_torchvision
    helpers._ensure_torchvision = lambda: torchvision_problem() is None
    try:
        yield
    finally:
        helpers._ensure_torchvision = original


def _image_processor(name: str) -> Any | None:
    """The model's image processor alone (used when its full processor cannot load)."""
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(name, local_files_only=_offline())
    except Exception:
        return None


def load_vlm(name_or_path: str | Path, device: str = "cpu", dtype: str = "float32"):
    """Load a vision-language model as a :class:`~mmicl_interp.real.loaded.LoadedModel`, or None.

    None when ``name_or_path`` is not a VLM (or its config cannot be read). Raises
    ConfigError(``model``) for a VLM the bridge does not support, a missing torchvision
    the architecture needs, or a failed load; ConfigError(``--dtype``) for a bad dtype.
    The model's processor (``LoadedModel.processor``) is its full multimodal processor, or
    its image processor alone when the full one cannot load.
    """
    name = str(name_or_path)
    config = read_config(name)
    if config is None:
        return None
    arch = vlm_architecture(config)
    if arch is None:
        return None
    from mmicl_interp.real.loaded import LoadedModel, torch_dtype

    dt = torch_dtype(dtype)
    adapter = _adapter_class(arch)
    if adapter is None:
        raise ConfigError(
            "model",
            f"{name}: TransformerLens's TransformerBridge does not support the vision-language "
            f"architecture {arch} (supported: Qwen2.5-VL, LLaVA, LLaVA-NeXT, Idefics3, Gemma 3, ...)",
        )
    if "torchvision" in getattr(adapter, "required_libraries", ()):
        problem = torchvision_problem()
        if problem is not None:
            raise ConfigError(
                "model",
                f"{name}: {arch} needs torchvision, but {problem}; install it with `pip install torchvision` "
                "(the build matching your torch: https://pytorch.org/get-started/locally)",
            )
    from transformer_lens.model_bridge import TransformerBridge

    try:
        with no_torchvision_install():
            bridge = TransformerBridge.boot_transformers(name, device=str(device), dtype=dt)
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(
            "model", f"{name}: could not load the vision-language model {arch} ({first[:200]})"
        ) from None
    processor = getattr(bridge, "processor", None) or _image_processor(name)
    install_vision_batching(bridge)
    return LoadedModel(name=name, bridge=bridge, tokenizer=bridge.tokenizer, processor=processor, is_vlm=True)


# ---------------------------------------------------------------------- batched image inputs
def unbatch_vision_kwargs(kwargs: dict[str, Any], dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Per-prompt padded vision inputs (``key`` + ``key__rows``) back in the model's flat layout.

    ``kwargs[key]`` [batch, rows, ...] with ``kwargs[key + "__rows"]`` [batch] becomes
    ``cat_b kwargs[key][b, :rows[b]]``; floating ``pixel_values`` are cast to ``dtype``. Keys
    without a row count are returned unchanged.
    """
    out = dict(kwargs)
    for rows_key in [k for k in kwargs if k.endswith(ROWS_SUFFIX)]:
        rows = out.pop(rows_key)
        key = rows_key[: -len(ROWS_SUFFIX)]
        value = out.get(key)
        if value is None:
            continue
        counts = [int(n) for n in rows.tolist()]
        out[key] = torch.cat([value[b, :n] for b, n in enumerate(counts)], dim=0)
    pixels = out.get("pixel_values")
    if dtype is not None and isinstance(pixels, torch.Tensor) and pixels.is_floating_point():
        out["pixel_values"] = pixels.to(dtype)
    return out


def _model_dtype(model: torch.nn.Module) -> torch.dtype | None:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def install_vision_batching(bridge: Any) -> None:
    """Let the bridge's HF model take per-prompt padded vision inputs (idempotent)."""
    model = getattr(bridge, "original_model", bridge)
    if getattr(model, "_mmicl_vision_batching", False):
        return
    dtype = _model_dtype(model)

    def pre_hook(module, args, kwargs):
        if not any(k.endswith(ROWS_SUFFIX) for k in kwargs) and "pixel_values" not in kwargs:
            return None
        return args, unbatch_vision_kwargs(kwargs, dtype)

    model.register_forward_pre_hook(pre_hook, with_kwargs=True)
    model._mmicl_vision_batching = True


def hf_config(loaded: Any) -> Any:
    """The HF config of a loaded model's underlying HF model."""
    model = getattr(loaded.bridge, "original_model", None)
    config = getattr(model, "config", None)
    if config is None:
        raise ConfigError("model", f"{loaded.name}: no Hugging Face config behind the bridge")
    return config


def image_token_id(config: Any) -> int:
    """The token id that marks image positions (``config.image_token_id`` or ``image_token_index``)."""
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ConfigError(
        "model", f"{getattr(config, 'model_type', 'the model')}: its config names no image token id"
    )


__all__ = [
    "FLAT_VISION_KEYS",
    "ROWS_SUFFIX",
    "hf_config",
    "image_token_id",
    "install_vision_batching",
    "load_vlm",
    "no_torchvision_install",
    "read_config",
    "torchvision_problem",
    "unbatch_vision_kwargs",
    "vlm_architecture",
]
