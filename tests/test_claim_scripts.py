"""Miniatures of the analyses/ claim scripts (tiny config, 2 K values, 6 steps), so they cannot rot."""

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from mmicl_interp import load_run
from tests.conftest import TINY_TOML as TINY

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "analyses" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _grid(tmp_path: Path, name: str, axes: str) -> str:
    """A grid file over the tiny config; ``axes`` is the body of its [grid] table."""
    (tmp_path / "tiny.toml").write_text(TINY)
    path = tmp_path / f"{name}.toml"
    path.write_text(f'base = "tiny.toml"\nname = "{name}"\n[grid]\n{axes}')
    return str(path)


def _run(script: str, tmp_path: Path, grids: list[str]) -> str:
    """Run a claim script's main on ``grids`` into tmp_path; return its Markdown."""
    module = _load(script)
    out = tmp_path / "results"
    module.main(
        ["--grid", *grids, "--out", str(out), "--runs", str(tmp_path / "runs"), "--workers", "1", "--no-png"]
    )
    assert (out / f"{script}.html").is_file()
    return (out / f"{script}.md").read_text()


@pytest.mark.slow
def test_claim1_script_reports_each_sweep_and_the_K_crossing(tmp_path):
    grids = [
        _grid(tmp_path, "mini_K", '"task.K" = [64, 128]\n"train.seed" = [0, 1]\n'),
        _grid(tmp_path, "mini_B", '"task.B" = [1, 2]\n"train.seed" = [0]\n'),
    ]
    text = _run("claim1_data_complexity", tmp_path, grids)
    assert "## K\n" in text and "| 64 | " in text and "| 128 | " in text
    assert "Smallest K with mean icl >= 0.5:" in text
    assert "## B (at " not in text and "## B\n" in text and "| 1 | " in text and "| 2 | " in text
    assert "(6 runs: 6 trained, 0 reused;" in text  # 4 + 2 points


@pytest.mark.slow
def test_claim2_script_reports_thresholds_onsets_and_a_verdict_per_position_type(tmp_path):
    grid = _grid(
        tmp_path,
        "mini2",
        '"model.positions" = ["onehot", "rope"]\n"task.K" = [64, 128]\n"train.seed" = [0]\n',
    )
    text = _run("claim2_positions", tmp_path, [grid])
    assert "| onehot | 64 | " in text and "| rope | 128 | " in text
    assert "| positions | threshold K |" in text and "## Verdict" in text and "Under correct RoPE" in text
    runs = pd.read_csv(tmp_path / "results" / "claim2_positions_runs.csv")
    assert len(runs) == 4 and {"icl_onset", "induction_onset", "final_ih", "final_prev_token_label"} <= set(
        runs
    )


def test_claim2_verdict_compares_each_rope_with_onehot():
    claim2 = _load("claim2_positions")
    onsets = pd.Series({("onehot", 512): 300.0, ("rope", 512): 900.0, ("rope_paper", 512): 250.0})
    lines = claim2.verdict({"onehot": 512.0, "rope": 2048.0, "rope_paper": math.nan}, onsets, 8192)
    assert "correct RoPE: threshold K 2048 vs one-hot 512 (raised)" in lines[0]
    assert "K=512: +600 steps (delayed)" in lines[0] and lines[0].endswith("Claim 2 holds.")
    assert "threshold K > 8192" in lines[1] and "not delayed" in lines[1] and "holds in part" in lines[1]


@pytest.mark.slow
def test_claim3_script_reports_a_threshold_per_model_size(tmp_path):
    grids = [
        _grid(tmp_path, "mini_heads", '"model.n_heads" = [1, 2]\n"task.K" = [64, 128]\n"train.seed" = [0]\n'),
        _grid(
            tmp_path, "mini_layers", '"model.n_layers" = [2, 3]\n"task.K" = [64, 128]\n"train.seed" = [0]\n'
        ),
        # a fixed-K follow-up
        _grid(tmp_path, "mini_long", '"model.n_heads" = [1, 2]\n"train.seed" = [0, 1]\n'),
    ]
    text = _run("claim3_scaling", tmp_path, grids)
    assert "## n_heads, 6 steps (mini_long)" in text and "| n_heads | icl after 6 steps |" in text
    assert text.count("step icl reaches 0.5") == 1
    assert "| n_heads | threshold K |" in text and "| n_layers | threshold K |" in text
    assert "| 2 | 128 | " in text and "| 3 | 64 | " in text


