"""Miniatures of the analyses/ claim scripts, so they cannot rot."""

import importlib.util
from pathlib import Path

import pandas as pd

from tests.conftest import TINY_TOML as TINY

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "analyses" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_claim1_summary_and_crossing_on_a_hand_made_table():
    claim1 = _load("claim1_data_complexity")
    rows = []
    for k, icl in ((32, [0.1, 0.2]), (512, [0.6, 0.8])):
        for seed, value in enumerate(icl):
            for step, v in ((0, 0.03), (10, value)):
                rows.append(
                    {
                        "run": f"K={k}_seed={seed}",
                        "step": step,
                        "suite": "icl",
                        "metric": "accuracy",
                        "value": v,
                        "task.K": k,
                    }
                )
    summary = claim1.summarise(pd.DataFrame(rows))
    icl = summary[summary["suite"] == "icl"].set_index("task.K")
    assert icl.loc[512, "mean"] == 0.7 and icl.loc[512, "min"] == 0.6 and icl.loc[32, "max"] == 0.2
    assert claim1.crossing(summary) == "512"


def test_claim1_script_runs_a_miniature_sweep_and_writes_its_table(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    grid = tmp_path / "grid.toml"
    grid.write_text('base = "tiny.toml"\nname = "mini"\n[grid]\n"task.K" = [64, 128]\n"train.seed" = [0]\n')
    claim1 = _load("claim1_data_complexity")
    claim1.main(
        [
            "--grid",
            str(grid),
            "--out",
            str(tmp_path / "results"),
            "--runs",
            str(tmp_path / "runs"),
            "--workers",
            "1",
        ]
    )
    text = (tmp_path / "results" / "claim1_K.md").read_text()
    assert "| 64 |" in text and "| 128 |" in text and "Smallest K with mean icl >= 0.5" in text
    assert (tmp_path / "results" / "claim1_K.html").is_file()


def test_multimodal_asymmetry_script_runs_a_miniature_sweep(tmp_path):
    asym = _load("multimodal_asymmetry")
    asym.main(
        ["--k2", "32", "64", "--steps", "4", "--out", str(tmp_path / "results"), "--runs", str(tmp_path)]
    )
    text = (tmp_path / "results" / "multimodal_asymmetry.md").read_text()
    assert text.count("| stage 2 ") == 2 and text.count("| early fusion ") == 2
    assert "Smallest K2 where multimodal icl reaches 0.5" in text


def test_claim2_script_runs_a_miniature_sweep_and_reports_each_position_type(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'base = "tiny.toml"\nname = "mini2"\n[grid]\n"model.positions" = ["onehot", "rope"]\n'
        '"task.K" = [64]\n"train.seed" = [0]\n'
    )
    claim2 = _load("claim2_positions")
    claim2.main(
        [
            "--grid",
            str(grid),
            "--out",
            str(tmp_path / "results"),
            "--runs",
            str(tmp_path / "runs"),
            "--workers",
            "1",
        ]
    )
    text = (tmp_path / "results" / "claim2_positions.md").read_text()
    assert "| onehot | 64 |" in text and "| rope | 64 |" in text
    assert "Smallest K with mean icl >= 0.5: onehot" in text


def test_claim2_thresholds_and_onsets_on_a_hand_made_table():
    claim2 = _load("claim2_positions")
    rows = []
    for pos, k, curve in (("onehot", 128, [0.03, 0.9, 1.0]), ("rope", 128, [0.03, 0.05, 0.1])):
        for step, v in zip((0, 100, 200), curve, strict=True):
            for suite, value in (("icl", v), ("iwl", 0.05)):
                rows.append(
                    {
                        "run": f"{pos}",
                        "step": step,
                        "suite": suite,
                        "metric": "accuracy",
                        "value": value,
                        "model.positions": pos,
                        "task.K": k,
                    }
                )
    summary = claim2.summarise(pd.DataFrame(rows)).set_index("model.positions")
    assert 0 < summary.loc["onehot", "onset"] < 100  # half the rise (0.515) is crossed before step 100
    assert summary.loc["rope", "onset"] != summary.loc["rope", "onset"]  # NaN: never reached 0.5
    assert claim2.thresholds(summary.reset_index()) == {"onehot": "128", "rope": "none up to 128"}
