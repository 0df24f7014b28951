"""What a loaded real model is (:class:`LoadedModel`) and the ``--dtype`` names, below both
loaders (:mod:`~mmicl_interp.real.load` for text models, :mod:`~mmicl_interp.real.vlm` for
vision-language models) so that neither imports the other back."""

from __future__ import annotations

from dataclasses import dataclass
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
