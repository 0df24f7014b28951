"""``mmicl heads`` and ``mmicl knockout``: the commands on a real model (see cli.py for the options).

Every input is checked before the model loads where it can be (the prompt spec and file,
shots, ways, heads syntax, the output folder), the rest right after loading (heads in
range, labels in the vocabulary); bad input raises ConfigError, one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmicl_interp.config import ConfigError
from mmicl_interp.io import (
    WriteFailed,
    atomic_write,
    atomic_write_text,
    check_writable,
    check_writable_dir,
    describe_write_error,
    is_write_error,
    read_json,
    write_json,
    write_remedy,
)

IMAGE_KINDS = ("images", "open_mi")
PROMPT_SPECS = (
    "text, text:flipped, text:[flipped:]FILE (.json/.jsonl/.csv with item,label), images:DIR, open_mi:DIR"
)


def default_out(model: str, spec: str) -> Path:
    """``real/<model>_<prompt set>`` with the names made file-safe."""
    path = Path(model)
    name = path.name if path.exists() else model.replace("/", "__")
    kind = spec.split(":")[0] + ("_flipped" if spec.startswith("text:flipped") else "")
    return Path("real") / re.sub(r"[^A-Za-z0-9._-]+", "_", f"{name}_{kind}")


def check_spec(spec: str, *, shots: int, ways: int, n_prompts: int, seed: int) -> Any:
    """Validate ``--prompts`` before loading the model; returns the text prompts (or None for images)."""
    kind = spec.split(":", 1)[0]
    if kind == "text":
        from mmicl_interp.real.text import prompt_texts

        return prompt_texts(spec, shots=shots, ways=ways, n_prompts=n_prompts, seed=seed)
    if kind in IMAGE_KINDS:
        folder = spec.split(":", 1)[1] if ":" in spec else ""
        if not folder or not Path(folder).is_dir():
            raise ConfigError(
                "--prompts", f"{spec!r}: {kind} needs a folder, e.g. {kind}:DIR; {folder!r} is none"
            )
        return None
    raise ConfigError("--prompts", f"must be one of {PROMPT_SPECS}; got {spec!r}")


def build_prompts(loaded: Any, spec: str, texts: Any, *, shots: int, ways: int, n_prompts: int, seed: int):
    """The :class:`~mmicl_interp.prompts.ICLPrompts` of ``spec`` for the loaded model."""
    kind = spec.split(":", 1)[0]
    if kind == "text":
        from mmicl_interp.real.text import tokenize_prompts

        return tokenize_prompts(texts, loaded.tokenizer)
    if not loaded.is_vlm:
        raise ConfigError(
            "--prompts", f"{kind} prompts need a vision-language model; {loaded.name} is a text model"
        )
    from mmicl_interp.real.images import build_image_prompts  # says so when pillow is missing

    return build_image_prompts(loaded, spec, shots=shots, ways=ways, n_prompts=n_prompts, seed=seed)


def prompt_records(prompts: Any, tokenizer: Any) -> list[dict]:
    """Per prompt what ``prompts.jsonl`` holds: ids, spans, read-out, target, candidates."""
    real = prompts.real_tokens()
    tokens = getattr(prompts.readout, "label_tokens", None)
    records = []
    for b in range(len(prompts)):
        n_real = int(real[b].sum())
        ids = prompts.inputs[b, :n_real].tolist()
        labels = prompts.label_spans[b].tolist()
        context = prompts.context_labels[b].tolist()
        first = None
        if tokens is not None:
            first = (tokens[b] if tokens.ndim == 2 else tokens).tolist()
        names = {}
        for (s, e), c in zip(labels, context, strict=True):
            if e > s:
                names.setdefault(c, _decode(tokenizer, ids[s:e]))
        n_labels = len(first) if first is not None else (max(context) + 1 if context else 0)
        record = {
            "index": b,
            "input_ids": ids,
            "text": _decode(tokenizer, ids),
            "item_spans": {m: s[b].tolist() for m, s in prompts.item_spans.items()},
            "label_spans": labels,
            "readout_position": int(prompts.readout_position[b]),
            "target": int(prompts.targets[b]),
            "alternative": None if prompts.alternatives is None else int(prompts.alternatives[b]),
            "context_labels": context,
            "matches": prompts.matches[b].tolist(),
            "candidates": [
                names.get(c, _decode(tokenizer, [first[c]]) if first else "") for c in range(n_labels)
            ],
            "label_tokens": first,
        }
        records.append(record)
    return records


def _decode(tokenizer: Any, ids: list[int]) -> str:
    try:
        return tokenizer.decode(ids).strip()
    except Exception:  # a processor without decode: the ids still say everything
        return ""


def write_prompts_jsonl(path: Path, prompts: Any, tokenizer: Any) -> None:
    lines = [json.dumps(r) for r in prompt_records(prompts, tokenizer)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_parquet(path: Path, table: Any) -> None:
    atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))


def _load(args: argparse.Namespace, device: Any):
    from mmicl_interp.real.load import load_model, torch_dtype

    torch_dtype(args.dtype)  # checked before the slow load
    return load_model(args.model, device=device or "cpu", dtype=args.dtype, progress=not args.quiet)


def _top_k(k: int, model: Any) -> int:
    total = model.cfg.n_layers * model.cfg.n_heads
    if k > total:
        raise ConfigError(
            "--top-k", f"must be an integer in [1, {total}] (the model has {total} heads); got {k}"
        )
    return k


HEADS_RECORD = "heads.json"
"""The settings behind ``heads.parquet`` and the other files ``mmicl heads`` writes in a folder."""
HEADS_FILES = ("heads.parquet", "prompts.jsonl", "knockout.parquet", "report.html")
RESULT_KEYS = ("model", "prompts", "shots", "ways", "n_prompts", "seed", "dtype")
"""The options that change the prompts or the numbers (device and batch size do not)."""
OUTPUT_BYTES = 16e6
"""About what one command's files take (the HTML page inlines plotly)."""


