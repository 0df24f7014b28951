"""benchmarks/: the bench runs end to end at tiny sizes and writes every result key, and the
published-step reference computes the spec's math (checked by hand). No timing asserts."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench  # noqa: E402
from reference import (  # noqa: E402
    PaperPoint,
    PublishedStage1Data,
    PublishedStage1Model,
    make_reference_step,
)

TINY = PaperPoint(K=6, L=3, D=3, N=2, B=1, n_max=3, n_layers=2, n_heads=2, batch_size=4)


def test_bench_writes_every_key_as_a_finite_number_or_null(tmp_path):
    out = tmp_path / "results.json"
    results = bench.run(bench.QUICK, out)
    written = json.loads(out.read_text())
    assert list(written) == list(bench.RESULT_KEYS) and written == results
    for key, value in written.items():
        assert value is None or (isinstance(value, float) and math.isfinite(value)), key
    assert written["real_scoring_vs_forward"] is None  # QUICK skips the real-model part
    for key in set(bench.RESULT_KEYS) - {"real_scoring_vs_forward"}:
        assert written[key] is not None, key


def test_missing_real_bench_gives_null(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "HERE", tmp_path)
    assert bench.bench_real() is None
    assert "missing" in capsys.readouterr().out


def _rms(x, w):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-5) * w


def _by_hand(
    model: PublishedStage1Model, x: torch.Tensor, shift: torch.Tensor, pt: PaperPoint
) -> torch.Tensor:
    """The spec's forward, one sequence, position and head at a time."""
    out = []
    for b in range(x.shape[0]):
        p = x.shape[1]
        onehot = torch.zeros(p, pt.pos_width)
        for t in range(p):
            onehot[t, t + int(shift[b])] = 1.0
        h = torch.cat([onehot, x[b]], -1)  # the position block first
        for layer in model.layers:
            a = layer.attention
            n = _rms(h, layer.attention_norm.weight)
            q, k, v = n @ a.wq.weight.T, n @ a.wk.weight.T, n @ a.wv.weight.T
            z = torch.zeros(p, a.n_heads * a.head_dim)
            for head in range(a.n_heads):
                cols = slice(head * a.head_dim, (head + 1) * a.head_dim)
                for t in range(p):
                    s = torch.tensor(
                        [float(q[t, cols] @ k[u, cols]) / math.sqrt(a.head_dim) for u in range(t + 1)]
                    )
                    w = torch.exp(s - s.max())
                    w = w / w.sum()
                    z[t, cols] = sum(w[u] * v[u, cols] for u in range(t + 1))
            h = h + (z @ a.wo.weight.T if a.wo is not None else z)
            m = layer.feed_forward
            n = _rms(h, layer.ffn_norm.weight)
            f1, f2 = n @ m.fc1.weight.T + m.fc1.bias, n @ m.fc2.weight.T + m.fc2.bias
            g = f1 * f2
            h = h + (g * torch.sigmoid(g)) @ m.fc3.weight.T + m.fc3.bias
        out.append(_rms(h[-1], model.norm.weight) @ model.output.weight.T)
    return torch.stack(out)


@pytest.mark.parametrize("n_heads", [1, 2])
def test_reference_forward_matches_a_by_hand_computation(n_heads):
    pt = replace(TINY, n_heads=n_heads, D=3 if n_heads == 2 else 2)
    model = PublishedStage1Model(pt, seed=3)
    assert (model.layers[0].attention.wo is None) == (n_heads == 1)  # W_O only with several heads
    assert model.output.bias is None and model.output.weight.shape == (pt.L, pt.pos_width + pt.D)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, pt.n_ctx, pt.D, generator=g)
    shift = torch.tensor([0, 1, pt.pos_width - pt.n_ctx])
    with torch.no_grad():
        got = model(x, shift)
        want = _by_hand(model, x, shift, pt)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_reference_init_follows_the_spec():
    pt = PaperPoint(n_layers=1)
    model = PublishedStage1Model(pt)
    dim = pt.pos_width + pt.D
    assert dim == 129
    assert abs(model.layers[0].attention.wq.weight.std().item() - 0.02) < 0.002
    fc1 = model.layers[0].feed_forward.fc1  # nn.Linear's default: U(-1/sqrt(dim), 1/sqrt(dim))
    assert fc1.weight.abs().max() <= 1 / math.sqrt(dim) and fc1.bias is not None
    assert abs(fc1.weight.std().item() - 1 / math.sqrt(3 * dim)) < 0.003


def test_reference_data_are_bursty_sequences_of_the_task():
    data = PublishedStage1Data(TINY, seed=1)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        x, shift, target = data.sequence(g)
        assert x.shape == (TINY.n_ctx, TINY.D) and 0 <= int(shift) <= TINY.pos_width - TINY.n_ctx
        labels = x[1 : 2 * TINY.N : 2]
        label_ids = [int((data.labels - row).abs().sum(-1).argmin()) for row in labels]
        torch.testing.assert_close(labels, data.labels[label_ids])
        assert int(target) in label_ids  # bursty (p_B 1): the query's class is in the context
        items = torch.cat([x[0 : 2 * TINY.N : 2], x[-1:]])
        nearest = torch.cdist(items, data.means).argmin(-1)  # eps 0.1: each item is near its mean
        assert [int(c) % TINY.L for c in nearest[:-1]] == label_ids
        assert int(nearest[-1]) % TINY.L == int(target)


def test_reference_step_trains():
    step, close = make_reference_step(TINY, seed=0, num_workers=0)
    try:
        losses = [step() for _ in range(3)]
    finally:
        close()
    assert all(math.isfinite(v) for v in losses)
    assert abs(losses[0] - math.log(TINY.L)) < 0.5  # near chance at init
