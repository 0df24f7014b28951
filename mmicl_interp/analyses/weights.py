"""Weight-based circuit analysis: QK / OV circuits and composition scores between heads.

Method (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits"; row-vector
convention of TransformerLens, ``x W``):

- QK circuit of head (l, h): ``W_QK = W_Q[h] W_K[h]^T`` ([d_model, d_model]); the score of
  query x_t on key x_u is ``x_t W_QK x_u^T`` (before the 1/sqrt(d_head) scale and any
  rotary / ALiBi position term).
- OV circuit: ``W_OV = W_V[h] W_O[h]`` ([d_model, d_model]); a head attending fully to x_u
  writes ``x_u W_OV``.
- Composition of a sender head A (earlier layer) into a receiver head B (later layer):
  ``score = ||W_A W_B||_F / (||W_A||_F ||W_B||_F)`` with ``W_A = W_OV^A`` and
  ``W_B = W_QK^B`` (Q-composition: A's output feeds B's queries),
  ``W_B = (W_QK^B)^T`` (K-composition: A's output feeds B's keys, the prev-token ->
  induction edge) or ``W_B = W_OV^B`` (V-composition). Random matrices already score about
  ``1/sqrt(d_model)``-ish; compare heads with each other or with an untrained checkpoint.

Weights only: no prompts. Everything stays on the model's device (and dtype).
All matrices are TransformerLens ``FactoredMatrix`` objects; the scores come from
``transformer_lens.utilities.composition_scores`` (one SVD per head, no d_model x d_model
product per pair). With ``fold_norm=True`` (default) each head's pre-norm weight is folded into its
W_Q / W_K / W_V (``diag(w) W``; LayerNorm also its centring ``I - 11^T/d``), as
TransformerLens's ``fold_ln`` does; the norm's data-dependent scale is not a weight and is
ignored.

Tidy table (:func:`composition_over_checkpoints`, the shared format of :mod:`~mmicl_interp.analyses.tidy`):
metrics ``q_comp``, ``k_comp``, ``v_comp`` (position NA);
``layer``/``head`` name the RECEIVER and ``src_layer``/``src_head`` the SENDER (nullable
Int64, so the table concatenates with the attention-measure table, whose rows have NA
there). Weight scores depend on no data: ``suite`` is NA.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

import pandas as pd
import torch
from jaxtyping import Float
from transformer_lens import FactoredMatrix
from transformer_lens.utilities import composition_scores as tl_composition_scores

from mmicl_interp.analyses.tidy import tidy_table
from mmicl_interp.runs import Run

CompositionKind = Literal["q", "k", "v"]
"""Which input of the receiver the sender's output feeds: queries, keys or values."""
COMPOSITION_KINDS: tuple[str, ...] = get_args(CompositionKind)


def _check_head(model: torch.nn.Module, layer: int, head: int) -> None:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise ValueError(
            f"head: ({layer}, {head}) is out of range; the model has layers 0..{n_layers - 1} "
            f"and heads 0..{n_heads - 1}"
        )


def _norm_fold(model: torch.nn.Module, layer: int) -> Float[torch.Tensor, "d_model d_model"] | None:
    """The linear part of block ``layer``'s ln1 as a matrix (None for no norm)."""
    ln = model.blocks[layer].ln1
    if ln.kind == "none":
        return None
    w = ln.w.detach()
    d_model = w.shape[0]
    fold = torch.diag(w)
    if ln.kind == "ln":
        like = dict(device=w.device, dtype=w.dtype)
        fold = (torch.eye(d_model, **like) - torch.full((d_model, d_model), 1.0 / d_model, **like)) @ fold
    return fold


def _weights(model: torch.nn.Module, layer: int, fold_norm: bool) -> dict[str, torch.Tensor]:
    attn = model.blocks[layer].attn
    w = {name: getattr(attn, name).detach() for name in ("W_Q", "W_K", "W_V", "W_O")}
    fold = _norm_fold(model, layer) if fold_norm else None
    if fold is not None:
        for name in ("W_Q", "W_K", "W_V"):
            w[name] = fold @ w[name]
    return w


def _stacked(model: torch.nn.Module, fold_norm: bool) -> dict[str, torch.Tensor]:
    """W_Q, W_K, W_V, W_O of every layer stacked [layer, head, ...] (W_O expanded per head)."""
    layers = [_weights(model, layer, fold_norm) for layer in range(model.cfg.n_layers)]
    w = {name: torch.stack([lw[name] for lw in layers]) for name in ("W_Q", "W_K", "W_V")}
    w["W_O"] = torch.stack([lw["W_O"].expand(lw["W_V"].shape[0], -1, -1) for lw in layers])
    return w


