"""Attention measures on hand-written patterns with known values (SCIENCE.md section 5), on
one-token layouts and on token prompts with multi-token spans, padding and per-prompt positions."""

import pytest
import torch

from mmicl_interp.analyses.attention import attention_measures, context_label_accuracy, pattern_measures
from mmicl_interp.data.layout import Layout
from mmicl_interp.data.task import Batch
from mmicl_interp.prompts import ICLPrompts
from tests.test_prompts import ToyLM, toy_patterns, toy_prompts

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


# ---------------------------------------------------------------------- spans, padding, per-prompt positions
def _fixed_layout_reference(pattern, matches, layout):
    """The measures as defined before the prompt seam (one fixed layout, one token per part)."""

    def masked_mean(values, mask):
        m = mask[:, None, :].to(values.dtype)
        return (values * m).sum(-1) / m.sum(-1).clamp(min=1.0)

    labels, q = layout.labels(), layout.readout_position
    diag = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)
    out = {"prev_token": diag.mean(dim=(0, 2)), "prev_token_label": diag[..., labels - 1].mean(dim=(0, 2))}
    if len(layout.modalities) > 1:
        out["prev_token_label2"] = pattern.diagonal(offset=-2, dim1=-2, dim2=-1)[..., labels - 2].mean(
            dim=(0, 2)
        )
    to_labels = pattern[:, :, q, labels]
    out["ih"] = (masked_mean(to_labels, matches) - masked_mean(to_labels, ~matches)).mean(0)
    out["tila"] = masked_mean(to_labels, matches).mean(0)
    out["tla"] = to_labels.sum(-1).mean(0)
    for modality in layout.modalities:
        name = "tiia" if len(layout.modalities) == 1 else f"tiia_{modality}"
        out[name] = masked_mean(pattern[:, :, q, layout.items(modality)], matches).mean(0)
    return out


@pytest.mark.parametrize("layout", [Layout.unimodal(4), Layout.multimodal(3)], ids=["unimodal", "multimodal"])
def test_one_token_spans_reduce_to_the_fixed_layout_measures(layout):
    g = torch.Generator().manual_seed(0)
    n_batch, n_ctx, n = 16, layout.n_ctx, layout.n_exemplars
    pattern = torch.rand(n_batch, 3, n_ctx, n_ctx, generator=g).tril()
    pattern = pattern / pattern.sum(-1, keepdim=True)
    targets = torch.randint(3, (n_batch,), generator=g)
    labels = torch.randint(3, (n_batch, n), generator=g)
    prompts = ICLPrompts.from_layout(layout, torch.zeros(n_batch, n_ctx, 2), targets, labels)
    want = _fixed_layout_reference(pattern, prompts.matches, layout)
    for got in (pattern_measures(pattern, prompts), pattern_measures(pattern, prompts.matches, layout)):
        assert set(got) == set(want)
        for name, value in want.items():
            if name.startswith("prev_token_label"):  # a mean of per-prompt means: same up to rounding
                torch.testing.assert_close(got[name], value, rtol=0, atol=1e-7)
            else:  # the same arithmetic: bit for bit
                assert torch.equal(got[name], value), name


