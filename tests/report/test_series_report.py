"""``mmicl report`` on a checkpoint series of a real LM (issue 23): the shipped
``examples/stdlib_lm`` (13 GPT-NeoX checkpoints) scored by ``mmicl series`` into a copy of
itself, then reported through the same code path as a synthetic run.

Checked against independent computations: the best head's correlation with each ICL measure
against ``numpy.corrcoef`` / pandas' Spearman on the table, and every attention frame of the
slider against plain transformers' eager ``output_attentions``. Offline (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmicl_interp.analyses.correlation import ih_icl_correlation, phases
from mmicl_interp.analyses.tables import read_table
from mmicl_interp.cli import main
from mmicl_interp.plots.attention_view import read_slider_frames
from mmicl_interp.real import series as S
from mmicl_interp.report.html import external_resources
from tests.analyses.test_correlation import make_scores

SHIPPED = Path(__file__).resolve().parents[2] / "examples" / "stdlib_lm"
pytestmark = pytest.mark.skipif(not SHIPPED.is_dir(), reason="the shipped stdlib series is not there")
SMALL = S.SeriesOptions(rep_seqs=8, text_seqs=8, prompts=None)
"""Small options: the 13 checkpoints score in a few seconds."""


def copy_checkpoints(dst: Path, steps: list[int] | None = None) -> Path:
    """A copy of the shipped series (all checkpoints, or ``steps``) with its recipe."""
    dst.mkdir(parents=True)
    shutil.copy(SHIPPED / "recipe.json", dst / "recipe.json")
    for folder in sorted(SHIPPED.glob("step_*")):
        if steps is None or int(folder.name.split("_")[1]) in steps:
            shutil.copytree(folder, dst / folder.name)
    return dst


def sections(page: str) -> dict[str, str]:
    """Section heading -> its HTML."""
    out = {}
    for body in re.findall(r'<section class="report-section"[^>]*>(.*?)</section>', page, re.S):
        heading = re.search(r"<h2>.*?</a>(.*?)</h2>", body, re.S).group(1)
        out[html_lib.unescape(heading.strip())] = body
    return out


def plain(body: str) -> str:
    text = re.sub(r"<script.*?</script>", " ", body, flags=re.S)
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """(series folder, its report page): scored into the copy, then ``mmicl report FOLDER``."""
    torch.set_num_threads(1)
    folder = copy_checkpoints(tmp_path_factory.mktemp("series") / "stdlib_lm")
    S.run_series([str(folder)], out=folder, options=SMALL, log=lambda s: None)
    assert main(["report", str(folder), "--quiet"]) == 0
    return folder, (folder / "report.html").read_text(encoding="utf-8")


def test_series_report_has_formation_correlation_and_a_frame_per_checkpoint(reported):
    folder, page = reported
    table = read_table(folder / "series.parquet")
    steps = sorted(int(s) for s in table["step"].unique())
    assert len(steps) == 13
    assert "<title>mmicl-interp report: stdlib_lm</title>" in page
    assert external_resources(page) == []
    parts = sections(page)
    for heading, body in parts.items():  # every number states its n
        assert re.search(r"\bn = \d+", heading + plain(body)), heading
    (formation,) = [b for h, b in parts.items() if h.startswith("Circuit formation")]
    names = set(re.findall(r'"name":"([^"]+)"', formation))
    assert {"rep_induction (L1H0)", "icl_score (text)", "rep_icl_gain (repeated_random)"} <= names
    assert any(n.startswith("rep_prev_token (L0H") for n in names)
    (corr,) = [plain(b) for h, b in parts.items() if h.startswith("Induction strength vs ICL measures")]
    assert re.search(r"L1H0 vs icl_score \(text\) over 13 checkpoints: Pearson r -?\d\.\d+ \[-?\d", corr)
    (slider,) = read_slider_frames(page)
    assert slider["steps"] == steps  # one attention frame per checkpoint
    assert np.asarray(slider["patterns"]).shape == (13, len(slider["heads"]), 49, 49)
    assert slider["heads"][:2] == ["L1H0", "L1H2"] and all(h.startswith("L") for h in slider["heads"])
    assert page.count('class="attention-slider"') == 1


def _line_numbers(page: str, metric: str) -> tuple[float, float, float, float]:
    """(pearson, lo, hi, spearman) of the best head's line for ``metric`` in the report."""
    text = plain(page)
    m = re.search(
        rf"vs {metric} \(\w+\) over 13 checkpoints: Pearson r (-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\][^;]*; "
        r"Spearman rho (-?[\d.]+)",
        text,
    )
    assert m, metric
    return tuple(float(g) for g in m.groups())  # type: ignore[return-value]


