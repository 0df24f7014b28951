"""Few-shot image classification prompts for a vision-language model, as :class:`ICLPrompts`.

Prompt sets (``--prompts``):

- ``images:DIR``: one subfolder of DIR per class (its name is the label, ``_`` read as a
  space), images inside (png, jpg, jpeg, bmp, gif, webp). Per prompt ``ways`` classes are
  drawn and one of them is the query's; every class needs ``shots + 1`` images.
- ``open_mi:DIR``: VL-ICL Bench's open_mi folder (the paper's data). With
  ``DIR/{shots}-shot.json`` (entries ``{"query": {"image", "answer"[, "question"]},
  "support": {"{shots}-shot": [{"image", "answer"}, ...]}}``) its demonstrations are used as
  given; otherwise ``DIR/query.json`` (entries ``image``, ``question``, ``answer``,
  ``classes``, ``support[class]["images"]``): the query's class plus ``ways - 1`` others
  drawn from ``classes``. Image paths are read relative to DIR, then to its parent.

As in VL-ICL Bench (and the paper's scripts): a system turn "Answer the question with a
single word or phase.", then ``shots`` rounds of one image per class in one random class
order, each a user turn (the image, then "This is a") and an assistant turn (the label),
then the query image with its question, and the assistant's generation prompt, all through
the model's chat template. The read-out position is the last token.

Spans come from token ids: an exemplar's item span is its image's run of the model's image
token (``config.image_token_id``); its label span is the first run of tokens after the
user's question that decodes to the label (a leading space counts; a multi-token label is a
span). Candidates are the prompt's ``ways`` labels read at their first token as it stands in
the context (:class:`~mmicl_interp.prompts.TokenReadout`). Prompts are right-padded
(``attention_mask``, ``token_mask``); vision inputs are kept per prompt (see
:mod:`mmicl_interp.real.vlm`), so the prompts slice and chunk like text prompts.

Bad input raises one-line ConfigError: a missing folder or file (``--prompts``), fewer
classes than ``--ways``, fewer images than ``--shots`` need, a label the tokenizer maps to
its unknown token or two candidates that begin with the same token (``--prompts``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmicl_interp.config import ConfigError
from mmicl_interp.prompts import ICLPrompts, TokenReadout
from mmicl_interp.real.text import pad_id
from mmicl_interp.real.vlm import FLAT_VISION_KEYS, ROWS_SUFFIX, hf_config, image_token_id

SYSTEM = "Answer the question with a single word or phase."
"""The system turn of VL-ICL Bench's open_mi (verbatim, typo included)."""
SHOT_QUESTION = "This is a"
"""The user text after each demonstration image (and the query's, for ``images:DIR``)."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


@dataclass(frozen=True)
class Episode:
    """One prompt before tokenization: demonstrations, query, candidates and target."""

    support: list[tuple[Path, str]]
    query: Path
    question: str
    candidates: list[str]
    target: int

    def context_labels(self) -> list[int]:
        return [self.candidates.index(label) for _, label in self.support]


# ---------------------------------------------------------------------- episodes
def _check_counts(shots: int, ways: int, n_prompts: int) -> None:
    if not isinstance(shots, int) or shots < 1:
        raise ConfigError("--shots", f"must be an integer >= 1; got {shots!r}")
    if not isinstance(ways, int) or ways < 2:
        raise ConfigError("--ways", f"must be an integer >= 2; got {ways!r}")
    if not isinstance(n_prompts, int) or n_prompts < 1:
        raise ConfigError("--n-prompts", f"must be an integer >= 1; got {n_prompts!r}")


def parse_image_spec(spec: str) -> tuple[str, Path]:
    """``images:DIR`` / ``open_mi:DIR`` -> (kind, folder); ConfigError(``--prompts``) otherwise."""
    kind, sep, rest = spec.partition(":")
    if kind not in ("images", "open_mi") or not sep or not rest:
        raise ConfigError("--prompts", f"image prompts are images:DIR or open_mi:DIR; got {spec!r}")
    folder = Path(rest).expanduser()
    if not folder.is_dir():
        raise ConfigError("--prompts", f"{spec}: no such folder {folder}")
    return kind, folder


def folder_episodes(folder: Path, *, shots: int, ways: int, n_prompts: int, seed: int) -> list[Episode]:
    """Episodes drawn from an image folder with one subfolder per class."""
    classes: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if images:
            classes[sub.name.replace("_", " ")] = images
    if len(classes) < ways:
        raise ConfigError(
            "--ways",
            f"{ways} ways need {ways} classes, but {folder} has {len(classes)} class folders with images",
        )
    short = {name: len(imgs) for name, imgs in classes.items() if len(imgs) < shots + 1}
    if short:
        name, count = next(iter(short.items()))
        raise ConfigError(
            "--shots",
            f"{shots} shots need {shots + 1} images per class ({shots} demonstrations + 1 query); "
            f"class {name!r} in {folder} has {count}",
        )
    names = list(classes)
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(n_prompts):
        chosen = [names[i] for i in rng.choice(len(names), ways, replace=False)]  # random class order
        target = int(rng.integers(ways))
        picks = {
            c: [classes[c][i] for i in rng.choice(len(classes[c]), shots + 1, replace=False)] for c in chosen
        }
        support = [(picks[c][r], c) for r in range(shots) for c in chosen]
        episodes.append(Episode(support, picks[chosen[target]][shots], SHOT_QUESTION, chosen, target))
    return episodes


def _read_json(path: Path) -> Any:
    from mmicl_interp.io import CorruptFileError

    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(path, err) from None


def _images(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise ConfigError("--prompts", f"{where}: 'image' must be a path or a list of paths; got {value!r}")


def _resolve(folder: Path, name: str, where: str) -> Path:
    path = Path(name)
    for candidate in [path] if path.is_absolute() else [folder / path, folder.parent / path]:
        if candidate.is_file():
            return candidate
    raise ConfigError("--prompts", f"{where}: image {name!r} not found under {folder} or {folder.parent}")


def _field(entry: Any, key: str, where: str) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise ConfigError("--prompts", f"{where}: missing field {key!r}")
    return entry[key]


def open_mi_episodes(folder: Path, *, shots: int, ways: int, n_prompts: int, seed: int) -> list[Episode]:
    """Episodes from VL-ICL Bench's open_mi layout (see the module docstring)."""
    rng = np.random.default_rng(seed)
    shot_file, query_file = folder / f"{shots}-shot.json", folder / "query.json"
    source = shot_file if shot_file.is_file() else query_file
    if not source.is_file():
        raise ConfigError(
            "--prompts", f"open_mi:{folder}: found neither {shot_file.name} nor {query_file.name}"
        )
    entries = _read_json(source)
    if not isinstance(entries, list) or not entries:
        raise ConfigError("--prompts", f"{source}: expected a non-empty JSON list of entries")
    n_prompts = min(n_prompts, len(entries))  # capped at the queries there are (the command says so)
    chosen = sorted(int(i) for i in rng.choice(len(entries), n_prompts, replace=False))
    episodes = []
    for index in chosen:
        where = f"{source.name} entry {index}"
        entry = entries[index]
        if source is shot_file:
            query = _field(entry, "query", where)
            answer = str(_field(query, "answer", where))
            demos = _field(_field(entry, "support", where), f"{shots}-shot", where)
            support = [
                (
                    _resolve(folder, _images(_field(d, "image", where), where)[0], where),
                    str(_field(d, "answer", where)),
                )
                for d in demos
            ]
            candidates = list(dict.fromkeys(label for _, label in support))
            if len(candidates) != ways:
                raise ConfigError(
                    "--ways", f"{where}: its demonstrations show {len(candidates)} classes; got {ways}"
                )
            if answer not in candidates:
                raise ConfigError(
                    "--prompts", f"{where}: the query's answer {answer!r} is not among its demonstrations"
                )
            question = str(query.get("question", SHOT_QUESTION))
            image = _images(_field(query, "image", where), where)[0]
        else:
            answer = str(_field(entry, "answer", where))
            classes = [str(c) for c in _field(entry, "classes", where)]
            others = [c for c in dict.fromkeys(classes) if c != answer]
            if len(others) < ways - 1:
                raise ConfigError(
                    "--ways", f"{where}: {ways} ways need {ways} classes; it lists {len(others) + 1}"
                )
            candidates = [answer, *(others[i] for i in rng.choice(len(others), ways - 1, replace=False))]
            candidates = [candidates[i] for i in rng.permutation(ways)]
            bank = _field(entry, "support", where)
            support = []
            for c in candidates:
                images = _field(_field(bank, c, where), "images", where)
                if len(images) < shots:
                    raise ConfigError(
                        "--shots", f"{where}: class {c!r} has {len(images)} support images; got {shots}"
                    )
            for r in range(shots):
                for c in candidates:
                    support.append((_resolve(folder, bank[c]["images"][r], where), c))
            question = str(_field(entry, "question", where))
            image = _images(_field(entry, "image", where), where)[0]
        episodes.append(
            Episode(support, _resolve(folder, image, where), question, candidates, candidates.index(answer))
        )
    return episodes


