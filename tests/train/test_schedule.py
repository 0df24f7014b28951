from mmicl_interp.config import TrainConfig
from mmicl_interp.train.schedule import checkpoint_steps, eval_steps, linear_steps, log_steps


def test_log_steps_are_distinct_dense_early_and_end_at_total():
    steps = log_steps(1000, 30)
    assert len(steps) == 30 and steps == sorted(set(steps))
    assert steps[-1] == 1000 and steps[0] == 1
    assert sum(s <= 100 for s in steps) > sum(s > 100 for s in steps)


def test_default_union_schedule_has_at_least_40_checkpoints_including_0_and_last():
    steps = checkpoint_steps(TrainConfig(steps=1000))
    assert len(steps) >= 40 and steps[0] == 0 and steps[-1] == 1000


def test_list_schedule_uses_exactly_the_given_steps_plus_ends():
    cfg = TrainConfig(steps=50, ckpt_schedule="list", ckpt_steps=[5, 17])
    assert checkpoint_steps(cfg) == [0, 5, 17, 50]


def test_linear_schedule_and_eval_steps_cover_every_checkpoint():
    cfg = TrainConfig(steps=20, ckpt_schedule="linear", ckpt_every=5, eval_every=10)
    assert checkpoint_steps(cfg) == linear_steps(20, 5) == [0, 5, 10, 15, 20]
    assert set(checkpoint_steps(cfg)) <= set(eval_steps(cfg))
