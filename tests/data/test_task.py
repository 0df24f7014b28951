import math
from dataclasses import replace

import pytest
import torch

from mmicl_interp.data import Batch, Layout, Task, zipf_probs
from mmicl_interp.io import CorruptFileError
from tests.conftest import tiny_task_config


def test_layout_puts_items_at_even_labels_at_odd_and_query_last():
    layout = Layout.unimodal(3)
    assert layout.n_ctx == 7
    assert layout.item_positions["m1"] == (0, 2, 4)
    assert layout.label_positions == (1, 3, 5)
    assert layout.query_positions["m1"] == 6 == layout.readout_position
    assert layout.kinds() == ["item", "label"] * 3 + ["query"]
    assert Layout.from_dict(layout.to_dict()) == layout


def test_batch_places_label_vectors_at_label_positions_and_targets_are_query_labels(tiny_task, generator):
    batch = tiny_task.sample(32, generator)
    torch.testing.assert_close(batch.inputs[:, 1::2][:, :4], tiny_task.label_vectors[batch.context_labels])
    assert torch.equal(batch.targets, batch.query_classes % tiny_task.config.L)
    assert torch.equal(batch.context_labels, batch.context_classes % tiny_task.config.L)


def test_items_follow_the_noisy_mean_formula_and_eps_zero_gives_the_mean(generator):
    task = Task.create(tiny_task_config(eps=0.0))
    batch = task.sample(16, generator)
    torch.testing.assert_close(batch.inputs[:, 0:8:2], task.class_means[batch.context_classes])
    torch.testing.assert_close(batch.inputs[:, -1], task.class_means[batch.query_classes])
    noisy = Task.create(tiny_task_config(eps=1.0))
    b2 = noisy.sample(2000, torch.Generator().manual_seed(1))
    residual = b2.inputs[:, 0] * math.sqrt(2) - noisy.class_means[b2.context_classes[:, 0]]
    # eps * eta / sqrt(D) has per-coordinate variance eps^2 / D
    assert abs(residual.var().item() - 1.0 / noisy.config.D) < 0.01


def test_bursty_contexts_hold_each_class_exactly_b_times_and_contain_the_query(generator):
    task = Task.create(tiny_task_config(K=4096, N=8, B=2))
    batch = task.sample(200, generator, p_B=1.0)
    for ctx, q in zip(batch.context_classes, batch.query_classes, strict=True):
        counts = torch.bincount(ctx)
        assert set(counts[counts > 0].tolist()) <= {2, 4, 6, 8}  # multiples of B (rare repeats)
        assert (ctx == q).sum() >= 2


def test_non_bursty_sequences_rarely_contain_the_query_class(generator):
    task = Task.create(tiny_task_config(K=4096, N=8, B=0, p_B=0.0))
    batch = task.sample(500, generator)
    in_context = (batch.context_classes == batch.query_classes[:, None]).any(1).float().mean()
    assert in_context < 0.02


def test_novel_sequences_use_fresh_means_never_seen_in_training(generator):
    task = Task.create(tiny_task_config(D=64))

    def nearest_mean_distance(batch):
        items = batch.inputs[:, 0:8:2].reshape(-1, task.config.D) * math.sqrt(1 + 0.01)
        return torch.cdist(items, task.class_means).min(1).values

    novel = task.sample(50, generator, p_C=1.0)
    known = task.sample(50, generator, p_C=0.0)
    assert novel.novel.all() and not known.novel.any()
    assert nearest_mean_distance(novel).min() > 0.5  # far from every training class mean
    assert nearest_mean_distance(known).max() < 0.2  # known items sit at their mean (+ eps noise)


def test_no_repeats_gives_distinct_labels_in_every_context(generator):
    task = Task.create(tiny_task_config(K=64, L=8, N=8, B=2, no_repeats=True))
    batch = task.sample(300, generator, p_B=1.0)
    for labels in batch.context_labels:
        assert len(set(labels.tolist())) == 4


def test_zipf_law_favours_low_ranks_and_alpha_zero_is_uniform():
    p = zipf_probs(100, 1.0)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert p[0] / p[9] == pytest.approx(10.0, rel=1e-4)
    torch.testing.assert_close(zipf_probs(10, 0.0), torch.full((10,), 0.1))


def test_zipf_sampling_draws_frequent_classes_more_often(generator):
    task = Task.create(tiny_task_config(K=64, alpha=1.0, B=0, p_B=0.0))
    batch = task.sample(4000, generator)
    counts = torch.bincount(batch.query_classes, minlength=64)
    assert counts[0] > 5 * counts[40:].float().mean()


def test_suites_have_the_statistics_of_section_two(tiny_task):
    suites = tiny_task.suites(eval_seed=5, size=400)
    assert set(suites) == {"test", "icl", "icl_flip", "iwl"}
    assert suites["icl"].novel.all() and not suites["iwl"].novel.any()
    assert suites["icl"].matches().any(1).all()  # the query's label is always in context
    flip = suites["icl_flip"]
    assert torch.equal(flip.targets, (flip.query_classes + 1) % tiny_task.config.L)
    assert torch.equal(flip.context_labels, (flip.context_classes + 1) % tiny_task.config.L)


def test_same_seed_same_batches_and_suites(tiny_task):
    a = tiny_task.sample(8, torch.Generator().manual_seed(3), max_shift=4)
    b = tiny_task.sample(8, torch.Generator().manual_seed(3), max_shift=4)
    assert set(a.tensors()) == set(b.tensors()) and a.layout == b.layout == tiny_task.layout
    for name, value in a.tensors().items():
        assert torch.equal(value, getattr(b, name))
    s1, s2 = tiny_task.suites(2, 16), tiny_task.suites(2, 16)
    assert torch.equal(s1["icl"].inputs, s2["icl"].inputs)


def test_a_batch_keeps_its_layout_through_slicing_moving_and_replace(tiny_task):
    batch = tiny_task.sample(6, torch.Generator().manual_seed(0))
    assert batch.layout == tiny_task.layout
    assert set(batch.tensors()) == {f for f in vars(batch) if f != "layout"}  # tensors only
    moved = (batch[1:4], batch[torch.tensor([0, 2])], batch.to("meta"), replace(batch, pos_shift=batch.novel))
    for other in moved:
        assert other.layout == tiny_task.layout
    plain = Batch(**batch.tensors())  # built by hand: no layout, and none in its fields
    assert plain.layout is None and "layout" not in vars(plain) and plain[:2].layout is None


def test_task_round_trips_through_safetensors_and_keeps_its_vectors(tmp_path, tiny_task):
    tiny_task.save(tmp_path / "task.safetensors")
    loaded = Task.load(tmp_path / "task.safetensors")
    assert torch.equal(loaded.class_means, tiny_task.class_means)
    assert torch.equal(loaded.label_vectors, tiny_task.label_vectors)
    assert loaded.config == tiny_task.config


def test_truncated_task_file_is_reported_by_path(tmp_path, tiny_task):
    path = tmp_path / "task.safetensors"
    tiny_task.save(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptFileError, match="task.safetensors"):
        Task.load(path)
