"""Attention measures on hand-written patterns with known values (SCIENCE.md section 5)."""

import pytest
import torch

from mmicl_interp.analyses.attention import context_label_accuracy, pattern_measures
from mmicl_interp.data.layout import Layout
from mmicl_interp.data.task import Batch

LAYOUT = Layout.unimodal(3)  # [x0 l0 x1 l1 x2 l2 xq]: items 0,2,4; labels 1,3,5; query 6


def _pattern(rows: dict[int, dict[int, float]], n_ctx: int = 7) -> torch.Tensor:
    """One head's causal pattern: given rows, the rest attend to themselves."""
    a = torch.eye(n_ctx)
    for q, weights in rows.items():
        a[q] = 0.0
        for k, w in weights.items():
            a[q, k] = w
    return a[None, None]  # [batch 1, head 1, q, k]


def test_perfect_previous_token_head_scores_one_everywhere():
    a = torch.diag(torch.ones(6), -1)
    a[0, 0] = 1.0
    m = pattern_measures(a[None, None], torch.tensor([[True, False, False]]), LAYOUT)
    assert m["prev_token"].item() == pytest.approx(1.0)
    assert m["prev_token_label"].item() == pytest.approx(1.0)


def test_previous_token_label_score_counts_only_label_rows():
    a = _pattern({1: {0: 1.0}, 3: {3: 1.0}, 5: {4: 0.5, 5: 0.5}, 2: {1: 1.0}})
    m = pattern_measures(a, torch.tensor([[True, False, False]]), LAYOUT)
    assert m["prev_token_label"].item() == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    # all rows t>=1: A[1,0]=1, A[2,1]=1, A[3,2]=0, A[4,3]=0, A[5,4]=.5, A[6,5]=0
    assert m["prev_token"].item() == pytest.approx(2.5 / 6)


def test_induction_strength_is_matching_label_attention_minus_non_matching():
    # query attends 0.6 to label of exemplar 1 (matching) and 0.2 to each other label
    a = _pattern({6: {1: 0.2, 3: 0.6, 5: 0.2}})
    matches = torch.tensor([[False, True, False]])
    m = pattern_measures(a, matches, LAYOUT)
    assert m["tila"].item() == pytest.approx(0.6)
    assert m["ih"].item() == pytest.approx(0.6 - 0.2)
    assert m["tla"].item() == pytest.approx(1.0)
    assert m["tiia"].item() == pytest.approx(0.0)


def test_all_labels_count_not_only_the_first_two_thirds():
    # the published code summed only floor(2N/3) labels; the last label must count too
    a = _pattern({6: {5: 1.0}})
    m = pattern_measures(a, torch.tensor([[False, False, True]]), LAYOUT)
    assert m["tla"].item() == pytest.approx(1.0)
    assert m["tila"].item() == pytest.approx(1.0)


def test_matching_item_attention_and_empty_non_matching_set_counts_zero():
    a = _pattern({6: {0: 0.25, 2: 0.25, 4: 0.5}})
    matches = torch.tensor([[True, True, True]])
    m = pattern_measures(a, matches, LAYOUT)
    assert m["tiia"].item() == pytest.approx((0.25 + 0.25 + 0.5) / 3)
    assert m["ih"].item() == pytest.approx(0.0)  # no labels attended; U empty counts 0


def test_measures_average_over_sequences_and_keep_heads_apart():
    a1 = _pattern({6: {1: 1.0}})
    a2 = _pattern({6: {3: 1.0}})
    two_heads = torch.cat([torch.cat([a1, a2], 1), torch.cat([a2, a1], 1)], 0)  # [2 seq, 2 heads]
    matches = torch.tensor([[True, False, False], [True, False, False]])
    m = pattern_measures(two_heads, matches, LAYOUT)
    # head 0: seq0 matches (1.0 - 0), seq1 misses (0 - 0.5); head 1 the reverse
    torch.testing.assert_close(m["ih"], torch.tensor([0.25, 0.25]))
    torch.testing.assert_close(m["tila"], torch.tensor([0.5, 0.5]))


def test_measures_follow_the_layout_for_any_n():
    layout = Layout.unimodal(5)
    a = torch.zeros(1, 1, 11, 11)
    a[0, 0, 10, 9] = 1.0  # query -> last label
    a[0, 0, :10] = torch.eye(11)[:10]
    m = pattern_measures(a, torch.tensor([[False, False, False, False, True]]), layout)
    assert m["tila"].item() == pytest.approx(1.0)


def test_context_label_accuracy_counts_predictions_among_context_labels():
    batch = Batch(
        inputs=torch.zeros(2, 7, 4),
        targets=torch.tensor([1, 2]),
        context_labels=torch.tensor([[1, 3, 3], [0, 0, 1]]),
        context_classes=torch.zeros(2, 3, dtype=torch.long),
        query_classes=torch.zeros(2, dtype=torch.long),
        novel=torch.zeros(2, dtype=torch.bool),
        pos_shift=torch.zeros(2, dtype=torch.long),
    )
    logits = torch.tensor([[0.0, 0, 0, 5], [0, 0, 5, 0]])  # predicts 3 (in context), 2 (not)
    assert context_label_accuracy(logits, batch) == pytest.approx(0.5)
