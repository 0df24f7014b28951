"""Miniatures of the analyses/ claim scripts (tiny config, 2 K values, 6 steps), so they cannot rot."""

import importlib.util
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from mmicl_interp import load_run
from mmicl_interp.analyses.attention import attention_measures
from mmicl_interp.sweep.claims import END, START, VERDICTS
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


def _section(tmp_path: Path, key: str) -> dict:
    """Section ``key`` of the claims.json a script wrote into tmp_path/results."""
    data = json.loads((tmp_path / "results" / "claims.json").read_text())
    section = data["claims"][key]
    for sub in section["subclaims"]:
        assert sub["verdict"] in VERDICTS
    return section


@pytest.mark.slow
def test_claim1_script_reports_each_sweep_and_the_K_crossing(tmp_path):
    grids = [
        _grid(tmp_path, "mini_K", '"task.K" = [64, 128]\nseed = [0, 1]\n'),  # the task+model+data seed axis
        _grid(tmp_path, "mini_B", '"task.B" = [1, 2]\n"train.seed" = [0]\n'),
    ]
    text = _run("claim1_data_complexity", tmp_path, grids)
    assert "## K\n" in text and "| 64 | " in text and "| 128 | " in text
    assert "Smallest K with mean icl >= 0.5:" in text
    assert "## B (at " not in text and "## B\n" in text and "| 1 | " in text and "| 2 | " in text
    assert "6 runs (6 trained now, 0 reused)" in text  # 4 + 2 points
    assert "| K | icl | iwl | icl_flip | icl rel. to plateau |" in text  # seeds pooled, not a column
    section = _section(tmp_path, "1")
    subs = {s["id"]: s for s in section["subclaims"]}
    assert {"1a", "1b", "1e"} <= set(subs)
    assert subs["1a"]["n_runs"] == 4 and subs["1a"]["n_seeds"] == 2 and subs["1b"]["n_seeds"] == 1
    assert subs["1a"]["n_unique_configs"] == 4
    assert section["command"].startswith(".venv/bin/python analyses/claim1_data_complexity.py --grid")
    assert section["wall_time_s"] > 0
    # 1a's effect: mean final icl at K = 128 minus at K = 64, from the runs' own metrics
    finals = {}
    for manifest in (tmp_path / "runs" / "mini_K").rglob("manifest.json"):
        rows = [json.loads(line) for line in (manifest.parent / "metrics.jsonl").read_text().splitlines()]
        last = max(r["step"] for r in rows)
        icl = next(r["accuracy"] for r in rows if r["step"] == last and r["suite"] == "icl")
        finals.setdefault(manifest.parent.name.split("_")[0], []).append(icl)
    expected = sum(finals["K=128"]) / 2 - sum(finals["K=64"]) / 2
    assert subs["1a"]["effect"] == pytest.approx(expected, abs=1e-9)
    # 1e: the B runs on one common B = 2 icl suite, recomputed with plain forward passes
    common = {}
    for manifest in (tmp_path / "runs" / "mini_B").rglob("manifest.json"):
        run = load_run(manifest.parent)
        icl = run.suites(500, B=2)["icl"]
        with torch.no_grad():
            logits = run.model()(icl.inputs, icl.pos_shift)
        common[run.config.task.B] = _accuracy(logits, icl.targets)
    plateau = 2 / 4  # guessing among the N/B = 2 labels of a B = 2 context (the tiny config's N = 4)
    assert subs["1e"]["effect"] == pytest.approx((common[2] - plateau) / (1 - plateau), abs=1e-6)
    assert "B = 1:" in subs["1e"]["notes"] and "B = 2:" in subs["1e"]["notes"]


@pytest.mark.slow
def test_claim2_script_reports_thresholds_onsets_and_a_verdict_per_position_type(tmp_path):
    grid = _grid(
        tmp_path,
        "mini2",
        '"model.positions" = ["onehot", "rope"]\n"task.K" = [64, 128]\nseed = [0]\n',
    )
    text = _run("claim2_positions", tmp_path, [grid])
    assert (
        "| positions | threshold K | crossing K (log-interpolated) | crossing K per seed [95% t], grid cell |"
        in text
    )
    assert "Runs still moving at the end" in text
    ids = [s["id"] for s in _section(tmp_path, "2")["subclaims"]]
    assert ids[0] == "2a" and "2b" not in ids  # no published RoPE in this grid
    assert "| onehot | 64 | " in text and "| rope | 128 | " in text
    assert "| positions | threshold K |" in text and "## Verdict" in text and "Under correct RoPE" in text
    runs = pd.read_csv(tmp_path / "results" / "claim2_positions_runs.csv")
    assert len(runs) == 4 and {"icl_onset", "induction_onset", "final_ih", "final_prev_token_label"} <= set(
        runs
    )
    # per run: the best head's across-checkpoint correlation with its block-bootstrap interval
    r, lo, hi = runs["ih_icl_r"], runs["ih_icl_lo"], runs["ih_icl_hi"]
    assert ((lo <= r + 1e-9) & (r <= hi + 1e-9)).all()
    assert (runs["ih_icl_block"] >= 1).all() and runs["ih_icl_r"].between(-1, 1).all()
    assert runs["still_moving"].dtype == bool  # the plateau check travels with the per-run table
    # --from-results re-judges section 2 from that CSV alone and reaches the same verdicts
    before = _section(tmp_path, "2")["subclaims"]
    _load("claim2_positions").main(["--out", str(tmp_path / "results"), "--from-results"])
    after = _section(tmp_path, "2")["subclaims"]
    assert [(s["id"], s["verdict"]) for s in after] == [(s["id"], s["verdict"]) for s in before]
    assert all("--from-results" in s["notes"] for s in after)
    assert [s["n_unique_configs"] for s in after] == [s["n_unique_configs"] for s in before]