def _settings(args: argparse.Namespace, **more: Any) -> dict[str, Any]:
    return {**{key: getattr(args, key) for key in RESULT_KEYS}, **more}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    diffs = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]
    return "; ".join(diffs[:3]) or "settings differ"


def _check_previous(record: Path, result: Path, settings: dict[str, Any], force: bool, what: str) -> None:
    """Refuse, unless ``force``, to replace ``result`` when its ``record`` says it came from other
    settings (or has no record): results are never replaced silently."""
    if force or not result.exists():
        return
    try:
        old = read_json(record) if record.is_file() else None
    except Exception:
        old = None
    if isinstance(old, dict) and {k: old.get(k) for k in settings} == settings:
        return  # the same settings: rerunning gives the same files
    why = _differences(old, settings) if isinstance(old, dict) else f"no {record.name} records them"
    raise ConfigError(
        "--out",
        f"{result.parent} holds {what} of other settings ({why}); give another --out, or add --force "
        "to replace them",
    )


@contextmanager
def _output_folder(args: argparse.Namespace) -> Iterator[Path]:
    """The output folder, checked (writable, room for the files) before any work; when the check
    or the work inside fails, a folder this command made is removed again if it is empty."""
    out = Path(args.out) if args.out else default_out(args.model, args.prompts)
    existed = out.exists()
    check_writable_dir(out, "--out")
    try:
        check_writable(out / ".mmicl-check", "--out", OUTPUT_BYTES)
        yield out
    except BaseException:
        _cleanup_on_failure(out, existed)
        raise


