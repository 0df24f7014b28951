"""The shared vocabulary of mmicl-interp: the named choices every package speaks.

Each choice is a ``Literal`` type plus the tuple of its allowed values (for validation
messages), so the config, the model, the trainer and the analyses agree on spelling.
"""

from __future__ import annotations

from typing import Literal, get_args

PositionType = Literal["onehot", "learned", "rope", "rope_paper", "alibi", "none"]
"""How position enters the model.

- ``onehot``: the paper's / Reddy's "APE": a one-hot block of width ``2*n_max+1``,
  shifted by a random per-sequence offset, concatenated to the features.
- ``learned``: a learned absolute position embedding added to the residual stream.
- ``rope``: rotary embeddings (a true rotation of q and k, theta 10000, half-split).
- ``rope_paper``: the published code's variant, which is *not* a rotation (see SCIENCE.md,
  flaw 1); offered only to check the paper's RoPE claim.
- ``alibi``: linear attention biases per head.
- ``none``: no positional information beyond the causal mask.
"""

NormType = Literal["rms", "ln", "none"]
MlpType = Literal["none", "gelu", "swiglu", "paper_gated"]
OptimizerName = Literal["sgd", "adam", "adamw"]
SuiteName = Literal["test", "icl", "icl_flip", "iwl"]
ScheduleKind = Literal["log", "linear", "list", "union"]
TokenKind = Literal["item", "label", "query"]

POSITION_TYPES: tuple[str, ...] = get_args(PositionType)
NORM_TYPES: tuple[str, ...] = get_args(NormType)
MLP_TYPES: tuple[str, ...] = get_args(MlpType)
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
SUITES: tuple[str, ...] = get_args(SuiteName)
SCHEDULE_KINDS: tuple[str, ...] = get_args(ScheduleKind)

AblationMethod = Literal["zero", "mean", "resample"]
"""How a head's output is knocked out: set to 0, to its mean over the suite, or to its
value on another sequence of the suite (resample)."""
PatchKind = Literal["heads", "resid", "path", "attribution"]
Corruption = Literal["label", "item", "item_m1", "item_m2"]
"""Corrupted icl sequences for patching: ``label`` replaces the labels of the matching
exemplars by another label; ``item`` replaces the matching exemplars' (M1) items;
``item_m1`` / ``item_m2`` replace only the M1 / only the M2 items of the matching
exemplars (``item_m1`` is ``item``; ``item_m2`` needs a multimodal run)."""
MeasureName = Literal["prev_token", "prev_token_label", "ih", "tila", "tiia", "tla"]

ABLATION_METHODS: tuple[str, ...] = get_args(AblationMethod)
PATCH_KINDS: tuple[str, ...] = get_args(PatchKind)
CORRUPTIONS: tuple[str, ...] = get_args(Corruption)
MEASURES: tuple[str, ...] = get_args(MeasureName)
