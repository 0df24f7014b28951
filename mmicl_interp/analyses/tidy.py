"""The one long ("tidy") table format every analysis returns and every report reads.

One measured value per row, keyed by the same columns everywhere::

    run, step, suite, metric, layer, head, src_layer, src_head, position, value

- ``run``: the run id (:attr:`~mmicl_interp.runs.Run.run_id`), or a model name for a real
  model; ``step``: the checkpoint (null for a model without checkpoints);
- ``suite``: the eval suite or prompt set the value was measured on;
- ``metric``: what was measured (``accuracy``, ``ih``, ``act_patch_head``, ...);
- ``layer``/``head``: the head the value belongs to (null for model-level metrics);
- ``src_layer``/``src_head``: the sending head of a pairwise measure (path patching,
  composition), else null; ``position``: a token position, else null;
- ``value``: the number (float64).

Columns an analysis does not use are null, so tables of different analyses and runs
concatenate (``pd.concat``) and filter the same way. An analysis may add its own columns
after these (ablation's ``heads``/``method``/``clean``/``delta``, a sweep's swept keys,
a stage comparison's ``stage``); :func:`tidy_table` keeps them. Key columns use pandas' nullable
dtypes (``Int64``, ``string``) so a null stays a null through concatenation and parquet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

COLUMNS: tuple[str, ...] = (
    "run",
    "step",
    "suite",
    "metric",
    "layer",
    "head",
    "src_layer",
    "src_head",
    "position",
    "value",
)
"""The shared columns, in order."""
KEYS: tuple[str, ...] = COLUMNS[:-1]
"""Every column but ``value``: what identifies a row."""
DTYPES: dict[str, str] = {
    **dict.fromkeys(("run", "suite", "metric"), "string"),
    **dict.fromkeys(("step", "layer", "head", "src_layer", "src_head", "position"), "Int64"),
    "value": "float64",
}
"""The pandas dtype of each shared column."""


def tidy_table(
    data: pd.DataFrame | Iterable[Mapping[str, Any]] | None = None,
    extra: Mapping[str, str] | None = None,
    **constants: Any,
) -> pd.DataFrame:
    """A table in the shared format: the shared columns first, in order, with their dtypes.

    ``data`` is a DataFrame or an iterable of row dicts; a shared column it lacks is null;
    ``constants`` set a column to one value on every row (e.g. ``run=..., step=...``).
    Other columns follow the shared ones in their order of appearance; ``extra`` gives
    their dtypes (name -> dtype) and, for an empty table, which ones exist.
    """
    if data is None:
        df = pd.DataFrame()
    elif isinstance(data, pd.DataFrame):
        df = data.copy()
    else:
        df = pd.DataFrame(list(data))
    for name, value in constants.items():
        df[name] = value if len(df) else pd.Series(dtype=object)
    extra = dict(extra or {})
    for name in (*COLUMNS, *extra):
        if name not in df.columns:
            df[name] = pd.Series([pd.NA] * len(df), dtype=object, index=df.index)
    others = [c for c in df.columns if c not in COLUMNS]
    df = df[[*COLUMNS, *others]]
    return df.astype({**DTYPES, **extra})


def empty(extra: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A shared-format table with no rows (``extra``: more columns and their dtypes)."""
    return tidy_table(None, extra)


def head_rows(values: Any, metric: str, **keys: Any) -> list[dict[str, Any]]:
    """Rows of a per-head array ``values[layer, head]`` (tensor or array) for :func:`tidy_table`:
    one row per head with ``metric``, ``layer``, ``head``, ``value`` and the given ``keys``."""
    n_layers, n_heads = values.shape[:2]
    return [
        {**keys, "metric": metric, "layer": layer, "head": head, "value": float(values[layer, head])}
        for layer in range(n_layers)
        for head in range(n_heads)
    ]


__all__ = ["COLUMNS", "DTYPES", "KEYS", "empty", "head_rows", "tidy_table"]
