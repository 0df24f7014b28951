import itertools

import pytest
import torch
from transformer_lens import ActivationCache, FactoredMatrix

from mmicl_interp.config import ModelConfig
from mmicl_interp.model import ICLTransformer
from mmicl_interp.types import MLP_TYPES, NORM_TYPES, POSITION_TYPES
from tests.conftest import tiny_task_config

TASK = tiny_task_config()


def _inputs(model, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2 * TASK.N + 1, TASK.D, generator=g)
    shift = torch.randint(model.max_shift_for(x.shape[1]) + 1, (n,), generator=g)
    return x, shift


@pytest.mark.parametrize(
    "positions,norm,mlp",
    [
        *[(p, "rms", "none") for p in POSITION_TYPES],
        *[("onehot", n, m) for n, m in itertools.product(NORM_TYPES, MLP_TYPES)],
    ],
)
def test_every_variant_runs_and_run_with_cache_matches_forward(positions, norm, mlp):
    model = ICLTransformer.from_task(ModelConfig(positions=positions, norm=norm, mlp=mlp, n_max=4), TASK)
    x, shift = _inputs(model)
    logits = model(x, shift)
    assert logits.shape == (5, TASK.L)
    cached_logits, cache = model.run_with_cache(x, shift)
    torch.testing.assert_close(cached_logits, logits)
    assert cache["blocks.1.attn.hook_pattern"].shape == (5, 1, 9, 9)
    if positions in ("rope", "rope_paper"):
        assert "blocks.0.attn.hook_rot_q" in cache
    if mlp != "none":
        assert "blocks.0.mlp.hook_post" in cache


@pytest.mark.parametrize(
    "positions,norm,mlp,n_heads,attn_result",
    [
        *[(p, "rms", "none", 2, False) for p in POSITION_TYPES],
        *[("onehot", n, m, 1, False) for n, m in itertools.product(NORM_TYPES, MLP_TYPES)],
        ("rope", "ln", "swiglu", 2, True),
    ],
)
def test_readout_only_path_gives_the_same_logits_and_gradients_as_the_full_forward(
    positions, norm, mlp, n_heads, attn_result
):
    config = ModelConfig(positions=positions, norm=norm, mlp=mlp, n_max=4, n_heads=n_heads, attn_bias=True)
    model = ICLTransformer.from_task(config, TASK)
    model.set_use_attn_result(attn_result)
    for p in model.parameters():  # non-zero biases so every term is exercised
        p.data.add_(0.05 * torch.randn_like(p))
    x, shift = _inputs(model)
    results = []
    for readout_only in (False, True):
        model.readout_only = readout_only
        model.zero_grad()
        logits = model(x, shift)
        logits.square().sum().backward()
        results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-5, rtol=1e-5)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_readout_only_leaves_earlier_blocks_whole_and_cuts_the_last_to_the_query(tiny_model):
    tiny_model.readout_only = True
    x, shift = _inputs(tiny_model)
    _, cache = tiny_model.run_with_cache(x, shift)
    assert cache["blocks.0.attn.hook_pattern"].shape == (5, 2, 9, 9)
    assert cache["blocks.1.attn.hook_pattern"].shape == (5, 2, 1, 9)
    assert cache["blocks.1.hook_resid_post"].shape[1] == 1


def test_attention_patterns_are_causal_and_rows_sum_to_one(tiny_model):
    x, shift = _inputs(tiny_model)
    _, cache = tiny_model.run_with_cache(x, shift, names_filter=lambda n: n.endswith("hook_pattern"))
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert pattern.shape == (5, 2, 9, 9)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(5, 2, 9))
    assert torch.all(pattern.triu(1) == 0)


