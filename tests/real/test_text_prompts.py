"""Text few-shot prompts: spans point at the words, candidates, targets, bad input."""

from __future__ import annotations

import pytest
import torch

from mmicl_interp.config import ConfigError
from mmicl_interp.real.text import CATEGORIES, build_text_prompts, parse_text_spec, prompt_texts

from .conftest import tiny_tokenizer, write_rows


def _words(tok, ids, span):
    s, e = span
    return tok.decode(ids[s:e]).strip()


@pytest.mark.parametrize("spec", ["text", "text:flipped"])
def test_builtin_spans_point_at_items_and_labels(spec):
    tok = tiny_tokenizer()
    texts = prompt_texts(spec, shots=2, ways=3, n_prompts=6, seed=1)
    prompts = build_text_prompts(tok, spec, shots=2, ways=3, n_prompts=6, seed=1)
    assert prompts.inputs.shape[0] == 6 and prompts.n_exemplars == 6
    for b, text in enumerate(texts):
        ids = prompts.inputs[b].tolist()
        for i, ex in enumerate(text.exemplars):
            assert _words(tok, ids, prompts.item_spans["m1"][b, i].tolist()) == ex.item
            assert _words(tok, ids, prompts.label_spans[b, i].tolist()) == ex.label
            assert text.candidates[int(prompts.context_labels[b, i])] == ex.label
        assert tok.decode([ids[int(prompts.readout_position[b])]]) == "->"
        target_label = text.candidates[int(prompts.targets[b])]
        assert prompts.readout.label_tokens[b, prompts.targets[b]] == tok.convert_tokens_to_ids(target_label)
        assert prompts.alternatives[b] != prompts.targets[b]
        if spec == "text":  # the query repeats an item of its class: the answer is in context
            shown = {ex.item: ex.label for ex in text.exemplars}
            assert shown[text.query] == target_label
        else:  # flipped: the query's true category is not its answer, and it is not in the context
            true = next(c for c, members in CATEGORIES.items() if text.query in members)
            assert target_label != true
            assert text.query not in {ex.item for ex in text.exemplars}
            assert all(ex.item not in CATEGORIES[ex.label] for ex in text.exemplars)


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_file_prompts_multi_token_spans_and_padding(tmp_path, suffix):
    tok = tiny_tokenizer()
    path = write_rows(tmp_path / f"rows{suffix}")
    prompts = build_text_prompts(tok, f"text:{path}", shots=2, ways=3, n_prompts=8, seed=0)
    lengths = (prompts.label_spans[..., 1] - prompts.label_spans[..., 0]).unique().tolist()
    assert set(lengths) == {1, 2}  # "north west" and "up down" are two tokens
    real = prompts.token_mask.sum(1)
    assert real.unique().numel() > 1  # different lengths: right padding
    assert torch.equal(prompts.readout_position, real - 1)
    assert torch.equal(prompts.model_kwargs["attention_mask"].bool(), prompts.token_mask)
    for b in range(len(prompts)):
        ids = prompts.inputs[b].tolist()
        for i in range(prompts.n_exemplars):
            label = _words(tok, ids, prompts.label_spans[b, i].tolist())
            assert label in {"north west", "south", "up down"}
            first = tok.convert_tokens_to_ids(label.split()[0])
            assert prompts.readout.label_tokens[b, prompts.context_labels[b, i]] == first


def test_leading_space_tokens_count_in_spans():
    """A byte-level BPE tokenizer writes ' south' as one token with its space: it is the span."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    from mmicl_interp.real.text import vocabulary_words

    corpus = [" ".join(vocabulary_words()) + "\n"] * 50
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>"])
    backend.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", name_or_path="bpe")
    texts = prompt_texts("text", shots=1, ways=2, n_prompts=3, seed=0)
    prompts = build_text_prompts(tok, "text", shots=1, ways=2, n_prompts=3, seed=0)
    for b, text in enumerate(texts):
        ids = prompts.inputs[b].tolist()
        for i, ex in enumerate(text.exemplars):
            s, e = prompts.label_spans[b, i].tolist()
            assert tok.decode(ids[s:e]) == " " + ex.label  # the leading-space variant
        target = text.candidates[int(prompts.targets[b])]
        assert tok.decode([int(prompts.readout.label_tokens[b, prompts.targets[b]])]) == " " + target
        assert tok.decode(ids[: int(prompts.readout_position[b]) + 1]).endswith("->")


def test_parse_spec():
    assert parse_text_spec("text").file is None and not parse_text_spec("text").flipped
    assert parse_text_spec("text:flipped").flipped
    spec = parse_text_spec("text:flipped:data/x.csv")
    assert spec.flipped and str(spec.file) == "data/x.csv"
    with pytest.raises(ConfigError, match="--prompts"):
        parse_text_spec("words")


def test_bad_inputs(tmp_path):
    tok = tiny_tokenizer()
    missing = write_rows(tmp_path / "bad.csv", [("dog", "animal")], columns=("item", "class"))
    with pytest.raises(ConfigError, match="missing column label"):
        prompt_texts(f"text:{missing}", shots=1, ways=2, n_prompts=1, seed=0)
    rows = write_rows(tmp_path / "rows.csv")
    with pytest.raises(ConfigError, match="--shots: 3 shots need 4 examples"):
        prompt_texts(f"text:{rows}", shots=3, ways=2, n_prompts=1, seed=0)
    with pytest.raises(ConfigError, match="--ways"):
        prompt_texts(f"text:{rows}", shots=1, ways=4, n_prompts=1, seed=0)
    unknown = write_rows(
        tmp_path / "unk.csv", [("dog", "zebra"), ("cat", "zebra"), ("apple", "fruit"), ("pear", "fruit")]
    )
    with pytest.raises(ConfigError, match="label 'zebra' is not in the tokenizer's vocabulary"):
        build_text_prompts(tok, f"text:{unknown}", shots=1, ways=2, n_prompts=2, seed=0)
    twins = write_rows(tmp_path / "twins.csv", [("dog", "north west"), ("cat", "north west"),
                                                  ("apple", "north"), ("pear", "north")])  # fmt: skip
    with pytest.raises(ConfigError, match="begin with the same token"):
        build_text_prompts(tok, f"text:{twins}", shots=1, ways=2, n_prompts=2, seed=0)
