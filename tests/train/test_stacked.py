import pytest
import torch

from mmicl_interp import checkpoints as ck
from mmicl_interp.config import RunConfig
from mmicl_interp.train import train
from mmicl_interp.train.stacked import train_seeds
from tests.conftest import tiny_run_config


def test_stacked_seeds_end_with_the_weights_of_separate_runs(tmp_path):
    config = tiny_run_config(model={"mlp": "gelu", "n_heads": 2, "n_max": 6})
    stacked = train_seeds(config, [0, 1, 2])
    for i, seed in enumerate([0, 1, 2]):
        single = tiny_run_config(
            model={"mlp": "gelu", "n_heads": 2, "n_max": 6, "seed": seed}, train={"seed": seed}
        )
        train(single, tmp_path / str(seed), progress=False)
        weights = ck.read_weights(ck.ckpt_path(tmp_path / str(seed), single.train.steps))
        for name, value in weights.items():
            torch.testing.assert_close(stacked[i][name], value, atol=1e-5, rtol=1e-4)
    assert not torch.equal(stacked[0]["W_U"], stacked[1]["W_U"])


def test_stacked_training_refuses_repeated_seeds_and_multimodal_runs():
    with pytest.raises(ValueError, match="seeds"):
        train_seeds(tiny_run_config(), [1, 1])
    mm = RunConfig.from_dict(
        {
            "kind": "multimodal",
            "task": {"K1": 64, "L1": 8, "D1": 8, "K2": 16, "L2": 8, "D2": 6, "N": 4},
            "model": {"n_max": 7},
        }
    )
    with pytest.raises(ValueError, match="kind"):
        train_seeds(mm, [0, 1])