def test_claim2_verdict_compares_each_rope_with_onehot():
    claim2 = _load("claim2_positions")
    onsets = pd.Series({("onehot", 512): 300.0, ("rope", 512): 900.0, ("rope_paper", 512): 250.0})
    lines = claim2.verdict({"onehot": 512.0, "rope": 2048.0, "rope_paper": math.nan}, onsets, 8192)
    assert "correct RoPE: threshold K 2048 vs one-hot 512 (raised)" in lines[0]
    assert "K=512: +600 steps (delayed)" in lines[0] and lines[0].endswith("Claim 2 holds.")
    assert "threshold K > 8192" in lines[1] and "not delayed" in lines[1] and "holds in part" in lines[1]


def test_claim2_verdict_does_not_count_a_delay_below_the_checkpoint_resolution():
    claim2 = _load("claim2_positions")
    onsets = pd.Series({("onehot", 512): 300.0, ("rope", 512): 340.0})
    lines = claim2.verdict({"onehot": 512.0, "rope": 2048.0}, onsets, 8192, resolution=100.0)
    assert (
        "K=512: +40 steps" in lines[0]
        and "not delayed at every K or within the checkpoint resolution" in lines[0]
    )
    assert "Claim 2 holds in part." in lines[0]


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
    subs = _section(tmp_path, "3")["subclaims"]
    assert [s["id"] for s in subs] == ["3a", "3b"]
    assert subs[0]["effect_label"].startswith("crossing K, n_heads = 2 / 1") and subs[1]["n_runs"] == 4
    runs = pd.read_csv(tmp_path / "results" / "claim3_scaling_runs.csv")  # every run, for --from-results
    assert len(runs) == 4 + 4 + 4 and {"grid", "icl", "iwl", "still_moving"} <= set(runs)
    assert text.count("Runs still moving at the end") == 3
    _load("claim3_scaling").main(["--out", str(tmp_path / "results"), "--from-results"])
    again = _section(tmp_path, "3")["subclaims"]
    assert [(s["id"], s["verdict"], s["n_runs"]) for s in again] == [
        (s["id"], s["verdict"], s["n_runs"]) for s in subs
    ]


def _logits(model, batch, head: tuple[int, int] | None = None) -> torch.Tensor:
    """Logits of ``model`` on ``batch``, with ``head`` (one (layer, head) or a list) mean-ablated:
    its z at every position replaced by its batch mean in the clean run (written here with
    plain hooks, apart from the ablation module's code)."""
    heads = [] if head is None else [head] if isinstance(head, tuple) else list(head)
    means = {}
    if heads:  # the mean of each head's z over the batch in the clean run
        with torch.no_grad():
            _, cache = model.run_with_cache(batch.inputs, batch.pos_shift)
        means = {(layer, h): cache[f"blocks.{layer}.attn.hook_z"][:, :, h].mean(0) for layer, h in heads}
    hooks = []
    for layer, h in heads:

        def mean_ablate(z, hook, key=(layer, h)):
            z[:, :, key[1]] = means[key]
            return z

        hooks.append((f"blocks.{layer}.attn.hook_z", mean_ablate))
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        return model(batch.inputs, batch.pos_shift)


def _accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return (logits.argmax(-1) == targets).float().mean().item()


@pytest.mark.slow
def test_claim5_script_scores_and_ablates_the_best_induction_head_of_every_run(tmp_path):
    grid = _grid(tmp_path, "mini5", '"task.K" = [64, 128]\n"train.seed" = [0, 1]\n')
    text = _run("claim5_mechanism", tmp_path, [grid])
    assert "| pearson |" in text and "| spearman |" in text and "| sweep mini5 | 4 |" in text
    subs = {s["id"]: s for s in _section(tmp_path, "5")["subclaims"]}
    assert (
        subs["5a"]["n_runs"] == 4
        and subs["5a"]["n_unique_configs"] == 4
        and subs["5c"]["verdict"] == "not tested"
    )
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
            # the joint ablation: every head with ih >= the threshold, recomputed from the measures
            ih = attention_measures(model, suites["icl"], run.layout)["ih"]
            joint = [divmod(i, ih.shape[1]) for i in range(ih.numel()) if ih.flatten()[i] >= 0.1]
            joint = joint or [(layer, head)]
            assert row.n_joint == len(joint)
            together = _accuracy(_logits(model, batch, joint), batch.targets)
            assert getattr(row, f"{suite}_joint_drop") == pytest.approx(clean - together, abs=1e-6)
    assert {s["id"] for s in _section(tmp_path, "5")["subclaims"]} >= {"5a", "5b", "5c", "5d"}


