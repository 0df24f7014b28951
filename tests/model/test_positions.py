import torch

from mmicl_interp.model.positions import (
    alibi_bias,
    alibi_slopes,
    apply_rope,
    onehot_block,
    rope_tables,
)


def _rope(x, positions, paper=False, d=8, theta=10000.0):
    cos, sin = rope_tables(int(max(positions)) + 1, d, theta, "half" if paper else "adjacent")
    return apply_rope(x, cos[positions], sin[positions], paper=paper)


def test_rope_preserves_norms_at_every_position():
    x = torch.randn(1, 1, 12, 8)
    rotated = _rope(x, torch.arange(12))
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))


def test_rope_query_key_dot_product_depends_only_on_relative_offset():
    q, k = torch.randn(8), torch.randn(8)

    def dot(tq, tk):
        rq = _rope(q.view(1, 1, 1, 8), torch.tensor([tq]))
        rk = _rope(k.view(1, 1, 1, 8), torch.tensor([tk]))
        return (rq * rk).sum()

    torch.testing.assert_close(dot(5, 2), dot(13, 10))
    torch.testing.assert_close(dot(3, 3), dot(9, 9))
    torch.testing.assert_close(dot(3, 3), (q * k).sum())


def test_rope_at_position_zero_is_identity():
    x = torch.randn(2, 3, 1, 8)
    torch.testing.assert_close(_rope(x, torch.tensor([0])), x)


def test_rope_paper_is_not_a_rotation_norms_change():
    x = torch.randn(1, 1, 12, 8)
    rotated = _rope(x, torch.arange(12), paper=True)
    assert (rotated.norm(dim=-1) - x.norm(dim=-1)).abs().max() > 1e-2


def test_rope_paper_dot_product_is_not_a_function_of_offset():
    torch.manual_seed(0)
    q, k = torch.randn(8), torch.randn(8)

    def dot(tq, tk):
        rq = _rope(q.view(1, 1, 1, 8), torch.tensor([tq]), paper=True)
        rk = _rope(k.view(1, 1, 1, 8), torch.tensor([tk]), paper=True)
        return (rq * rk).sum()

    assert (dot(5, 2) - dot(13, 10)).abs() > 1e-2


def test_onehot_block_places_a_one_at_position_plus_shift():
    block = onehot_block(3, 7, torch.tensor([0, 4]))
    assert block.shape == (2, 3, 7)
    assert block.sum().item() == 6
    assert block[0, 2, 2] == 1 and block[1, 0, 4] == 1 and block[1, 2, 6] == 1


def test_onehot_block_rejects_a_shift_past_the_block():
    import pytest

    with pytest.raises(ValueError, match="pos_shift"):
        onehot_block(3, 7, torch.tensor([5]))


def test_alibi_bias_is_minus_slope_times_distance_and_zero_on_diagonal():
    bias = alibi_bias(2, 4)
    slopes = alibi_slopes(2)
    assert torch.all(bias.diagonal(dim1=1, dim2=2) == 0)
    torch.testing.assert_close(bias[1, 3, 0], -3 * slopes[1])
    assert slopes[0] > slopes[1]
