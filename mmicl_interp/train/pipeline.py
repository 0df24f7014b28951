"""The multimodal pipeline (SCIENCE.md section 4): stage 1 -> stage 2, and the early-fusion control.

- Stage 1 is an ordinary unimodal run on high-diversity M1 data.
- Stage 2 (``pipeline.init_from = "<stage-1 run>"``) builds the multimodal task from the
  stage-1 run's *stored* M1 class means and label vectors (``task.safetensors``; never
  re-derived from a seed, SCIENCE.md flaw 4) and loads the stage-1 decoder weights (last
  checkpoint) into the multimodal model; only the projector starts fresh.
  ``pipeline.freeze`` names the parts that do not train; the paper freezes the decoder
  (``["embed", "blocks"]``) and trains the projector, final norm and read-out.
- Early fusion (``pipeline.early_fusion = true``): the same multimodal training from scratch.
- An M2 encoder (``model.encoder = "mlp"``) can be pretrained on K2-way classification
  (a run of ``kind = "encoder"``) and loaded with ``pipeline.encoder_from``: its weights and
  the M2 class means it was trained on come from that run's files; freeze it with
  ``freeze = [..., "encoder"]`` or let it train.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmicl_interp import checkpoints as ck
from mmicl_interp.config import FREEZABLE, ConfigError, RunConfig
from mmicl_interp.data.encoder import EncoderTask
from mmicl_interp.data.multimodal import MultimodalTask, make_task
from mmicl_interp.data.task import Task
from mmicl_interp.model.factory import build_model, training_task  # also importable from here
from mmicl_interp.model.transformer import ICLTransformer

PART_PREFIXES: dict[str, tuple[str, ...]] = {
    "embed": ("W_E", "W_pos"),
    "blocks": ("blocks.",),
    "ln_final": ("ln_final.",),
    "readout": ("W_U", "b_U", "W_cls", "b_cls"),
    "projector": ("projector.",),
    "encoder": ("encoder.",),
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
    "readout_bias",
    "rope_theta",
)


_ENCODER_KEYS = ("encoder", "encoder_hidden", "d_encoder")


def _require_equal(source, config, keys, section: str, what: str) -> None:
    """Refuse a config whose ``section`` values differ from the run it loads from.

    ``keys`` are names, or (name in the source, name in this config) pairs.
    """
    for key in keys:
        theirs, ours = (key, key) if isinstance(key, str) else key
        if getattr(source, theirs) != getattr(config, ours):
            raise ConfigError(
                f"{section}.{ours}",
                f"must equal {theirs}={getattr(source, theirs)!r} of {what}, got {getattr(config, ours)!r}",
            )


def part_of(parameter_name: str) -> str:
    """Which freezable part a parameter belongs to (embed, blocks, ln_final, readout, projector, encoder)."""
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


def build_task_and_model(
    config: RunConfig,
) -> tuple[Task | MultimodalTask | EncoderTask, nn.Module, dict[str, Any]]:
    """The task and initial model of a fresh run, with its provenance (the runs it starts from).

    A multimodal run takes its M1 means, label vectors and decoder from ``pipeline.init_from``
    and its M2 means and encoder from ``pipeline.encoder_from``, each from the stored files.
    """
    pl = config.pipeline
    if config.kind != "multimodal" or not (pl.init_from or pl.encoder_from):
        task = make_task(config.task)
        return training_task(config, task), build_model(config), {}
    tensors: dict[str, torch.Tensor] = {}
    states: list[tuple[str, dict[str, torch.Tensor], str]] = []
    provenance: dict[str, Any] = {}
    if pl.init_from:
        m1_means, labels, state, info = _stage1(config)
        tensors.update(m1_means=m1_means, label_vectors=labels)
        states.append(("pipeline.init_from", state, "decoder"))
        provenance.update(info)
    if pl.encoder_from:
        m2_means, state, info = _encoder_run(config)
        tensors["m2_means"] = m2_means
        states.append(("pipeline.encoder_from", state, "encoder"))
        provenance.update(info)
    task = MultimodalTask.create(config.task, **tensors)
    model = ICLTransformer.from_task(config.model, config.task)
    loaded: set[str] = set()
    for field, state, what in states:
        with torch.no_grad():
            missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected:
            raise ConfigError(field, f"its {what} weights do not fit this model: extra {unexpected}")
        loaded |= set(state)
    fresh = {name for name, _ in model.named_parameters()} - loaded
    allowed_fresh = {"projector"} | ({"encoder"} if not pl.encoder_from else set())
    if pl.init_from and any(part_of(name) not in allowed_fresh for name in fresh):
        raise ConfigError("pipeline.init_from", f"the stage-1 weights leave {sorted(fresh)} untrained")
    return task, model, provenance


_SOURCE_WHAT = {"unimodal": ("stage 1", "mm_stage1"), "encoder": ("the encoder", "mm_encoder")}
"""What a source run of each kind is called, and the shipped config that trains one."""


def _train_first(path: Path, kind: str, resume: bool = False) -> str:
    """The command that makes the missing (or unfinished) source run at ``path``."""
    what, shipped = _SOURCE_WHAT[kind]
    flag = " --resume" if resume else ""
    if path.parent == Path("checkpoints") and path.name == shipped:  # the shipped default --out
        return f"train {what} first: mmicl train {shipped}{flag}"
    return f"train {what} first: mmicl train {shipped} --out {path}{flag} (or your {what} config)"


def _source_run(field: str, path_text: str, kind: str):
    """The run a pipeline field names, checked to be complete, of ``kind``, with checkpoints."""
    from mmicl_interp.runs import load_run

    path = Path(path_text)
    if not (path / ck.MANIFEST).is_file():
        raise ConfigError(field, f"no run at {path}; {_train_first(path, kind)}")
    run = load_run(path)
    if run.config.kind != kind:
        raise ConfigError(field, f'{path} is a {run.config.kind} run; it must be kind = "{kind}"')
    status = run.manifest.get("status")
    if status != "complete" or not run.steps:
        last = f"last checkpoint {run.steps[-1]}" if run.steps else "no checkpoint"
        if status == "diverged":
            state, hint = (
                f"a diverged run ({run.manifest.get('diverged', '')})",
                "retrain it with a lower train.lr",
            )
        else:
            state, hint = "an unfinished run", _train_first(path, kind, resume=True)
        raise ConfigError(field, f"{path} is {state} ({last} of {run.config.train.steps} steps); {hint}")
    return run


def _encoder_run(config: RunConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
    run = _source_run("pipeline.encoder_from", config.pipeline.encoder_from, "encoder")
    what = f"the encoder run {run.path}"
    _require_equal(run.config.task, config.task, [("K2", "K2"), ("D2", "D2")], "task", what)
    _require_equal(run.config.model, config.model, _ENCODER_KEYS, "model", what)
    step = run.steps[-1]
    weights = ck.read_weights(ck.ckpt_path(run.path, step))
    state = {k: v for k, v in weights.items() if k.startswith("encoder.")}
    return run.task.m2_means, state, {"encoder_from": str(run.path.resolve()), "encoder_step": step}


def _stage1(config: RunConfig) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
    run = _source_run("pipeline.init_from", config.pipeline.init_from, "unimodal")
    what = f"the stage-1 run {run.path}"
    _require_equal(run.config.task, config.task, [("K", "K1"), ("L", "L1"), ("D", "D1")], "task", what)
    _require_equal(run.config.model, config.model, _DECODER_KEYS, "model", what)
    step = run.steps[-1]
    state = ck.read_weights(ck.ckpt_path(run.path, step))
    task = run.task
    return (
        task.class_means,
        task.label_vectors,
        state,
        {"init_from": str(run.path.resolve()), "init_step": step},
    )