def test_series_correlation_equals_numpy_on_the_table(reported):
    """The best induction head (highest final rep_induction among layers >= 1), its curve against
    icl_score and against rep_loss_first - rep_loss_second: numpy's Pearson, pandas' Spearman."""
    folder, page = reported
    table = read_table(folder / "series.parquet")
    ind = table[(table["metric"] == "rep_induction") & (table["layer"] >= 1)]
    last = ind[ind["step"] == ind["step"].max()]
    best = last.loc[last["value"].idxmax()]
    assert (int(best["layer"]), int(best["head"])) == (1, 0)
    head = ind[(ind["layer"] == best["layer"]) & (ind["head"] == best["head"])].set_index("step")["value"]
    scalar = table[table["layer"].isna()].pivot_table(index="step", columns="metric", values="value")
    curves = {
        "icl_score": scalar["icl_score"],
        "rep_icl_gain": scalar["rep_loss_first"] - scalar["rep_loss_second"],
    }
    for metric, curve in curves.items():
        x, y = head.sort_index().to_numpy(float), curve.sort_index().to_numpy(float)
        r, lo, hi, rho = _line_numbers(page, metric)
        assert r == pytest.approx(np.corrcoef(x, y)[0, 1], abs=5e-4)
        assert rho == pytest.approx(pd.Series(x).corr(pd.Series(y), method="spearman"), abs=5e-4)
        assert lo <= r <= hi and lo < hi
    assert _line_numbers(page, "rep_icl_gain")[0] > 0.9  # the heads form as the second copy gets easier


def test_series_slider_patterns_equal_hf_eager_attentions(reported):
    """Each frame is the checkpoint's attention on the slider's prompt: plain transformers, eager
    attention, ``output_attentions`` (not the TransformerLens bridge the report runs)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mmicl_interp.real.repeated import ordinary_token_ids, repeated_tokens

    folder, page = reported
    (slider,) = read_slider_frames(page)
    tok = AutoTokenizer.from_pretrained(folder / "step_8000")
    n = S.SLIDER_REP_LEN
    ids = repeated_tokens(ordinary_token_ids(tok, len(tok)), n, 1, tok.bos_token_id, seed=SMALL.seed)
    assert len(slider["tokens"]) == ids.shape[1] == 2 * n + 1
    assert slider["tokens"][1 : n + 1] == slider["tokens"][n + 1 :]  # the prompt repeats
    heads = [tuple(map(int, re.fullmatch(r"L(\d+)H(\d+)", h).groups())) for h in slider["heads"]]
    for i in (0, 7, 12):  # steps 0, 3000 (the onset) and 8000
        step = slider["steps"][i]
        model = AutoModelForCausalLM.from_pretrained(folder / f"step_{step}", attn_implementation="eager")
        with torch.no_grad():
            att = model(input_ids=ids, output_attentions=True).attentions
        want = np.stack([att[layer][0, head].numpy() for layer, head in heads])
        np.testing.assert_allclose(np.asarray(slider["patterns"][i]), want, atol=6e-5)
    final = np.asarray(slider["patterns"][-1][0])  # L1H0 at step 8000 attends along the induction stripe
    q = np.arange(n + 1, 2 * n + 1)
    assert final[q, q - (n - 1)].mean() > 0.3


def test_report_on_a_folder_of_checkpoints_scores_it_first(tmp_path, capsys):
    """A folder of step_* checkpoints without series.json: scored into itself with the defaults
    of ``mmicl series``, then reported; the second report reuses the scores."""
    torch.set_num_threads(1)
    folder = copy_checkpoints(tmp_path / "ckpts", steps=[0, 3000, 8000])
    assert main(["report", str(folder), "--quiet", "--out", str(tmp_path / "page.html")]) == 0
    assert "scoring the checkpoints" in capsys.readouterr().out
    meta = json.loads((folder / "series.json").read_text())
    assert meta["steps_done"] == [0, 3000, 8000]
    assert all(Path(c["path"]).is_absolute() for c in meta["checkpoints"])
    (slider,) = read_slider_frames((tmp_path / "page.html").read_text(encoding="utf-8"))
    assert slider["steps"] == [0, 3000, 8000]
    assert main(["report", str(folder), "--quiet"]) == 0
    assert "scoring" not in capsys.readouterr().out
    assert (folder / "report.html").is_file()


@pytest.mark.parametrize("make", ["empty", "file", "missing"])
def test_report_on_neither_a_run_nor_a_series_is_one_line_naming_run(tmp_path, capsys, make):
    folder = tmp_path / "thing"
    if make != "missing":
        folder.mkdir()
    if make == "file":
        (folder / "notes.txt").write_text("not a run\n")
    assert main(["report", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RUN" in err[0] and str(folder) in err[0]
    assert not (folder / "report.html").exists()


def test_correlation_functions_take_the_icl_metric_by_name():
    """The same curve under another metric name gives the same correlations and onsets."""
    scores = make_scores()
    renamed = scores.copy()
    renamed["metric"] = renamed["metric"].astype(str).replace({"accuracy": "icl_score"})
    a = ih_icl_correlation(scores, n_boot=200)
    b = ih_icl_correlation(renamed, icl_metric="icl_score", n_boot=200)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(phases(scores), phases(renamed, icl_metric="icl_score"))
    with pytest.raises(ValueError, match="accuracy"):
        ih_icl_correlation(renamed, n_boot=200)  # the default still reads accuracy
