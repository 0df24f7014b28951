"""Ablation and patching reports for one checkpoint of a run (``mmicl ablate`` / ``mmicl patch``).

Each report is a table plus figures: printed as a rich table in the terminal and written
next to the run as Markdown, JSON and a self-contained HTML page with the plots
(``RUN/reports/<name>.{md,json,html}``). The name carries every choice that changes the
result (step, method or kind and corruption, heads, seed, number of sequences), so a rerun
with other options never overwrites an earlier report.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mmicl_interp.analyses.tidy import tidy_table
from mmicl_interp.config import ConfigError
from mmicl_interp.io import atomic_write_text
from mmicl_interp.runs import Run
from mmicl_interp.types import ABLATION_METHODS, CORRUPTIONS, PATCH_KINDS


@dataclass
class TableReport:
    """A titled table with figures and metadata, writable as Markdown, JSON and HTML."""

    name: str
    title: str
    table: pd.DataFrame
    meta: dict[str, Any]
    figures: list[tuple[str, Any]] = field(default_factory=list)
    notes: str = ""

    @property
    def shown(self) -> pd.DataFrame:
        """The table as displayed: without the columns that are null on every row."""
        return self.table.dropna(axis=1, how="all") if len(self.table) else self.table

    def to_markdown(self) -> str:
        meta = "\n".join(f"- {k}: {v}" for k, v in self.meta.items())
        body = self.shown.to_markdown(index=False, floatfmt=".4f") if len(self.table) else "(empty)"
        notes = f"\n{self.notes}\n" if self.notes else ""
        return f"# {self.title}\n\n{meta}\n{notes}\n{body}\n"

    def to_json(self) -> dict[str, Any]:
        records = json.loads(self.table.to_json(orient="records"))
        return {"title": self.title, "meta": self.meta, "notes": self.notes, "rows": records}

    def write(self, folder: str | Path) -> list[Path]:
        """Write ``<name>.md``, ``<name>.json`` and ``<name>.html`` into ``folder``."""
        from mmicl_interp.report.html import write_report

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        md, js, html = (folder / f"{self.name}.{ext}" for ext in ("md", "json", "html"))
        atomic_write_text(md, self.to_markdown())
        atomic_write_text(js, json.dumps(self.to_json(), indent=2) + "\n")
        sections: list[tuple[str, Any]] = [
            ("Setting", "\n".join(f"- {k}: {v}" for k, v in self.meta.items()))
        ]
        if self.notes:
            sections.append(("Notes", self.notes))
        sections += [*self.figures, ("Table", self.shown)]
        write_report(html, sections, title=self.title)
        return [md, js, html]

    def print(self, console=None, max_rows: int = 40) -> None:
        """Print the table with rich (the first ``max_rows`` rows); every value in full (folded,
        never cut with an ellipsis), and unwrapped when the output is not a terminal."""
        from rich.table import Table

        console = console or plain_console()
        table = Table(title=self.title, caption=", ".join(f"{k}={v}" for k, v in self.meta.items()))
        shown = self.shown
        for column in shown.columns:
            justify = "right" if shown[column].dtype.kind in "fi" else "left"
            table.add_column(str(column), justify=justify, overflow="fold")
        for _, row in shown.head(max_rows).iterrows():
            table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.tolist()))
        console.print(table)
        if self.notes:
            console.print(self.notes)


def plain_console():
    """A rich Console that never cuts a number: the terminal's width on a terminal, and a very
    wide one when the output is piped or redirected (rich's default there is 80 columns, which
    cut values to "-0.71…")."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=100_000)


def check_decoder_run(run: Run, command: str) -> None:
    """Refuse an encoder-pretraining run (``kind = "encoder"``): ablation, patching and the
    run report study the decoder's heads, which such a run does not have."""
    if run.config.kind == "encoder":
        raise ConfigError(
            "RUN",
            f"{run.path} is an encoder-pretraining run (kind = \"encoder\"); mmicl {command} needs a "
            "decoder run (kind unimodal or multimodal); for the encoder see `mmicl analyze` or its "
            "metrics.jsonl",
        )


def resolve_step(run: Run, step: int | None) -> int:
    """``step`` if the run has a checkpoint there (default: the last one), else ConfigError('--step')."""
    steps = run.steps
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {run.path}")
    if step is None:
        return steps[-1]
    if step not in steps:
        shown = steps if len(steps) <= 12 else [*steps[:5], "...", *steps[-5:]]
        listed = ", ".join(str(s) for s in shown)
        raise ConfigError("--step", f"{step} has no checkpoint in {run.path}; available steps: {listed}")
    return step


_HEAD = re.compile(r"L(\d+)H(\d+)")
HEADS_FORMAT = "comma-separated L<layer>H<head> with no spaces, e.g. L1H0,L0H0"