def image_episodes(spec: str, *, shots: int, ways: int, n_prompts: int, seed: int) -> list[Episode]:
    """The episodes of an ``images:DIR`` or ``open_mi:DIR`` spec."""
    _check_counts(shots, ways, n_prompts)
    kind, folder = parse_image_spec(spec)
    if kind == "images":
        return folder_episodes(folder, shots=shots, ways=ways, n_prompts=n_prompts, seed=seed)
    return open_mi_episodes(folder, shots=shots, ways=ways, n_prompts=n_prompts, seed=seed)


# ---------------------------------------------------------------------- rendering
def conversation(episode: Episode, system: bool = True) -> list[dict[str, Any]]:
    """The episode as chat messages (HF multimodal format, one ``{"type": "image"}`` per image)."""

    def user(text: str) -> dict[str, Any]:
        return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}

    messages: list[dict[str, Any]] = (
        [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]}] if system else []
    )
    for _, label in episode.support:
        messages += [user(SHOT_QUESTION), {"role": "assistant", "content": [{"type": "text", "text": label}]}]
    messages.append(user(episode.question))
    if not system:  # the instruction opens the first user turn instead
        messages[0]["content"].insert(0, {"type": "text", "text": SYSTEM + "\n"})
    return messages


def _render(templater: Any, episode: Episode) -> str:
    try:
        return templater.apply_chat_template(
            conversation(episode), tokenize=False, add_generation_prompt=True
        )
    except (
        Exception
    ) as err:  # some templates refuse a system turn: put the instruction in the first user turn
        if "system" not in str(err).lower():
            raise
        return templater.apply_chat_template(
            conversation(episode, system=False), tokenize=False, add_generation_prompt=True
        )


