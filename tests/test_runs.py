"""``Run.suites``: the stored-seed eval suites, their prefixes for smaller sizes, and the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmicl_interp import load_run
from mmicl_interp.config import RunConfig
from mmicl_interp.data.multimodal import make_task
from mmicl_interp.data.task import Batch
from mmicl_interp.runs import Run
from mmicl_interp.train.evaluate import accuracy_and_loss, suite_logits

EXAMPLE = Path(__file__).resolve().parents[1] / "checkpoints" / "example"


def _tensors(batch: Batch) -> dict[str, torch.Tensor]:
    """Every tensor field of a batch, optional ones included when set."""
    return batch.tensors()


def _assert_prefix(small: dict[str, Batch], full: dict[str, Batch], n: int) -> None:
    assert list(small) == list(full)
    for suite in full:
        got, want = _tensors(small[suite]), _tensors(full[suite])
        assert set(got) == set(want), suite
        for name, value in want.items():
            assert got[name].shape[0] == n, (suite, name)
            assert torch.equal(got[name], value[:n]), (suite, name)


def _multimodal_run(tmp_path: Path) -> Run:
    """A multimodal run object over a freshly made task (nothing trained: suites only)."""
    config = RunConfig.from_dict(
        {
            "name": "mm",
            "kind": "multimodal",
            "task": {"K1": 64, "L1": 8, "D1": 8, "K2": 16, "L2": 8, "D2": 6, "N": 4, "B": 2, "eval_size": 40},
            "model": {"n_max": 7},
            "train": {"steps": 4, "batch_size": 8, "eval_every": 2},
            "pipeline": {"early_fusion": True},
        }
    )
    run = Run(path=tmp_path, manifest={}, config=config)
    run.__dict__["task"] = make_task(config.task)  # the cached property, without a task file
    return run


def test_the_full_suites_are_the_ones_training_evaluated_on():
    # independent of how suites are drawn: the last checkpoint's accuracy on run.suites()
    # equals the accuracy the trainer logged at that step
    run = load_run(EXAMPLE)
    logged = run.metrics().query("step == @run.steps[-1]").set_index("suite")["accuracy"]
    model = run.model()
    for suite, batch in run.suites().items():
        assert len(batch) == run.config.task.eval_size
        accuracy, _ = accuracy_and_loss(suite_logits(model, batch), batch.targets)
        assert accuracy == pytest.approx(logged[suite], abs=1e-6), suite


def test_smaller_suites_are_prefixes_of_the_stored_seed_suites():
    run = load_run(EXAMPLE)
    full = run.suites()
    for n in (1, 100, 999, 1000):
        _assert_prefix(run.suites(n), full, n)
    # a fresh Run (no cache) gives the same sequences
    _assert_prefix(load_run(EXAMPLE).suites(100), full, 100)


def test_multimodal_suites_slice_every_field_including_the_second_modalitys(tmp_path):
    run = _multimodal_run(tmp_path)
    full = run.suites()
    assert {"icl_m1_only", "icl_m2_only"} <= set(full)
    assert full["icl"].context_classes2 is not None
    _assert_prefix(run.suites(7), full, 7)


def test_suites_are_drawn_once_per_run(tmp_path, monkeypatch):
    run = _multimodal_run(tmp_path)
    calls = []
    original = type(run.task).suites

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(run.task), "suites", counting)
    first = run.suites()
    run.suites(5)
    again = run.suites()
    assert len(calls) == 1
    assert again["icl"].inputs.data_ptr() == first["icl"].inputs.data_ptr()


def test_a_size_above_eval_size_is_its_own_deterministic_draw(tmp_path):
    run = _multimodal_run(tmp_path)
    big = run.suites(50)
    assert all(len(batch) == 50 for batch in big.values())
    _assert_prefix(_multimodal_run(tmp_path).suites(50), big, 50)  # same on a fresh run
    _assert_prefix(run.suites(50), big, 50)
    # it cannot extend the eval draw (one generator runs through all suites): documented
    assert not torch.equal(big["icl"].inputs[:40], run.suites()["icl"].inputs)


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_a_bad_size_is_refused(tmp_path, size):
    with pytest.raises(ValueError, match="size"):
        _multimodal_run(tmp_path).suites(size)


def test_suites_with_another_burstiness_keep_the_classes_and_change_the_contexts():
    """The example run (N = 8, trained at B = 2) on a B = 4 icl suite: each context holds N/B
    novel classes B times each. Counted from the item vectors (fresh class means lie about
    sqrt(2) apart, an item's noise is ~0.1), not from the sampler's bookkeeping."""
    run = load_run(EXAMPLE)
    for b in (2, 4):
        icl = run.suites(64, B=b)["icl"]
        items = icl.inputs[:, 0 : 2 * run.config.task.N : 2]  # [batch, N, D]
        near = (torch.cdist(items, items) < 0.7).sum(-1) - 1  # other items of the same class
        assert (near == b - 1).all(), b
    own = run.suites(64)["icl"]
    assert torch.equal(run.suites(64, B=run.config.task.B)["icl"].inputs, own.inputs)  # same draw
    with pytest.raises(Exception, match="B"):
        run.suites(8, B=3)  # 3 does not divide N = 8