def test_weights_use_transformer_lens_names_and_shapes(tiny_model):
    cfg = tiny_model.cfg
    attn = tiny_model.blocks[0].attn
    assert attn.W_Q.shape == (cfg.n_heads, cfg.d_model, cfg.d_head)
    assert attn.W_O.shape == (cfg.n_heads, cfg.d_head, cfg.d_model)
    assert cfg.d_model == TASK.D + 9  # features + one-hot block of width 2*n_max+1
    assert tiny_model.W_U.shape == (cfg.d_model, TASK.L)


def test_onehot_width_is_features_plus_position_block_and_learned_width_is_features():
    onehot = ICLTransformer.from_task(ModelConfig(positions="onehot", n_max=32), TASK)
    learned = ICLTransformer.from_task(ModelConfig(positions="learned", n_max=32), TASK)
    assert onehot.cfg.d_model == TASK.D + 65
    assert learned.cfg.d_model == TASK.D


def test_head_results_sum_to_attention_output_and_stack_in_activation_cache(tiny_model):
    x, shift = _inputs(tiny_model)
    tiny_model.set_use_attn_result(True)
    _, cache = tiny_model.run_with_cache(x, shift)
    result = cache["blocks.0.attn.hook_result"]
    torch.testing.assert_close(result.sum(2) + tiny_model.blocks[0].attn.b_O, cache["blocks.0.hook_attn_out"])
    stacked, labels = cache.stack_head_results(layer=-1, return_labels=True)
    assert stacked.shape[0] == 2 * 2 and labels[:2] == ["L0H0", "L0H1"]
    assert isinstance(cache, ActivationCache)
    tiny_model.set_use_attn_result(False)
    torch.testing.assert_close(tiny_model(x, shift), tiny_model.run_with_cache(x, shift)[0])


def test_zero_ablating_a_head_through_run_with_hooks_changes_logits(tiny_model):
    x, shift = _inputs(tiny_model)
    clean = tiny_model(x, shift)

    def kill_head0(z, hook):
        z[:, :, 0] = 0.0
        return z

    ablated = tiny_model.run_with_hooks(x, shift, fwd_hooks=[("blocks.1.attn.hook_z", kill_head0)])
    assert not torch.allclose(clean, ablated)
    torch.testing.assert_close(tiny_model(x, shift), clean)  # hooks removed afterwards


def test_model_without_w_o_uses_identity_and_stays_factorable():
    model = ICLTransformer.from_task(ModelConfig(n_max=4, use_w_o=False), TASK)
    attn = model.blocks[0].attn
    assert "blocks.0.attn.W_O" not in dict(model.named_parameters())
    torch.testing.assert_close(attn.W_O[0], torch.eye(model.cfg.d_model))
    ov = FactoredMatrix(attn.W_V, attn.W_O)
    assert ov.AB.shape == (1, model.cfg.d_model, model.cfg.d_model)


def test_model_without_w_o_refuses_several_heads():
    with pytest.raises(ValueError, match="use_w_o"):
        ICLTransformer.from_task(ModelConfig(n_max=4, use_w_o=False, n_heads=2), TASK)


def test_same_seed_same_weights_other_seed_other_weights():
    a = ICLTransformer.from_task(ModelConfig(n_max=4, seed=3), TASK)
    b = ICLTransformer.from_task(ModelConfig(n_max=4, seed=3), TASK)
    c = ICLTransformer.from_task(ModelConfig(n_max=4, seed=4), TASK)
    torch.testing.assert_close(a.W_U, b.W_U)
    assert not torch.allclose(a.W_U, c.W_U)


def test_init_std_is_respected():
    model = ICLTransformer.from_task(ModelConfig(n_max=16, init_std=0.02), tiny_task_config(D=64))
    assert abs(model.blocks[0].attn.W_Q.std().item() - 0.02) < 0.002


def test_onehot_position_shift_changes_logits():
    onehot = ICLTransformer.from_task(ModelConfig(n_max=6), TASK)
    x, _ = _inputs(onehot)
    assert not torch.allclose(
        onehot(x, torch.zeros(5, dtype=torch.long)), onehot(x, torch.ones(5, dtype=torch.long))
    )