def _templater(loaded: Any) -> Any:
    for owner in (loaded.processor, loaded.tokenizer):
        if owner is not None and getattr(owner, "chat_template", None):
            return owner
    raise ConfigError("model", f"{loaded.name}: neither its processor nor its tokenizer has a chat template")


def _load_image(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as err:
        from mmicl_interp.io import CorruptFileError

        raise CorruptFileError(path, err) from None


def _add_special(tokenizer: Any, text: str) -> bool:
    bos = getattr(tokenizer, "bos_token", None)
    return not (bos and text.startswith(bos))


def _encode(loaded: Any, config: Any, text: str, images: list) -> dict[str, torch.Tensor]:
    """One prompt's model inputs (batch dim 1 for token tensors)."""
    processor, tokenizer = loaded.processor, loaded.tokenizer
    model_type = getattr(config, "model_type", "")
    if processor is not None and hasattr(processor, "image_processor") and hasattr(processor, "tokenizer"):
        extra = {"do_image_splitting": False} if model_type == "idefics3" else {}  # one token run per image
        enc = processor(
            text=text,
            images=images,
            return_tensors="pt",
            add_special_tokens=_add_special(tokenizer, text),
            **extra,
        )
        return {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}
    if model_type not in ("qwen2_vl", "qwen2_5_vl") or processor is None:
        raise ConfigError(
            "model",
            f"{loaded.name}: its multimodal processor could not be loaded (install torchvision, see "
            "mmicl_interp.real.vlm); without it only Qwen2-VL-style models are supported",
        )
    # Qwen2-VL family with its image processor alone: expand the image pad token by hand,
    # as its processor does (one token per merged patch).
    pixels = processor(images=images, return_tensors="pt")
    grid = pixels["image_grid_thw"]
    merge = int(getattr(processor, "merge_size", 2))
    pad = tokenizer.convert_ids_to_tokens(image_token_id(config))
    parts = text.split(pad)
    if len(parts) - 1 != len(images):
        raise ConfigError(
            "model",
            f"{loaded.name}: its chat template wrote {len(parts) - 1} image tokens for {len(images)} images",
        )
    expanded = parts[0] + "".join(
        pad * (int(g.prod()) // merge**2) + p for g, p in zip(grid, parts[1:], strict=True)
    )
    enc = tokenizer(expanded, return_tensors="pt", add_special_tokens=_add_special(tokenizer, expanded))
    ids = enc["input_ids"]
    video = getattr(config, "video_token_id", None)
    mm = (ids == image_token_id(config)).long() + (2 * (ids == video).long() if video is not None else 0)
    return {
        "input_ids": ids,
        "attention_mask": enc["attention_mask"],
        "mm_token_type_ids": mm,
        "pixel_values": pixels["pixel_values"],
        "image_grid_thw": grid,
    }


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for p in positions:
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return runs


def _find_text(
    decode, ids: list[int], start: int, stop: int, text: str, max_len: int
) -> tuple[int, int] | None:
    """The first ``[s, e)`` in ``[start, stop)`` whose tokens decode to ``text`` (spaces stripped)."""
    want = text.strip()
    for s in range(start, stop):
        for e in range(s + 1, min(stop, s + max_len) + 1):
            got = decode(ids[s:e]).strip()
            if got == want:
                return s, e
            if len(got) > len(want) + 2:
                break
    return None


@dataclass
class _Encoded:
    inputs: dict[str, torch.Tensor]
    items: list[tuple[int, int]]
    labels: list[tuple[int, int]]
    readout: int
    tokens: list[int]


def _locate(loaded: Any, config: Any, episode: Episode, inputs: dict[str, torch.Tensor]) -> _Encoded:
    tokenizer = loaded.tokenizer
    ids = inputs["input_ids"][0].tolist()
    runs = _runs([t for t, i in enumerate(ids) if i == image_token_id(config)])
    n_images = len(episode.support) + 1
    if len(runs) != n_images:
        raise ConfigError(
            "model",
            f"{loaded.name}: its image tokens form {len(runs)} runs for {n_images} images; "
            "image spans need one contiguous run per image",
        )

    def decode(tokens: list[int]) -> str:
        return tokenizer.decode(tokens, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def width(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 2

    labels = []
    for i, (_, label) in enumerate(episode.support):
        start, stop = runs[i][1], runs[i + 1][0]
        asked = _find_text(decode, ids, start, stop, SHOT_QUESTION, width(SHOT_QUESTION))
        span = _find_text(decode, ids, asked[1] if asked else start, stop, label, width(label))
        if span is None:
            raise ConfigError(
                "--prompts",
                f"label {label!r} does not appear as its own tokens in the rendered prompt (chat template)",
            )
        labels.append(span)
    first: dict[int, int] = {}
    for (s, _), c in zip(labels, episode.context_labels(), strict=True):
        first.setdefault(c, ids[s])
    tokens = [first[c] for c in range(len(episode.candidates))]
    if len(set(tokens)) < len(tokens):
        dup = [c for c, t in zip(episode.candidates, tokens, strict=True) if tokens.count(t) > 1]
        raise ConfigError(
            "--prompts",
            f"labels {dup[0]!r} and {dup[1]!r} begin with the same token; accuracy reads the first token, so "
            "candidate labels must differ there",
        )
    return _Encoded(inputs, runs[:-1], labels, len(ids) - 1, tokens)


def _check_vocabulary(tokenizer: Any, episodes: list[Episode]) -> None:
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return
    for label in sorted({c for e in episodes for c in e.candidates}):
        for variant in (label, " " + label):
            if unk in tokenizer(variant, add_special_tokens=False)["input_ids"]:
                raise ConfigError(
                    "--prompts",
                    f"label {label!r} is not in the tokenizer's vocabulary (it maps to the unknown token)",
                )


# ---------------------------------------------------------------------- batching
def _pad_to(t: torch.Tensor, shape: tuple[int, ...], value: float = 0) -> torch.Tensor:
    if tuple(t.shape) == shape:
        return t
    out = t.new_full(shape, value)
    out[tuple(slice(0, n) for n in t.shape)] = t
    return out


def collate(
    encoded: list[dict[str, torch.Tensor]], flat_keys: tuple[str, ...], pad_id: int
) -> dict[str, torch.Tensor]:
    """Per-prompt inputs stacked batch-first: token tensors right-padded; ``flat_keys`` (all
    images of a prompt along dim 0) zero-padded to [batch, rows, ...] with ``key__rows``."""
    out: dict[str, torch.Tensor] = {}
    for key in encoded[0]:
        values = [e[key] for e in encoded]
        if key in flat_keys:
            shape = tuple(max(v.shape[d] for v in values) for d in range(values[0].ndim))
            out[key] = torch.stack([_pad_to(v, shape) for v in values])
            out[key + ROWS_SUFFIX] = torch.tensor([v.shape[0] for v in values], dtype=torch.long)
        else:
            shape = tuple(max(v.shape[d] for v in values) for d in range(1, values[0].ndim))
            fill = pad_id if key == "input_ids" else 0
            out[key] = torch.cat([_pad_to(v, (v.shape[0], *shape), fill) for v in values])
    return out


def build_image_prompts(
    loaded: Any, spec: str, *, shots: int, ways: int, n_prompts: int, seed: int
) -> ICLPrompts:
    """The prompts of an ``images:DIR`` / ``open_mi:DIR`` spec for a loaded VLM (module docstring).

    ``loaded`` is a :class:`~mmicl_interp.real.load.LoadedModel` from
    :func:`~mmicl_interp.real.vlm.load_vlm` (its bridge takes the per-prompt vision inputs).
    """
    episodes = image_episodes(spec, shots=shots, ways=ways, n_prompts=n_prompts, seed=seed)
    try:
        import PIL  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError(
            "--prompts", "image prompts need pillow; install the extra: pip install 'mmicl-interp[vlm]'"
        ) from None
    config = hf_config(loaded)
    _check_vocabulary(loaded.tokenizer, episodes)
    templater = _templater(loaded)
    cache: dict[Path, Any] = {}

    def image(path: Path):
        if path not in cache:
            cache[path] = _load_image(path)
        return cache[path]

    located = []
    for episode in episodes:
        text = _render(templater, episode)
        images = [image(p) for p, _ in episode.support] + [image(episode.query)]
        located.append(_locate(loaded, config, episode, _encode(loaded, config, text, images)))
    flat = FLAT_VISION_KEYS.get(getattr(config, "model_type", ""), ())
    batch = collate([e.inputs for e in located], flat, pad_id(loaded.tokenizer))
    ids = batch.pop("input_ids")
    lengths = [e.inputs["input_ids"].shape[1] for e in located]
    mask = torch.arange(ids.shape[1])[None, :] < torch.tensor(lengths)[:, None]
    batch["attention_mask"] = mask.long()
    rng = np.random.default_rng(seed + 1)
    alternatives = [int(rng.choice([c for c in range(ways) if c != e.target])) for e in episodes]
    return ICLPrompts(
        inputs=ids,
        item_spans={"m1": torch.tensor([e.items for e in located], dtype=torch.long)},
        label_spans=torch.tensor([e.labels for e in located], dtype=torch.long),
        readout_position=torch.tensor([e.readout for e in located], dtype=torch.long),
        targets=torch.tensor([e.target for e in episodes], dtype=torch.long),
        context_labels=torch.tensor([e.context_labels() for e in episodes], dtype=torch.long),
        alternatives=torch.tensor(alternatives, dtype=torch.long),
        token_mask=mask,
        model_kwargs=batch,
        readout=TokenReadout(torch.tensor([e.tokens for e in located], dtype=torch.long)),
    )


def is_image_spec(spec: str) -> bool:
    """Whether ``spec`` names image prompts (``images:...`` or ``open_mi:...``)."""
    return re.match(r"^(images|open_mi):", spec) is not None


__all__ = [
    "Episode",
    "build_image_prompts",
    "collate",
    "conversation",
    "image_episodes",
    "is_image_spec",
    "parse_image_spec",
]