@torch.no_grad()
def qk_circuits(
    model: torch.nn.Module, fold_norm: bool = True
) -> FactoredMatrix:  # [layer, head, d_model, d_model]
    """Every head's QK circuit ``W_Q W_K^T`` as one FactoredMatrix [layer, head, d_model, d_model]."""
    w = _stacked(model, fold_norm)
    return FactoredMatrix(w["W_Q"], w["W_K"].transpose(-2, -1))


@torch.no_grad()
def ov_circuits(
    model: torch.nn.Module, fold_norm: bool = True
) -> FactoredMatrix:  # [layer, head, d_model, d_model]
    """Every head's OV circuit ``W_V W_O`` as one FactoredMatrix [layer, head, d_model, d_model]."""
    w = _stacked(model, fold_norm)
    return FactoredMatrix(w["W_V"], w["W_O"])


def qk_circuit(model: torch.nn.Module, layer: int, head: int, fold_norm: bool = True) -> FactoredMatrix:
    """The QK circuit ``W_Q[h] W_K[h]^T`` ([d_model, d_model]) of head (layer, head)."""
    _check_head(model, layer, head)
    return qk_circuits(model, fold_norm)[layer, head]


def ov_circuit(model: torch.nn.Module, layer: int, head: int, fold_norm: bool = True) -> FactoredMatrix:
    """The OV circuit ``W_V[h] W_O[h]`` ([d_model, d_model]) of head (layer, head)."""
    _check_head(model, layer, head)
    return ov_circuits(model, fold_norm)[layer, head]


@torch.no_grad()
def composition_scores(
    model: torch.nn.Module, kind: CompositionKind = "k", fold_norm: bool = True
) -> Float[torch.Tensor, "src_layer src_head layer head"]:
    """Q-, K- or V-composition scores of every sender head into every later receiver head.

    ``scores[sl, sh, rl, rh]`` composes sender (sl, sh) into receiver (rl, rh); NaN where
    ``rl <= sl`` (no path). ``kind`` is ``"q"``, ``"k"`` or ``"v"``.
    """
    if kind not in COMPOSITION_KINDS:
        raise ValueError(f"kind: must be one of {', '.join(COMPOSITION_KINDS)}; got {kind!r}")
    ov = ov_circuits(model, fold_norm)
    qk = qk_circuits(model, fold_norm)
    right = {"q": qk, "k": qk.T, "v": ov}[kind]
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    # every sender against every receiver: [sl, sh] x [rl, rh] (one SVD per head, not per pair)
    scores = tl_composition_scores(ov, right, broadcast_dims=True)
    layers = torch.arange(n_layers, device=scores.device)
    later = layers[None, :] > layers[:, None]  # [sl, rl]
    mask = later[:, None, :, None].expand(n_layers, n_heads, n_layers, n_heads)
    return scores.masked_fill(~mask, float("nan"))


def all_composition_scores(
    model: torch.nn.Module, fold_norm: bool = True
) -> dict[str, Float[torch.Tensor, "src_layer src_head layer head"]]:
    """``{"q_comp": ..., "k_comp": ..., "v_comp": ...}`` from :func:`composition_scores`."""
    return {f"{kind}_comp": composition_scores(model, kind, fold_norm) for kind in COMPOSITION_KINDS}


def composition_rows(
    model: torch.nn.Module, *, run: str = "", step: int = 0, fold_norm: bool = True
) -> list[dict]:
    """Tidy rows of every (sender, later receiver) composition score of one model."""
    rows = []
    for metric, scores in all_composition_scores(model, fold_norm).items():
        scores = scores.cpu()  # one device sync, not one per value
        sl_n, sh_n, rl_n, rh_n = scores.shape
        for sl in range(sl_n):
            for sh in range(sh_n):
                for rl in range(sl + 1, rl_n):
                    for rh in range(rh_n):
                        rows.append(
                            dict(
                                run=run,
                                step=step,
                                suite=None,
                                metric=metric,
                                layer=rl,
                                head=rh,
                                src_layer=sl,
                                src_head=sh,
                                value=float(scores[sl, sh, rl, rh]),
                            )
                        )
    return rows


def composition_over_checkpoints(
    run: Run, steps: Iterable[int] | None = None, *, fold_norm: bool = True
) -> pd.DataFrame:
    """Composition scores of every checkpoint of a run as a tidy table (see module docstring)."""
    available = run.steps
    steps = available if steps is None else list(steps)
    missing = sorted(set(steps) - set(available))
    if missing:
        raise ValueError(f"steps: {missing} have no checkpoint in {run.path}; available: {available}")
    rows: list[dict] = []
    for step in steps:
        rows.extend(composition_rows(run.model(step), run=run.run_id, step=step, fold_norm=fold_norm))
    return tidy_table(rows)


__all__ = [
    "COMPOSITION_KINDS",
    "CompositionKind",
    "all_composition_scores",
    "composition_over_checkpoints",
    "composition_rows",
    "composition_scores",
    "ov_circuit",
    "ov_circuits",
    "qk_circuit",
    "qk_circuits",
]
