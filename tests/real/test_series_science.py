"""The science of the shipped series ``examples/stdlib_lm`` (13 checkpoints, steps 0-8000):
induction heads form when the in-context loss drops, and knocking them out costs more
in-context loss than knocking out random heads. Offline, a few seconds each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmicl_interp.analyses.correlation import onset
from mmicl_interp.analyses.stats import t_interval
from mmicl_interp.real import series as S
from mmicl_interp.real.repeated import (
    knockout_second_copy_loss,
    ordinary_token_ids,
    repeated_tokens,
)

SHIPPED = Path(__file__).resolve().parents[2] / "examples" / "stdlib_lm"
pytestmark = pytest.mark.skipif(not SHIPPED.is_dir(), reason="the shipped stdlib series is not there")
REP_LEN = 31  # (64-token context - BOS) // 2, what `mmicl series` uses on this model


@pytest.fixture(scope="module")
def shipped_summary(tmp_path_factory):
    torch.set_num_threads(1)
    opts = S.SeriesOptions(rep_seqs=16, text_seqs=8, prompts=None)
    out = tmp_path_factory.mktemp("shipped") / "out"
    return S.summary(S.run_series([str(SHIPPED)], out=out, options=opts, log=lambda s: None).table)


def _bracket(steps: np.ndarray, values: np.ndarray) -> tuple[int, int]:
    """The two checkpoints around the half-rise onset (first checkpoint at/after the crossing)."""
    on = onset(steps, values, interpolate=False, min_rise=0.1)
    assert np.isfinite(on.step)
    i = int(np.searchsorted(steps, on.step))
    assert steps[i] - steps[i - 1] == on.resolution
    return int(steps[i - 1]), int(steps[i])


def test_induction_onset_coincides_with_in_context_loss_drop(shipped_summary):
    """The half-rise onset of the best induction head (layers >= 1) and of the in-context gain
    on repeated tokens (first-copy minus second-copy loss) fall between the same two
    checkpoints (the resolution: 2000 and 3000), and the second-copy loss falls most in the
    interval where the induction score rises most."""
    s = shipped_summary
    steps = s["step"].to_numpy()
    ind = s["induction"].to_numpy()
    gain = (s["rep_loss_first"] - s["rep_loss_second"]).to_numpy()
    assert _bracket(steps, ind) == _bracket(steps, gain) == (2000, 3000)
    # independent of the onset rule: the steepest rise and the steepest drop share an interval
    i_rise = int(np.argmax(np.diff(ind)))
    i_drop = int(np.argmin(np.diff(s["rep_loss_second"].to_numpy())))
    assert i_rise == i_drop and (steps[i_rise], steps[i_rise + 1]) == (2000, 3000)
    # before the onset the second copy is no easier than the first; after it, much easier
    assert abs(gain[steps <= 1000]).max() < 0.2 and gain[-1] > 5.0


@pytest.fixture(scope="module")
def repeated_batch():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SHIPPED / "step_8000")
    return repeated_tokens(ordinary_token_ids(tok, len(tok)), REP_LEN, 24, tok.bos_token_id, seed=1)


@pytest.mark.parametrize("step", [7000, 8000])
def test_knocking_out_induction_heads_beats_random_heads(step, repeated_batch):
    """At the last checkpoints, zero-ablating the top-2 induction heads (layers >= 1) raises the
    second-copy loss more than 10 random draws of 2 other heads do: the per-sequence excess
    over the draws' mean has a 95% t interval above 0."""
    from mmicl_interp.real.knockout import random_head_sets
    from mmicl_interp.real.load import load_model

    torch.set_num_threads(1)
    bridge = load_model(str(SHIPPED / f"step_{step}"), progress=False).bridge
    scores = S.repeated_scores(bridge, repeated_batch, REP_LEN)
    ind = scores["rep_induction"]
    top = [
        (1 + i // ind.shape[1], i % ind.shape[1])
        for i in torch.argsort(ind[1:].flatten(), descending=True)[:2].tolist()
    ]
    assert top[0] == (1, 0)
    clean = knockout_second_copy_loss(bridge, repeated_batch, REP_LEN)
    assert float(clean.mean()) == pytest.approx(scores["rep_loss_second"], abs=1e-4)
    rise_ind = knockout_second_copy_loss(bridge, repeated_batch, REP_LEN, top) - clean
    draws = random_head_sets(bridge.cfg.n_layers, bridge.cfg.n_heads, 2, 10, exclude=top, seed=0)
    assert all(not set(d) & set(top) for d in draws)
    rise_rand = torch.stack(
        [knockout_second_copy_loss(bridge, repeated_batch, REP_LEN, d) - clean for d in draws]
    )
    excess = t_interval((rise_ind - rise_rand.mean(0)).double().numpy(), unit="sequences")
    assert excess.n == len(repeated_batch) and excess.lo > 0, excess
    assert float(rise_ind.mean()) > 1.0


def test_knockout_equals_zeroed_dense_columns_in_plain_transformers(repeated_batch):
    """The zero knockout through the bridge's ``hook_z`` equals plain transformers with the
    head's input columns of the attention output projection set to 0."""
    from transformers import AutoModelForCausalLM

    from mmicl_interp.real.load import load_model

    torch.set_num_threads(1)
    folder = SHIPPED / "step_8000"
    bridge = load_model(str(folder), progress=False).bridge
    heads = [(1, 0), (0, 2)]
    ours = knockout_second_copy_loss(bridge, repeated_batch[:6], REP_LEN, heads)
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    d_head = model.config.hidden_size // model.config.num_attention_heads
    with torch.no_grad():
        for layer, head in heads:
            model.gpt_neox.layers[layer].attention.dense.weight[:, head * d_head : (head + 1) * d_head] = 0
        logits = model(input_ids=repeated_batch[:6]).logits.double()
    logp = torch.log_softmax(logits, -1)
    o = 1
    ref = [
        np.mean(
            [-float(logp[b, p, repeated_batch[b, p + 1]]) for p in range(o + REP_LEN, o + 2 * REP_LEN - 1)]
        )
        for b in range(6)
    ]
    np.testing.assert_allclose(ours.double().numpy(), ref, atol=1e-4)
