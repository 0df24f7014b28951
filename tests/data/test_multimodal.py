import math

import pytest
import torch

from mmicl_interp.config import MultimodalTaskConfig
from mmicl_interp.data.multimodal import MultimodalTask, load_task, make_task
from mmicl_interp.data.task import Task
from mmicl_interp.io import CorruptFileError
from tests.conftest import tiny_task_config


def mm_config(**changes) -> MultimodalTaskConfig:
    """A small two-modality task: L2 < L1 so label arithmetic mod L2 is exercised."""
    values = dict(K1=256, L1=8, D1=32, K2=16, L2=4, D2=32, N=4, B=2, eps1=0.1, eps2=0.1, K_c=16, eval_size=64)
    values.update(changes)
    cfg = MultimodalTaskConfig(**values)
    cfg.validate()
    return cfg


@pytest.fixture
def mm_task() -> MultimodalTask:
    return MultimodalTask.create(mm_config())


def m1_part(batch, task, positions):
    return batch.inputs[:, positions, : task.config.D1]


def m2_part(batch, task, positions):
    return batch.inputs[:, positions, task.config.D1 :]


def test_packed_batch_follows_the_triplet_layout(generator):
    task = MultimodalTask.create(mm_config(eps1=0.0, eps2=0.0))
    batch = task.sample(64, generator, p_C=0.5)
    lay, c = task.layout, task.config
    assert batch.inputs.shape == (64, 3 * c.N + 2, c.D1 + c.D2) and lay.n_ctx == c.n_ctx
    m1_pos, m2_pos = list(lay.positions_of("m1")), list(lay.positions_of("m2"))
    assert m1_pos == [0, 3, 6, 9, 12] and m2_pos == [1, 4, 7, 10, 13] and lay.readout_position == 13
    # every slot uses only its own modality's columns
    assert (m2_part(batch, task, m1_pos + list(lay.label_positions)) == 0).all()
    assert (m1_part(batch, task, m2_pos) == 0).all()
    assert (m1_part(batch, task, m1_pos).norm(dim=-1) > 0.1).all()
    torch.testing.assert_close(m1_part(batch, task, lay.labels()), task.label_vectors[batch.context_labels])
    # eps = 0: known items are exactly their class means, M1 from the M2 class's partner
    known = ~batch.novel
    assert known.any() and batch.novel.any()
    torch.testing.assert_close(
        m1_part(batch, task, lay.items("m1"))[known], task.m1_means[batch.context_classes[known]]
    )
    torch.testing.assert_close(
        m2_part(batch, task, lay.items("m2"))[known], task.m2_means[batch.context_classes2[known]]
    )
    torch.testing.assert_close(batch.inputs[known, -1, c.D1 :], task.m2_means[batch.query_classes2[known]])
    torch.testing.assert_close(batch.inputs[known, -2, : c.D1], task.m1_means[batch.query_classes[known]])
    assert torch.equal(batch.context_classes[known], task.m2_partner[batch.context_classes2[known]])
    assert torch.equal(batch.targets, batch.query_classes2 % c.L2)
    assert torch.equal(batch.context_labels, batch.context_classes2 % c.L2)


def test_partners_share_the_label_and_are_distinct_when_possible(mm_task):
    c = mm_task.config
    assert torch.equal(mm_task.m2_partner % c.L1, torch.arange(c.K2) % c.L2)
    assert mm_task.m2_partner.unique().numel() == c.K2  # K2/L2 = 4 <= K1/L1 = 32
    assert mm_task.class_means is mm_task.m1_means


def test_bursty_contexts_hold_the_query_class_b_times_in_both_modalities(mm_task, generator):
    batch = mm_task.sample(200, generator, p_B=1.0, p_C=0.0)
    assert ((batch.context_classes2 == batch.query_classes2[:, None]).sum(1) >= 2).all()
    assert ((batch.context_classes == batch.query_classes[:, None]).sum(1) >= 2).all()
    assert batch.matches().any(1).all()


def test_novel_sequences_are_fresh_in_both_modalities_and_known_ones_sit_at_their_means(mm_task, generator):
    task, lay = mm_task, mm_task.layout

    def nearest(batch, modality):
        part, means = (m1_part, task.m1_means) if modality == "m1" else (m2_part, task.m2_means)
        items = part(batch, task, list(lay.positions_of(modality))).reshape(-1, means.shape[1])
        return torch.cdist(items * math.sqrt(1.01), means).min(1).values

    novel = task.sample(50, generator, p_C=1.0)
    known = task.sample(50, generator, p_C=0.0)
    assert novel.novel.all() and not known.novel.any()
    for modality in ("m1", "m2"):
        assert nearest(novel, modality).min() > 0.5
        assert nearest(known, modality).max() < 0.25


