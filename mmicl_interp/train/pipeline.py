"""The multimodal pipeline (SCIENCE.md section 4): stage 1 -> stage 2, and the early-fusion control.

- Stage 1 is an ordinary unimodal run on high-diversity M1 data.
- Stage 2 (``pipeline.init_from = "<stage-1 run>"``) builds the multimodal task from the
  stage-1 run's *stored* M1 class means and label vectors (``task.safetensors``; never
  re-derived from a seed, SCIENCE.md flaw 4) and loads the stage-1 decoder weights (last
  checkpoint) into the multimodal model; only the projector starts fresh.
  ``pipeline.freeze`` names the parts that do not train; the paper freezes the decoder
  (``["embed", "blocks"]``) and trains the projector, final norm and read-out.
- Early fusion (``pipeline.early_fusion = true``): the same multimodal training from scratch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmicl_interp import checkpoints as ck
from mmicl_interp.config import FREEZABLE, ConfigError, RunConfig
from mmicl_interp.data.multimodal import MultimodalTask, make_task
from mmicl_interp.data.task import Task
from mmicl_interp.model.transformer import ICLTransformer

PART_PREFIXES: dict[str, tuple[str, ...]] = {
    "embed": ("W_E", "W_pos"),
    "blocks": ("blocks.",),
    "ln_final": ("ln_final.",),
    "readout": ("W_U", "b_U"),
    "projector": ("projector.",),
}
assert set(PART_PREFIXES) == set(FREEZABLE)

# model settings that must agree between a stage-1 run and the stage-2 decoder
_DECODER_KEYS = (
    "positions",
    "n_max",
    "norm",
    "mlp",
    "n_layers",
    "n_heads",
    "d_embed",
    "d_head",
    "d_mlp",
    "use_w_o",
    "attn_bias",
    "rope_theta",
)


def part_of(parameter_name: str) -> str:
    """Which freezable part a parameter belongs to (embed, blocks, ln_final, readout, projector)."""
    for part, prefixes in PART_PREFIXES.items():
        if any(parameter_name == p or parameter_name.startswith(p) for p in prefixes):
            return part
    raise ValueError(f"parameter {parameter_name!r} belongs to no known part")


def freeze_parts(model: nn.Module, parts: list[str]) -> list[str]:
    """Stop gradients to the named parts; returns the frozen parameter names."""
    frozen = []
    for name, param in model.named_parameters():
        if part_of(name) in parts:
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def build_task_and_model(config: RunConfig) -> tuple[Task | MultimodalTask, ICLTransformer, dict[str, Any]]:
    """The task and initial model of a fresh run, with its provenance (stage-1 run and step)."""
    if not config.pipeline.init_from:
        task = make_task(config.task)
        return task, ICLTransformer.from_task(config.model, config.task), {}
    return _from_stage1(config)


def _from_stage1(config: RunConfig) -> tuple[MultimodalTask, ICLTransformer, dict[str, Any]]:
    from mmicl_interp.runs import load_run

    field = "pipeline.init_from"
    path = Path(config.pipeline.init_from)
    try:
        stage1 = load_run(path)
    except FileNotFoundError as err:
        raise ConfigError(field, str(err)) from None
    if stage1.config.kind != "unimodal":
        raise ConfigError(field, f"{path} is a {stage1.config.kind} run; stage 1 must be unimodal")
    s1, tc = stage1.config.task, config.task
    for s1_name, name in (("K", "K1"), ("L", "L1"), ("D", "D1")):
        if getattr(s1, s1_name) != getattr(tc, name):
            raise ConfigError(
                f"task.{name}",
                f"must equal the stage-1 run's {s1_name}={getattr(s1, s1_name)} ({path}), "
                f"got {getattr(tc, name)}",
            )
    for key in _DECODER_KEYS:
        if getattr(stage1.config.model, key) != getattr(config.model, key):
            raise ConfigError(
                f"model.{key}",
                f"must equal the stage-1 run's {key}={getattr(stage1.config.model, key)!r} ({path}), "
                f"got {getattr(config.model, key)!r}",
            )
    if not stage1.steps:
        raise ConfigError(field, f"{path} has no checkpoints")
    stage1_task = stage1.task
    task = MultimodalTask.create(
        tc, m1_means=stage1_task.class_means, label_vectors=stage1_task.label_vectors
    )
    model = ICLTransformer.from_task(config.model, tc)
    step = stage1.steps[-1]
    weights = ck.ckpt_path(path, step)
    state = ck.read_weights(weights)
    with torch.no_grad():
        missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(part_of(name) != "projector" for name in missing):
        raise ConfigError(
            field, f"weights of {weights} do not fit the decoder: missing {missing}, extra {unexpected}"
        )
    return task, model, {"init_from": str(path.resolve()), "init_step": step}
