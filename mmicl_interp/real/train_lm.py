"""``mmicl train-lm``: train a small Hugging Face causal LM on the Python standard library's
source, saving a checkpoint series in which induction heads form.

Data: the ``.py`` files of the installed CPython's ``Lib`` folder (every machine with
Python has them, offline), a fixed sorted list (tests, ``site-packages``, ``encodings``,
build-specific ``_sysconfigdata*`` and ``config-*`` left out). A file is held out when
``sha1(relative path) % held_out_every == 0`` (a split by file that does not move when
another file is added). The recipe records the Python version, the number of files and
characters and a hash of the file list, so a different Python shows up as a different
corpus.

Tokenizer (trained here with the ``tokenizers`` package, offline, on the training split):
``bpe`` (byte-level BPE of ``vocab_size`` tokens whose alphabet is the bytes that occur,
so every token is seen in training) or ``bytes`` (the byte alphabet only). One special
token ``<|endoftext|>`` is BOS, EOS and padding; every training sequence starts with it.

Model: ``gpt_neox`` (rotary positions, like Pythia) or ``gpt2`` (learned positions), no
dropout, trained with AdamW, linear warmup then cosine decay to ``min_lr_ratio * lr``.
Optionally (``repeat_frac > 0``) a fraction of the training sequences get one span of
their own text copied further on (length ``repeat_len``): repeated spans mixed in.

Output: ``OUT/step_<n>/`` (``save_pretrained`` of model and tokenizer, plus
``trainer_state.json`` with the step), written to a temporary folder and renamed, so a
killed run never leaves half a checkpoint; ``OUT/recipe.json`` (the recipe, the corpus,
the checkpoint steps) and ``OUT/log.jsonl`` (loss, lr, time; at checkpoints the best
repeated-token induction and previous-token scores and the second-copy loss). Seeded:
the same recipe on the same corpus gives the same checkpoints (CPU, same torch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from mmicl_interp.config import ConfigError
from mmicl_interp.io import atomic_write_text, check_writable_dir, read_json, write_json

SPECIAL = "<|endoftext|>"
ARCHS = ("gpt_neox", "gpt2")
TOKENIZERS = ("bpe", "bytes")
SCHEDULES = ("log", "linear", "loglinear")
BOUNDS = {
    "n_layers": 64, "n_heads": 256, "d_model": 16_384, "d_mlp": 65_536, "ctx": 65_536, "batch_size": 65_536,
    "steps": 100_000_000, "n_checkpoints": 10_000, "held_out_every": 1_000_000, "threads": 1024,
    "log_every": 100_000_000, "probe_n": 32_768, "vocab_size": 1_000_000,
}  # fmt: skip
"""Upper bounds of the recipe's integers (each >= 1)."""
SKIP_DIRS = ("site-packages", "test", "tests", "idle_test", "encodings", "__pycache__", "lib-dynload")