@pytest.mark.slow
def test_multimodal_asymmetry_script_runs_every_arm_in_miniature(tmp_path):
    asym = _load("multimodal_asymmetry")
    args = ["--k2", "32", "--steps", "3", "--stage1-steps", "2", "--seeds", "0", "3"]
    args += ["--sizes", "0x2x1", "16x1x1", "32x2x2", "--encoder-steps", "1", "30", "--eval-size", "100"]
    args += ["--workers", "2"]  # two processes, two waves (stage 2 loads the first wave's runs)
    asym.main([*args, "--out", str(tmp_path / "results"), "--runs", str(tmp_path), "--no-png"])
    runs = pd.read_csv(tmp_path / "results" / "multimodal_asymmetry_runs.csv")
    # every arm has a row per seed; the matched-budget arms train stage-1 + stage-2 steps
    for key, label in asym.ARMS.items():
        part = runs[runs["arm"] == label]
        assert sorted(part["seed"]) == [0, 3] and (part["K2"] == 32).all(), key
        assert (part["steps"] == (5 if key in ("matched", "highk1") else 3)).all(), key
    assert len(runs[runs["arm"] == "size"]) == 6 and set(runs[runs["arm"] == "size"]["size"]) == {
        "l2_h1",
        "d16_l1_h1",
        "d32_l2_h2",
    }
    # the shipped size (no embedding, 2 layers x 1 head) is the stage-1 and stage-2 arm's runs,
    # trained once: one row per role, one run directory
    shipped = runs[(runs["arm"] == "size") & (runs["size"] == "l2_h1")]
    assert sorted(shipped["run"]) == ["mm_stage2_K2_32_seed0", "mm_stage2_K2_32_seed3"]
    s1_rows = runs[runs["arm"] == "stage 1"]
    assert sorted(s1_rows[s1_rows["size"] == "l2_h1"]["run"]) == ["mm_stage1_seed0", "mm_stage1_seed3"]
    assert not any((tmp_path / n).exists() for n in ("mm_stage1_l2_h1_seed0", "mm_stage2_l2_h1_K2_32_seed0"))
    assert sorted(runs[runs["arm"] == "encoder"]["encoder_steps"]) == [1, 1, 30, 30]
    assert len(s1_rows) == 2 + 6 and len(runs) == 2 + 6 + 12 + 6 + 8
    assert asym.run_count(asym._parser().parse_args(args)) == runs["run"].nunique() == len(runs) - 4
    text = (tmp_path / "results" / "multimodal_asymmetry.md").read_text()
    assert f"; {runs['run'].nunique()} runs (0 reused)" in text
    # the final accuracies, recomputed from each run's own metrics.jsonl
    for row in runs.itertuples():
        lines = [json.loads(line) for line in (tmp_path / row.run / "metrics.jsonl").read_text().splitlines()]
        last = max(r["step"] for r in lines)
        final = {r["suite"]: r["accuracy"] for r in lines if r["step"] == last}
        assert last == row.steps and final["test"] == pytest.approx(row.test), row.run
        if row.arm not in ("stage 1", "encoder pretraining"):
            assert final["icl"] == pytest.approx(row.icl), row.run
            assert final["icl_m2_only"] == pytest.approx(row.icl_m2_only), row.run
    # ... and by a forward pass over the icl suite for stage 2 and the high-K1 early fusion
    once = runs.drop_duplicates("run").set_index("run")
    for name in ("mm_stage2_K2_32_seed3", "mm_early_fusion_highK1_K2_32_seed0"):
        run = load_run(tmp_path / name)
        batch = run.suites()["icl"]
        with torch.no_grad():
            acc = (run.model()(batch.inputs, batch.pos_shift).argmax(-1) == batch.targets).float().mean()
        assert float(acc) == pytest.approx(float(once.loc[name, "icl"]))
    # the arms are what they say
    by_name = {n: load_run(tmp_path / n).config for n in runs["run"]}
    random, unfrozen = by_name["mm_stage2_random_K2_32_seed0"], by_name["mm_stage2_unfrozen_K2_32_seed0"]
    assert random.pipeline.init_from == "" and random.pipeline.freeze == ["embed", "blocks"]
    assert unfrozen.pipeline.init_from.endswith("mm_stage1_seed0") and unfrozen.pipeline.freeze == []
    assert by_name["mm_early_fusion_highK1_K2_32_seed3"].task.m1_pool == "all"
    assert by_name["mm_early_fusion_highK1_K2_32_seed3"].task.seed == 3
    assert by_name["mm_stage2_d32_l2_h2_K2_32_seed0"].model.n_heads == 2
    enc = by_name["mm_stage2_enc30_K2_32_seed3"]
    assert enc.pipeline.encoder_from.endswith("mm_encoder_K2_32_steps30_seed3")
    assert "encoder" in enc.pipeline.freeze
    encoder_acc = once.loc["mm_encoder_K2_32_steps30_seed3", "test"]
    assert once.loc["mm_stage2_enc30_K2_32_seed3", "encoder_acc"] == pytest.approx(encoder_acc)
    # claims.json: the new sub-claims, with effects that follow from the per-run table
    subs = {s["id"]: s for s in _section(tmp_path, "4")["subclaims"]}
    assert set(subs) == {"4a", "4b", "4c", "4d", "4e", "4f", "4g", "4h"}
    k2 = runs[runs["K2"] == 32]
    icl = {label: k2[k2["arm"] == label]["icl"].mean() for label in asym.ARMS.values()}
    assert subs["4a"]["effect"] == pytest.approx(icl["stage 2"] - icl["early fusion"], abs=1e-6)
    assert subs["4f"]["effect"] == pytest.approx(icl["stage 2"] - icl["early fusion, high-K1 M1"], abs=1e-6)
    # 4b keeps the sizes whose stage-1 run learned ICL (mean stage-1 icl >= 0.5); two stage-1
    # steps learn nothing, so here it names every size as left out
    s1_icl = s1_rows[s1_rows["size"] != ""].groupby("size")["icl"].mean()
    assert (s1_icl < 0.5).all()
    assert subs["4b"]["verdict"] == "not tested" and subs["4b"]["effect"] is None
    assert subs["4h"]["verdict"] == "not tested" and subs["4h"]["effect"] is None  # 4h: the widened sizes
    notes = subs["4b"]["notes"] + subs["4h"]["notes"]
    assert all(f"{size} ({value:.3f})" in notes for size, value in s1_icl.items())
    assert subs["4a"]["n_seeds"] == 2 and subs["4a"]["n_runs"] == 4
    assert all(f"| {label} " in text for label in asym.ARMS.values())
    assert "## Decoder size" in text and "## M2 encoder strength" in text


