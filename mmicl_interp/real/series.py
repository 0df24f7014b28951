"""``mmicl series``: head and in-context-learning measures over a checkpoint series of a
Hugging Face causal LM, one tidy table per checkpoint.

Sources: local folders (``ckpts/step_*``, a quoted glob or the shell's expansion, or a
folder holding ``step_*`` folders), the step read from the folder name ``step_<n>`` (or
``step<n>``, ``checkpoint-<n>``) or else from a ``step`` / ``global_step`` in the folder's
``trainer_state.json`` or ``config.json``; or a hub name with ``--revisions
step1000,step2000`` (each revision's files fetched with ``huggingface_hub`` into the local
cache, the step read from the revision name); finding and checking them is
:mod:`~mmicl_interp.real.series_sources`. Each checkpoint is scored as a plain transformers
model with eager attention (:mod:`~mmicl_interp.real.series_measures`; its
``output_attentions`` cost about 1.02x a plain forward, the TransformerLens bridge's forward
about 1.4x); only a prompt set's label-based head measures load the bridge
(:func:`mmicl_interp.real.load.load_model`), and a test checks that both give equal scores.

Every checkpoint is checked before any is scored: a folder without ``config.json``, without
weights, with a truncated safetensors file or without a tokenizer, a revision that does not
exist, and a checkpoint whose architecture (model type, sizes) or tokenizer (vocabulary,
merges, special tokens) differs from the first one's raise ConfigError naming it: one line,
exit 2, nothing written. A model that returns no attention pattern per layer (e.g. Mamba)
is refused the same way when the first checkpoint loads.

Per checkpoint (``--out DIR``, default ``real/series_<name>``):

- suite ``repeated_random`` (:mod:`mmicl_interp.real.repeated`): per head ``rep_induction``
  and ``rep_prev_token`` on ``[bos, r_1..r_n, r_1..r_n]`` (``--rep-len`` n, ``--rep-seqs``
  sequences), beside them (layer null) ``rep_induction_uniform`` and
  ``rep_prev_token_uniform`` (uniform attention over the same positions), and
  ``rep_loss_first`` / ``rep_loss_second`` (the next-token loss on each copy);
- suite ``text`` (held-out real text; default: the held-out files of the Python standard
  library split of ``mmicl train-lm``; ``--text FILE|DIR`` for another): the in-context
  loss score of Olsson et al. 2022, ``icl_score = loss_late - loss_early``, the mean
  next-token loss at token index ``500/512 * L`` minus at ``50/512 * L`` (each averaged over
  a window of ``+- max(1, L/64)`` positions and ``--text-seqs`` sequences of ``L`` tokens,
  ``L`` = ``--context`` capped by the model's position limit: tokens 50 and 500 at L = 512),
  with ``icl_score_se`` (its standard error over the sequences: each sequence's late minus
  early loss); also ``loss_early``, ``loss_late``, ``text_loss`` (mean over all positions);
- suite = the prompt set (``--prompts``, default ``text``): the few-shot ``accuracy`` and the
  label-based head measures of ``mmicl heads`` (``ih``, ``prev_token``, ...) where the
  tokenizer allows (a prompt set it cannot encode, e.g. two labels sharing a first token,
  or prompts longer than the context, is skipped with one printed line, recorded in
  ``series.json``).

Files: ``DIR/steps/step_<n>.parquet`` (one checkpoint's rows, written atomically with the
checkpoint's identity and the options in its metadata), ``DIR/series.parquet`` (all rows,
rewritten after each checkpoint: the rows of the checkpoints this call was given) and
``DIR/series.json`` (model, sources, options, steps done). A killed series continues where it
stopped: a checkpoint whose file exists with the same identity (folder and weights, or hub
revision and commit) and options is read, not recomputed; checkpoints added since are
scored. ``DIR`` holding a series of another model (architecture or tokenizer) or other
options is refused unless ``--force``; one ``mmicl series`` writes a folder at a time.
Columns: the shared tidy format (:mod:`mmicl_interp.analyses.tidy`), ``run`` = ``--run-id``
(default: the series' name).

Induction heads are ranked among layers >= 1 only: a layer-0 head sees no previous-token
information, so it cannot be an induction head.

``mmicl report DIR`` reads such a folder (:func:`load_series`: ``series.json`` and
``series.parquet``) into the same one-page report as a synthetic run; its attention slider
runs every checkpoint on one repeated-token prompt (:func:`series_attention_frames`), each
checkpoint found through the absolute path that ``series.json`` records for it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from mmicl_interp.config import ConfigError
from mmicl_interp.io import CorruptFileError, FolderBusy, folder_lock, read_json, write_json
from mmicl_interp.real.series_measures import (  # noqa: F401  (re-exported: the series' public names)
    POSITION_KEYS,
    check_attentions,
    hf_scores,
    load_scorer,
    position_limit,
    read_text_source,
    repeated_scores,
    text_losses,
    text_sequences,
    text_windows,
)
from mmicl_interp.real.series_sources import (  # noqa: F401
    ARCH_KEYS,
    HUB_LIGHT_FILES,
    STEP_NAME,
    TOKENIZER_FILES,
    WEIGHT_FILES,
    Checkpoint,
    _held_out_every,
    _is_glob,
    _load_tokenizer,
    _step_of_name,
    check_attention,
    check_checkpoint,
    check_series,
    fetch_revision,
    hub_checkpoints,
    local_checkpoints,
)

if TYPE_CHECKING:
    from mmicl_interp.plots.attention_view import AttentionFrames

REP_SUITE, TEXT_SUITE = "repeated_random", "text"
INDUCTION_METRICS = ("rep_induction", "ih", "tila")
"""Metrics whose top heads are induction heads: ranked among layers >= 1 only."""


# ---------------------------------------------------------------------- options
@dataclass
class SeriesOptions:
    """What decides a series' numbers (a change recomputes; stored in ``series.json``)."""

    rep_len: int = 50
    rep_seqs: int = 32
    context: int = 512
    text_seqs: int = 64
    text: str = "stdlib-held-out"
    prompts: str | None = "text"
    shots: int = 2
    ways: int = 2
    n_prompts: int = 50
    seed: int = 0
    dtype: str = "float32"

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------- one checkpoint
def checkpoint_table(
    scorer: Any,
    tokenizer: Any,
    options: SeriesOptions,
    *,
    run: str,
    step: int,
    label: str,
    texts: list[str],
    prompt_texts: Any,
    load_bridge: Callable[[], Any] | None = None,
    batch_size: int = 8,
    cache: dict | None = None,
) -> tuple[pd.DataFrame, str | None]:
    """The tidy rows of one checkpoint, and why the prompt set was skipped (or None).

    ``scorer`` is the checkpoint as a plain transformers model with eager attention
    (:func:`~mmicl_interp.real.series_measures.load_scorer`): the repeated-token head scores
    and the text losses come from its ``output_attentions`` and logits. Only a prompt set
    needs the TransformerLens bridge (:func:`~mmicl_interp.real.heads.score_heads`);
    ``load_bridge`` loads it then. ``cache`` (a dict kept across the checkpoints of one
    series, whose tokenizer is one) keeps the tokenized text sequences."""
    from mmicl_interp.analyses.tidy import head_rows, tidy_table
    from mmicl_interp.real.repeated import ordinary_token_ids, repeated_tokens

    limit = position_limit(scorer.config, options.context)
    has_bos = getattr(tokenizer, "bos_token_id", None) is not None
    n = min(options.rep_len, (limit - int(has_bos)) // 2)
    ids = ordinary_token_ids(tokenizer, scorer.config.vocab_size)
    seqs = repeated_tokens(
        ids, n, options.rep_seqs, tokenizer.bos_token_id if has_bos else None, options.seed
    )
    rep = hf_scores(scorer, seqs, n, label, batch_size)
    rows: list[dict] = []
    for metric in ("rep_induction", "rep_prev_token"):
        rows += head_rows(rep[metric], metric, suite=REP_SUITE)
    for metric in ("rep_induction_uniform", "rep_prev_token_uniform", "rep_loss_first", "rep_loss_second"):
        rows.append({"suite": REP_SUITE, "metric": metric, "value": rep[metric]})
    rows.append({"suite": REP_SUITE, "metric": "rep_len", "value": float(n)})
    cache = {} if cache is None else cache
    if ("text", limit) not in cache:
        cache[("text", limit)] = text_sequences(tokenizer, texts, limit, options.text_seqs)
    text_seqs = cache[("text", limit)]
    for metric, value in text_losses(scorer, text_seqs, batch_size).items():
        rows.append({"suite": TEXT_SUITE, "metric": metric, "value": value})
    skipped = None
    if options.prompts and prompt_texts is not None:
        skipped = _prompt_rows(tokenizer, load_bridge, options, prompt_texts, limit, batch_size, rows)
    return tidy_table(rows, run=run, step=step), skipped


def _prompt_rows(
    tokenizer, load_bridge, options, prompt_texts, limit: int, batch_size: int, rows: list[dict]
) -> str | None:
    from mmicl_interp.analyses.tidy import head_rows
    from mmicl_interp.real.heads import score_heads
    from mmicl_interp.real.text import tokenize_prompts

    try:
        prompts = tokenize_prompts(prompt_texts, tokenizer)
    except ConfigError as err:
        return f"prompt set {options.prompts!r} skipped: {err}"
    length = int(prompts.inputs.shape[1])
    if length > limit:
        return (
            f"prompt set {options.prompts!r} skipped: prompts of {length} tokens exceed the context ({limit})"
        )
    if load_bridge is None:
        raise ValueError("load_bridge: a prompt set is scored on the TransformerLens bridge")
    scores = score_heads(load_bridge(), prompts, batch_size)
    for metric, values in scores.measures.items():
        rows += head_rows(values, metric, suite=options.prompts)
    chance = 1 / prompts.readout.label_tokens.shape[-1]
    rows += [
        {"suite": options.prompts, "metric": "accuracy", "value": scores.accuracy},
        {"suite": options.prompts, "metric": "chance", "value": chance},
        {"suite": options.prompts, "metric": "n_prompts", "value": float(len(prompts))},
    ]
    return None


# ---------------------------------------------------------------------- summaries
def best_heads(table: pd.DataFrame, metric: str = "rep_induction", k: int = 1) -> pd.DataFrame:
    """Per step the top-``k`` heads of ``metric`` (induction metrics: layers >= 1 only)."""
    rows = table[(table["metric"] == metric) & table["layer"].notna()]
    if metric in INDUCTION_METRICS and rows["layer"].max() > 0:
        rows = rows[rows["layer"] >= 1]
    rows = rows.sort_values(["step", "value", "layer", "head"], ascending=[True, False, True, True])
    return rows.groupby("step", sort=True).head(k).reset_index(drop=True)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per step: best induction (layers >= 1) and previous-token head with their
    uniform baselines, second-copy loss, in-context loss score, few-shot accuracy."""
    out = []
    scalar = table[table["layer"].isna()]
    ih, pt = best_heads(table, "rep_induction"), best_heads(table, "rep_prev_token")
    for step in sorted(table["step"].dropna().unique()):
        s = scalar[scalar["step"] == step].set_index(["suite", "metric"])["value"]
        i, p = ih[ih["step"] == step], pt[pt["step"] == step]
        acc = scalar[(scalar["step"] == step) & (scalar["metric"] == "accuracy")]["value"]
        out.append(
            {
                "step": int(step),
                "induction_head": f"L{int(i['layer'].iloc[0])}H{int(i['head'].iloc[0])}" if len(i) else "",
                "induction": float(i["value"].iloc[0]) if len(i) else float("nan"),
                "induction_uniform": float(s.get((REP_SUITE, "rep_induction_uniform"), float("nan"))),
                "prev_token_head": f"L{int(p['layer'].iloc[0])}H{int(p['head'].iloc[0])}" if len(p) else "",
                "prev_token": float(p["value"].iloc[0]) if len(p) else float("nan"),
                "prev_token_uniform": float(s.get((REP_SUITE, "rep_prev_token_uniform"), float("nan"))),
                "rep_loss_first": float(s.get((REP_SUITE, "rep_loss_first"), float("nan"))),
                "rep_loss_second": float(s.get((REP_SUITE, "rep_loss_second"), float("nan"))),
                "icl_score": float(s.get((TEXT_SUITE, "icl_score"), float("nan"))),
                "icl_score_se": float(s.get((TEXT_SUITE, "icl_score_se"), float("nan"))),
                "accuracy": float(acc.iloc[0]) if len(acc) else float("nan"),
            }
        )
    return pd.DataFrame(out)


def print_summary(table: pd.DataFrame, top_k: int = 3) -> None:
    from rich.console import Console
    from rich.table import Table

    summ = summary(table)
    out = Table(title="series: best heads (induction among layers >= 1; uniform attention in brackets)")
    for col in ("step", "induction", "prev-token", "2nd-copy loss (1st)", "icl score (se)", "few-shot acc"):
        out.add_column(col, justify="right")
    for _, r in summ.iterrows():
        out.add_row(
            str(r["step"]),
            f"{r['induction_head']} {r['induction']:.3f} [{r['induction_uniform']:.3f}]",
            f"{r['prev_token_head']} {r['prev_token']:.3f} [{r['prev_token_uniform']:.3f}]",
            f"{r['rep_loss_second']:.2f} ({r['rep_loss_first']:.2f})",
            f"{r['icl_score']:+.3f} ({r['icl_score_se']:.3f})",
            "-" if pd.isna(r["accuracy"]) else f"{r['accuracy']:.3f}",
        )
    console = Console()
    console.print(out)
    last = int(summ["step"].max())
    tops = best_heads(table[table["step"] == last], "rep_induction", top_k)
    heads = ", ".join(f"L{int(r.layer)}H{int(r.head)} {r.value:.3f}" for r in tops.itertuples())
    console.print(f"top-{top_k} induction heads at step {last} (layers >= 1): {heads}")


# ---------------------------------------------------------------------- the command
def default_out(sources: list[str], revisions: list[str] | None) -> Path:
    return Path("real") / f"series_{series_name(sources, revisions)}"


def series_name(sources: list[str], revisions: list[str] | None) -> str:
    if revisions:
        name = sources[0].replace("/", "__")
    elif len(sources) == 1 and not _is_glob(sources[0]) and not (Path(sources[0]) / "config.json").exists():
        name = Path(sources[0]).expanduser().resolve().name
    else:
        first = sources[0].rstrip("/")
        name = Path(first).expanduser().parent.resolve().name if first else "series"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "series"


def _check_out(out: Path) -> Path:
    """``--out`` can be written (checked without creating anything)."""
    import os

    if out.exists() and not out.is_dir():
        raise ConfigError("--out", f"{out} is a file; give a folder")
    for ancestor in [out, *out.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ConfigError("--out", f"cannot write {out}: {ancestor} is a file, not a folder")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise ConfigError("--out", f"cannot write into {ancestor}: permission denied")
            break
    return out


def _step_file(out: Path, step: int) -> Path:
    return out / "steps" / f"step_{step}.parquet"


def _done(path: Path, run: str, identity: dict[str, Any], key: str) -> pd.DataFrame | None:
    """The saved rows of a checkpoint when its file matches ``identity`` and the options ``key``."""
    from mmicl_interp.analyses.tables import read_table, table_runs

    if not path.is_file():
        return None
    try:
        record = table_runs(path).get(run, {})
        if record.get("options") != key or record.get("checkpoint") != json.dumps(identity, sort_keys=True):
            return None
        return read_table(path)
    except CorruptFileError:
        return None


@dataclass
class SeriesResult:
    out: Path
    table: pd.DataFrame
    computed: list[int]
    reused: list[int]
    skipped_prompts: str | None = None


def run_series(
    sources: list[str],
    *,
    revisions: list[str] | None = None,
    out: str | Path | None = None,
    run_id: str | None = None,
    options: SeriesOptions | None = None,
    device: Any = "cpu",
    batch_size: int = 8,
    force: bool = False,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> SeriesResult:
    """Score every checkpoint of a series into ``out`` (see the module docstring)."""
    from mmicl_interp.analyses.tables import write_table
    from mmicl_interp.analyses.tidy import empty
    from mmicl_interp.real.load import load_model, torch_dtype

    options = options or SeriesOptions()
    torch_dtype(options.dtype)
    for name in ("rep_len", "rep_seqs", "context", "text_seqs"):
        if getattr(options, name) < (2 if name in ("rep_len", "context") else 1):
            raise ConfigError(f"--{name.replace('_', '-')}", f"too small: {getattr(options, name)}")
    if revisions:
        if len(sources) != 1 or _is_glob(sources[0]):
            raise ConfigError("--revisions", "give one hub model name with --revisions")
    out = _check_out(Path(out) if out is not None else default_out(sources, revisions))
    run = run_id or series_name(sources, revisions)
    prompt_texts = None
    if options.prompts:
        from mmicl_interp.real.text import prompt_texts as text_prompts  # not commands: it imports us

        if options.prompts.split(":", 1)[0] != "text":
            raise ConfigError(
                "--prompts", f"a text LM series takes text prompt sets; got {options.prompts!r}"
            )
        prompt_texts = text_prompts(options.prompts, shots=options.shots, ways=options.ways,
                                    n_prompts=options.n_prompts, seed=options.seed)  # fmt: skip

    # every checkpoint checked before any work
    if revisions:
        ckpts = hub_checkpoints(sources[0], revisions)
    else:
        ckpts = local_checkpoints(sources)
        check_series(ckpts)
    held_out_every = _held_out_every(ckpts)
    texts = read_text_source(options.text, held_out_every)
    key = options.key()
    meta_path = out / "series.json"
    first = ckpts[0].identity
    model = {"run": run, "hub": sources[0] if revisions else None, "arch": first["arch"],
             "tokenizer": first["tokenizer"]}  # fmt: skip
    if meta_path.is_file() and not force:
        try:
            old = read_json(meta_path)
        except CorruptFileError:
            old = {}
        if old.get("options") != asdict(options) or old.get("model") != model:
            raise ConfigError(
                "--out",
                f"{out} holds a series of another model or other options; use --force or another --out",
            )
    record = {"model": model, "sources": sources, "revisions": revisions or None}

    computed, reused, tables = [], [], []
    cache: dict = {}
    tokenizer = None
    skipped: str | None = None
    bar_log = log if progress else (lambda s: None)
    lock_ctx = None
    listing = [
        {
            "step": c.step,
            "label": c.label,
            "path": None if revisions or c.path is None else str(c.path.resolve()),
        }
        for c in ckpts
    ]

    def open_out() -> None:
        """Before the first write: the folder, its lock (one writer at a time), series.json."""
        nonlocal lock_ctx
        if lock_ctx is not None:
            return
        out.mkdir(parents=True, exist_ok=True)
        lock = folder_lock(out, wait=False)
        try:
            lock.__enter__()
        except FolderBusy:
            raise ConfigError("--out", f"another mmicl series is writing {out}; wait for it") from None
        lock_ctx = lock
        try:
            old = read_json(meta_path) if meta_path.is_file() and not force else {}
        except CorruptFileError:
            old = {}
        meta = {**record, "options": asdict(options), "options_key": key, "checkpoints": listing}
        meta.update(steps_done=old.get("steps_done", []), prompts_skipped=old.get("prompts_skipped"))
        write_json(meta_path, meta)

    try:
        for ckpt in ckpts:
            # a hub revision is named by its commit (the cache's snapshot folder), a folder by its weights
            version = {"commit": ckpt.path.name} if revisions and ckpt.path else ckpt.identity.get("weights")
            identity = {"label": ckpt.label, "step": ckpt.step, "weights": version}
            path = _step_file(out, ckpt.step)
            rows = None if force else _done(path, run, identity, key)
            if rows is not None:
                reused.append(ckpt.step)
                tables.append(rows)
                bar_log(f"step {ckpt.step}: already scored ({path})")
                continue
            if revisions:
                fetch_revision(sources[0], ckpt)
                assert ckpt.path is not None
                check_checkpoint(ckpt.path, ckpt.label)  # the weights, now fetched
            assert ckpt.path is not None
            scorer = load_scorer(ckpt.path, ckpt.label, device, options.dtype)
            if tokenizer is None:  # one tokenizer for the series (check_series compared them)
                tokenizer = _load_tokenizer(ckpt.path, ckpt.label)

            def load_bridge(ckpt: Checkpoint = ckpt) -> Any:
                bridge = load_model(str(ckpt.path), device=device, dtype=options.dtype, progress=False).bridge
                check_attention(bridge, ckpt.label)
                return bridge

            check_attentions(scorer, ckpt.label)  # before anything is written
            open_out()
            table, why = checkpoint_table(
                scorer, tokenizer, options, run=run, step=ckpt.step, label=ckpt.label, texts=texts,
                prompt_texts=prompt_texts, load_bridge=load_bridge, batch_size=batch_size, cache=cache,
            )  # fmt: skip
            if why and skipped is None:
                skipped = why
                log(why)
            mine = {
                run: {"path": ckpt.label, "options": key, "checkpoint": json.dumps(identity, sort_keys=True)}
            }
            write_table(table, path, mine)
            computed.append(ckpt.step)
            tables.append(table)
            whole = pd.concat(tables, ignore_index=True).sort_values(
                ["step", "suite", "metric", "layer", "head"]
            )
            write_table(whole.reset_index(drop=True), out / "series.parquet", {run: {"path": str(out)}})
            best = best_heads(table, "rep_induction").iloc[0]
            bar_log(
                f"step {ckpt.step}: best induction L{int(best['layer'])}H{int(best['head'])} "
                f"{best['value']:.3f}"
                f" ({len(computed)} scored, {len(reused)} reused of {len(ckpts)})"
            )
            del scorer
        whole = pd.concat(tables, ignore_index=True) if tables else empty()
        whole = whole.sort_values(["step", "suite", "metric", "layer", "head"]).reset_index(drop=True)
        open_out()
        write_table(whole, out / "series.parquet", {run: {"path": str(out)}})
        meta = read_json(meta_path)
        done = sorted(set(meta.get("steps_done") or []) | {c.step for c in ckpts})
        meta.update({"steps_done": done, "prompts_skipped": skipped or meta.get("prompts_skipped")})
        write_json(meta_path, meta)
    finally:
        if lock_ctx is not None:
            lock_ctx.__exit__(None, None, None)
    return SeriesResult(out, whole, computed, reused, skipped)


# ---------------------------------------------------------------------- reading a series back
SERIES_FILES = ("series.json", "series.parquet")
"""What makes a folder a series (written by :func:`run_series`)."""
SLIDER_REP_LEN = 24
"""Half length of the one repeated-token prompt of the report's attention slider (capped by
the series' own ``rep_len``)."""


def is_series_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a series of ``mmicl series`` (``series.json`` and ``series.parquet``)."""
    return all((Path(path) / name).is_file() for name in SERIES_FILES)


def holds_checkpoints(path: str | Path) -> bool:
    """Whether ``path`` holds ``step_*`` Hugging Face checkpoint folders (each with ``config.json``)."""
    path = Path(path)
    return path.is_dir() and any(
        (p / "config.json").is_file()
        for p in path.iterdir()
        if p.is_dir() and _step_of_name(p.name) is not None
    )


@dataclass
class SeriesFolder:
    """A series folder read back: its ``series.json`` (``meta``) and its run's rows (``table``)."""

    path: Path
    meta: dict[str, Any]
    table: pd.DataFrame
    device: Any = "cpu"
    """Where the report runs the checkpoints (its attention slider)."""

    @property
    def name(self) -> str:
        return str(self.meta.get("model", {}).get("run") or self.path.name)

    @property
    def steps(self) -> list[int]:
        return sorted(int(s) for s in self.table["step"].dropna().unique())

    @property
    def n_layers(self) -> int | None:
        arch = self.meta.get("model", {}).get("arch", {})
        return next((int(arch[k]) for k in ("num_hidden_layers", "n_layer", "num_layers") if k in arch), None)

    def checkpoint_folder(self, step: int) -> Path | None:
        """Where checkpoint ``step``'s files are: the recorded absolute path, the label as a path,
        or a folder of that name in the series folder; a hub revision from the local HF cache
        (fetched if the hub can be reached). None when none is found."""
        entry = next((c for c in self.meta.get("checkpoints", []) if c.get("step") == step), None)
        if entry is None:
            return None
        label = str(entry.get("label", ""))
        candidates = [entry.get("path"), label, self.path / Path(label).name, self.path / f"step_{step}"]
        for cand in candidates:
            if cand and (Path(cand) / "config.json").is_file():
                return Path(cand)
        hub = self.meta.get("model", {}).get("hub")
        if hub and "@" in label:
            ckpt = Checkpoint(step, None, label, revision=label.rsplit("@", 1)[1])
            try:
                return fetch_revision(hub, ckpt)
            except ConfigError:
                return None
        return None


def load_series(path: str | Path) -> SeriesFolder:
    """Read a series folder (``series.json`` and its run's rows of ``series.parquet``); ConfigError
    naming RUN when it is not one or holds no rows."""
    from mmicl_interp.analyses.tables import read_table

    path = Path(path)
    if not is_series_folder(path):
        raise ConfigError("RUN", f"{path}: not a series folder (no series.json and series.parquet)")
    meta = read_json(path / "series.json")
    if not isinstance(meta, dict):
        raise CorruptFileError(path / "series.json", "not a JSON object")
    table = read_table(path / "series.parquet")
    run = meta.get("model", {}).get("run")
    if run is not None and (table["run"].astype(str) == str(run)).any():
        table = table[table["run"].astype(str) == str(run)]
    if table.empty:
        raise ConfigError("RUN", f"{path}: series.parquet holds no rows; rerun `mmicl series`")
    return SeriesFolder(path, meta, table.reset_index(drop=True))


def slider_heads(table: pd.DataFrame, k: int = 2) -> list[str]:
    """The heads a series' attention slider shows: the top-``k`` ``rep_induction`` heads (layers
    >= 1) and the best ``rep_prev_token`` head at the last step, as ``L{l}H{h}``."""
    last = table[table["step"] == table["step"].max()]
    heads = [f"L{int(r.layer)}H{int(r.head)}" for r in best_heads(last, "rep_induction", k).itertuples()]
    prev = best_heads(last, "rep_prev_token", 1)
    heads += [f"L{int(r.layer)}H{int(r.head)}" for r in prev.itertuples()]
    return list(dict.fromkeys(heads))


def _token_text(tokenizer: Any, token: int) -> str:
    """A token as text; its vocabulary entry when it decodes to part of a character."""
    text = tokenizer.decode([token])
    return str(tokenizer.convert_ids_to_tokens(token)) if "\ufffd" in text else text


@torch.no_grad()
def series_attention_frames(
    series: SeriesFolder,
    heads: list[str],
    steps: list[int] | None = None,
    *,
    rep_len: int = SLIDER_REP_LEN,
    device: Any = None,
) -> AttentionFrames:
    """``heads``' attention patterns at each checkpoint on one repeated-token prompt
    ``[bos, r_1..r_n, r_1..r_n]`` (n = ``rep_len``, capped by the series' ``rep_len``; seeded
    by the series' seed), from the bridge's ``hook_pattern``. Checkpoints whose files cannot
    be found are left out and named in the frames' caption; returns
    :class:`~mmicl_interp.plots.attention_view.AttentionFrames`."""
    import numpy as np

    from mmicl_interp.device import model_device
    from mmicl_interp.plots.attention_view import AttentionFrames, parse_head
    from mmicl_interp.real.load import load_model
    from mmicl_interp.real.repeated import ordinary_token_ids, repeated_tokens

    pairs = [parse_head(h) for h in heads]
    names = {f"blocks.{layer}.attn.hook_pattern" for layer, _ in pairs}
    stored = series.table[series.table["metric"] == "rep_len"]["value"]
    n = min(rep_len, int(stored.min())) if len(stored) else rep_len
    options = series.meta.get("options", {})
    seqs, tokens, frames, done, missing = None, [], [], [], []
    for step in series.steps if steps is None else steps:
        folder = series.checkpoint_folder(step)
        if folder is None:
            missing.append(step)
            continue
        where = series.device if device is None else device
        loaded = load_model(str(folder), device=where, dtype=options.get("dtype", "float32"), progress=False)
        bridge, tok = loaded.bridge, loaded.tokenizer
        if seqs is None:
            bos = getattr(tok, "bos_token_id", None)
            ids = ordinary_token_ids(tok, bridge.cfg.d_vocab)
            seqs = repeated_tokens(ids, n, 1, bos, int(options.get("seed", 0)))
            tokens = [_token_text(tok, int(i)) for i in seqs[0]]
        _, cache = bridge.run_with_cache(
            seqs.to(model_device(bridge)), names_filter=lambda name: name in names
        )
        frames.append(
            np.stack(
                [
                    cache[f"blocks.{layer}.attn.hook_pattern"][0, head].float().cpu().numpy()
                    for layer, head in pairs
                ]
            )
        )
        done.append(int(step))
        del loaded, cache
    caption = f"one repeated random prompt: {n} random tokens, then the same {n} again ({len(tokens)} tokens)"
    if missing:
        caption += (
            f"; checkpoints not found (left out): step {', '.join(map(str, missing))} (series.json records "
            "their folders as given to `mmicl series`; an older one without absolute paths resolves them "
            "from the current folder)"
        )
    patterns = np.stack(frames) if frames else np.zeros((0, len(heads), 0, 0))
    return AttentionFrames(steps=done, heads=list(heads), tokens=tokens, patterns=patterns, caption=caption)


__all__ = [
    "Checkpoint",
    "SERIES_FILES",
    "SeriesFolder",
    "SeriesOptions",
    "SeriesResult",
    "best_heads",
    "check_attention",
    "check_attentions",
    "check_checkpoint",
    "check_series",
    "hf_scores",
    "hub_checkpoints",
    "holds_checkpoints",
    "is_series_folder",
    "load_scorer",
    "load_series",
    "local_checkpoints",
    "print_summary",
    "run_series",
    "series_attention_frames",
    "slider_heads",
    "summary",
    "text_losses",
    "text_windows",
]