@pytest.mark.parametrize("control", ["m2_only", "m1_only"])
def test_controls_remove_one_modalitys_information(mm_task, control):
    lay = mm_task.layout
    plain = mm_task.sample(100, torch.Generator().manual_seed(7), p_C=1.0)
    batch = mm_task.sample(100, torch.Generator().manual_seed(7), p_C=1.0, control=control)
    dead, alive = ("m1", "m2") if control == "m2_only" else ("m2", "m1")
    cols = {"m1": m1_part, "m2": m2_part}
    same = (batch.context_classes2 == batch.query_classes2[:, None]).float()

    def query_to_items(b, modality):
        part = cols[modality]
        return torch.cdist(
            part(b, mm_task, [lay.query_positions[modality]]), part(b, mm_task, lay.items(modality))
        )[:, 0]

    # the dead modality's query matches no context item; the live one matches its exemplars
    assert query_to_items(batch, dead).min() > 0.5
    match_dist = (query_to_items(batch, alive) * same + 10 * (1 - same)).min(1).values
    assert match_dist.max() < 0.3
    # paired with the uncontrolled batch: everything but the dead modality is unchanged
    assert torch.equal(
        cols[alive](batch, mm_task, lay.positions_of(alive)),
        cols[alive](plain, mm_task, lay.positions_of(alive)),
    )
    assert not torch.equal(
        cols[dead](batch, mm_task, lay.positions_of(dead)), cols[dead](plain, mm_task, lay.positions_of(dead))
    )
    assert torch.equal(batch.targets, plain.targets)


def test_suites_flip_within_the_shared_label_space_and_iwl_rarely_holds_the_query():
    task = MultimodalTask.create(mm_config(K2=1024))
    suites = task.suites(eval_seed=5, size=300)
    assert set(suites) == {"test", "icl", "icl_flip", "iwl", "icl_m1_only", "icl_m2_only"}
    assert suites["icl"].novel.all() and not suites["iwl"].novel.any()
    assert suites["icl"].matches().any(1).all()
    flip, L2 = suites["icl_flip"], task.config.L2
    assert torch.equal(flip.targets, (flip.query_classes2 + 1) % L2)
    assert torch.equal(flip.context_labels, (flip.context_classes2 + 1) % L2)
    assert flip.targets.max() < L2 and (flip.targets == 0).any()
    iwl = suites["iwl"]
    assert (iwl.context_classes2 == iwl.query_classes2[:, None]).any(1).float().mean() < 0.03
    assert torch.equal(suites["icl_m2_only"].targets, suites["icl"].targets)


def test_stage1_tensors_are_used_verbatim_and_shapes_are_checked():
    cfg = mm_config()
    m1 = torch.randn(cfg.K1, cfg.D1)
    labels = torch.randn(cfg.L1, cfg.D1)
    task = MultimodalTask.create(cfg, m1_means=m1, label_vectors=labels)
    assert torch.equal(task.m1_means, m1) and torch.equal(task.label_vectors, labels)
    assert torch.equal(task.m2_means, MultimodalTask.create(cfg).m2_means)
    with pytest.raises(ValueError, match="m1_means"):
        MultimodalTask.create(cfg, m1_means=torch.randn(cfg.K1, cfg.D1 + 1))
    with pytest.raises(ValueError, match="label_vectors"):
        MultimodalTask.create(cfg, label_vectors=torch.randn(cfg.L1 - 1, cfg.D1))


def test_round_trip_and_load_task_dispatch(tmp_path, mm_task, tiny_task):
    mm_task.save(tmp_path / "mm.safetensors")
    tiny_task.save(tmp_path / "uni.safetensors")
    loaded = load_task(tmp_path / "mm.safetensors")
    assert isinstance(loaded, MultimodalTask) and loaded.config == mm_task.config
    for name in ("m1_means", "m2_means", "label_vectors", "m2_partner"):
        assert torch.equal(getattr(loaded, name), getattr(mm_task, name))
    uni = load_task(tmp_path / "uni.safetensors")
    assert isinstance(uni, Task) and torch.equal(uni.class_means, tiny_task.class_means)
    with pytest.raises(ValueError, match="unimodal"):
        MultimodalTask.load(tmp_path / "uni.safetensors")
    assert isinstance(make_task(mm_config()), MultimodalTask)
    assert isinstance(make_task(tiny_task_config()), Task)


def test_truncated_file_is_reported_by_path(tmp_path, mm_task):
    path = tmp_path / "task.safetensors"
    mm_task.save(path)
    path.write_bytes(path.read_bytes()[:100])
    for loader in (MultimodalTask.load, load_task):
        with pytest.raises(CorruptFileError, match="task.safetensors"):
            loader(path)


