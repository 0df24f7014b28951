"""Tiny offline Hugging Face models (Llama with GQA, GPT-2) with a WordLevel tokenizer.

Random weights built from configs, wrapped in TransformerLens's bridge in memory or saved
to a folder and loaded by path (the same code path as a hub name). Nothing reaches the
network (HF_HUB_OFFLINE=1 comes from tests/conftest.py).
"""

from __future__ import annotations

import pytest
import torch

from mmicl_interp.real.text import vocabulary_words
from tests.real.tiny_vlm import tiny_decoder, word_tokenizer


def tiny_tokenizer(extra: tuple[str, ...] = ()):
    """A WordLevel tokenizer over the built-in text task's words (plus ``extra``)."""
    words = vocabulary_words() + [w for w in extra if w not in vocabulary_words()]
    return word_tokenizer((), None, tuple(words))


def tiny_hf_model(arch: str, vocab_size: int, seed: int = 0):
    """A random 2-layer model: ``llama`` (4 query heads, 2 key/value heads) or ``gpt2``."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(**tiny_decoder(vocab_size, 32, 256), attn_implementation="eager")
        return LlamaForCausalLM(config).eval()
    config = GPT2Config(
        vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=256, attn_implementation="eager"
    )
    return GPT2LMHeadModel(config).eval()


def save_tiny(folder, arch: str = "llama", seed: int = 0):
    """Save a tiny model and its tokenizer to ``folder`` (loadable by path); returns the folder."""
    tok = tiny_tokenizer()
    tiny_hf_model(arch, len(tok), seed).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run ~40x faster on one thread than on two busy cores (oversubscription)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """arch -> folder of a saved tiny model (llama with GQA, gpt2)."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {arch: save_tiny(root / arch, arch) for arch in ("llama", "gpt2")}


@pytest.fixture(scope="session")
def loaded(tiny_dirs):
    """arch -> LoadedModel of the saved tiny models (loaded by path)."""
    from mmicl_interp.real.load import load_model

    return {arch: load_model(str(path)) for arch, path in tiny_dirs.items()}


@pytest.fixture(scope="session")
def hf_reference(tiny_dirs):
    """arch -> the same tiny model loaded by plain transformers, eager attention (the reference)."""
    from transformers import AutoModelForCausalLM

    return {
        arch: AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
        for arch, path in tiny_dirs.items()
    }


FILE_ROWS = [
    ("big dog", "north west"),
    ("cat", "north west"),
    ("small horse", "north west"),
    ("apple", "south"),
    ("red banana", "south"),
    ("grape", "south"),
    ("Paris", "up down"),
    ("big London", "up down"),
    ("Rome", "up down"),
]
"""A user file's rows: multi-token items and labels of different lengths (so prompts pad)."""


def write_rows(path, rows=FILE_ROWS, columns=("item", "label")):
    """Write ``rows`` as CSV (``.csv``) or a JSON list of objects (``.json``)."""
    import csv
    import json

    if str(path).endswith(".json"):
        path.write_text(json.dumps([dict(zip(columns, r, strict=True)) for r in rows]))
    else:
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
    return path


def reference_measures(attentions, record) -> dict:
    """The six measures of one unpadded prompt from HF attentions [layer][head, q, k] (plain loops)."""
    import numpy as np

    att = np.stack([a.numpy() for a in attentions])  # [layer, head, q, k]
    n_layers, n_heads, n_pos, _ = att.shape
    q = record["readout_position"]
    labels, items = record["label_spans"], record["item_spans"]["m1"]
    matches = record["matches"]
    out = {
        m: np.zeros((n_layers, n_heads))
        for m in ("prev_token", "prev_token_label", "ih", "tila", "tla", "tiia")
    }
    for layer in range(n_layers):
        for head in range(n_heads):
            a = att[layer, head]
            out["prev_token"][layer, head] = np.mean([a[t, t - 1] for t in range(1, n_pos)])
            out["prev_token_label"][layer, head] = np.mean(
                [a[s, items[i][1] - 1] for i, (s, _) in enumerate(labels)]
            )
            to_label = [a[q, s:e].sum() for s, e in labels]
            to_item = [a[q, s:e].sum() for s, e in items]
            hit = [v for v, m in zip(to_label, matches, strict=True) if m]
            miss = [v for v, m in zip(to_label, matches, strict=True) if not m]
            tila = np.mean(hit) if hit else 0.0
            out["tila"][layer, head] = tila
            out["ih"][layer, head] = tila - (np.mean(miss) if miss else 0.0)
            out["tla"][layer, head] = np.sum(to_label)
            hit_items = [v for v, m in zip(to_item, matches, strict=True) if m]
            out["tiia"][layer, head] = np.mean(hit_items) if hit_items else 0.0
    return out
