"""Head scores on tiny real models against HF eager attention, GQA per query head, a planted head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmicl_interp.analyses.attention import attention_measures
from mmicl_interp.real.commands import prompt_records
from mmicl_interp.real.heads import heads_table, measures_from_table, score_heads, top_heads
from mmicl_interp.real.text import build_text_prompts

from .conftest import reference_measures, write_rows


@pytest.fixture(scope="module")
def file_path(tmp_path_factory):
    return write_rows(tmp_path_factory.mktemp("rows") / "rows.csv")


def _hf_eager(hf, ids):
    with torch.no_grad():
        out = hf(torch.tensor([ids]), output_attentions=True)
    return out.logits[0], [a[0] for a in out.attentions]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_scores_and_accuracy_match_hf_eager_attention(arch, loaded, hf_reference, file_path):
    """Padded, multi-token prompts scored in batches of 3 equal plain loops over HF's
    ``output_attentions`` of each unpadded prompt; accuracy equals HF's next-token logits."""
    lm, hf = loaded[arch], hf_reference[arch]
    prompts = build_text_prompts(lm.tokenizer, f"text:{file_path}", shots=2, ways=3, n_prompts=7, seed=3)
    assert prompts.token_mask.sum(1).unique().numel() > 1  # padding is exercised
    scores = score_heads(lm.bridge, prompts, batch_size=3)
    expected = {m: np.zeros_like(v.numpy(), dtype=float) for m, v in scores.measures.items()}
    correct = []
    for record in prompt_records(prompts, lm.tokenizer):
        logits, attentions = _hf_eager(hf, record["input_ids"])
        for m, v in reference_measures(attentions, record).items():
            expected[m] += v / len(prompts)
        row = logits[record["readout_position"]]
        correct.append(int(row[record["label_tokens"]].argmax()) == record["target"])
    assert set(scores.measures) == {"prev_token", "prev_token_label", "ih", "tila", "tla", "tiia"}
    for m, v in scores.measures.items():
        np.testing.assert_allclose(v.numpy(), expected[m], atol=1e-5, err_msg=m)
    assert scores.accuracy == pytest.approx(np.mean(correct))
    # the same numbers as the small models' attention_measures through the prompt seam
    seam = attention_measures(lm.bridge, prompts)
    for m, v in seam.items():
        torch.testing.assert_close(scores.measures[m], v.cpu(), atol=1e-6, rtol=0)


def test_gqa_is_scored_per_query_head(loaded):
    """Llama with 4 query heads on 2 key/value heads: 4 scores per layer, and the query heads
    sharing a key/value head are scored apart."""
    lm = loaded["llama"]
    assert lm.bridge.cfg.n_heads == 4
    prompts = build_text_prompts(lm.tokenizer, "text", shots=2, ways=2, n_prompts=4, seed=0)
    scores = score_heads(lm.bridge, prompts, batch_size=4)
    ih = scores.measures["prev_token"]
    assert ih.shape == (2, 4)
    assert not torch.allclose(ih[:, 0], ih[:, 1])  # heads 0 and 1 share key/value head 0


def test_planted_induction_head_ranks_first(loaded):
    """A hook writes a perfect induction pattern into L1H2 (the read-out row puts all its mass on
    the matching labels' tokens): the ih ranking puts it first, with tila = ih = 1/2 (two matches)."""
    lm = loaded["llama"]
    prompts = build_text_prompts(lm.tokenizer, "text", shots=2, ways=3, n_prompts=6, seed=2)
    planted = (1, 2)
    state = {"offset": 0}

    def plant(pattern, hook):
        n = pattern.shape[0]
        part = prompts[state["offset"] : state["offset"] + n]
        state["offset"] += n
        for b in range(n):
            row = torch.zeros(pattern.shape[-1])
            for (s, e), m in zip(part.label_spans[b].tolist(), part.matches[b].tolist(), strict=True):
                if m:
                    row[s:e] = 1.0
            pattern[b, planted[1], int(part.readout_position[b])] = row / row.sum()
        return pattern

    scores = score_heads(
        lm.bridge, prompts, batch_size=4, fwd_hooks=[(f"blocks.{planted[0]}.attn.hook_pattern", plant)]
    )
    assert top_heads(scores.measures["ih"], 1) == [planted]
    assert scores.measures["tila"][planted].item() == pytest.approx(1 / 2)  # 2 shots of the match: 1/2 each
    assert scores.measures["ih"][planted].item() == pytest.approx(1 / 2)
    unplanted = score_heads(lm.bridge, prompts, batch_size=4).measures["ih"]
    assert abs(unplanted[planted].item()) < 0.1  # the random model has no induction head there


def test_heads_table_is_tidy_and_round_trips(loaded):
    lm = loaded["gpt2"]
    prompts = build_text_prompts(lm.tokenizer, "text", shots=1, ways=2, n_prompts=3, seed=0)
    scores = score_heads(lm.bridge, prompts, batch_size=2)
    table = heads_table(scores, "tiny-gpt2", "text")
    assert list(table.columns[:10]) == [
        "run", "step", "suite", "metric", "layer", "head", "src_layer", "src_head", "position", "value"
    ]  # fmt: skip
    assert {"model", "prompt_set"} <= set(table.columns)
    assert (table["model"] == "tiny-gpt2").all() and (table["suite"] == "text").all()
    assert len(table[table["metric"] == "ih"]) == 2 * 4
    back = measures_from_table(table)
    for m, v in scores.measures.items():
        torch.testing.assert_close(back[m], v)
    assert table.loc[table["metric"] == "accuracy", "value"].item() == pytest.approx(scores.accuracy)
