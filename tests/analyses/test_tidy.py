"""The shared long table: every analysis returns it, so tables concatenate and filter alike."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mmicl_interp.analyses.ablation import ablation_over_checkpoints
from mmicl_interp.analyses.patching import patching_table
from mmicl_interp.analyses.tables import circuit_scores
from mmicl_interp.analyses.tidy import COLUMNS, DTYPES, empty, head_rows, tidy_table
from mmicl_interp.analyses.weights import composition_over_checkpoints


def test_tidy_table_orders_types_and_fills_missing_columns_with_nulls():
    rows = [{"value": 1, "metric": "ih", "layer": 1, "head": 0, "extra": "x"}]
    df = tidy_table(rows, {"extra": "string"}, run="r", step=5)
    assert list(df.columns) == [*COLUMNS, "extra"]
    want = {c: str(pd.Series(dtype=t).dtype) for c, t in DTYPES.items()}
    assert {c: str(df[c].dtype) for c in COLUMNS} == want
    assert df.loc[0, "run"] == "r" and df.loc[0, "step"] == 5 and df.loc[0, "value"] == 1.0
    assert df[["suite", "src_layer", "src_head", "position"]].isna().all().all()
    assert list(empty({"extra": "string"}).columns) == [*COLUMNS, "extra"] and len(empty()) == 0


def test_head_rows_walk_layers_then_heads():
    values = torch.tensor([[0.1, 0.2], [0.3, 0.4]])
    rows = head_rows(values, "ih", run="r")
    assert [(r["layer"], r["head"]) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [r["value"] for r in rows] == [float(v) for v in values.flatten()]
    assert all(r["run"] == "r" and r["metric"] == "ih" for r in rows)


def test_every_analysis_table_concatenates_and_survives_parquet(icl_run, tmp_path):
    """Scores, ablation, patching and composition of one run stack into one table whose
    nulls stay nulls through parquet, and each analysis's rows are found by the same filter."""
    run = icl_run.run
    step = run.steps[-1]
    scores = circuit_scores(run, steps=[step], suites=["icl"], n_seqs=32, progress=False)
    ablation = ablation_over_checkpoints(run, "L1H0", "zero", steps=[step], n_seqs=32)
    patching = patching_table(
        icl_run.model, icl_run.suites["icl"][:32], run.task, run.layout, "label", run=run.run_id, step=step
    )
    composition = composition_over_checkpoints(run, steps=[step])
    parts = {"scores": scores, "ablation": ablation, "patching": patching, "composition": composition}
    for name, part in parts.items():
        assert list(part.columns[: len(COLUMNS)]) == list(COLUMNS), name
        assert set(part["run"]) == {run.run_id} and set(part["step"]) == {step}, name
    both = pd.concat(parts.values(), ignore_index=True)
    assert len(both) == sum(len(p) for p in parts.values())
    for column, dtype in DTYPES.items():
        assert str(both[column].dtype) == str(pd.Series(dtype=dtype).dtype), column
    path = tmp_path / "all.parquet"
    pq.write_table(pa.Table.from_pandas(both, preserve_index=False), path)
    back = pq.read_table(path).to_pandas()
    assert back["src_layer"].isna().sum() == both["src_layer"].isna().sum() > 0
    # the shared keys find the ablation of L1H0 on each suite, and nothing else
    hit = both[(both["metric"] == "accuracy") & (both["layer"] == 1) & (both["head"] == 0)]
    assert sorted(hit["suite"]) == sorted(run.suites(32)) and set(hit["heads"]) == {"L1H0"}
    # path patching L0H0 -> L1H0 is keyed by receiver (layer, head) and sender (src_layer, src_head)
    path_rows = both[both["metric"].str.startswith("path_patch_").fillna(False)]
    assert set(zip(path_rows["src_layer"], path_rows["layer"], strict=True)) == {(0, 1)}