def parse_head_list(text: str, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    """Parse ``--heads`` strictly: ``L<layer>H<head>`` items joined by commas, no spaces or
    empty items, every head in range of the model, none twice. Raises ConfigError('--heads')."""
    if not text:
        raise ConfigError("--heads", f"is empty; give {HEADS_FORMAT} (or omit it to ablate each head alone)")
    heads: list[tuple[int, int]] = []
    for part in text.split(","):
        match = _HEAD.fullmatch(part)
        if match is None:
            raise ConfigError("--heads", f"{part!r} in {text!r} is not a head; give {HEADS_FORMAT}")
        layer, head = int(match.group(1)), int(match.group(2))
        if not (layer < n_layers and head < n_heads):
            raise ConfigError(
                "--heads",
                f"{part} is out of range; this model has layers 0..{n_layers - 1} and heads 0..{n_heads - 1}",
            )
        if (layer, head) in heads:
            raise ConfigError("--heads", f"{part} is listed twice in {text!r}")
        heads.append((layer, head))
    return heads


def check_method(method: str) -> None:
    if method not in ABLATION_METHODS:
        raise ConfigError("--method", f"must be one of {', '.join(ABLATION_METHODS)}; got {method!r}")


def check_patch_options(run: Run, kind: str, corruption: str | None) -> str:
    """Validate ``--kind`` and ``--corruption`` for ``run``; returns the corruption (defaulted)."""
    if kind not in PATCH_KINDS:
        raise ConfigError("--kind", f"must be one of {', '.join(PATCH_KINDS)}; got {kind!r}")
    corruption = default_corruption(run, kind) if corruption is None else corruption
    if corruption not in CORRUPTIONS:
        raise ConfigError("--corruption", f"must be one of {', '.join(CORRUPTIONS)}; got {corruption!r}")
    if corruption == "item_m2" and "m2" not in run.layout.modalities:
        raise ConfigError("--corruption", "item_m2 needs a multimodal run; this run has only M1 items")
    return corruption


def ablation_report(
    run: Run,
    step: int | None = None,
    heads: str | None = None,
    method: str = "mean",
    n_seqs: int | None = None,
    seed: int = 0,
) -> TableReport:
    """Ablate ``heads`` together (default: each head alone) at one checkpoint, on every suite.

    ``heads`` is parsed strictly (:func:`parse_head_list`); bad options raise ConfigError
    naming the option, before any model is loaded.
    """
    from mmicl_interp.analyses.ablation import ABLATION_EXTRA, ablate_each_head, ablate_heads, format_heads
    from mmicl_interp.plots.figures import ablation_bars

    check_decoder_run(run, "ablate")
    check_method(method)
    step = resolve_step(run, step)
    mc = run.config.model
    head_list = parse_head_list(heads, mc.n_layers, mc.n_heads) if heads is not None else None
    model = run.model(step)
    suites = run.suites(n_seqs)
    if head_list is not None:
        table = ablate_heads(model, suites, head_list, method=method, seed=seed)
    else:
        table = ablate_each_head(model, suites, method=method, seed=seed)
    table = tidy_table(table, ABLATION_EXTRA, run=run.run_id, step=step)  # the run and step it is of
    which = format_heads(head_list).replace(",", "-") if head_list is not None else "each"
    n = len(next(iter(suites.values())))
    meta = {
        "run": run.name,
        "step": step,
        "heads": format_heads(head_list) if head_list is not None else "each head alone",
        "method": method,
        "seed": seed,
        "sequences per suite": n,
    }
    figure = ablation_bars(table, title=f"{method} ablation at step {step}: change in accuracy")
    return TableReport(
        f"ablate_step{step}_{method}_{which}_seed{seed}_n{n}",
        f"Head ablation: {run.name}, step {step}",
        table,
        meta,
        [("Accuracy change per suite", figure)],
    )


_CORRUPTION_NOTES = {
    "label": "the matching exemplars' labels are replaced by another label.",
    "item": "the matching exemplars' (M1) items are replaced by items of a fresh class.",
    "item_m1": "the matching exemplars' M1 items are replaced by items of a fresh class "
    "(M2 items and labels stay clean).",
    "item_m2": "the matching exemplars' M2 items are replaced by items of a fresh class "
    "(M1 items and labels stay clean).",
}


def default_corruption(run: Run, kind: str) -> str:
    """``label``, except for path patching: the items the previous-token head reads at offset 1
    (``item`` on unimodal runs, ``item_m2`` on multimodal ones)."""
    if kind != "path":
        return "label"
    return "item_m2" if len(run.layout.modalities) > 1 else "item"


def patching_report(
    run: Run,
    step: int | None = None,
    kind: str = "heads",
    corruption: str | None = None,
    n_seqs: int | None = 200,
    seed: int = 0,
) -> TableReport:
    """Activation, path or attribution patching of the icl suite at one checkpoint.

    ``corruption`` defaults to :func:`default_corruption`.
    """
    from mmicl_interp.analyses import patching as P
    from mmicl_interp.plots.figures import patching_heatmap

    check_decoder_run(run, "patch")
    corruption = check_patch_options(run, kind, corruption)
    step = resolve_step(run, step)
    model = run.model(step)
    batch = run.suites(n_seqs)["icl"]
    setup = P.prepare_patching(model, batch, run.task, run.layout, kind=corruption, seed=seed)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    head_names = [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]
    kinds = run.layout.kinds()
    pos_names = [f"{p}:{k}" for p, k in enumerate(kinds)]
    layer_names = [f"L{layer}" for layer in range(n_layers)]
    figures: list[tuple[str, Any]] = []
    rows: list[dict] = []
    if kind == "heads":
        per_head = P.patch_head_outputs(model, setup)
        by_pos = P.patch_head_outputs_by_pos(model, setup)
        for layer in range(n_layers):
            for head in range(n_heads):
                rows.append(
                    dict(metric="act_patch_head", layer=layer, head=head, value=per_head[layer, head])
                )
                for pos in range(by_pos.shape[1]):
                    rows.append(
                        dict(
                            metric="act_patch_head_pos",
                            layer=layer,
                            head=head,
                            position=pos,
                            position_kind=kinds[pos],
                            value=by_pos[layer, pos, head],
                        )
                    )
        figures.append(
            (
                "Head outputs, all positions",
                patching_heatmap(
                    per_head,
                    [f"H{h}" for h in range(n_heads)],
                    layer_names,
                    "patched head output (all positions)",
                    x_title="head",
                    y_title="layer",
                ),
            )
        )
        flat = by_pos.permute(0, 2, 1).reshape(n_layers * n_heads, -1)
        figures.append(
            (
                "Head outputs by position",
                patching_heatmap(
                    flat,
                    pos_names,
                    head_names,
                    "patched head output by position",
                    x_title="position",
                    y_title="head",
                ),
            )
        )
    elif kind == "resid":
        resid = P.patch_resid_pre(model, setup)
        rows = [
            dict(
                metric="act_patch_resid_pre",
                layer=layer,
                position=pos,
                position_kind=kinds[pos],
                value=resid[layer, pos],
            )
            for layer in range(n_layers)
            for pos in range(resid.shape[1])
        ]
        figures.append(
            (
                "Residual stream by layer and position",
                patching_heatmap(
                    resid, pos_names, layer_names, "patched resid_pre", x_title="position", y_title="layer"
                ),
            )
        )
    elif kind == "path":
        paths = P.path_patch(model, setup)
        for which, values in paths.items():
            for s in range(len(head_names)):
                for r in range(len(head_names)):
                    value = float(values[s, r])
                    if value == value:  # NaN where the receiver is not later than the sender
                        rows.append(
                            dict(
                                metric=f"path_patch_{which}",
                                layer=r // n_heads,
                                head=r % n_heads,
                                src_layer=s // n_heads,
                                src_head=s % n_heads,
                                value=value,
                            )
                        )
            figures.append(
                (
                    f"Path patching into receivers' {which}",
                    patching_heatmap(
                        values,
                        head_names,
                        head_names,
                        f"sender -> receiver {which}",
                        x_title="receiver",
                        y_title="sender",
                    ),
                )
            )
    else:
        attribution = P.attribution_patch(model, setup)
        activation = P.patch_head_outputs(model, setup)
        per_metric = (("attr_patch_head", attribution["head_out"]), ("act_patch_head", activation))
        for layer in range(n_layers):
            for head in range(n_heads):
                for metric, values in per_metric:
                    rows.append(dict(metric=metric, layer=layer, head=head, value=values[layer, head]))
        figures.append(
            (
                "Attribution patching, head outputs",
                patching_heatmap(
                    attribution["head_out"],
                    [f"H{h}" for h in range(n_heads)],
                    layer_names,
                    "attribution estimate (head outputs)",
                    x_title="head",
                    y_title="layer",
                ),
            )
        )
        figures.append(
            (
                "Attribution patching, residual stream",
                patching_heatmap(
                    attribution["resid_pre"],
                    pos_names,
                    layer_names,
                    "attribution estimate (resid_pre)",
                    x_title="position",
                    y_title="layer",
                ),
            )
        )
    meta = {
        "run": run.name,
        "step": step,
        "kind": kind,
        "corruption": corruption,
        "seed": seed,
        "icl sequences": len(batch),
        "clean logit diff": round(setup.clean_ld, 4),
        "corrupted logit diff": round(setup.corrupt_ld, 4),
    }
    notes = (
        "Metric: normalised logit difference of the correct label against the alternative "
        "label, (LD_patched - LD_corrupt) / (LD_clean - LD_corrupt): 1 = fully restores the "
        f"clean run, 0 = no effect. Corruption '{corruption}': " + _CORRUPTION_NOTES[corruption]
    )
    return TableReport(
        f"patch_step{step}_{kind}_{corruption}_seed{seed}_n{len(batch)}",
        f"Patching ({kind}): {run.name}, step {step}",
        tidy_table(
            [{**r, "value": float(r["value"])} for r in rows],
            {"position_kind": "string"},
            run=run.run_id,
            step=step,
            suite="icl",
        ),
        meta,
        figures,
        notes,
    )
