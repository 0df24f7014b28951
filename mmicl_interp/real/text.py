"""Few-shot text classification prompts for a real language model, as :class:`ICLPrompts`.

Prompt sets (``--prompts``):

- ``text``: the built-in synthetic task where the answer must come from the context. Per
  prompt, ``ways`` item words (the classes) get ``ways`` label words drawn at random from
  :data:`LABEL_WORDS`, a fresh assignment per prompt (like the small models' icl suite);
  every class is shown ``shots`` times in random order, then one of them is the query.
- ``text:flipped``: semantic categories (:data:`CATEGORIES`: an item is a member, e.g.
  ``dog``; its true label is the category, e.g. ``animal``) with the labels flipped per
  prompt by a random derangement of the drawn categories: each class is shown with
  another category's name, and the answer is the flipped label. The query is a member not
  shown in the context, so prior knowledge and the context disagree.
- ``text:FILE`` / ``text:flipped:FILE``: rows of a JSON (a list of objects, or JSON lines)
  or CSV file with columns ``item`` and ``label``; the classes are its labels. Per prompt
  ``ways`` labels are drawn, ``shots`` rows of each shown and a further row of one of them
  queried (so every label needs ``shots + 1`` rows); ``flipped`` deranges the labels.

Each exemplar is written ``"{item} -> {label}\\n"`` and the query ``"{item} ->"`` (see
:data:`TEMPLATE`). The text is tokenized once with the model's tokenizer (its BOS
included), and every item and label span is the set of tokens whose characters overlap
the word: leading-space variants (`` animal``) count and a multi-token word is a span. The
read-out position is the last token (``->``); candidates are the prompt's ``ways`` labels,
read at their first token as it appears after ``->`` in the context
(:class:`~mmicl_interp.prompts.TokenReadout`). Prompts are right-padded (``attention_mask``
and ``token_mask`` mark real tokens), so positions are those of the unpadded prompt.

Bad input raises ConfigError: a file without an ``item`` or ``label`` column, more shots
than a label has examples, more ways than labels, a label (or item) the tokenizer maps to
its unknown token, two candidate labels of a prompt that begin with the same token.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmicl_interp.config import ConfigError
from mmicl_interp.prompts import ICLPrompts, TokenReadout

TEMPLATE = ("{item} -> {label}\n", "{item} ->")
"""How an exemplar and the query are written."""

ITEM_WORDS: tuple[str, ...] = (
    "apple", "river", "table", "window", "garden", "pencil", "castle", "bottle", "mirror", "ladder",
    "candle", "button", "basket", "rocket", "carpet", "jacket", "kettle", "hammer", "pillow", "wallet",
    "guitar", "ticket", "forest", "island", "bridge", "school", "doctor", "engine", "planet", "silver",
)  # fmt: skip
"""Items of the built-in random task (common single words)."""
LABEL_WORDS: tuple[str, ...] = (
    "blue", "green", "red", "black", "white", "north", "south", "east", "west", "up",
    "down", "left", "right", "yes", "no", "hot", "cold", "big", "small", "fast",
)  # fmt: skip
"""Label words of the built-in random task (drawn afresh per prompt)."""
CATEGORIES: dict[str, tuple[str, ...]] = {
    "animal": ("dog", "cat", "horse", "cow", "sheep", "tiger", "mouse", "bear"),
    "fruit": ("apple", "banana", "orange", "grape", "lemon", "cherry", "peach", "pear"),
    "color": ("red", "blue", "green", "yellow", "purple", "pink", "brown", "gray"),
    "city": ("Paris", "London", "Tokyo", "Berlin", "Rome", "Madrid", "Moscow", "Vienna"),
    "number": ("one", "two", "three", "four", "five", "six", "seven", "eight"),
    "body": ("hand", "foot", "head", "nose", "ear", "eye", "knee", "arm"),
}
"""Categories of the built-in flipped task: label -> member items."""


@dataclass(frozen=True)
class TextSpec:
    """A parsed ``text[:flipped][:FILE]`` prompt-set spec."""

    flipped: bool = False
    file: Path | None = None


def parse_text_spec(spec: str) -> TextSpec:
    """``text`` | ``text:flipped`` | ``text:FILE`` | ``text:flipped:FILE`` (ConfigError otherwise)."""
    if spec != "text" and not spec.startswith("text:"):
        raise ConfigError(
            "--prompts", f"a text prompt set is text, text:flipped or text:[flipped:]FILE; got {spec!r}"
        )
    rest = spec[len("text:") :] if spec != "text" else ""
    flipped = rest == "flipped" or rest.startswith("flipped:")
    if flipped:
        rest = rest[len("flipped:") :] if rest != "flipped" else ""
    if not rest:
        return TextSpec(flipped=flipped)
    return TextSpec(flipped=flipped, file=Path(rest))


# ---------------------------------------------------------------------- examples
@dataclass
class Exemplar:
    item: str
    label: str


@dataclass
class PromptText:
    """One prompt before tokenization: its exemplars, query, candidates and answer."""

    exemplars: list[Exemplar]
    query: str
    candidates: list[str]
    target: int

    def context_labels(self) -> list[int]:
        return [self.candidates.index(e.label) for e in self.exemplars]


def read_examples(path: Path) -> list[tuple[str, str]]:
    """(item, label) rows of a JSON / JSON-lines / CSV file with columns ``item`` and ``label``."""
    from mmicl_interp.io import CorruptFileError

    if not path.is_file():
        raise ConfigError("--prompts", f"{path}: no such file (give a .json, .jsonl or .csv file)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                columns = reader.fieldnames or []
                rows = list(reader)
        elif suffix in (".json", ".jsonl"):
            text = path.read_text(encoding="utf-8")
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                data = [json.loads(line) for line in text.splitlines() if line.strip()]
            if isinstance(data, dict):
                data = [data]
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise ConfigError("--prompts", f"{path}: expected a list of objects with keys item and label")
            rows = data
            columns = sorted({k for r in rows for k in r}) if rows else []
        else:
            raise ConfigError("--prompts", f"{path}: the file must end in .json, .jsonl or .csv")
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as err:
        raise CorruptFileError(path, err) from None
    missing = [c for c in ("item", "label") if c not in columns or any(c not in r for r in rows)]
    if missing:
        raise ConfigError(
            "--prompts", f"{path}: missing column {', '.join(missing)} (needs columns item and label)"
        )
    out = [(str(r["item"]).strip(), str(r["label"]).strip()) for r in rows]
    empty = [i for i, (item, label) in enumerate(out) if not item or not label]
    if empty:
        raise ConfigError("--prompts", f"{path}: row {empty[0] + 1} has an empty item or label")
    if not out:
        raise ConfigError("--prompts", f"{path}: no rows")
    return out


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    order = rng.permutation(n)
    perm = np.empty(n, dtype=int)
    perm[order] = np.roll(order, 1)
    return perm


def _context(classes: list[list[str]], labels: list[str], shots: int, rng: np.random.Generator):
    """``shots`` exemplars of every class (items from ``classes[c][:shots]``), in random order."""
    exemplars = [Exemplar(classes[c][s], labels[c]) for c in range(len(classes)) for s in range(shots)]
    return [exemplars[i] for i in rng.permutation(len(exemplars))]


def random_task(shots: int, ways: int, n_prompts: int, seed: int) -> list[PromptText]:
    """The built-in random-label task (see the module docstring)."""
    _check_shape(shots, ways, len(ITEM_WORDS), len(LABEL_WORDS))
    rng = np.random.default_rng(seed)
    prompts = []
    for _ in range(n_prompts):
        items = [ITEM_WORDS[i] for i in rng.choice(len(ITEM_WORDS), ways, replace=False)]
        labels = [LABEL_WORDS[i] for i in rng.choice(len(LABEL_WORDS), ways, replace=False)]
        exemplars = _context([[w] * shots for w in items], labels, shots, rng)
        q = int(rng.integers(ways))
        prompts.append(PromptText(exemplars, items[q], labels, q))
    return prompts


def category_task(
    categories: dict[str, list[str]],
    shots: int,
    ways: int,
    n_prompts: int,
    seed: int,
    flipped: bool,
    source: str,
) -> list[PromptText]:
    """Prompts from label -> items (a user file or :data:`CATEGORIES`); labels deranged if ``flipped``."""
    need = shots + 1
    eligible = [label for label, items in categories.items() if len(items) >= need]
    if ways > len(categories):
        raise ConfigError("--ways", f"{ways} ways need {ways} labels; {source} has {len(categories)}")
    if len(eligible) < ways:
        counts = ", ".join(f"{label}: {len(items)}" for label, items in list(categories.items())[:6])
        raise ConfigError(
            "--shots",
            f"{shots} shots need {need} examples (shots + the query) of each of {ways} labels; {source} has "
            f"{len(eligible)} labels with that many ({counts})",
        )
    if flipped and ways < 2:
        raise ConfigError("--ways", "flipped labels need at least 2 ways")
    rng = np.random.default_rng(seed)
    prompts = []
    for _ in range(n_prompts):
        chosen = [eligible[i] for i in rng.choice(len(eligible), ways, replace=False)]
        members = [
            [categories[c][i] for i in rng.choice(len(categories[c]), need, replace=False)] for c in chosen
        ]
        labels = [chosen[i] for i in _derangement(ways, rng)] if flipped else list(chosen)
        exemplars = _context(members, labels, shots, rng)
        q = int(rng.integers(ways))
        prompts.append(PromptText(exemplars, members[q][shots], labels, q))
    return prompts


def _check_shape(shots: int, ways: int, n_items: int, n_labels: int) -> None:
    if shots < 1:
        raise ConfigError("--shots", f"must be >= 1 (each label is shown at least once); got {shots}")
    if ways < 2:
        raise ConfigError("--ways", f"must be >= 2 (a choice between labels); got {ways}")
    if ways > min(n_items, n_labels):
        raise ConfigError(
            "--ways", f"the built-in task has at most {min(n_items, n_labels)} ways; got {ways}"
        )


def prompt_texts(spec: str, *, shots: int, ways: int, n_prompts: int, seed: int) -> list[PromptText]:
    """The prompts of a ``text...`` spec before tokenization."""
    parsed = parse_text_spec(spec)
    if n_prompts < 1:
        raise ConfigError("--n-prompts", f"must be >= 1; got {n_prompts}")
    if parsed.file is None and not parsed.flipped:
        return random_task(shots, ways, n_prompts, seed)
    _check_shape(shots, ways, 10**9, 10**9)
    if parsed.file is None:
        categories = {label: list(items) for label, items in CATEGORIES.items()}
        source = "the built-in flipped task"
    else:
        categories = {}
        for item, label in read_examples(parsed.file):
            if item not in categories.setdefault(label, []):
                categories[label].append(item)
        source = str(parsed.file)
    return category_task(categories, shots, ways, n_prompts, seed, parsed.flipped, source)


# ---------------------------------------------------------------------- tokenization
def _render(prompt: PromptText) -> tuple[str, list[tuple[int, int]], list[tuple[int, int]]]:
    """The prompt's text and the character ranges of each exemplar's item and label."""
    shot, query = TEMPLATE
    before_item, rest = shot.split("{item}")
    between, after_label = rest.split("{label}")
    text, items, labels = "", [], []
    for e in prompt.exemplars:
        text += before_item
        items.append((len(text), len(text) + len(e.item)))
        text += e.item + between
        labels.append((len(text), len(text) + len(e.label)))
        text += e.label + after_label
    return text + query.format(item=prompt.query), items, labels


def _char_span(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """Tokens ``[first, last + 1)`` whose characters overlap ``[start, end)``."""
    hit = [t for t, (s, e) in enumerate(offsets) if e > s and e > start and s < end]
    if not hit:
        raise ValueError(f"no token covers characters {start}..{end}")
    return hit[0], hit[-1] + 1


def _unknown(tokenizer: Any) -> int | None:
    return getattr(tokenizer, "unk_token_id", None)


def tokenize_prompts(prompts: list[PromptText], tokenizer: Any) -> ICLPrompts:
    """Tokenize prompt texts into a right-padded :class:`ICLPrompts` (see the module docstring)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("model", "text prompts need a fast tokenizer (character offsets of tokens)")
    unk = _unknown(tokenizer)
    rows, items_all, labels_all, readouts, tokens_all = [], [], [], [], []
    for prompt in prompts:
        text, item_chars, label_chars = _render(prompt)
        enc = tokenizer(text, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        items = [_char_span(offsets, *c) for c in item_chars]
        labels = [_char_span(offsets, *c) for c in label_chars]
        for (s, e), ex in zip(labels, prompt.exemplars, strict=True):
            if unk is not None and unk in ids[s:e]:
                raise ConfigError(
                    "--prompts",
                    f"label {ex.label!r} is not in the tokenizer's vocabulary (it maps to the unknown token)",
                )
        for (s, e), ex in zip(items, prompt.exemplars, strict=True):
            if unk is not None and unk in ids[s:e]:
                raise ConfigError(
                    "--prompts",
                    f"item {ex.item!r} is not in the tokenizer's vocabulary (it maps to the unknown token)",
                )
        context = prompt.context_labels()
        first = {}
        for (s, _), c in zip(labels, context, strict=True):
            first.setdefault(c, ids[s])
        tokens = [first[c] for c in range(len(prompt.candidates))]
        if len(set(tokens)) < len(tokens):
            a, b = _twins(prompt.candidates, tokens)
            raise ConfigError(
                "--prompts",
                f"labels {a!r} and {b!r} begin with the same token; accuracy reads the first token, so "
                "candidate labels must differ there",
            )
        readout = max(t for t, (s, e) in enumerate(offsets) if e > s)
        rows.append(ids)
        items_all.append(items)
        labels_all.append(labels)
        readouts.append(readout)
        tokens_all.append(tokens)
    return _assemble(prompts, rows, items_all, labels_all, readouts, tokens_all, tokenizer)


def _twins(candidates: list[str], tokens: list[int]) -> tuple[str, str]:
    for i in range(len(tokens)):
        for j in range(i + 1, len(tokens)):
            if tokens[i] == tokens[j]:
                return candidates[i], candidates[j]
    raise AssertionError("no shared first token")


def pad_id(tokenizer: Any) -> int:
    """The id that pads prompts: the pad token, else end-of-sequence, else unknown, else 0."""
    for name in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def _assemble(prompts, rows, items_all, labels_all, readouts, tokens_all, tokenizer) -> ICLPrompts:
    n_batch, width = len(rows), max(len(r) for r in rows)
    ids = torch.full((n_batch, width), pad_id(tokenizer), dtype=torch.long)
    mask = torch.zeros(n_batch, width, dtype=torch.bool)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor(row)
        mask[b, : len(row)] = True
    rng = np.random.default_rng(len(rows))
    targets = torch.tensor([p.target for p in prompts])
    alternatives = torch.tensor(
        [int(rng.choice([c for c in range(len(p.candidates)) if c != p.target])) for p in prompts]
    )
    return ICLPrompts(
        inputs=ids,
        item_spans={"m1": torch.tensor(items_all, dtype=torch.long)},
        label_spans=torch.tensor(labels_all, dtype=torch.long),
        readout_position=torch.tensor(readouts),
        targets=targets,
        context_labels=torch.tensor([p.context_labels() for p in prompts]),
        alternatives=alternatives,
        token_mask=mask,
        model_kwargs={"attention_mask": mask.long()},
        readout=TokenReadout(torch.tensor(tokens_all, dtype=torch.long)),
    )


def build_text_prompts(
    tokenizer: Any, spec: str = "text", *, shots: int = 2, ways: int = 2, n_prompts: int = 50, seed: int = 0
) -> ICLPrompts:
    """The prompts of a ``text...`` spec for ``tokenizer`` (see the module docstring)."""
    return tokenize_prompts(
        prompt_texts(spec, shots=shots, ways=ways, n_prompts=n_prompts, seed=seed), tokenizer
    )


def vocabulary_words() -> list[str]:
    """Every word of the built-in tasks and template (for a test tokenizer's vocabulary)."""
    words = {*ITEM_WORDS, *LABEL_WORDS, "->"}
    for label, items in CATEGORIES.items():
        words.update((label, *items))
    return sorted(words)


__all__ = [
    "CATEGORIES",
    "ITEM_WORDS",
    "LABEL_WORDS",
    "TEMPLATE",
    "PromptText",
    "build_text_prompts",
    "parse_text_spec",
    "prompt_texts",
    "read_examples",
    "tokenize_prompts",
    "vocabulary_words",
]
