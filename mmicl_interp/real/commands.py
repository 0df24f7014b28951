"""``mmicl heads`` and ``mmicl knockout``: the commands on a real model (see cli.py for the options).

Every input is checked before the model loads where it can be (the prompt spec and file,
shots, ways, heads syntax, the output folder), the rest right after loading (heads in
range, labels in the vocabulary); bad input raises ConfigError, one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from mmicl_interp.config import ConfigError
from mmicl_interp.io import atomic_write, atomic_write_text, check_writable_dir

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
        raise ConfigError("--top-k", f"the model has {total} heads; got {k}")
    return k


def print_top_heads(measures: dict, accuracy: float, n: int, chance: float, k: int = 5) -> None:
    from rich.console import Console
    from rich.table import Table

    from mmicl_interp.real.heads import top_heads

    table = Table(title=f"top heads (n = {n} prompts; accuracy {accuracy:.3f}, chance {chance:.3f})")
    table.add_column("metric", no_wrap=True)
    for rank in range(1, k + 1):
        table.add_column(f"#{rank}", justify="right")
    for metric, values in measures.items():
        cells = [f"L{layer}H{head} {float(values[layer, head]):.3f}" for layer, head in top_heads(values, k)]
        table.add_row(metric, *cells)
    Console().print(table)


def print_knockouts(table: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from mmicl_interp.real.knockout import accuracy_summary

    summary = accuracy_summary(table)
    out = Table(title="accuracy with heads knocked out (random: mean [2.5%, 97.5%] of the draws)")
    for column in ("method", "group", "heads", "clean", "ablated"):
        out.add_column(column, justify="right" if column in ("clean", "ablated") else "left")
    for _, r in summary.iterrows():
        ablated = f"{r['ablated']:.3f}"
        if r["group"] == "random":
            ablated += f" [{r['low']:.3f}, {r['high']:.3f}]"
        out.add_row(r["method"], r["group"], str(r["heads"]), f"{r['clean']:.3f}", ablated)
    Console().print(out)


def run_heads(args: argparse.Namespace, device: Any) -> int:
    """``mmicl heads``: scores, prompts.jsonl, knockouts (``--top-k``), optional patching, report."""
    from mmicl_interp.real import heads as H
    from mmicl_interp.real import knockout as K
    from mmicl_interp.real.report import build_real_report

    if args.top_k < 0:
        raise ConfigError("--top-k", f"must be >= 0 (0 skips the knockouts); got {args.top_k}")
    options = dict(shots=args.shots, ways=args.ways, n_prompts=args.n_prompts, seed=args.seed)
    texts = check_spec(args.prompts, **options)
    out = check_writable_dir(Path(args.out) if args.out else default_out(args.model, args.prompts), "--out")
    loaded = _load(args, device)
    model = loaded.bridge
    if args.top_k:
        _top_k(args.top_k, model)
    prompts = build_prompts(loaded, args.prompts, texts, **options)
    write_prompts_jsonl(out / "prompts.jsonl", prompts, loaded.tokenizer)
    scores = H.score_heads(model, prompts, args.batch_size, progress=not args.quiet)
    patching = None
    if args.patch:
        patching, _ = K.patch_heads(model, prompts, args.batch_size, progress=not args.quiet)
    write_parquet(out / "heads.parquet", H.heads_table(scores, loaded.name, args.prompts, patching))
    chance = 1 / prompts.readout.label_tokens.shape[-1] if prompts.readout is not None else None
    print_top_heads(scores.measures, scores.accuracy, len(prompts), chance or 0.0)
    written = [out / "heads.parquet", out / "prompts.jsonl"]
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
        write_parquet(out / "knockout.parquet", table)
        print_knockouts(table)
        written.append(out / "knockout.parquet")
    # without --top-k an older knockout.parquet in DIR belongs to another scoring: not in this report
    written.append(build_real_report(out, chance=chance, knockout=bool(args.top_k)))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def run_knockout(args: argparse.Namespace, device: Any) -> int:
    """``mmicl knockout``: knock out given or top-k heads against random draws; knockout.parquet."""
    from mmicl_interp.analyses.ablation import check_heads, parse_heads
    from mmicl_interp.real import heads as H
    from mmicl_interp.real import knockout as K
    from mmicl_interp.real.report import build_real_report

    if args.method not in K.METHODS:
        raise ConfigError("--method", f"must be one of {', '.join(K.METHODS)}; got {args.method!r}")
    if args.n_random < K.MIN_RANDOM_DRAWS:
        raise ConfigError("--n-random", f"must be >= {K.MIN_RANDOM_DRAWS} (the control needs an interval)")
    heads = None
    if args.heads is not None:
        try:
            heads = parse_heads(args.heads)
        except ValueError as err:
            raise ConfigError("--heads", str(err).removeprefix("heads: ")) from None
    options = dict(shots=args.shots, ways=args.ways, n_prompts=args.n_prompts, seed=args.seed)
    texts = check_spec(args.prompts, **options)
    out = check_writable_dir(Path(args.out) if args.out else default_out(args.model, args.prompts), "--out")
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
    measures = None
    if heads is None:
        measures = H.score_heads(model, prompts, args.batch_size, progress=not args.quiet).measures
    table = K.knockout_table(
        model, prompts, measures=measures, top_k=args.top_k if heads is None else None, heads=heads,
        methods=(args.method,), n_random=args.n_random, seed=args.seed, batch_size=args.batch_size,
        model_name=loaded.name, prompt_set=args.prompts, progress=not args.quiet,
    )  # fmt: skip
    write_parquet(out / "knockout.parquet", table)
    print_knockouts(table)
    written = [out / "knockout.parquet"]
    if (out / "heads.parquet").is_file():
        chance = 1 / prompts.readout.label_tokens.shape[-1] if prompts.readout is not None else None
        written.append(build_real_report(out, chance=chance))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


__all__ = ["build_prompts", "check_spec", "default_out", "prompt_records", "run_heads", "run_knockout"]