def test_claim4_size_verdict_leaves_out_decoders_that_never_learned_icl_in_stage_1():
    asym = _load("multimodal_asymmetry")
    rows = []
    for size, n_params, stage1_icl, icl in (
        ("l2_h1", 100, 0.95, [0.30, 0.34, 0.32]),
        ("l4_h4", 300, 0.97, [0.60, 0.64, 0.62]),
        ("d128_l4_h4", 900, 0.27, [0.05, 0.06, 0.07]),  # the largest, but stuck on the plateau
    ):
        rows += [
            dict(size=size, seed=s, K2=32, n_params=n_params, stage1_icl=stage1_icl, icl=v, icl_m2_only=v)
            for s, v in enumerate(icl)
        ]
    sub = asym.size_subclaim(pd.DataFrame(rows), {}, "cmd")
    assert sub.effect == pytest.approx(0.62 - 0.32)  # l4_h4 minus l2_h1, not minus the stuck one
    assert sub.verdict == "supported" and "d128_l4_h4 (0.270)" in sub.notes
    assert "l4_h4 minus l2_h1" in sub.effect_label
    stuck = pd.DataFrame([r for r in rows if r["size"] != "l4_h4"])
    assert asym.size_subclaim(stuck, {}, "cmd").verdict == "not tested"