def test_same_seed_same_batch_and_slicing_keeps_both_class_fields(mm_task):
    a = mm_task.sample(8, torch.Generator().manual_seed(3), max_shift=4, p_C=0.5)
    b = mm_task.sample(8, torch.Generator().manual_seed(3), max_shift=4, p_C=0.5)
    assert set(a.tensors()) >= {"context_classes2", "query_classes2"} and a.layout == mm_task.layout
    for name, value in a.tensors().items():
        assert torch.equal(value, getattr(b, name))
    assert torch.equal(a[2:5].context_classes2, a.context_classes2[2:5])
    s1, s2 = mm_task.suites(2, 16), mm_task.suites(2, 16)
    assert all(torch.equal(s1[k].inputs, s2[k].inputs) for k in s1)


def test_unimodal_batches_slice_without_the_multimodal_fields(tiny_task, generator):
    part = tiny_task.sample(6, generator)[1:3]
    assert len(part) == 2 and part.context_classes2 is None and part.query_classes2 is None


def test_no_repeats_gives_distinct_labels_also_in_novel_contexts(generator):
    task = MultimodalTask.create(mm_config(N=8, B=2, no_repeats=True))
    for p_C in (0.0, 1.0):
        batch = task.sample(100, generator, p_C=p_C)
        assert all(len(set(row.tolist())) == 4 for row in batch.context_labels)


def test_bad_control_is_rejected_by_name(mm_task, generator):
    with pytest.raises(ValueError, match="control"):
        mm_task.sample(4, generator, control="m3_only")


# ---------------------------------------------------------------- joint-label variant


def joint_config(**changes) -> MultimodalTaskConfig:
    """Joint labels over G1 = 2 M1 groups and G2 = 3 M2 groups: L2 = 6 joint labels."""
    values = dict(joint_labels=True, G1=2, G2=3, L2=6, K2=24, K_c=24)
    values.update(changes)
    return mm_config(**values)


