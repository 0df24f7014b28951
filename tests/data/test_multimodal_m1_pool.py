"""``task.m1_pool = "all"``: multimodal data whose M1 side spans all K1 classes (claim 4's
high-K1 early-fusion control), against the default fixed M2 -> M1 partners."""

import pytest
import torch

from mmicl_interp.config import ConfigError, MultimodalTaskConfig
from mmicl_interp.data.multimodal import MultimodalTask, load_task


def mm_config(**changes) -> MultimodalTaskConfig:
    """L2 < L1 so the label rule k1 mod L1 == k2 mod L2 is exercised; eps = 0 so items are means."""
    values = dict(K1=256, L1=8, D1=16, K2=8, L2=4, D2=16, N=8, B=2, eps1=0.0, eps2=0.0, K_c=16)
    values.update(changes)
    cfg = MultimodalTaskConfig(**values)
    cfg.validate()
    return cfg


def _m1_items(batch, task):
    return batch.inputs[:, task.layout.items("m1"), : task.config.D1]


def test_all_pool_draws_m1_classes_of_the_same_label_from_all_k1_classes():
    task = MultimodalTask.create(mm_config(m1_pool="all"))
    batch = task.sample(2000, torch.Generator().manual_seed(0))
    c1, c2 = batch.context_classes, batch.context_classes2
    # each exemplar's M1 item is the mean of the M1 class it reports, whose label matches its M2 class
    torch.testing.assert_close(_m1_items(batch, task), task.m1_means[c1])
    assert torch.equal(c1 % 8, c2 % 4) and torch.equal(batch.query_classes % 8, batch.query_classes2 % 4)
    # the M1 side is not the 8 fixed partners: 8 M2 classes, labels 0..3, so 4 * 256/8 = 128 M1 classes
    assert len(torch.unique(c1)) > 100 and len(torch.unique(c1)) <= 128
    assert not torch.equal(c1, task.m2_partner[c2])
    # within a sequence the B = 2 copies of a slot carry one M1 class (so every M1 class occurs an
    # even number of times; fresh classes per item would give odd counts), and the query's M1
    # class is that of an exemplar with its M2 class
    for row in range(200):
        counts = torch.unique(c1[row], return_counts=True)[1]
        assert (counts % 2 == 0).all()
        q1, q2 = batch.query_classes[row], batch.query_classes2[row]
        assert bool(((c1[row] == q1) & (c2[row] == q2)).any())


def test_all_pool_draws_fresh_m1_classes_per_item_without_bursts():
    task = MultimodalTask.create(mm_config(m1_pool="all", p_B=0.0))
    batch = task.sample(500, torch.Generator().manual_seed(1))
    c1, c2 = batch.context_classes, batch.context_classes2
    assert torch.equal(c1 % 8, c2 % 4)
    same_m2 = c2[:, :, None] == c2[:, None, :]
    same_m1 = c1[:, :, None] == c1[:, None, :]
    # repeated M2 classes in an i.i.d. context mostly get different M1 classes (1 in 32 coincide)
    off_diag = same_m2 & ~torch.eye(c2.shape[1], dtype=torch.bool)
    assert off_diag.sum() > 1000 and (same_m1 & off_diag).float().sum() / off_diag.sum() < 0.1


def test_partner_pool_is_the_default_and_all_pool_survives_a_save(tmp_path):
    default = MultimodalTask.create(mm_config())
    assert default.config.m1_pool == "partners"
    batch = default.sample(200, torch.Generator().manual_seed(2))
    known = ~batch.novel
    assert torch.equal(batch.context_classes[known], default.m2_partner[batch.context_classes2[known]])
    task = MultimodalTask.create(mm_config(m1_pool="all"))
    task.save(tmp_path / "task.safetensors")
    assert load_task(tmp_path / "task.safetensors").config.m1_pool == "all"


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        (dict(m1_pool="some"), "task.m1_pool", "must be one of partners, all"),
        (dict(m1_pool="all", alpha1=1.0), "task.alpha1", "must be 0 with m1_pool = all"),
        (dict(m1_pool="all", joint_labels=True, G1=2, G2=2), "task.m1_pool", "must be partners"),
    ],
)
def test_bad_m1_pool_settings_are_refused(changes, field, words):
    with pytest.raises(ConfigError) as err:
        mm_config(**changes)
    assert err.value.field == field and words in str(err.value)