def _logits(model, batch, head: tuple[int, int] | None = None) -> torch.Tensor:
    """Logits of ``model`` on ``batch``, with ``head`` (layer, head) mean-ablated in the same
    forward pass: its z at every position replaced by the batch mean (written here with a
    plain hook, apart from the ablation module's clean-run-then-patch code)."""
    hooks = []
    if head is not None:
        layer, h = head

        def mean_ablate(z, hook):
            z[:, :, h] = z[:, :, h].mean(0, keepdim=True)
            return z

        hooks = [(f"blocks.{layer}.attn.hook_z", mean_ablate)]
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        return model(batch.inputs, batch.pos_shift)


def _accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return (logits.argmax(-1) == targets).float().mean().item()


@pytest.mark.slow
def test_claim5_script_scores_and_ablates_the_best_induction_head_of_every_run(tmp_path):
    grid = _grid(tmp_path, "mini5", '"task.K" = [64, 128]\n"train.seed" = [0, 1]\n')
    text = _run("claim5_mechanism", tmp_path, [grid])
    assert "| pearson |" in text and "| spearman |" in text and "| sweep mini5 | 4 |" in text
    runs = pd.read_csv(tmp_path / "results" / "claim5_mechanism_runs.csv")
    assert len(runs) == 4 and runs["best_head"].str.fullmatch(r"L[01]H0").all()
    # every run's accuracies, clean and with its best head ablated, recomputed from its files
    by_id = {}
    for manifest in (tmp_path / "runs").rglob("manifest.json"):
        run = load_run(manifest.parent)
        by_id[run.run_id] = run
    n_seqs = _load("claim5_mechanism").N_SEQS
    for row in runs.itertuples():
        run = by_id[row.run]
        model, suites = run.model(), run.suites(n_seqs)
        layer, head = map(int, row.best_head[1:].split("H"))
        for suite in ("icl", "iwl"):
            batch = suites[suite]
            clean_logits, ablated_logits = _logits(model, batch), _logits(model, batch, (layer, head))
            assert not torch.allclose(clean_logits, ablated_logits)  # the hook did ablate
            clean, ablated = _accuracy(clean_logits, batch.targets), _accuracy(ablated_logits, batch.targets)
            assert getattr(row, suite) == pytest.approx(clean, abs=1e-6), (row.run, suite)
            assert getattr(row, f"{suite}_ablated") == pytest.approx(ablated, abs=1e-6), (row.run, suite)
            assert getattr(row, f"{suite}_drop") == pytest.approx(clean - ablated, abs=1e-6), (row.run, suite)


@pytest.mark.slow
def test_multimodal_asymmetry_script_runs_a_miniature_sweep(tmp_path):
    asym = _load("multimodal_asymmetry")
    asym.main(
        [
            "--k2",
            "32",
            "64",
            "--steps",
            "4",
            "--out",
            str(tmp_path / "results"),
            "--runs",
            str(tmp_path),
            "--no-png",
        ]
    )
    text = (tmp_path / "results" / "multimodal_asymmetry.md").read_text()
    assert text.count("| stage 2 ") == 2 and text.count("| early fusion ") == 2
    assert "Smallest K2 where multimodal icl reaches 0.5" in text


def test_claim2_script_refuses_more_than_one_grid_by_name(capsys):
    claim2 = _load("claim2_positions")
    with pytest.raises(SystemExit) as exit_info:
        claim2.main(["--grid", "a.toml", "b.toml"])
    assert exit_info.value.code == 2
    assert "--grid: this script reads one grid (position type x K), got 2" in capsys.readouterr().err