@pytest.mark.parametrize("changes", [{}, {"no_repeats": True, "N": 8}, {"alpha1": 1.0, "alpha2": 1.0}])
def test_joint_label_is_group1_times_g2_plus_group2_for_every_exemplar_and_the_query(changes, generator):
    task = MultimodalTask.create(joint_config(eps1=0.0, eps2=0.0, **changes))
    c, lay = task.config, task.layout
    batch = task.sample(300, generator, p_B=0.5, p_C=0.3)
    assert batch.novel.any() and (~batch.novel).any()
    assert torch.equal(batch.context_labels, (batch.context_classes % 2) * 3 + batch.context_classes2 % 3)
    assert torch.equal(batch.targets, (batch.query_classes % 2) * 3 + batch.query_classes2 % 3)
    assert set(batch.targets.tolist()) == set(range(6)) and batch.context_labels.max() < c.L2
    torch.testing.assert_close(m1_part(batch, task, lay.labels()), task.label_vectors[batch.context_labels])
    # no partner pairing: known M1 classes are drawn on their own and sit at their own means
    known = ~batch.novel
    assert not torch.equal(batch.context_classes[known], task.m2_partner[batch.context_classes2[known]])
    torch.testing.assert_close(
        m1_part(batch, task, lay.items("m1"))[known], task.m1_means[batch.context_classes[known]]
    )
    torch.testing.assert_close(batch.inputs[known, -2, : c.D1], task.m1_means[batch.query_classes[known]])
    torch.testing.assert_close(batch.inputs[known, -1, c.D1 :], task.m2_means[batch.query_classes2[known]])
    flip = task.sample(50, generator, p_B=1.0, flip=True)
    assert torch.equal(flip.targets, ((flip.query_classes % 2) * 3 + flip.query_classes2 % 3 + 1) % 6)
    if c.no_repeats:
        bursty = task.sample(100, generator, p_B=1.0, p_C=0.5)
        assert all(len(set(row.tolist())) == c.N // c.B for row in bursty.context_labels)


@pytest.mark.parametrize("no_repeats", [False, True])
def test_joint_bursty_query_pair_appears_b_times_with_one_mean_per_class_number(no_repeats, generator):
    task = MultimodalTask.create(joint_config(N=8, B=2, K1=16, K2=6, K_c=6, no_repeats=no_repeats))
    lay, D1 = task.layout, task.config.D1
    for p_C in (0.0, 1.0):
        batch = task.sample(200, generator, p_B=1.0, p_C=p_C)
        pair = (batch.context_classes == batch.query_classes[:, None]) & (
            batch.context_classes2 == batch.query_classes2[:, None]
        )
        assert (pair.sum(1) >= 2).all() and (pair.sum(1) % 2 == 0).all()
        assert batch.matches()[pair].all()
        if p_C == 1.0:
            # fresh classes: each number is one mean, so exactly the B copies of the query's pair
            assert (pair.sum(1) == 2).all()
            for cls, part, cols in (
                (batch.context_classes, m1_part, slice(0, D1)),
                (batch.context_classes2, m2_part, slice(D1, None)),
            ):
                same = cls[:, :, None] == cls[:, None, :]
                assert (same.sum(-1) == 2).all()  # only its own copy: distinct numbers per slot
                items = part(batch, task, lay.items("m1" if cols.start == 0 else "m2"))
                dist = torch.cdist(items, items)
                assert dist[same].max() < 0.5 and dist[~same].min() > 0.5
    # the pairs are drawn independently: M1 and M2 classes are not tied to each other
    batch = task.sample(500, generator, p_B=1.0, p_C=0.0)
    joint = batch.context_classes.flatten() * task.config.K2 + batch.context_classes2.flatten()
    assert joint.unique().numel() == task.config.K1 * task.config.K2


def test_joint_suites_keep_six_suites_and_controls_keep_targets(generator):
    task = MultimodalTask.create(joint_config())
    suites = task.suites(eval_seed=3, size=100)
    assert list(suites) == ["test", "icl", "icl_flip", "iwl", "icl_m1_only", "icl_m2_only"]
    assert suites["icl"].novel.all() and suites["icl"].matches().any(1).all()
    assert torch.equal(suites["icl_m1_only"].targets, suites["icl"].targets)
    assert torch.equal(suites["icl_m2_only"].context_labels, suites["icl"].context_labels)


def test_non_joint_sampling_ignores_the_joint_code_path(mm_task):
    plain = mm_task.sample(16, torch.Generator().manual_seed(4), p_C=0.5)
    explicit = mm_task.with_config(joint_labels=False, G1=0, G2=0)
    again = explicit.sample(16, torch.Generator().manual_seed(4), p_C=0.5)
    assert all(torch.equal(v, getattr(again, k)) for k, v in plain.tensors().items())


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"L2": 4}, "task.L2"),  # G1*G2 = 6 != L2
        ({"G1": 3, "G2": 3, "L2": 8}, "task.G2"),  # G1*G2 = 9 > L1 = 8
        ({"G1": 3, "G2": 2}, "task.K1"),  # K1 = 256 is divisible by L1 = 8 but not by G1 = 3
        ({"K2": 20}, "task.K2"),  # K2 % L2 != 0 (and so K2 % G2 may fail too)
        ({"G1": 0}, "task.G1"),
        ({"G2": 1}, "task.G2"),
        ({"G1": 0, "G2": 0}, "task.G1"),  # joint without groups
        ({"joint_labels": False}, "task.G1"),  # groups without joint
        ({"joint_labels": 1}, "task.joint_labels"),
    ],
)
def test_bad_joint_configs_name_the_field(changes, field):
    from mmicl_interp.config import ConfigError

    values = dict(K1=256, L1=8, D1=32, K2=24, L2=6, D2=32, N=4, B=2, K_c=24)
    values.update(dict(joint_labels=True, G1=2, G2=3))
    values.update(changes)
    with pytest.raises(ConfigError) as info:
        MultimodalTaskConfig(**values).validate()
    assert info.value.field == field


def test_joint_labels_round_trip_through_the_task_file(tmp_path):
    task = MultimodalTask.create(joint_config())
    task.save(tmp_path / "joint.safetensors")
    loaded = load_task(tmp_path / "joint.safetensors")
    assert loaded.config == task.config and loaded.config.joint_labels and loaded.config.G2 == 3


def test_a_tiny_joint_label_run_trains_and_writes_all_six_suites(tmp_path):
    from mmicl_interp import checkpoints as ck
    from mmicl_interp import load_run
    from mmicl_interp.config import RunConfig
    from mmicl_interp.train import train

    config = RunConfig.from_dict(
        {
            "name": "joint",
            "kind": "multimodal",
            "task": {
                "K1": 64, "L1": 8, "D1": 8, "K2": 16, "L2": 8, "D2": 6, "N": 4, "B": 2, "eval_size": 64,
                "joint_labels": True, "G1": 2, "G2": 4, "K_c": 16,
            },
            "model": {"n_max": 7},
            "train": {"steps": 12, "batch_size": 16, "eval_every": 4, "ckpt_log_points": 4, "ckpt_every": 6},
            "pipeline": {"early_fusion": True},
        }
    )  # fmt: skip
    train(config, tmp_path / "joint", progress=False)
    rows = ck.read_metrics(tmp_path / "joint")
    suites = {"test", "icl", "icl_flip", "iwl", "icl_m1_only", "icl_m2_only"}
    assert {r["suite"] for r in rows} >= suites
    assert {r["suite"] for r in rows if r["step"] == 12} >= suites
    task = load_run(tmp_path / "joint").task
    assert task.config.joint_labels and (task.config.G1, task.config.G2) == (2, 4)
