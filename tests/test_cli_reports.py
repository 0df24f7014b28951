"""`mmicl ablate`, `mmicl patch` and `mmicl report` on a copy of the shipped example run."""

import json
import shutil
from pathlib import Path

import pytest

from mmicl_interp.cli import main
from mmicl_interp.report.html import external_resources
from mmicl_interp.runs import load_run


def test_ablate_prints_a_table_and_writes_markdown_json_and_html(run_copy, capsys):
    assert main(["ablate", str(run_copy), "--heads", "L1H0", "--method", "zero", "--n-seqs", "100"]) == 0
    out = capsys.readouterr().out
    assert "Head ablation" in out and "L1H0" in out
    stem = run_copy / "reports" / "ablate_step1000_zero_L1H0_seed0_n100"
    data = json.loads(stem.with_suffix(".json").read_text())
    icl = next(r for r in data["rows"] if r["suite"] == "icl" and r["metric"] == "accuracy")
    assert icl["clean"] > 0.9 and icl["value"] < 0.5  # the induction head carries icl
    assert "| suite" in stem.with_suffix(".md").read_text()
    assert "plotly" in stem.with_suffix(".html").read_text()


def test_patch_path_puts_the_effect_on_the_prev_token_to_induction_key_path(run_copy, capsys):
    assert main(["patch", str(run_copy), "--kind", "path", "--n-seqs", "100", "--quiet"]) == 0
    data = json.loads((run_copy / "reports" / "patch_step1000_path_item_seed0_n100.json").read_text())
    by_input = {
        r["metric"].removeprefix("path_patch_"): r["value"]
        for r in data["rows"]
        if (r["src_layer"], r["src_head"], r["layer"], r["head"]) == (0, 0, 1, 0)
    }
    assert {r["run"] for r in data["rows"]} == {load_run(run_copy).run_id} and len(by_input) == 3
    assert by_input["k"] > 0.5 > max(abs(by_input["q"]), abs(by_input["v"]))


@pytest.mark.parametrize("kind", ["heads", "resid", "attribution"])
def test_patch_kinds_write_their_reports(run_copy, kind):
    assert main(["patch", str(run_copy), "--kind", kind, "--n-seqs", "64", "--quiet"]) == 0
    assert (run_copy / "reports" / f"patch_step1000_{kind}_label_seed0_n64.html").is_file()


@pytest.mark.parametrize(
    "args,field",
    [
        (["patch", "--kind", "bogus"], "--kind"),
        (["patch", "--corruption", "noise"], "--corruption"),
        (["ablate", "--method", "nope"], "--method"),
        (["ablate", "--heads", "L9H0"], "--heads"),
        (["ablate", "--step", "9"], "--step"),  # 9 is no checkpoint step
    ],
)
def test_bad_arguments_exit_2_with_one_line_naming_the_option(run_copy, capsys, args, field):
    assert main([args[0], str(run_copy), *args[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0]


def test_report_writes_one_self_contained_html_page(run_copy, capsys):
    out = run_copy / "page.html"
    assert main(["report", str(run_copy), "--out", str(out), "--n-seqs", "64", "--quiet"]) == 0
    html = out.read_text()
    for title in (
        "Circuit formation",
        "IH vs icl accuracy",
        "Ablation",
        "Path patching",
        "Attention patterns",
    ):
        assert title in html
    assert external_resources(html) == []  # nothing is fetched from the network


def test_analyze_ends_with_the_best_heads_correlation_and_its_block_bootstrap(tmp_path, capsys):
    import re

    import numpy as np
    import pandas as pd

    run = tmp_path / "ex"
    shutil.copytree(Path(__file__).resolve().parents[1] / "checkpoints" / "example", run)
    assert main(["analyze", str(run), "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    m = re.fullmatch(
        r"best induction head L(\d)H(\d): ih vs icl accuracy over (\d+) checkpoints: "
        r"Pearson r ([\d.]+) \[([\d.]+), ([\d.]+)\], moving-block bootstrap, block (\d+)",
        last,
    )
    assert m, last
    layer, head, n, r, lo, hi, block = m.groups()
    # independent: Pearson r of that head's ih with icl accuracy, straight from the table
    table = pd.read_parquet(run / "analysis.parquet")
    table = table[table["run"] == "example"]  # a copy with its own table keeps its rows' id (issue 22)
    ih = table[(table["metric"] == "ih") & (table["layer"] == int(layer)) & (table["head"] == int(head))]
    acc = table[(table["metric"] == "accuracy") & (table["suite"] == "icl")]
    joined = ih.set_index("step")["value"].to_frame("ih").join(acc.set_index("step")["value"].rename("acc"))
    assert len(joined) == int(n) == 50
    assert abs(np.corrcoef(joined["ih"], joined["acc"])[0, 1] - float(r)) < 5e-4
    assert float(lo) < float(r) < float(hi) and int(block) > 1