@dataclass
class LMRecipe:
    """Everything that decides a trained series (stored as ``recipe.json``)."""

    arch: str = "gpt_neox"
    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 64
    d_mlp: int = 256
    rotary_pct: float = 0.25
    """GPT-NeoX: the fraction of each head's dimensions that rotary positions rotate (Pythia: 0.25)."""
    ctx: int = 64
    """Training context in tokens, BOS included (also the model's position limit)."""
    batch_size: int = 32
    steps: int = 8000
    lr: float = 6e-3
    warmup: int = 300
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    tokenizer: str = "bpe"
    vocab_size: int = 512
    repeat_frac: float = 1.0
    """Fraction of training sequences with one of their own spans copied further on."""
    repeat_len: list[int] = field(default_factory=lambda: [8, 24])
    """[min, max] length of a copied span (tokens)."""
    repeat_source: str = "text"
    """``text``: the copied span is the sequence's own text; ``random``: it is first replaced
    by random tokens (a repeated random span, as the induction score measures)."""
    n_checkpoints: int = 12
    """Checkpoints besides step 0: log-spaced (``log``), evenly spaced (``linear``) up to
    ``steps``, or ``loglinear``: a third log-spaced up to half the first of the rest, which are
    evenly spaced (dense early and evenly through the run)."""
    schedule: str = "loglinear"
    held_out_every: int = 10
    max_chars: int = 0
    """Use only the first ``max_chars`` characters of the training split (0: all)."""
    seed: int = 0
    threads: int = 1
    """torch threads (a tiny model runs about as fast on one; the result depends on it)."""
    log_every: int = 50
    probe_n: int = 24
    """Half length of the repeated random sequences scored at each checkpoint."""

    def validate(self) -> LMRecipe:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"recipe.{name}", why)

        if self.arch not in ARCHS:
            raise bad("arch", f"must be one of {', '.join(ARCHS)}; got {self.arch!r}")
        if self.tokenizer not in TOKENIZERS:
            raise bad("tokenizer", f"must be one of {', '.join(TOKENIZERS)}; got {self.tokenizer!r}")
        if self.repeat_source not in ("text", "random"):
            raise bad("repeat_source", f"must be text or random; got {self.repeat_source!r}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        for name, high in BOUNDS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
                raise bad(name, f"must be an integer in [1, {high}]; got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise bad("seed", f"must be an integer in [0, {2**63 - 1}]; got {self.seed!r}")
        if self.d_model % self.n_heads:
            raise bad("d_model", f"must be a multiple of n_heads ({self.n_heads}); got {self.d_model}")
        if self.tokenizer == "bpe" and self.vocab_size < 128:
            raise bad("vocab_size", f"must be >= 128 for a BPE tokenizer; got {self.vocab_size}")
        if not 0 <= self.repeat_frac <= 1:
            raise bad("repeat_frac", f"must be in [0, 1]; got {self.repeat_frac}")
        lo_hi = self.repeat_len
        if (
            len(lo_hi) != 2
            or not 1 <= lo_hi[0] <= lo_hi[1]
            or (self.repeat_frac and 2 * lo_hi[1] > self.ctx - 1)
        ):
            raise bad("repeat_len", f"must be [min, max] with 1 <= min <= max <= (ctx - 1) / 2; got {lo_hi}")
        if 2 * self.probe_n + 1 > self.ctx:
            raise bad("probe_n", f"2 * probe_n + 1 must fit in ctx ({self.ctx}); got {self.probe_n}")
        if not self.lr > 0 or self.warmup < 0 or not 0 <= self.min_lr_ratio <= 1 or self.weight_decay < 0:
            raise bad("lr", "lr > 0, warmup >= 0, 0 <= min_lr_ratio <= 1 and weight_decay >= 0 are required")
        if not 0 < self.rotary_pct <= 1:
            raise bad("rotary_pct", f"must be in (0, 1]; got {self.rotary_pct}")
        if self.max_chars < 0:
            raise bad("max_chars", f"must be >= 0; got {self.max_chars}")
        return self

    def checkpoint_steps(self) -> list[int]:
        """Step 0 and ``n_checkpoints`` steps up to ``steps`` (log-spaced or linear)."""
        from mmicl_interp.train.schedule import log_steps

        def linear(k: int) -> set[int]:
            return {round(self.steps * (i + 1) / k) for i in range(k)}

        if self.schedule == "log":
            steps = set(log_steps(self.steps, self.n_checkpoints))
        elif self.schedule == "linear":
            steps = linear(self.n_checkpoints)
        else:  # a third log-spaced below the first linear step, the rest evenly spaced
            n_log = self.n_checkpoints // 3
            n_lin = self.n_checkpoints - n_log
            first = self.steps // n_lin
            early = log_steps(first // 2, n_log) if first > 1 else []
            steps = set(early) | linear(n_lin)
        return sorted({0, self.steps, *steps})


def load_recipe(path: str | Path | None, overrides: dict[str, Any] | None = None) -> LMRecipe:
    """A recipe from a JSON or TOML file (unknown keys refused), with ``overrides`` applied."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError("--recipe", f"{path}: no such file")
        try:
            data = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
            raise ConfigError("--recipe", f"{path}: not valid {path.suffix[1:] or 'JSON'} ({err})") from None
        data = data.get("recipe", data)
    data = {**data, **(overrides or {})}
    known = {f.name for f in dataclasses.fields(LMRecipe)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            "--recipe", f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return LMRecipe(**data).validate()


# ---------------------------------------------------------------------- corpus
def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> list[str]:
    """The sorted relative paths of the standard library's ``.py`` files used as text."""
    root = root or stdlib_root()
    out = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS for part in rel.parts[:-1]):
            continue
        if rel.name.startswith("_sysconfigdata") or rel.parts[0].startswith("config-"):
            continue
        out.append(rel.as_posix())
    return sorted(out)


def is_held_out(rel: str, every: int) -> bool:
    return int(hashlib.sha1(rel.encode()).hexdigest(), 16) % every == 0


@dataclass
class Corpus:
    train: list[str]
    held_out: list[str]
    info: dict[str, Any]


def read_corpus(recipe: LMRecipe, root: Path | None = None) -> Corpus:
    """The training and held-out texts (one string per file) and what identifies them."""
    root = root or stdlib_root()
    files = stdlib_files(root)
    if not files:
        raise ConfigError("corpus", f"no .py files under {root} (the Python standard library)")
    train, held = [], []
    for rel in files:
        text = (root / rel).read_text(encoding="utf-8", errors="replace")
        (held if is_held_out(rel, recipe.held_out_every) else train).append(text)
    if recipe.max_chars:
        kept, total = [], 0
        for text in train:
            if total >= recipe.max_chars:
                break
            kept.append(text[: recipe.max_chars - total])
            total += len(kept[-1])
        train = kept
    info = {
        "source": "python-stdlib",
        "python": sys.version.split()[0],
        "root": str(root),
        "n_files": len(files),
        "n_train_files": sum(not is_held_out(r, recipe.held_out_every) for r in files),
        "n_held_out_files": sum(is_held_out(r, recipe.held_out_every) for r in files),
        "train_chars": sum(map(len, train)),
        "held_out_chars": sum(map(len, held)),
        "files_sha1": hashlib.sha1("\n".join(files).encode()).hexdigest(),
    }
    return Corpus(train, held, info)


def held_out_texts(held_out_every: int = 10, root: Path | None = None) -> list[str]:
    """The held-out split's texts (what ``mmicl series`` reads by default for the in-context loss)."""
    root = root or stdlib_root()
    return [
        (root / rel).read_text(encoding="utf-8", errors="replace")
        for rel in stdlib_files(root)
        if is_held_out(rel, held_out_every)
    ]


# ---------------------------------------------------------------------- tokenizer
def train_tokenizer(texts: list[str], kind: str, vocab_size: int):
    """A byte-level ``PreTrainedTokenizerFast`` trained on ``texts`` (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    if kind == "bytes":
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        trainer = trainers.BpeTrainer(
            vocab_size=len(alphabet) + 1,
            special_tokens=[SPECIAL],
            initial_alphabet=alphabet,
            show_progress=False,
        )
    else:
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[SPECIAL], show_progress=False)
    tk.train_from_iterator(texts, trainer=trainer)
    bos = tk.token_to_id(SPECIAL)
    tk.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL} $A", pair=f"{SPECIAL} $A {SPECIAL} $B", special_tokens=[(SPECIAL, bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token=SPECIAL,
        eos_token=SPECIAL,
        pad_token=SPECIAL,
        unk_token=SPECIAL,
        add_bos_token=True,
        name_or_path="mmicl-stdlib-lm",
        model_max_length=10**6,
    )


def encode_stream(tokenizer: Any, texts: list[str]):
    """One token stream: each text's tokens followed by ``<|endoftext|>``."""
    import torch

    eos = tokenizer.convert_tokens_to_ids(SPECIAL)
    backend = tokenizer.backend_tokenizer
    encoded = backend.encode_batch(texts, add_special_tokens=False)
    parts = []
    for enc in encoded:
        parts.append(np.asarray(enc.ids, dtype=np.int64))
        parts.append(np.asarray([eos], dtype=np.int64))
    return torch.from_numpy(np.concatenate(parts))


# ---------------------------------------------------------------------- model
def build_model(recipe: LMRecipe, vocab_size: int, special_id: int):
    """A fresh Hugging Face causal LM of ``recipe.arch`` (initialised from ``recipe.seed``), with no
    dropout and ``<|endoftext|>`` as its bos, eos and pad token."""
    import torch
    import transformers

    torch.manual_seed(recipe.seed)
    shared = dict(
        vocab_size=vocab_size, bos_token_id=special_id, eos_token_id=special_id, pad_token_id=special_id
    )
    if recipe.arch == "gpt_neox":
        config = transformers.GPTNeoXConfig(
            hidden_size=recipe.d_model,
            num_hidden_layers=recipe.n_layers,
            num_attention_heads=recipe.n_heads,
            intermediate_size=recipe.d_mlp,
            max_position_embeddings=recipe.ctx,
            rotary_pct=recipe.rotary_pct,
            hidden_dropout=0.0,
            attention_dropout=0.0,
            use_parallel_residual=True,
            tie_word_embeddings=False,
            **shared,
        )
        return transformers.GPTNeoXForCausalLM(config)
    config = transformers.GPT2Config(
        n_embd=recipe.d_model,
        n_layer=recipe.n_layers,
        n_head=recipe.n_heads,
        n_inner=recipe.d_mlp,
        n_positions=recipe.ctx,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        **shared,
    )
    return transformers.GPT2LMHeadModel(config)


def lr_at(recipe: LMRecipe, step: int) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to ``min_lr_ratio * lr``."""
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    span = max(1, recipe.steps - recipe.warmup)
    progress = min(1.0, (step - recipe.warmup) / span)
    floor = recipe.min_lr_ratio
    return recipe.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_batch(stream, recipe: LMRecipe, gen, bos: int, vocab: int | None = None):
    """``batch_size`` sequences ``[bos] + ctx - 1`` stream tokens at random offsets; with
    ``repeat_frac``, some get a span of their own copied further on (vectorised); with
    ``repeat_source = "random"`` the span is random tokens below ``vocab`` (but ``bos``)."""
    import torch

    body = recipe.ctx - 1
    starts = torch.randint(0, len(stream) - body, (recipe.batch_size,), generator=gen)
    idx = starts[:, None] + torch.arange(body)[None, :]
    seqs = stream[idx]
    if recipe.repeat_frac > 0:
        b = recipe.batch_size
        chosen = torch.rand(b, generator=gen) < recipe.repeat_frac
        lo, hi = recipe.repeat_len
        m = torch.randint(lo, hi + 1, (b,), generator=gen)
        src = (torch.rand(b, generator=gen) * (body - 2 * m + 1)).long()  # src + 2m <= body
        dst = src + m + (torch.rand(b, generator=gen) * (body - src - 2 * m + 1)).long()
        pos = torch.arange(body)[None, :]
        if recipe.repeat_source == "random":
            if vocab is None:
                raise ValueError("repeat_source random needs the vocabulary size")
            noise = torch.randint(0, vocab - 1, seqs.shape, generator=gen)
            noise = noise + (noise >= bos).long()  # never the BOS token
            span = chosen[:, None] & (pos >= src[:, None]) & (pos < (src + m)[:, None])
            seqs = torch.where(span, noise.to(seqs.dtype), seqs)
        inside = chosen[:, None] & (pos >= dst[:, None]) & (pos < (dst + m)[:, None])
        source = torch.where(inside, pos - (dst - src)[:, None], pos)
        seqs = seqs.gather(1, source)
    return torch.cat([torch.full((recipe.batch_size, 1), bos, dtype=seqs.dtype), seqs], dim=1)


@dataclass
class TrainLMResult:
    out: Path
    steps: list[int]
    wall_time_s: float
    log: list[dict]
    already_complete: bool = False


def _save_checkpoint(model, tokenizer, out: Path, step: int, extra: dict) -> Path:
    """``save_pretrained`` into a temporary folder, then rename it to ``OUT/step_<n>``."""
    final = out / f"step_{step}"
    tmp = out / f".step_{step}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_json(tmp / "trainer_state.json", {"step": step, **extra})
    mask = os.umask(0)
    os.umask(mask)
    for path in tmp.iterdir():  # save_pretrained may write 0600 files: give them the usual permissions
        os.chmod(path, 0o666 & ~mask)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def _probe(model, seqs, n: int) -> dict[str, float]:
    from mmicl_interp.real.repeated import best_head, hf_repeated_scores

    scores = hf_repeated_scores(model, seqs, n)
    layer, head, ih = best_head(
        scores["rep_induction"], min_layer=1 if model.config.num_hidden_layers > 1 else 0
    )
    pl, ph, prev = best_head(scores["rep_prev_token"])
    return {
        "best_induction": round(ih, 4),
        "best_induction_head": f"L{layer}H{head}",
        "best_prev_token": round(prev, 4),
        "best_prev_token_head": f"L{pl}H{ph}",
        "rep_loss_first": round(scores["rep_loss_first"], 4),
        "rep_loss_second": round(scores["rep_loss_second"], 4),
    }


def train_lm(
    recipe: LMRecipe,
    out: str | Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    corpus_root: Path | None = None,
) -> TrainLMResult:
    """Train ``recipe`` into ``out`` (see the module docstring). An ``out`` holding another
    recipe's series is refused (ConfigError); one holding this recipe's complete series is
    left as it is."""
    import torch
    import torch.nn.functional as F

    from mmicl_interp.progress import progress_bar
    from mmicl_interp.real.repeated import ordinary_token_ids, repeated_tokens

    out = check_writable_dir(Path(out), "--out")
    steps = recipe.checkpoint_steps()
    recipe_file = out / "recipe.json"
    mine = dataclasses.asdict(recipe)
    if recipe_file.is_file():
        old = read_json(recipe_file)
        if old.get("recipe") != mine:
            raise ConfigError("--out", f"{out} holds a series of another recipe; give another --out")
        if old.get("complete") and all((out / f"step_{s}" / "config.json").is_file() for s in steps):
            return TrainLMResult(out, steps, 0.0, [], already_complete=True)
    elif any(out.glob("step_*")):
        raise ConfigError("--out", f"{out} holds step_* folders but no recipe.json; give an empty folder")

    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    t0 = time.time()
    try:
        corpus = read_corpus(recipe, corpus_root)
        tokenizer = train_tokenizer(corpus.train, recipe.tokenizer, recipe.vocab_size)
        special = tokenizer.convert_tokens_to_ids(SPECIAL)
        stream = encode_stream(tokenizer, corpus.train)
        held = encode_stream(tokenizer, corpus.held_out)
        info = {**corpus.info, "train_tokens": len(stream), "held_out_tokens": len(held)}
        meta = {"recipe": mine, "corpus": info, "checkpoint_steps": steps, "vocab_size": len(tokenizer),
                "repeats_mixed_in": recipe.repeat_frac > 0, "complete": False}  # fmt: skip
        write_json(recipe_file, meta)
        log(
            f"corpus: {info['n_train_files']} train / {info['n_held_out_files']} held-out files of Python "
            f"{info['python']}'s standard library, {len(stream):,} train tokens (vocab {len(tokenizer)})"
        )
        model = build_model(recipe, len(tokenizer), special)
        model.train()
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": recipe.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=recipe.lr,
            betas=(0.9, 0.95),
        )
        gen = torch.Generator().manual_seed(recipe.seed)
        probe_ids = ordinary_token_ids(tokenizer, len(tokenizer))
        probe = repeated_tokens(probe_ids, recipe.probe_n, 16, special, seed=recipe.seed + 1)
        held_gen = torch.Generator().manual_seed(recipe.seed + 2)
        held_batch = make_batch(
            held, dataclasses.replace(recipe, repeat_frac=0.0, batch_size=32), held_gen, special
        )
        records: list[dict] = []
        bar = progress_bar(recipe.steps, "training", progress, unit="step")
        want = set(steps)
        running = None

        def checkpoint(step: int) -> None:
            model.eval()
            with torch.no_grad():
                ones = torch.ones_like(held_batch)
                held_loss = float(model(input_ids=held_batch, attention_mask=ones, labels=held_batch).loss)
            record = {
                "step": step,
                "time_s": round(time.time() - t0, 1),
                "train_loss": None if running is None else round(running, 4),
                "held_out_loss": round(held_loss, 4),
                **_probe(model, probe, recipe.probe_n),
            }
            model.train()
            _save_checkpoint(model, tokenizer, out, step, {"held_out_loss": record["held_out_loss"]})
            records.append(record)
            atomic_write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in records))
            log(
                f"step {step:>6}  train {running if running is not None else float('nan'):.3f}  "
                f"held-out {held_loss:.3f}  induction {record['best_induction']:.3f} "
                f"({record['best_induction_head']})  prev-token {record['best_prev_token']:.3f}  "
                f"2nd-copy loss {record['rep_loss_second']:.2f} (1st {record['rep_loss_first']:.2f})  "
                f"[{record['time_s']:.0f} s]"
            )

        if 0 in want:
            checkpoint(0)
        try:
            for step in range(1, recipe.steps + 1):
                for group in opt.param_groups:
                    group["lr"] = lr_at(recipe, step - 1)
                batch = make_batch(stream, recipe, gen, special, len(tokenizer))
                logits = model(input_ids=batch, attention_mask=torch.ones_like(batch)).logits
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                value = float(loss.detach())
                running = value if running is None else 0.95 * running + 0.05 * value
                bar.update(1)
                if step % recipe.log_every == 0:
                    bar.set_postfix_str(f"loss {running:.3f}")
                if step in want:
                    checkpoint(step)
        finally:
            bar.close()
        meta["complete"] = True
        meta["wall_time_s"] = round(time.time() - t0, 1)
        write_json(recipe_file, meta)
    finally:
        torch.set_num_threads(threads)
    return TrainLMResult(out, steps, time.time() - t0, records)


def series_size_bytes(out: str | Path) -> int:
    """Total bytes of the series' ``*.safetensors`` files."""
    return sum(p.stat().st_size for p in Path(out).glob("step_*/*.safetensors"))


__all__ = [
    "LMRecipe",
    "TrainLMResult",
    "build_model",
    "encode_stream",
    "held_out_texts",
    "load_recipe",
    "read_corpus",
    "stdlib_files",
    "train_lm",
    "train_tokenizer",
]