def _by_hand(patterns, prompts):
    """Every measure from the definitions, one prompt, head and exemplar at a time (float64)."""
    modalities = prompts.modalities
    names = ["prev_token", "prev_token_label", "ih", "tila", "tla"]
    names += ["prev_token_label2"] if len(modalities) > 1 else []
    names += ["tiia"] if len(modalities) == 1 else [f"tiia_{m}" for m in modalities]
    n_batch, n_heads = len(prompts), patterns[0].shape[1]
    out = {name: torch.zeros(len(patterns), n_heads, dtype=torch.float64) for name in names}

    def mean(values):
        return sum(values) / len(values) if values else 0.0

    for layer, pattern in enumerate(patterns):
        A = pattern.double()
        for b in range(n_batch):
            real = prompts.token_mask[b].tolist()
            q = prompts.readout_position[b].item()
            present = [
                i
                for i in range(prompts.n_exemplars)
                if prompts.label_spans[b, i, 1] > prompts.label_spans[b, i, 0]
            ]
            M = [i for i in present if prompts.context_labels[b, i] == prompts.targets[b]]
            U = [i for i in present if i not in M]
            for h in range(n_heads):
                a = A[b, h]
                pairs = [t for t in range(1, len(real)) if real[t] and real[t - 1]]
                out["prev_token"][layer, h] += mean([a[t, t - 1] for t in pairs]) / n_batch
                first = {i: prompts.label_spans[b, i, 0].item() for i in present}
                # the items before each label, nearest first: their last tokens
                before = {
                    i: sorted(
                        (prompts.item_spans[m][b, i, 1].item() - 1 for m in modalities),
                        reverse=True,
                    )
                    for i in present
                }
                out["prev_token_label"][layer, h] += (
                    mean([a[first[i], before[i][0]] for i in present]) / n_batch
                )
                if len(modalities) > 1:
                    value = mean([a[first[i], before[i][1]] for i in present])
                    out["prev_token_label2"][layer, h] += value / n_batch

                def to_span(s, a=a, q=q):
                    return sum(a[q, t] for t in range(s[0].item(), s[1].item()))

                lab = {i: to_span(prompts.label_spans[b, i]) for i in present}
                tila = mean([lab[i] for i in M])
                out["tila"][layer, h] += tila / n_batch
                out["ih"][layer, h] += (tila - mean([lab[i] for i in U])) / n_batch
                out["tla"][layer, h] += sum(lab.values()) / n_batch
                for m in modalities:
                    name = "tiia" if len(modalities) == 1 else f"tiia_{m}"
                    out[name][layer, h] += mean([to_span(prompts.item_spans[m][b, i]) for i in M]) / n_batch
    return out


@pytest.mark.parametrize("modalities", [("m1",), ("m1", "m2")])
def test_measures_on_multi_token_spans_with_padding_match_the_definitions(modalities):
    prompts = toy_prompts(modalities)
    assert (prompts.label_spans[..., 1] - prompts.label_spans[..., 0]).max() == 2
    assert set((prompts.item_spans["m1"][..., 1] - prompts.item_spans["m1"][..., 0]).flatten().tolist()) == {
        0,
        2,
        3,
    }
    assert len(set(prompts.readout_position.tolist())) > 1 and not prompts.token_mask.all()
    patterns = toy_patterns(prompts)
    model = ToyLM(patterns)
    got = attention_measures(model, prompts, chunk=3)  # two chunks of 3 and 1 prompts
    want = _by_hand(patterns, prompts)
    assert set(got) == set(want)
    for name, value in want.items():
        torch.testing.assert_close(got[name].double(), value, rtol=0, atol=1e-6, msg=name)
    # padding counts nowhere: changing the padding rows leaves every measure unchanged
    noisy = [p.clone() for p in patterns]
    for p in noisy:
        pad = ~prompts.token_mask
        p[pad[:, None, :, None].expand_as(p)] = 0.5
    again = attention_measures(ToyLM(noisy), prompts, chunk=3)
    assert all(torch.equal(got[k], v) for k, v in again.items())


def test_a_planted_induction_head_over_label_spans_is_found():
    """Layer 1 head 0 spreads its read-out attention over the matching labels' tokens, and
    each label's first token attends to the last token of its item: tla = 1,
    tila = ih = mean over prompts of 1/|M|, prev_token_label = 1, and it ranks first."""
    prompts = toy_prompts()
    patterns = toy_patterns(prompts)
    planted = patterns[1][:, 0]
    per_prompt = []
    for b in range(len(prompts)):
        q = prompts.readout_position[b]
        planted[b, q] = 0.0
        matching = [i for i in range(3) if prompts.matches[b, i] and prompts.exemplar_mask[b, i]]
        per_prompt.append(1 / len(matching))
        for i in matching:
            start, end = prompts.label_spans[b, i]
            planted[b, q, start:end] = per_prompt[-1] / (end - start)
        for i in range(3):
            if prompts.exemplar_mask[b, i]:
                row = prompts.label_spans[b, i, 0]
                planted[b, row] = 0.0
                planted[b, row, prompts.item_spans["m1"][b, i, 1] - 1] = 1.0
    m = attention_measures(ToyLM(patterns), prompts)
    expected = sum(per_prompt) / len(per_prompt)
    assert expected < 1  # some prompt has two matching exemplars
    for name, value in (("tla", 1.0), ("prev_token_label", 1.0), ("tila", expected), ("ih", expected)):
        assert m[name][1, 0].item() == pytest.approx(value, abs=1e-6), name
    assert m["ih"].flatten().argmax().item() == 2  # L1H0 ranks first
    assert m["prev_token_label"].flatten().argmax().item() == 2
