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


def test_dense_stretch_is_added_to_the_chosen_schedule():
    cfg = TrainConfig(steps=100, ckpt_schedule="linear", ckpt_every=50, ckpt_dense=[20, 40, 7])
    # linear 0, 50, 100 plus 20, 27, 34 (41 > stop)
    assert checkpoint_steps(cfg) == [0, 20, 27, 34, 50, 100]
    listed = TrainConfig(steps=30, ckpt_schedule="list", ckpt_steps=[3], ckpt_dense=[10, 14, 2])
    assert checkpoint_steps(listed) == [0, 3, 10, 12, 14, 30]
    assert set(checkpoint_steps(cfg)) <= set(eval_steps(cfg))


def test_empty_dense_leaves_the_schedule_unchanged():
    base = TrainConfig(steps=500)
    assert checkpoint_steps(TrainConfig(steps=500, ckpt_dense=[])) == checkpoint_steps(base)


def test_checkpoint_count_estimate_counts_the_dense_stretch():
    from mmicl_interp.config import n_checkpoints

    cfg = TrainConfig(steps=1000, ckpt_schedule="linear", ckpt_every=500, ckpt_dense=[200, 400, 10])
    assert len(checkpoint_steps(cfg)) == 3 + 21  # 0, 500, 1000 and 200, 210, ..., 400 (none shared)
    assert n_checkpoints(cfg) >= len(checkpoint_steps(cfg))