def test_claim4_a_low_k2_does_not_suffice_when_the_arm_itself_stays_below_half():
    asym = _load("multimodal_asymmetry")
    arms = {"stage2": 0.9, "early": 0.03, "random": 0.03, "matched": 0.03, "highk1": 0.2, "unfrozen": 0.3}
    table = pd.DataFrame(
        [
            dict(arm=asym.ARMS[a], K2=32, seed=s, icl=v + 0.01 * s, icl_m2_only=v + 0.01 * s)
            for a, v in arms.items()
            for s in range(3)
        ]
    )
    subs = {s.id: s for s in asym.k2_subclaims(table, [32], {}, "cmd")}
    assert subs["4a"].verdict == "supported" and subs["4a"].effect == pytest.approx(0.9 - 0.03)
    # unfrozen stage 2 beats matched early fusion by 0.27 but reaches only 0.31: weak, said why
    assert subs["4g"].effect == pytest.approx(0.3 - 0.03) and subs["4g"].verdict == "weak"
    assert "does not suffice" in subs["4g"].notes and "does not suffice" not in subs["4a"].notes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sizes", "32x0x1"], "--sizes: each size is d_embed x n_layers x n_heads"),
        (["--sizes", "big"], "got 'big'"),
        (["--steps", "0"], "--steps: must be positive step counts, got [0, 0]"),
    ],
)
def test_claim4_script_refuses_bad_input_in_one_line_before_writing(tmp_path, capsys, args, message):
    asym = _load("multimodal_asymmetry")
    with pytest.raises(SystemExit) as exit_info:
        asym.main([*args, "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_claim2_script_refuses_more_than_one_grid_by_name(capsys):
    claim2 = _load("claim2_positions")
    with pytest.raises(SystemExit) as exit_info:
        claim2.main(["--grid", "a.toml", "b.toml"])
    assert exit_info.value.code == 2
    assert "--grid: this script reads one grid (position type x K), got 2" in capsys.readouterr().err


@pytest.mark.slow
def test_paper_arch_script_reports_crossings_and_reuses_complete_runs(tmp_path):
    grid = _grid(
        tmp_path, "mini_paper", '"model.positions" = ["onehot", "rope"]\n"task.K" = [64, 128]\nseed = [0]\n'
    )
    text = _run("paper_arch", tmp_path, [grid])
    assert "| positions | crossing K [95% t], grid cell | seeds reaching 0.5 |" in text
    assert "between 2048 and 4096" in text
    assert "| onehot | 64 | " in text and "| rope | 128 | " in text
    assert "4 runs (4 trained now, 0 reused)" in text
    runs = pd.read_csv(tmp_path / "results" / "paper_arch_runs.csv")
    assert len(runs) == 4 and (runs["best_ih"] >= 0).all() and "still_moving" in runs
    subs = {s["id"]: s for s in _section(tmp_path, "paper_arch")["subclaims"]}
    assert set(subs) == {"P1", "P2"} and subs["P1"]["n_seeds"] == 1
    first = _section(tmp_path, "paper_arch")["wall_time_s"]
    again = _run("paper_arch", tmp_path, [grid])
    assert "4 runs (0 trained now, 4 reused)" in again
    # the compute time counts the reused runs' recorded training time, not only this invocation's
    manifests = (tmp_path / "runs").rglob("manifest.json")
    recorded = sum(json.loads(m.read_text())["wall_time_s"] for m in manifests)
    assert _section(tmp_path, "paper_arch")["wall_time_s"] >= recorded > 0 and first >= recorded


def test_make_tables_fills_both_readmes_from_claims_json_and_adds_claim_6(tmp_path):
    from mmicl_interp.sweep.claims import Section, SubClaim, write_section

    claims = tmp_path / "claims.json"
    write_section(
        claims, Section("2", "t", [SubClaim("2a", "RoPE raises K", "inside noise", 1.1, interval=[0.9, 1.3])])
    )
    readmes = [tmp_path / "README.md", tmp_path / "analyses.md"]
    for r in readmes:
        r.write_text(f"head\n{START}\n| old | table |\n{END}\ntail\n")
    _load("make_tables").main(["--claims", str(claims), "--readme", *map(str, readmes)])
    for r in readmes:
        text = r.read_text()
        assert text.startswith(f"head\n{START}\n| claim | verdict |") and text.endswith(f"{END}\ntail\n")
        assert "| old | table |" not in text
        assert "| 2a. RoPE raises K | **inside noise** | 1.1 [0.900, 1.3] |" in text
        assert (
            "| 6a. " in text
            and "not run here: no real checkpoint offline; see the real-model commands" in text
        )
    assert list(json.loads(claims.read_text())["claims"]) == ["2", "6"]


@pytest.mark.slow
def test_claim5_multimodal_part_ablates_the_stage1_head_in_each_stage2_model(tmp_path):
    runs_dir, results = tmp_path / "runs", tmp_path / "results"
    asym = _load("multimodal_asymmetry")
    args = ["--k2", "32", "--steps", "4", "--stage1-steps", "6", "--seeds", "0", "--eval-size", "100"]
    asym.main(
        [*args, "--arms", "stage2", "unfrozen", "--out", str(results), "--runs", str(runs_dir), "--no-png"]
    )
    grid = _grid(tmp_path, "mini5mm", '"task.K" = [64]\n')
    claim5 = _load("claim5_mechanism")
    claim5.main(
        [
            "--grid",
            grid,
            "--out",
            str(results),
            "--runs",
            str(runs_dir),
            "--workers",
            "1",
            "--no-png",
            "--multimodal",
            str(results / "multimodal_asymmetry_runs.csv"),
        ]
    )
    mm = pd.read_csv(results / "claim5_multimodal_runs.csv")
    assert sorted(mm["arm"]) == ["stage 2", "unfrozen stage 2"]
    stage1 = load_run(runs_dir / "mm_stage1_seed0")
    ih1 = attention_measures(stage1.model(), stage1.suites(claim5.N_SEQS)["icl"], stage1.layout)["ih"]
    layer, head = divmod(int(ih1.argmax()), ih1.shape[1])
    for row in mm.itertuples():
        assert row.stage1_best_head == f"L{layer}H{head}"
        run = load_run(runs_dir / row.run)
        model, suites = run.model(), run.suites(claim5.N_SEQS)
        for suite in ("icl", "iwl"):  # the stage-1 head ablated in the stage-2 model, by plain hooks
            batch = suites[suite]
            clean = _accuracy(_logits(model, batch), batch.targets)
            ablated = _accuracy(_logits(model, batch, (layer, head)), batch.targets)
            assert getattr(row, suite) == pytest.approx(clean, abs=1e-6)
            assert getattr(row, f"{suite}_drop") == pytest.approx(clean - ablated, abs=1e-6)
    sub = {s["id"]: s for s in _section(tmp_path, "5")["subclaims"]}["5c"]
    assert sub["verdict"] == "not tested" and "none of the 2 stage-2 runs learned" in sub["notes"]
    assert (mm["steps"] == 4).all()  # the stage-2 runs' budget, carried from claim 4's table


def test_claim5_multimodal_verdict_follows_the_drops():
    claim5 = _load("claim5_mechanism")
    rows = pd.DataFrame(
        {
            "seed": [0, 1, 2, 0, 1, 2],
            "icl": [0.9, 0.8, 0.95, 0.85, 0.9, 0.7],
            "stage1_icl": [0.99] * 6,
            "icl_drop": [0.7, 0.6, 0.8, 0.65, 0.7, 0.5],
            "iwl_drop": [0.0, 0.01, -0.01, 0.02, 0.0, 0.01],
            "icl_joint_drop": [0.8] * 6,
            "stage1_icl_drop": [0.9] * 6,
            "same_head": [True] * 5 + [False],
        }
    )
    sub = claim5.multimodal_subclaim(rows, "cmd", 1.0)
    expected = rows["icl_drop"].mean() - rows["iwl_drop"].mean()  # 2 runs per seed: mean of seed means
    assert sub.verdict == "supported" and sub.effect == pytest.approx(expected)
    # the unit is the seed (its runs share a stage-1 decoder): the t interval of the 3 seeds'
    # mean paired differences (icl drop minus iwl drop of the same run), written out
    by_seed = (rows["icl_drop"] - rows["iwl_drop"]).groupby(rows["seed"]).mean().tolist()
    m = sum(by_seed) / 3
    half = 4.302653 * math.sqrt(sum((x - m) ** 2 for x in by_seed) / 2) / math.sqrt(3)  # t_{0.975, 2}
    assert sub.interval_kind == "95% t over 3 seeds"
    assert sub.interval == pytest.approx([m - half, m + half], abs=1e-6)
    assert "5 of 6" in sub.notes and sub.n_seeds == 3 and sub.steps is None  # no steps column here
    flat = rows.assign(icl_drop=rows["iwl_drop"] + 0.001)
    assert claim5.multimodal_subclaim(flat, "cmd", 1.0).verdict != "supported"
    assert claim5.multimodal_subclaim(pd.DataFrame(), "cmd", 1.0).verdict == "not tested"


def test_claim2_verdict_takes_the_checkpoint_spacing_of_each_compared_cell():
    claim2 = _load("claim2_positions")
    onsets = pd.Series(
        {("onehot", 512): 300.0, ("rope", 512): 340.0, ("onehot", 8192): 300.0, ("rope", 8192): 340.0}
    )
    # dense checkpoints (25 steps) at K = 512; a coarse cell elsewhere must not blur it
    spacing = pd.Series({("onehot", 512): 25.0, ("rope", 512): 25.0, ("learned", 256): 500.0})
    spacing[("onehot", 8192)] = 25.0
    spacing[("rope", 8192)] = 25.0
    line = claim2.verdict({"onehot": 512.0, "rope": 2048.0}, onsets, 8192, resolution=spacing)[0]
    assert "(delayed)" in line and line.endswith("Claim 2 holds.")
    spacing[("rope", 8192)] = 100.0  # a 40-step delay below this cell's spacing does not count
    line = claim2.verdict({"onehot": 512.0, "rope": 2048.0}, onsets, 8192, resolution=spacing)[0]
    assert "not delayed at every K or within the checkpoint resolution" in line


def _claim2_runs(rope_k: dict[int, float], onsets: tuple[list[float], list[float]], seeds: int = 5):
    """A claim-2 per-run table: one-hot crosses icl 0.5 in (128, 256], RoPE as ``rope_k`` (K -> icl),
    learned APE like one-hot; at K = 8192 both learned, with the given icl onsets per seed."""
    rows = []
    curves = {"onehot": {128: 0.1, 256: 0.98, 8192: 0.99}, "learned": {128: 0.1, 256: 0.98, 8192: 0.99}}
    curves["rope"] = rope_k
    for pos, curve in curves.items():
        for k, icl in curve.items():
            for seed in range(seeds):
                onset = {"onehot": onsets[0][seed], "rope": onsets[1][seed]}.get(pos, 300.0)
                rows.append(
                    {
                        "run": f"{pos}_K={k}_seed={seed}",
                        "model.positions": pos,
                        "task.K": k,
                        "seed": seed,
                        "final_icl": icl + 0.001 * seed,
                        "icl_onset": onset,
                        "icl_resolution": 25.0,
                        "icl_onset_plateau": onset - 50,
                        "steps_to_icl_half": onset + 20,
                        "final_ih": 0.5 if pos != "rope" else 0.2 - 0.01 * seed,
                        "final_prev_token_label": 0.7 if pos != "rope" else 0.1,
                    }
                )
    return pd.DataFrame(rows)


def test_claim2_subclaims_pair_seeds_and_apply_the_grid_and_delay_rules():
    claim2 = _load("claim2_positions")
    onehot = [388.4615, 352.4590, 360.1190, 330.6818, 331.2909]  # claim 2's runs at K = 8192
    runs = _claim2_runs(
        {128: 0.1, 256: 0.2, 512: 0.4, 1024: 0.7, 8192: 0.8},
        (onehot, [418.0555, 460.7143, 361.0000, 387.5000, 452.3437]),
    )
    common = dict(
        n_runs=len(runs), n_unique_configs=len(runs), n_seeds=5, steps=100, command="c", wall_time_s=1.0
    )
    subs = {s.id: s for s in claim2.subclaims(runs, common, moving=[])}
    # 2a: the per-seed crossings of RoPE lie in (512, 1024], one-hot's in (128, 256]: the
    # interval is widened to at least [512 / 256, 1024 / 128] = [2, 8]
    assert subs["2a"].interval == [2.0, 8.0] and subs["2a"].verdict == "supported"
    assert "widened to the grid cells" in subs["2a"].interval_kind and "grid rule" in subs["2a"].notes
    # 2c: per-seed delays +30, +108, +1, +57, +121: paired t interval [-0.1, 127] holds 0
    assert subs["2c"].effect == pytest.approx(63.32, abs=0.01) and subs["2c"].interval[0] < 0
    assert subs["2c"].verdict == "inside noise" and subs["2c"].interval_kind == "95% paired t over 5 seeds"
    # a delay whose lower bound is above 0 but not past the 25-step spacing is at most weak
    runs = _claim2_runs(
        {128: 0.1, 256: 0.2, 512: 0.4, 1024: 0.7, 8192: 0.8},
        (onehot, [o + d for o, d in zip(onehot, [30, 45, 20, 40, 35], strict=True)]),
    )
    subs = {s.id: s for s in claim2.subclaims(runs, common, moving=[])}
    assert subs["2c"].interval[0] > 0 and subs["2c"].interval[0] < 25 and subs["2c"].verdict == "weak"
    assert "does not exceed the checkpoint spacing (25 steps)" in subs["2c"].notes
    assert subs["2e"].verdict == "supported" and subs["2e"].interval_kind == "95% paired t over 5 seeds"


def test_claim2_threshold_verdict_is_capped_only_by_the_compared_runs_still_moving():
    claim2 = _load("claim2_positions")
    runs = _claim2_runs({128: 0.1, 256: 0.2, 512: 0.4, 1024: 0.7, 8192: 0.8}, ([300.0] * 5, [400.0] * 5))
    common = dict(
        n_runs=len(runs), n_unique_configs=len(runs), n_seeds=5, steps=100, command="c", wall_time_s=1.0
    )
    first = claim2.subclaims(runs, common, moving=["learned_K=128_seed=0"])[0]  # only a learned-APE run moves
    assert first.verdict == "supported" and "1 run(s) of other position types still moving" in first.notes
    first = claim2.subclaims(runs, common, moving=["rope_K=1024_seed=1"])[0]
    assert first.verdict == "weak" and "capped at weak" in first.notes
    first = claim2.subclaims(runs, common, moving=None)[0]  # not known (e.g. an old CSV): capped too
    assert first.verdict == "weak" and "not known" in first.notes


def test_paper_arch_p1_widens_the_crossing_to_its_grid_cell_against_the_published_bracket():
    arch = _load("paper_arch")
    rows = []
    for pos, curve in {
        "onehot": {1024: 0.13, 2048: 0.99, 4096: 0.99},
        "rope": {1024: 0.15, 2048: 0.17, 4096: 0.4, 8192: 0.92},
    }.items():
        for k, icl in curve.items():
            for seed in range(3):
                rows.append(
                    {
                        "run": f"{pos}_{k}_{seed}",
                        "model.positions": pos,
                        "task.K": k,
                        "seed": seed,
                        "icl": icl + 0.01 * seed,
                    }
                )
    runs = pd.DataFrame(rows)
    subs = {s.id: s for s in arch.subclaims(runs, dict(n_runs=len(runs), n_seeds=3), moving=[])}
    # one-hot crosses in (1024, 2048]; the published code in (2048, 4096]: disjoint half-open cells
    assert subs["P1"].interval == [1024.0, 2048.0] and subs["P1"].verdict == "not supported"
    assert subs["P2"].interval == [2.0, 8.0] and subs["P2"].verdict == "supported"
    assert arch.subclaims(runs, dict(n_runs=len(runs), n_seeds=3), moving=None)[1].verdict == "weak"


def test_claim5_control_head_test_is_not_tested_with_one_head_and_paired_by_seed_with_several():
    claim5 = _load("claim5_mechanism")
    base = pd.DataFrame(
        {
            "seed": [0, 1, 2, 0, 1, 2],
            "icl": [0.9] * 6,
            "stage1_icl": [0.99] * 6,
            "icl_drop": [0.7, 0.6, 0.8, 0.65, 0.7, 0.5],
            "iwl_drop": [0.0] * 6,
            "icl_joint_drop": [0.7, 0.6, 0.8, 0.65, 0.7, 0.5],
            "stage1_icl_drop": [0.9] * 6,
            "same_head": [True] * 6,
            "stage1_best_head": ["L1H0"] * 6,
            "joint_heads": ["L1H0"] * 6,
        }
    )
    one = base.assign(stage1_n_heads=1, control_head="", icl_control_drop=math.nan, iwl_control_drop=math.nan)
    sub = claim5.control_subclaim(one, "cmd", 1.0)
    assert sub.verdict == "not tested" and "one head per layer" in sub.notes and "cannot fail" in sub.notes
    # 5c says the joint ablation repeats the single head, and its ranges read as ranges
    c = claim5.multimodal_subclaim(one, "cmd", 1.0)
    assert "repeats it (no separate test)" in c.notes and "(range " in c.notes and "[" not in c.notes
    # a table without the column: the shipped mm_stage1 config has one head per layer
    assert claim5.control_subclaim(base, "cmd", 1.0).verdict == "not tested"
    control = [0.05, 0.1, 0.0, 0.05, 0.0, 0.1]
    multi = base.assign(stage1_n_heads=2, control_head="L1H1", icl_control_drop=control, iwl_control_drop=0.0)
    sub = claim5.control_subclaim(multi, "cmd", 1.0)
    per_seed = [(0.7 - 0.05 + 0.65 - 0.05) / 2, (0.6 - 0.1 + 0.7 - 0.0) / 2, (0.8 - 0.0 + 0.5 - 0.1) / 2]
    m = sum(per_seed) / 3
    sd = math.sqrt(sum((x - m) ** 2 for x in per_seed) / 2)
    half = 4.302653 * sd / math.sqrt(3)  # t_{0.975, 2}
    assert sub.effect == pytest.approx(m) and sub.interval == pytest.approx([m - half, m + half], abs=1e-6)
    assert sub.verdict == "supported" and sub.interval_kind == "95% t over 3 seeds"
    # where the control head costs as much as the induction head, the test fails
    same = multi.assign(icl_control_drop=multi["icl_drop"])
    assert claim5.control_subclaim(same, "cmd", 1.0).verdict != "supported"


def test_control_head_is_the_weakest_other_head_of_the_same_layer():
    claim5 = _load("claim5_mechanism")
    ih = torch.tensor([[0.0, 0.1, 0.2], [0.5, 0.05, 0.3]])
    assert claim5.control_head(ih, 1, 0) == (1, 1)
    assert claim5.control_head(torch.tensor([[0.1], [0.6]]), 1, 0) is None


@pytest.mark.parametrize(
    ("script", "key", "csvs"),
    [
        ("claim2_positions", "2", ["claim2_positions_runs.csv", "claim2_positions.md"]),
        ("paper_arch", "paper_arch", ["paper_arch_runs.csv", "paper_arch.md"]),
        ("claim5_mechanism", "5", ["claim5_mechanism_runs.csv", "claim5_multimodal_runs.csv"]),
        ("multimodal_asymmetry", "4", ["multimodal_asymmetry_runs.csv"]),
    ],
)
def test_the_committed_sections_are_the_from_results_judgement_of_the_committed_csvs(
    tmp_path, script, key, csvs
):
    """claims.json's sections 2, 4, 5 and paper_arch follow from the committed per-run CSVs by
    ``--from-results`` (rerun it after a claim script, or after changing the rules)."""
    import shutil

    results = ROOT / "analyses" / "results"
    for name in ["claims.json", *csvs]:
        shutil.copy(results / name, tmp_path / name)
    committed = json.loads((results / "claims.json").read_text())["claims"][key]["subclaims"]
    _load(script).main(["--out", str(tmp_path), "--from-results"])
    again = json.loads((tmp_path / "claims.json").read_text())["claims"][key]["subclaims"]
    assert [s["id"] for s in again] == [s["id"] for s in committed]
    for new, old in zip(again, committed, strict=True):
        assert new["verdict"] == old["verdict"], new["id"]
        assert new["interval_kind"] == old["interval_kind"], new["id"]
        for field in ("effect", "interval"):
            if old[field] is None:
                assert new[field] is None, (new["id"], field)
            else:
                assert new[field] == pytest.approx(old[field], rel=1e-3), (new["id"], field)


def test_claim4_merge_replaces_the_rerun_runs_and_keeps_every_other_row():
    asym = _load("multimodal_asymmetry")
    committed = pd.DataFrame(
        [
            dict(arm="stage 1", size="", seed=0, run="mm_stage1_seed0", icl=0.99, K2=None, wall_s=20.0),
            dict(arm="stage 1", size="d32_l2_h1", seed=0, run="mm_stage1_d32_l2_h1_seed0", icl=0.26, K2=None),
            dict(
                arm="size", size="d32_l2_h1", seed=0, run="mm_stage2_d32_l2_h1_K2_32_seed0", icl=0.03, K2=32
            ),
            dict(arm="stage 2", size=None, seed=0, run="mm_stage2_K2_32_seed0", icl=0.91, K2=32, wall_s=9.0),
            dict(arm="size", size="l2_h1", seed=0, run="mm_stage2_K2_32_seed0", icl=0.91, K2=32, wall_s=9.0),
        ]
    )
    new = pd.DataFrame(
        [
            dict(arm="stage 1", size="d32_l2_h1", seed=0, run="mm_stage1_d32_l2_h1_seed0", icl=0.98),
            dict(arm="size", size="d32_l2_h1", seed=0, run="mm_stage2_d32_l2_h1_K2_32_seed0", icl=0.9, K2=32),
            dict(arm="size", size="d64_l3_h2", seed=0, run="mm_stage2_d64_l3_h2_K2_32_seed0", icl=0.8, K2=32),
        ]
    )
    merged = asym.merge_rows(committed, new)
    assert list(merged["run"]) == [*committed["run"], "mm_stage2_d64_l3_h2_K2_32_seed0"]
    assert list(merged["icl"]) == [0.99, 0.98, 0.9, 0.91, 0.91, 0.8]  # replaced in place, the rest kept
    assert merged.loc[0, "wall_s"] == 20.0 and merged.loc[4, "wall_s"] == 9.0
    assert math.isnan(merged.loc[1, "wall_s"])  # a replaced row is the new row whole, no stale value
    assert str(merged["K2"].dtype) == "Int64" and merged.loc[5, "K2"] == 32
    with pytest.raises(ValueError):
        asym.merge_rows(committed, pd.concat([new, new]))


def test_claim4_size_is_judged_at_fixed_width_4b_and_at_growing_width_4h():
    asym = _load("multimodal_asymmetry")
    rows = []
    for size, n_params, s1, icl in (
        ("l2_h1", 100, 0.99, [0.90, 0.92, 0.91]),
        ("l4_h4", 300, 0.99, [0.86, 0.93, 0.88]),
        ("d32_l2_h1", 200, 0.97, [0.40, 0.44, 0.42]),
        ("d64_l3_h2", 500, 0.98, [0.70, 0.72, 0.74]),
        ("d128_l4_h4", 900, 0.30, [0.05, 0.06, 0.07]),  # stage 1 stays on the plateau: left out of 4h
    ):
        for seed, v in enumerate(icl):
            rows.append(
                dict(arm="stage 1", size=size, seed=seed, run=f"s1_{size}_{seed}", icl=s1, n_params=n_params)
            )
            rows.append(
                dict(arm="size", size=size, seed=seed, run=f"s2_{size}_{seed}", icl=v, icl_m2_only=v, K2=32)
            )
    subs = {s.id: s for s in asym.subclaims(pd.DataFrame(rows), [32], {}, "cmd")}
    assert set(subs) == {"4a", "4b", "4c", "4d", "4e", "4f", "4g", "4h"}
    fixed, wide = subs["4b"], subs["4h"]
    assert "l4_h4 minus l2_h1" in fixed.effect_label and fixed.effect == pytest.approx(-0.02)
    assert fixed.verdict == "inside noise" and "d32" not in fixed.notes and "fixed width" in fixed.text
    assert "d64_l3_h2 minus d32_l2_h1" in wide.effect_label and wide.effect == pytest.approx(0.30)
    assert wide.verdict == "supported" and "d128_l4_h4 (0.300)" in wide.notes and "growing width" in wide.text


def _claim3_runs(grid: str, crossings: dict[int, list[int]], moving: bool = False) -> pd.DataFrame:
    """A per-run table of one claim-3 K sweep: icl 0.9 from each seed's crossing K on, else 0.1."""
    rows = []
    for heads, per_seed in crossings.items():
        for seed, cross in enumerate(per_seed):
            for k in (128, 192, 256, 352, 512):
                icl = 0.9 if k >= cross else 0.1
                run = f"n_heads={heads}_K={k}_seed={seed}"
                rows.append(
                    {
                        "grid": grid,
                        "run": run,
                        "model.n_heads": heads,
                        "task.K": k,
                        "seed": seed,
                        "icl": icl,
                        "iwl": 1 - icl,
                        "still_moving": moving and heads == 8 and seed == 0,
                    }
                )
    return pd.DataFrame(rows)


def test_claim3_heads_split_is_3c_and_keeps_the_committed_3a_3b(tmp_path):
    claim3 = _load("claim3_scaling")
    runs = _claim3_runs("claim3_heads_split", {1: [192, 192, 192], 2: [192, 256, 192], 8: [256, 256, 352]})
    (sub,) = claim3.subclaims(runs)
    assert sub.id == "3c" and "fixed width" in sub.text and "57, 28, 14, 7" in sub.notes
    # per seed 8 / 1 head: (128,192] vs (192,256] (x2), (256,352]: a ratio above 1 under the grid rule
    assert sub.effect > 1 and sub.interval[0] <= sub.effect <= sub.interval[1]
    assert sub.n_runs == 45 and sub.n_seeds == 3 and sub.verdict in ("weak", "supported")
    capped = claim3.subclaims(_claim3_runs("claim3_heads_split", {1: [192] * 3, 8: [352] * 3}, moving=True))
    assert capped[0].verdict == "weak" and "capped at weak" in capped[0].notes
    # a run of the new grid alone (or --from-results on its CSV) keeps the committed 3a and 3b
    committed = [
        dict(id="3a", text="heads", verdict="supported", effect=1.35, notes="v2"),
        dict(id="3b", text="layers", verdict="inside noise", effect=1.06, notes="v2"),
    ]
    (tmp_path / "claims.json").write_text(
        json.dumps({"version": 1, "claims": {"3": {"title": "t", "command": "c", "subclaims": committed}}})
    )
    runs.to_csv(tmp_path / "claim3_heads_split_runs.csv", index=False)
    claim3.main(["--out", str(tmp_path), "--from-results"])
    subs = json.loads((tmp_path / "claims.json").read_text())["claims"]["3"]["subclaims"]
    assert [s["id"] for s in subs] == ["3a", "3b", "3c"]
    assert [(s["verdict"], s["effect"], s["notes"]) for s in subs[:2]] == [
        ("supported", 1.35, "v2"),
        ("inside noise", 1.06, "v2"),
    ]
    assert (
        subs[2]["effect"] == pytest.approx(sub.effect) and "claim3_heads_split_runs.csv" in subs[2]["notes"]
    )