class _Writes:
    """The files one command writes, in order; a write that fails (disk full, permission) becomes
    one line naming it and what was already written."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.done: list[Path] = []

    def __call__(self, path: Path, write) -> Path:
        try:
            result = write()
        except OSError as err:
            if not is_write_error(err):
                raise
            kept = ", ".join(p.name for p in self.done) or "nothing new"
            raise WriteFailed(
                f"{describe_write_error(err)}; written before it in {self.folder}: {kept} (files there "
                f"from earlier commands are unchanged); {write_remedy(err)} and rerun the same command"
            ) from None
        path = Path(result) if isinstance(result, (str, Path)) else path
        self.done.append(path)
        return path


def _note_capped(args: argparse.Namespace, prompts: Any) -> None:
    """Say so when a fixed prompt set has fewer prompts than ``--n-prompts`` asked for."""
    if len(prompts) < args.n_prompts:
        print(
            f"--n-prompts: {args.prompts} has {len(prompts)} prompts, fewer than the {args.n_prompts} asked "
            f"for; using all {len(prompts)}"
        )


def _cleanup_on_failure(out: Path, existed: bool) -> None:
    if not existed:
        try:
            out.rmdir()  # only when empty: a failed command leaves no empty folder behind
        except OSError:
            pass


def knockout_name(args: argparse.Namespace, n_prompts: int) -> str:
    """``knockout_<method>_<heads or topK>_<shots>shot<ways>way_n<prompts>_seed<S>``: every option
    that changes the result, so knockouts with other options never replace each other."""
    which = f"top{args.top_k}" if args.heads is None else args.heads.replace(",", "-")
    return f"knockout_{args.method}_{which}_{args.shots}shot{args.ways}way_n{n_prompts}_seed{args.seed}"


def print_top_heads(measures: dict, accuracy: float, n: int, chance: float, k: int = 5) -> None:
    from rich.table import Table

    from mmicl_interp.real.heads import min_layer_of, top_heads
    from mmicl_interp.report.causal import plain_console

    table = Table(title=f"top heads (n = {n} prompts; accuracy {accuracy:.3f}, chance {chance:.3f})")
    table.add_column("metric", no_wrap=True)
    for rank in range(1, k + 1):
        table.add_column(f"#{rank}", justify="right", overflow="fold")
    for metric, values in measures.items():
        best = top_heads(values, k, min_layer_of(metric, values.shape[0]))
        cells = [f"L{layer}H{head} {float(values[layer, head]):.3f}" for layer, head in best]
        table.add_row(metric, *cells)
    plain_console().print(table)


def print_knockouts(table: Any) -> None:
    from rich.table import Table

    from mmicl_interp.real.knockout import accuracy_summary
    from mmicl_interp.report.causal import plain_console

    summary = accuracy_summary(table)
    out = Table(title="accuracy with heads knocked out (random: mean [2.5%, 97.5%] of the draws)")
    for column in ("method", "group", "heads", "clean", "ablated"):
        justify = "right" if column in ("clean", "ablated") else "left"
        out.add_column(column, justify=justify, overflow="fold")
    for _, r in summary.iterrows():
        ablated = f"{r['ablated']:.3f}"
        if r["group"] == "random":
            ablated += f" [{r['low']:.3f}, {r['high']:.3f}]"
        out.add_row(r["method"], r["group"], str(r["heads"]), f"{r['clean']:.3f}", ablated)
    plain_console().print(out)


def run_heads(args: argparse.Namespace, device: Any) -> int:
    """``mmicl heads``: scores, prompts.jsonl, knockouts (``--top-k``), optional patching, report.

    Its files in ``--out`` (heads.parquet, prompts.jsonl, knockout.parquet, report.html) are
    recorded with their settings in ``heads.json``; a folder holding them from other settings is
    refused unless ``--force`` (then they are replaced)."""
    from mmicl_interp.real.load import check_model_source

    if args.top_k < 0:
        raise ConfigError("--top-k", f"must be >= 0 (0 skips the knockouts); got {args.top_k}")
    check_model_source(args.model)  # before the slow imports: an unreachable hub fails in seconds
    options = dict(shots=args.shots, ways=args.ways, n_prompts=args.n_prompts, seed=args.seed)
    texts = check_spec(args.prompts, **options)
    settings = _settings(args, top_k=args.top_k, n_random=args.n_random, patch=bool(args.patch))
    out = Path(args.out) if args.out else default_out(args.model, args.prompts)
    _check_previous(out / HEADS_RECORD, out / "heads.parquet", settings, args.force, "`mmicl heads` results")
    with _output_folder(args) as out:
        return _run_heads(args, device, texts, options, settings, out)


def _run_heads(args, device, texts, options, settings, out: Path) -> int:
    from mmicl_interp.real import heads as H
    from mmicl_interp.real import knockout as K
    from mmicl_interp.real.report import build_real_report

    loaded = _load(args, device)
    model = loaded.bridge
    if args.top_k:
        _top_k(args.top_k, model)
    prompts = build_prompts(loaded, args.prompts, texts, **options)
    _note_capped(args, prompts)
    scores = H.score_heads(model, prompts, args.batch_size, progress=not args.quiet)
    patching = None
    if args.patch:
        patching, _ = K.patch_heads(model, prompts, args.batch_size, progress=not args.quiet)
    write = _Writes(out)
    record = out / HEADS_RECORD
    if record.is_file():  # replacing (same settings, or --force): the record goes first
        write(record, lambda: record.unlink())
        write.done.clear()
    heads_table = H.heads_table(scores, loaded.name, args.prompts, patching)
    jsonl = out / "prompts.jsonl"
    write(jsonl, lambda: write_prompts_jsonl(jsonl, prompts, loaded.tokenizer))
    write(out / "heads.parquet", lambda: write_parquet(out / "heads.parquet", heads_table))
    chance = 1 / prompts.readout.label_tokens.shape[-1] if prompts.readout is not None else None
    print_top_heads(scores.measures, scores.accuracy, len(prompts), chance or 0.0)
    if args.top_k:
        table = K.knockout_table(
            model,
            prompts,
            measures=scores.measures,
            top_k=args.top_k,
            n_random=args.n_random,
            seed=args.seed,
            batch_size=args.batch_size,
            model_name=loaded.name,
            prompt_set=args.prompts,
            progress=not args.quiet,
        )
        write(out / "knockout.parquet", lambda: write_parquet(out / "knockout.parquet", table))
        print_knockouts(table)
    elif (out / "knockout.parquet").is_file():  # an earlier scoring's (replaced with --force)
        (out / "knockout.parquet").unlink()
    write(out / "report.html", lambda: build_real_report(out, chance=chance, knockout=bool(args.top_k)))
    write(record, lambda: write_json(record, settings))
    print("wrote " + ", ".join(str(p) for p in write.done if p != record))
    return 0


KNOCKOUT_METHODS = ("zero", "mean")


def run_knockout(args: argparse.Namespace, device: Any) -> int:
    """``mmicl knockout``: knock out given or top-k heads against random draws.

    Writes ``knockout_<method>_<heads>_..._seed<S>.parquet`` and ``.html`` (:func:`knockout_name`)
    with their settings in ``.json``: never the files of ``mmicl heads`` or of a knockout with
    other options. The same name from another model or prompt set is refused unless ``--force``."""
    from mmicl_interp.real.load import check_model_source

    if args.method not in KNOCKOUT_METHODS:
        raise ConfigError("--method", f"must be one of {', '.join(KNOCKOUT_METHODS)}; got {args.method!r}")
    if args.n_random < 10:
        raise ConfigError("--n-random", "must be >= 10 (the control needs an interval)")
    check_model_source(args.model)  # before the slow imports: an unreachable hub fails in seconds
    from mmicl_interp.analyses.ablation import parse_heads

    heads = None
    if args.heads is not None:
        try:
            heads = parse_heads(args.heads)
        except ValueError as err:
            raise ConfigError("--heads", str(err).removeprefix("heads: ")) from None
    options = dict(shots=args.shots, ways=args.ways, n_prompts=args.n_prompts, seed=args.seed)
    texts = check_spec(args.prompts, **options)
    with _output_folder(args) as out:
        return _run_knockout(args, device, heads, texts, options, out)


def _run_knockout(args, device, heads, texts, options, out: Path) -> int:
    from mmicl_interp.analyses.ablation import check_heads
    from mmicl_interp.real import heads as H
    from mmicl_interp.real import knockout as K
    from mmicl_interp.real.report import build_knockout_report

    loaded = _load(args, device)
    model = loaded.bridge
    if heads is not None:
        try:
            heads = check_heads(heads, model)
        except ValueError as err:
            raise ConfigError("--heads", str(err).removeprefix("heads: ")) from None
    else:
        _top_k(args.top_k, model)
    prompts = build_prompts(loaded, args.prompts, texts, **options)
    name = knockout_name(args, len(prompts))
    _note_capped(args, prompts)
    settings = _settings(args, n_prompts=len(prompts), n_random=args.n_random, method=args.method,
                         heads=args.heads, top_k=args.top_k)  # fmt: skip
    record = out / f"{name}.json"
    _check_previous(record, out / f"{name}.parquet", settings, args.force, f"{name}.parquet")
    measures = None
    if heads is None:
        measures = H.score_heads(model, prompts, args.batch_size, progress=not args.quiet).measures
    table = K.knockout_table(
        model, prompts, measures=measures, top_k=args.top_k if heads is None else None, heads=heads,
        methods=(args.method,), n_random=args.n_random, seed=args.seed, batch_size=args.batch_size,
        model_name=loaded.name, prompt_set=args.prompts, progress=not args.quiet,
    )  # fmt: skip
    write = _Writes(out)
    if record.is_file():  # replacing (same settings, or --force): the record goes first
        write(record, lambda: record.unlink())
        write.done.clear()
    parquet, html = out / f"{name}.parquet", out / f"{name}.html"
    write(parquet, lambda: write_parquet(parquet, table))
    print_knockouts(table)
    chance = 1 / prompts.readout.label_tokens.shape[-1] if prompts.readout is not None else None
    heads_record = out / HEADS_RECORD
    same_prompts = False
    if heads_record.is_file():
        try:
            theirs = read_json(heads_record)
            same_prompts = {k: theirs.get(k) for k in RESULT_KEYS} == {k: settings[k] for k in RESULT_KEYS}
        except Exception:
            same_prompts = False
    heads_file = out / "heads.parquet" if same_prompts else None  # its heatmaps, when of these prompts
    write(html, lambda: build_knockout_report(table, html, chance=chance, heads_file=heads_file))
    write(record, lambda: write_json(record, settings))
    print("wrote " + ", ".join(str(p) for p in write.done if p != record))
    return 0


__all__ = ["build_prompts", "check_spec", "default_out", "prompt_records", "run_heads", "run_knockout"]
