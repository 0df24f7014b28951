"""Measures across a run's checkpoints, as one tidy table.

``circuit_scores(run)`` loads every checkpoint, scores each head's attention measures on
the icl suite (:mod:`mmicl_interp.analyses.attention`) and each suite's accuracy, loss
and CLA, and returns a pandas DataFrame with one value per row, in the shared long format
of :mod:`mmicl_interp.analyses.tidy`:

    run, step, suite, metric, layer, head, src_layer, src_head, position, value

``layer`` and ``head`` are nullable integers, NA for model-level metrics (accuracy, loss,
cla); ``src_layer``, ``src_head`` and ``position`` are always NA here. ``run`` is the run
id (:attr:`~mmicl_interp.runs.Run.run_id`: the manifest's ``run_id``, else the run folder's
name), never the config name, so tables of several runs concatenate; plots and
correlations read this format. An encoder-pretraining run (``kind = "encoder"``) has no
attention heads and no context: its table holds accuracy and loss only.

``analyze_run(run, out)`` (``mmicl analyze``) adds a run to a table file that may hold
other runs: it recomputes only this run's missing checkpoints, keeps every other run's
rows, and rewrites the file atomically as it goes (so an interrupted analysis resumes).
The file records which run directory each run id came from (parquet metadata, or a
``FILE.runs.json`` sidecar next to a CSV), so a second run under the same id is refused
instead of being mistaken for the first.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mmicl_interp.analyses.attention import attention_measures, context_label_accuracy
from mmicl_interp.analyses.tidy import COLUMNS as TIDY_COLUMNS
from mmicl_interp.analyses.tidy import empty, head_rows, tidy_table
from mmicl_interp.config import ConfigError
from mmicl_interp.data.task import Batch
from mmicl_interp.io import (
    CorruptFileError,
    Interrupted,
    MmiclWarning,
    WriteFailed,
    atomic_write,
    check_writable,
    describe_write_error,
    folder_lock,
    is_write_error,
    write_json,
    write_remedy,
)
from mmicl_interp.progress import progress_bar
from mmicl_interp.runs import Run, identity_of, load_run, run_id_of
from mmicl_interp.train.evaluate import accuracy_and_loss, suite_logits

COLUMNS = list(TIDY_COLUMNS)
OPTIONAL = ("src_layer", "src_head", "position")
"""Shared columns a table written before they existed may lack (read as null)."""
RUNS_KEY = b"mmicl_runs"
"""Parquet key-value metadata: JSON ``{run id: identity of the run directory}``."""
FORCE_HINT = "rerun `mmicl analyze` with --force to recompute it"

RunRecord = dict[str, dict[str, str]]
"""Run id -> identity (``path``, ``created``, ``config_sha``) of the run its rows came from."""


def checkpoint_rows(
    model: torch.nn.Module,
    suites: dict[str, Batch],
    layout,
    *,
    run: str,
    step: int,
    measure_suites: Sequence[str] = ("icl",),
) -> list[dict]:
    """Tidy rows for one checkpoint: per-suite accuracy / loss / cla, per-head measures.

    ``layout`` None (an encoder run: single items, no context) gives accuracy and loss only.
    """
    rows: list[dict] = []
    for suite, batch in suites.items():
        logits = suite_logits(model, batch)
        acc, loss = accuracy_and_loss(logits, batch.targets)
        values = [("accuracy", acc), ("loss", loss)]
        if layout is not None:
            values.append(("cla", context_label_accuracy(logits, batch)))
        for metric, value in values:
            rows.append(
                dict(run=run, step=step, suite=suite, metric=metric, layer=None, head=None, value=value)
            )
    for suite in measure_suites:
        measures = attention_measures(model, suites[suite], layout)
        for metric, values in measures.items():
            rows += head_rows(values, metric, run=run, step=step, suite=suite)
    return rows


def _is_encoder(run: Run) -> bool:
    return run.config.kind == "encoder"


@dataclass
class _Scoring:
    """What each checkpoint is scored on: suites with accuracies, suites with head measures."""

    batches: dict[str, Batch]
    suites: list[str]
    measure_suites: tuple[str, ...]


def _scoring(
    run: Run, suites: Sequence[str] | None, measure_suites: Sequence[str] | None, n_seqs: int | None
) -> _Scoring:
    encoder = _is_encoder(run)
    if measure_suites is None:
        measure_suites = () if encoder else ("icl",)
    elif encoder and measure_suites:
        raise ValueError(
            "measure_suites: an encoder-pretraining run has no attention heads; only accuracy and loss "
            "are scored (pass measure_suites=())"
        )
    all_suites = run.suites(n_seqs)
    suites = list(all_suites) if suites is None else list(suites)
    unknown = [s for s in [*suites, *measure_suites] if s not in all_suites]
    if unknown:
        raise ValueError(f"suites {unknown} unknown; allowed: {', '.join(all_suites)}")
    chosen = {name: all_suites[name] for name in dict.fromkeys([*suites, *measure_suites])}
    return _Scoring(chosen, suites, tuple(measure_suites))


def _score_steps(
    run: Run, steps: Iterable[int], scoring: _Scoring, run_id: str
) -> Iterator[tuple[int, list[dict]]]:
    """(step, rows) for each checkpoint in turn, loading one model at a time."""
    layout = None if _is_encoder(run) else run.layout
    measured_only = set(scoring.batches) - set(scoring.suites)
    for step in steps:
        rows = checkpoint_rows(
            run.model(step),
            scoring.batches,
            layout,
            run=run_id,
            step=step,
            measure_suites=scoring.measure_suites,
        )
        # a suite scored for its measures only: keep the measures, drop its accuracies
        yield step, [r for r in rows if not (r["suite"] in measured_only and r["layer"] is None)]


def _frame(rows: list[dict]) -> pd.DataFrame:
    return tidy_table(rows)


def circuit_scores(
    run: Run | str | Path,
    steps: Iterable[int] | None = None,
    *,
    suites: Sequence[str] | None = None,
    measure_suites: Sequence[str] | None = None,
    n_seqs: int | None = None,
    skip_steps: Iterable[int] = (),
    progress: bool = True,
    run_id: str | None = None,
) -> pd.DataFrame:
    """The tidy table of measures and accuracies over a run's checkpoints.

    ``steps`` defaults to every checkpoint; ``suites`` to every eval suite of the run
    (multimodal runs add icl_m1_only and icl_m2_only); ``measure_suites`` (head measures) to
    icl, or none for an encoder run; ``skip_steps`` are left out (already analysed);
    ``n_seqs`` caps the sequences per suite (default: the run's eval size); ``run_id``
    labels the rows (default: the run's id).
    """
    if not isinstance(run, Run):
        run = load_run(run)
    available = run.steps
    steps = available if steps is None else list(steps)
    missing = sorted(set(steps) - set(available))
    if missing:
        raise ValueError(f"steps {missing} have no checkpoint in {run.path}; available: {available}")
    scoring = _scoring(run, suites, measure_suites, n_seqs)
    skip = set(skip_steps)
    todo = [s for s in steps if s not in skip]
    run_id = run_id or run.run_id
    rows: list[dict] = []
    bar = progress_bar(len(todo), f"analyse {run_id}", progress, unit="ckpt")
    try:
        for _, step_rows in _score_steps(run, todo, scoring, run_id):
            rows.extend(step_rows)
            bar.update(1)
    finally:
        bar.close()
    return _frame(rows)


# ---------------------------------------------------------------- table files


def _scores_of(job: tuple[str, dict]) -> pd.DataFrame:
    """One run's :func:`circuit_scores` (a worker's job; top level so it pickles)."""
    path, kwargs = job
    return circuit_scores(path, progress=False, **kwargs)


def circuit_scores_runs(
    runs: Sequence[Run | str | Path],
    *,
    workers: int | None = None,
    progress: bool = True,
    **kwargs,
) -> list[pd.DataFrame]:
    """:func:`circuit_scores` of every run in ``runs`` (keyword arguments as there), ``workers``
    runs at a time in separate processes (default: one per core, each with ``cores // workers``
    torch threads; small models score faster in parallel processes than on more threads).
    Tables come back in the order of ``runs``."""
    from mmicl_interp.parallel import LocalExecutor

    jobs = [(str(run.path if isinstance(run, Run) else run), kwargs) for run in runs]
    tables: list[pd.DataFrame | None] = [None] * len(jobs)
    bar = progress_bar(len(jobs), "score runs", progress, unit="run")
    try:
        if workers == 1:  # in this process: no start-up cost, and the caller's torch settings
            for i, job in enumerate(jobs):
                tables[i] = _scores_of(job)
                bar.update(1)
        else:
            for i, table in LocalExecutor(workers).map_unordered(_scores_of, jobs):
                tables[i] = table
                bar.update(1)
    finally:
        bar.close()
    return [t for t in tables if t is not None]


def _sidecar(path: Path) -> Path:
    """Where a CSV table records its runs' identities."""
    return path.with_name(path.name + ".runs.json")


def _one_line(err: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read(path: Path) -> tuple[pd.DataFrame, RunRecord]:
    """The table and its run record; CorruptFileError (with the --force hint) when unreadable."""
    source = path
    try:
        if path.suffix == ".parquet":
            arrow = pq.read_table(path)
            meta = arrow.schema.metadata or {}
            runs = json.loads(meta[RUNS_KEY]) if RUNS_KEY in meta else {}
            df = arrow.to_pandas()
        else:
            df = pd.read_csv(path)
            runs = {}
            if _sidecar(path).is_file():
                source = _sidecar(path)
                runs = json.loads(source.read_text())
                source = path
        missing = [c for c in COLUMNS if c not in df.columns and c not in OPTIONAL]
        if missing:
            raise ValueError(f"no columns {missing}: not a table written by `mmicl analyze`")
        if not isinstance(runs, dict):
            raise ValueError("its run record is not a JSON object")
        return tidy_table(df[[c for c in COLUMNS if c in df.columns]]), runs
    except FileNotFoundError:
        raise
    except (OSError, ValueError, TypeError, KeyError, pa.ArrowException) as err:
        raise CorruptFileError(source, f"{_one_line(err)}; {FORCE_HINT}") from None


def _legacy_relabel(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """A run folder's own table written before run ids (rows labelled with the config name)
    gets the folder's run id, so the run finds its rows again."""
    manifest_path = path.parent / "manifest.json"
    if df.empty or not manifest_path.is_file():
        return df
    try:
        manifest = json.loads(manifest_path.read_text())
        name, rid = manifest["name"], run_id_of(path.parent, manifest)
    except (OSError, ValueError, KeyError, TypeError):
        return df
    if rid != name and set(df["run"].unique()) == {name}:
        df = df.assign(run=pd.array([rid] * len(df), dtype="string"))
    return df


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a tidy table written by :func:`write_table` (parquet or CSV by suffix).

    A truncated or foreign file raises CorruptFileError naming it (``--force`` recomputes
    it). A run folder's own table from before run ids is relabelled with the run's id.
    """
    path = Path(path)
    df, runs = _read(path)
    return df if runs else _legacy_relabel(df, path)


def table_runs(path: str | Path) -> RunRecord:
    """The table's record of which run directory each run id came from ({} when none)."""
    return _read(Path(path))[1]


def write_table(df: pd.DataFrame, path: str | Path, runs: RunRecord | None = None) -> None:
    """Write a tidy table atomically as parquet (``.parquet``) or CSV (anything else).

    ``runs`` (run id -> identity) is stored with it: in the parquet metadata, or in the
    ``FILE.runs.json`` sidecar of a CSV (written first: a claim without rows is harmless).
    """
    path = Path(path)
    if path.suffix == ".parquet":

        def write(tmp: Path) -> None:
            arrow = pa.Table.from_pandas(df, preserve_index=False)
            if runs is not None:
                meta = dict(arrow.schema.metadata or {})
                meta[RUNS_KEY] = json.dumps(runs).encode()
                arrow = arrow.replace_schema_metadata(meta)
            pq.write_table(arrow, tmp)

        atomic_write(path, write)
    else:
        if runs is not None:
            write_json(_sidecar(path), runs)
        atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


# ---------------------------------------------------------------- adding a run to a shared file


def same_run(a: dict[str, str], b: dict[str, str]) -> bool:
    """Whether two identities name one run: same creation time and config (a moved or copied
    folder stays the same run), or the same folder when either lacks a creation time."""
    if a.get("created") and b.get("created"):
        return a["created"] == b["created"] and a.get("config_sha") == b.get("config_sha")
    return a.get("path") == b.get("path")


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class _SharedTable:
    """A table file holding several runs; this process rewrites one run's rows only."""

    def __init__(self, path: Path):
        self.path = path
        self.table = empty()
        self.runs: RunRecord = {}
        self.order: list[str] = []
        self.seen: tuple[int, int, int] | None = None

    def lock(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return folder_lock(self.path.parent)

    def load(self) -> None:
        """(Re)read the file; call under the lock."""
        self.seen = _signature(self.path)
        if self.seen is None:
            self.table, self.runs = empty(), {}
        else:
            self.table, self.runs = _read(self.path)
            if not self.runs:
                self.table = _legacy_relabel(self.table, self.path)
        self.order = list(dict.fromkeys([*self.order, *self.table["run"].unique()]))

    def set_aside(self) -> Path:
        """Move an unreadable file (and a CSV's sidecar) out of the way; it starts empty."""
        kept = self.path.with_name(self.path.name + ".corrupt")
        os.replace(self.path, kept)
        if _sidecar(self.path).is_file():
            os.replace(_sidecar(self.path), kept.with_name(kept.name + ".runs.json"))
        self.load()
        return kept

    def check_owner(self, rid: str, identity: dict[str, str], run: Run) -> None:
        """Refuse rows under ``rid`` that came from another run directory."""
        theirs = self.runs.get(rid)
        if theirs is None or same_run(theirs, identity) or not (self.table["run"] == rid).any():
            return
        raise ConfigError(
            "--run-id",
            f"{self.path} already holds run id {rid!r} from another run ({theirs.get('path')}, created "
            f"{theirs.get('created') or '?'}); give this run its own id: "
            f"mmicl analyze {run.path} --out {self.path} --run-id NAME",
        )

    def rows_of(self, rid: str) -> pd.DataFrame:
        return self.table[self.table["run"] == rid]

    def save(self, rid: str, identity: dict[str, str], mine: pd.DataFrame, run: Run) -> int:
        """Write the file with ``mine`` as run ``rid``'s rows and every other run's rows as on
        disk now (re-read if another process changed it); returns the rows written."""
        with self.lock():
            if _signature(self.path) != self.seen:
                self.load()
                self.check_owner(rid, identity, run)
            others = self.table[self.table["run"] != rid]
            if rid not in self.order:
                self.order.append(rid)
            rank = {r: i for i, r in enumerate(self.order)}
            mine = mine.sort_values("step", kind="stable")
            table = pd.concat([others, mine], ignore_index=True)
            position = table["run"].map(rank).astype("int64")
            table = table.iloc[position.to_numpy().argsort(kind="stable")].reset_index(drop=True)
            runs = {**self.runs, rid: identity}
            write_table(table, self.path, runs)
            self.table, self.runs, self.seen = table, runs, _signature(self.path)
            return len(table)


def _still_holds(identity: dict[str, str]) -> bool:
    """Whether the folder an identity names still holds that run (False once it was renamed)."""
    path = Path(identity.get("path") or "")
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and same_run(identity_of(path, manifest), identity)


def recorded_run_id(
    table: pd.DataFrame, runs: RunRecord, run: Run, out: Path, identity: dict[str, str] | None = None
) -> str | None:
    """The id under which ``table`` already holds ``run`` under another name, or None.

    A run folder without a ``run_id`` in its manifest is named by the folder, so renaming the
    folder would rename the run. Its rows keep their id when the table holds this same run
    (same creation time and config) under another id and either the table is the run's own
    (``RUN/analysis.parquet``, also in a copy of the folder) or the folder the id was recorded
    from no longer holds the run (it was renamed or moved). A copy analysed into a shared table
    beside its original stays a run of its own.
    """
    identity = identity or run.identity
    rid = run.run_id
    present = set(table["run"].unique()) if len(table) else set()
    if rid in present:
        return None
    try:
        own = out.resolve().parent == run.path.resolve()
    except OSError:  # pragma: no cover
        own = False
    for other, theirs in runs.items():
        if other == rid or other not in present or not isinstance(theirs, dict):
            continue
        if same_run(theirs, identity) and (own or not _still_holds(theirs)):
            return other
    return None


def table_run_id(run: Run, path: str | Path) -> str:
    """The id of ``run``'s rows in the table file ``path``: its own id, or the id they were
    recorded under before the run folder was renamed (:func:`recorded_run_id`)."""
    path = Path(path)
    if not path.is_file():
        return run.run_id
    try:
        table, runs = _read(path)
    except (CorruptFileError, OSError):
        return run.run_id
    return recorded_run_id(table, runs, run, path) or run.run_id


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, MmiclWarning, stacklevel=3)


@dataclass
class AnalyzeResult:
    """What :func:`analyze_run` did."""

    out: Path
    run_id: str
    status: str
    """The run's manifest status when the analysis started (``complete`` when training ended)."""
    n_present: int
    """Checkpoints on disk when the analysis started (a live run may have more by now)."""
    analysed: int
    skipped: int
    run_rows: int
    other_runs: int
    replaced_corrupt: Path | None = None
    renamed_from: str | None = None
    """The run's id from its folder's name, when its rows kept an earlier id (folder renamed)."""
    dropped_steps: tuple[int, ...] = ()
    """Checkpoints in the table that are no longer on disk: their rows were dropped."""

    def summary(self) -> list[str]:
        """The lines ``mmicl analyze`` prints."""
        lines = []
        if self.renamed_from is not None:
            lines.append(
                f"this run's rows in {self.out} are under id {self.run_id}, its id before its folder was "
                f"renamed or copied to {self.renamed_from}; kept that id (--run-id NAME to choose one)"
            )
        if self.replaced_corrupt is not None:
            lines.append(f"{self.out} was unreadable: set aside as {self.replaced_corrupt}; recomputed")
        skipped = f" ({self.skipped} already analysed, skipped)" if self.skipped else ""
        others = f"; it also holds {self.other_runs} other run(s), kept" if self.other_runs else ""
        lines.append(
            f"analysed {self.analysed} checkpoints{skipped}: {self.run_rows} rows of run {self.run_id} "
            f"-> {self.out}{others}"
        )
        if self.status != "complete":
            lines.append(
                f"run is still training or was stopped (status {self.status}): analysed the "
                f"{self.n_present} checkpoints present; rerun later for the rest"
            )
        return lines


def analyze_run(
    run: Run | str | Path,
    out: str | Path | None = None,
    *,
    run_id: str | None = None,
    force: bool = False,
    n_seqs: int | None = None,
    progress: bool = True,
    flush_every_s: float = 10.0,
) -> AnalyzeResult:
    """Score a run's checkpoints into the table file ``out`` (default ``RUN/analysis.parquet``).

    Only this run's rows (``run_id``, default the run's id) are touched: checkpoints already
    in the file are skipped (``force``: recomputed), every other run's rows are kept, and
    the file is rewritten atomically at most every ``flush_every_s`` seconds, at the end,
    and on Ctrl-C (raising :class:`~mmicl_interp.io.Interrupted`), so a rerun resumes.
    Rows under ``run_id`` from another run directory raise ConfigError (``--run-id``); an
    unreadable file raises CorruptFileError, or with ``force`` is set aside and replaced.
    The checkpoints are listed once: a run still training is analysed as far as it got.
    """
    if not isinstance(run, Run):
        run = load_run(run)
    out = Path(out) if out is not None else run.path / "analysis.parquet"
    if out.suffix not in (".parquet", ".csv"):
        raise ConfigError("--out", f"must end in .parquet or .csv, got {out.name!r}")
    steps = run.steps  # listed once: a live run may write more while this runs
    check_writable(out, "--out", _table_bytes(run, out, len(steps)))  # before any work
    rid = run.run_id if run_id is None else run_id.strip()
    if not rid:
        raise ConfigError("--run-id", "must be a non-empty name")
    identity = run.identity
    status = str(run.manifest.get("status") or "unknown")

    store = _SharedTable(out)
    replaced = None
    with store.lock():
        try:
            store.load()
        except CorruptFileError:
            if not force:
                raise
            replaced = store.set_aside()
    renamed_from = None
    if run_id is None and (earlier := recorded_run_id(store.table, store.runs, run, out, identity)):
        renamed_from, rid = rid, earlier
    store.check_owner(rid, identity, run)
    # the n behind every number: recorded with the run, and never mixed within one run's rows
    # (no --n-seqs: the n this run's rows were scored on, so a resume never mixes two n)
    before = store.rows_of(rid)
    # rows of checkpoints no longer on disk (deleted since): dropped, with a warning
    gone = tuple(sorted(set(before["step"].dropna().astype(int)) - set(steps)))
    if gone:
        before = before[before["step"].isin(steps)]
        shown = ", ".join(str(s) for s in gone[:8]) + (", ..." if len(gone) > 8 else "")
        _warn(
            f"{out} held rows of run {rid} for {len(gone)} checkpoint(s) no longer in {run.path} "
            f"(step {shown}); dropped them"
        )
    recorded_n = (store.runs.get(rid) or {}).get("n_seqs") if len(before) else None
    if n_seqs is None and recorded_n and not force:
        n_seqs = int(recorded_n)
    n_eff = int(n_seqs or run.config.task.eval_size)
    identity = {**identity, "n_seqs": str(n_eff)}
    if recorded_n and int(recorded_n) != n_eff and not force:
        raise ConfigError(
            "--n-seqs",
            f"{out} holds run {rid} scored on n = {recorded_n} sequences per suite, not {n_eff}; "
            f"rerun with --n-seqs {recorded_n}, or add --force to rescore it on {n_eff}",
        )
    done = set() if force else set(before["step"])
    todo = [s for s in steps if s not in done]

    new: list[dict] = []
    recomputed: list[int] = []

    def mine() -> pd.DataFrame:
        kept = before[~before["step"].isin(recomputed)]
        return pd.concat([kept, _frame(new)], ignore_index=True) if new else kept

    saved = {"steps": set(before["step"]) if len(before) else set()}

    def flush() -> None:
        table = mine()
        store.save(rid, identity, table, run)
        saved["steps"] = set(table["step"])

    def write_failed(err: OSError) -> WriteFailed:
        kept = len(saved["steps"] & set(steps))
        return WriteFailed(
            f"{describe_write_error(err)}; {out} keeps what it held at its last save ({kept} of "
            f"{len(steps)} checkpoints of run {rid}); {write_remedy(err)} and rerun the same command to "
            "resume"
        )

    if todo:
        scoring = _scoring(run, None, None, n_seqs)
        initial = len(steps) - len(todo)
        bar = progress_bar(len(steps), f"analyse {rid}", progress, initial=initial, unit="ckpt")
        last = time.monotonic()
        try:
            for step, rows in _score_steps(run, todo, scoring, rid):
                new.extend(rows)
                recomputed.append(step)
                bar.update(1)
                if time.monotonic() - last >= flush_every_s:
                    flush()
                    last = time.monotonic()
        except KeyboardInterrupt:
            bar.close()
            if recomputed:
                flush()
            if force:
                raise Interrupted(
                    f"kept {len(recomputed)} of {len(todo)} recomputed checkpoints in {out} (the others keep "
                    "their earlier rows); rerun the same command to recompute them all"
                ) from None
            kept = len(set(steps) & done) + len(recomputed)
            raise Interrupted(
                f"kept {kept} of {len(steps)} checkpoints in {out}; rerun the same command to resume"
            ) from None
        except BaseException as err:
            bar.close()
            if is_write_error(err):  # a save failed: what the file holds is its last save
                raise write_failed(err) from None
            if recomputed:  # whatever failed, the checkpoints already scored are not lost
                try:
                    flush()
                except OSError:
                    pass
            raise
        bar.close()
    moved = renamed_from is not None and (store.runs.get(rid) or {}).get("path") != identity["path"]
    if recomputed or gone or moved or rid not in store.runs or replaced is not None or not out.exists():
        try:
            flush()
        except OSError as err:
            if not is_write_error(err):
                raise
            raise write_failed(err) from None
    others = store.table.loc[store.table["run"] != rid, "run"].nunique()
    return AnalyzeResult(
        out=out,
        run_id=rid,
        status=status,
        n_present=len(steps),
        analysed=len(recomputed),
        skipped=len(set(steps) & done),
        run_rows=int((store.table["run"] == rid).sum()),
        other_runs=int(others),
        replaced_corrupt=replaced,
        renamed_from=renamed_from,
        dropped_steps=gone,
    )


def _table_bytes(run: Run, out: Path, n_steps: int) -> float:
    """An estimate of the disk a table write needs: this run's rows (about 60 bytes each in
    parquet, 120 in CSV) plus the file as it is (the atomic rewrite holds both copies)."""
    mc = run.config.model
    n_suites = 6 if run.config.kind == "multimodal" else 4
    per_step = 3 * n_suites + 8 * mc.n_layers * mc.n_heads
    per_row = 60 if out.suffix == ".parquet" else 120
    try:
        existing = out.stat().st_size
    except OSError:
        existing = 0
    return n_steps * per_step * per_row + 2 * existing + 65536
