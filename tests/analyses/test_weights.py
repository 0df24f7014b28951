"""QK / OV circuits and composition scores against hand-computed matrices."""

import copy

import pytest
import torch
from transformer_lens import FactoredMatrix

from mmicl_interp.analyses.tidy import COLUMNS
from mmicl_interp.analyses.weights import (
    all_composition_scores,
    composition_over_checkpoints,
    composition_scores,
    ov_circuit,
    ov_circuits,
    qk_circuit,
    qk_circuits,
)
from mmicl_interp.config import ModelConfig
from mmicl_interp.model.transformer import ICLTransformer


def _score(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a @ b).norm() / (a.norm() * b.norm())).item()


@pytest.fixture
def model(tiny_task):
    """3 layers, 2 heads, LayerNorm with non-unit weights (so folding matters)."""
    m = ICLTransformer.from_task(ModelConfig(n_max=4, n_layers=3, n_heads=2, norm="ln"), tiny_task.config)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for block in m.blocks:
            block.ln1.w.copy_(1 + torch.rand(block.ln1.w.shape, generator=g))
    return m


def test_circuits_are_factored_products_of_the_head_weights(model):
    attn = model.blocks[1].attn
    qk = qk_circuit(model, 1, 1, fold_norm=False)
    ov = ov_circuit(model, 1, 1, fold_norm=False)
    assert isinstance(qk, FactoredMatrix) and isinstance(ov, FactoredMatrix)
    d = model.cfg.d_model
    assert qk.shape == (d, d) and ov.shape == (d, d)
    torch.testing.assert_close(qk.AB, attn.W_Q[1] @ attn.W_K[1].T)
    torch.testing.assert_close(ov.AB, attn.W_V[1] @ attn.W_O[1])
    assert qk_circuits(model).shape == (3, 2, d, d) and ov_circuits(model).shape == (3, 2, d, d)


def test_folding_the_norm_is_centring_then_scaling_the_inputs(model):
    attn, w = model.blocks[2].attn, model.blocks[2].ln1.w.detach()
    d = model.cfg.d_model
    fold = (torch.eye(d) - torch.full((d, d), 1 / d)) @ torch.diag(w)
    torch.testing.assert_close(qk_circuit(model, 2, 0).AB, fold @ attn.W_Q[0] @ attn.W_K[0].T @ fold.T)
    torch.testing.assert_close(ov_circuit(model, 2, 0).AB, fold @ attn.W_V[0] @ attn.W_O[0])


def test_bad_head_and_kind_raise_clear_errors(model):
    with pytest.raises(ValueError, match=r"head: \(3, 0\) is out of range; the model has layers 0\.\.2"):
        qk_circuit(model, 3, 0)
    with pytest.raises(ValueError, match=r"heads 0\.\.1"):
        ov_circuit(model, 0, 2)
    with pytest.raises(ValueError, match="kind: must be one of q, k, v; got 'o'"):
        composition_scores(model, "o")


def test_composition_scores_match_the_elhage_formula(model):
    ov = ov_circuits(model).AB
    qk = qk_circuits(model).AB
    scores = all_composition_scores(model)
    assert set(scores) == {"q_comp", "k_comp", "v_comp"}
    for sl, sh, rl, rh in [(0, 0, 1, 1), (0, 1, 2, 0), (1, 1, 2, 1)]:
        a = ov[sl, sh]
        assert scores["k_comp"][sl, sh, rl, rh].item() == pytest.approx(_score(a, qk[rl, rh].T), rel=1e-4)
        assert scores["q_comp"][sl, sh, rl, rh].item() == pytest.approx(_score(a, qk[rl, rh]), rel=1e-4)
        assert scores["v_comp"][sl, sh, rl, rh].item() == pytest.approx(_score(a, ov[rl, rh]), rel=1e-4)
    k = scores["k_comp"]
    later = torch.tensor([[rl > sl for rl in range(3)] for sl in range(3)])
    assert torch.equal(k.isfinite(), later[:, None, :, None].expand(3, 2, 3, 2))
    assert ((k[k.isfinite()] > 0) & (k[k.isfinite()] <= 1)).all()


def test_composition_is_scale_invariant(model):
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled.blocks[0].attn.W_O.mul_(3.0)
        scaled.blocks[1].attn.W_Q.mul_(0.5)
    torch.testing.assert_close(
        composition_scores(scaled, "k"), composition_scores(model, "k"), equal_nan=True
    )


def test_composition_over_checkpoints_is_tidy_and_shows_k_composition_forming(icl_run):
    run = icl_run.run
    df = composition_over_checkpoints(run)
    assert list(df.columns) == list(COLUMNS) and set(df["run"]) == {run.run_id}
    assert len(df) == 3 * len(run.steps)  # 3 kinds x 1 pair (L0H0 -> L1H0) x checkpoints
    assert (df["layer"] == 1).all() and (df["src_layer"] == 0).all() and df["suite"].isna().all()
    last = df[df.step == run.steps[-1]].set_index("metric")["value"]
    first = df[df.step == 0].set_index("metric")["value"]
    # the trained circuit composes through the induction head's keys
    assert last["k_comp"] > 2 * max(last["q_comp"], last["v_comp"])
    assert last["k_comp"] > 1.5 * first["k_comp"]
    with pytest.raises(ValueError, match=r"steps: \[5\] have no checkpoint"):
        composition_over_checkpoints(run, steps=[5])


def test_folding_follows_the_models_dtype_and_device(model):
    """The LayerNorm fold is built beside the weights (their device and dtype): a float64 model
    scores in float64, equal to the float32 scores."""
    want = composition_scores(model, "k")
    double = copy.deepcopy(model).double()
    got = composition_scores(double, "k")
    assert got.dtype == torch.float64
    torch.testing.assert_close(got.float(), want, equal_nan=True, rtol=1e-4, atol=1e-5)
