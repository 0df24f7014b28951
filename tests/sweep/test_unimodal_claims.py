"""The sub-claim builders of claims 1, 2, 3 and paper_arch (mmicl_interp.sweep.unimodal_claims),
each against a hand computation: paired differences and means with their t intervals, per-seed
crossings interpolated on log K, geometric means of crossing ratios and the bracket rule."""

from __future__ import annotations

import json
import math
from argparse import Namespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mmicl_interp.sweep import unimodal_claims as U
from mmicl_interp.sweep.claims import Section, SubClaim, write_section

K, POS = "task.K", "model.positions"


def _t(values) -> tuple[float, float, float]:
    """Mean and 95% t interval of ``values``, by hand."""
    x = np.asarray(values, float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def _crossing(k0: float, k1: float, v0: float, v1: float) -> float:
    """Where the line from (log k0, v0) to (log k1, v1) reaches 0.5, back on K."""
    return math.exp(math.log(k0) + (0.5 - v0) / (v1 - v0) * (math.log(k1) - math.log(k0)))


def _curves(by: str, curves: dict, value: str = "icl", **extra) -> pd.DataFrame:
    """Per-run rows from ``curves`` {arm: {seed: {K: value}}}."""
    rows = [
        {"run": f"{arm}_K={k}_seed={seed}", by: arm, K: k, "seed": seed, value: v, **extra}
        for arm, seeds in curves.items()
        for seed, per_k in seeds.items()
        for k, v in per_k.items()
    ]
    return pd.DataFrame(rows)


def test_sweep_parts_drop_other_sweeps_columns_and_restore_whole_numbers():
    runs = pd.DataFrame(
        {
            "grid": ["kk", "kk", "bb"],
            "run": ["a", "b", "c"],
            K: [64.0, 128.0, math.nan],
            "task.B": [math.nan, math.nan, 2.0],
            "seed": [0, 0, 0],
        }
    )
    parts = list(U.sweep_parts(runs, [K, "task.B"]))
    assert [name for name, _ in parts] == ["kk", "bb"]  # the table's order, not sorted
    (_, kk), (_, bb) = parts
    assert "task.B" not in kk and K not in bb
    assert kk[K].tolist() == [64, 128] and kk[K].dtype.kind == "i" and bb["task.B"].dtype.kind == "i"


def test_run_counts_and_at_seed():
    part = pd.DataFrame(
        {"run": list("abcd"), K: [64, 64, 128, 128], "seed": [0, 1, 0, 1], "icl": [1, 2, 3, 4]}
    )
    assert U.run_counts(part, [K], {"steps": 9}) == {"n_runs": 4, "n_seeds": 2, "steps": 9}
    assert U.run_counts(part, [K]) == {"n_runs": 4, "n_seeds": 2}
    assert U.at_seed(part, "icl", K, 128).to_dict() == {0: 3, 1: 4}


def test_arm_crossings_interpolate_each_seed_on_log_k():
    runs = _curves(POS, {"onehot": {0: {64: 0.25, 256: 0.75}, 1: {64: 0.1, 256: 0.3}}})
    arms = U.arm_crossings(runs, POS)
    rows = arms["onehot"].set_index("seed")
    assert rows.loc[0, "crossing"] == pytest.approx(128.0)  # halfway on log K between 64 and 256
    assert math.isnan(rows.loc[1, "crossing"]) and rows.loc[1, "cell_hi"] == math.inf


def test_moving_of_keeps_the_compared_arms_runs():
    runs = pd.DataFrame({"run": ["a", "b", "c"], POS: ["onehot", "rope", "learned"]})
    assert U.moving_of(runs, ["c", "b", "a"], POS, ("rope", "onehot")) == ["b", "a"]
    assert U.moving_of(runs, ["c"], POS, ("rope", "onehot")) == []
    assert U.moving_of(runs, None, POS, ("rope",)) is None


def test_csv_judge_reads_the_moving_runs_from_the_table_or_the_report(tmp_path):
    seen = []

    def subclaims(runs, common, moving):
        seen.append((common, moving))
        return []

    judge = U.csv_judge(subclaims, "report.md", [POS, K])
    runs = pd.DataFrame(
        {
            "run": ["a", "b"],
            POS: ["onehot", "onehot"],
            K: [64, 128],
            "seed": [0, 0],
            "still_moving": [False, True],
        }
    )
    judge(runs, tmp_path / "x_runs.csv")
    (tmp_path / "report.md").write_text("Runs still moving at the end (icl ...): 1 of 2 (a).\n")
    judge(runs.drop(columns="still_moving"), tmp_path / "x_runs.csv")
    judge(runs.drop(columns="still_moving"), tmp_path / "elsewhere" / "x_runs.csv")  # no report there
    assert seen == [({"n_runs": 2, "n_seeds": 1}, ["b"]), ({"n_runs": 2, "n_seeds": 1}, ["a"])] + [
        ({"n_runs": 2, "n_seeds": 1}, None)
    ]


def test_rejudge_csvs_reads_every_matching_csv_and_keeps_other_subclaims(tmp_path, capsys):
    path = tmp_path / "claims.json"
    write_section(path, Section("3", "t", [SubClaim("3a", "old a", "weak"), SubClaim("3c", "old c", "weak")]))
    for name, grids in (("c3_one_runs.csv", ["g1"]), ("c3_two_runs.csv", ["g2", "g1"])):
        pd.DataFrame({"grid": grids, "run": ["r"] * len(grids)}).to_csv(tmp_path / name, index=False)
    got = []

    def judge(runs):
        got.append(sorted(runs["grid"]))
        return [SubClaim("3a", "new a", "supported")]

    args = Namespace(from_results="", out=str(tmp_path))
    U.rejudge_csvs(args, "3", "t", "c3", judge, "c3_runs.csv", "c3_*_runs.csv")
    assert got == [["g1", "g2"]]  # (g1, r) read twice, kept once
    subs = json.loads(path.read_text())["claims"]["3"]["subclaims"]
    assert [(s["id"], s["text"]) for s in subs] == [("3a", "new a"), ("3c", "old c")]
    assert "c3_one_runs.csv and c3_two_runs.csv" in subs[0]["notes"]
    assert "re-judged section 3" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no c9_"):
        U.rejudge_csvs(args, "3", "t", "c3", judge, "c9_runs.csv", "c9_*_runs.csv")


def test_k_extremes_is_the_paired_difference_of_final_icl():
    icl = {64: [0.1, 0.2, 0.15], 512: [0.7, 0.9, 0.85]}
    part = pd.DataFrame(
        [
            {"run": f"{k}_{s}", K: k, "seed": s, "icl": v, "iwl": 0.5}
            for k, vals in icl.items()
            for s, v in enumerate(vals)
        ]
    )
    sub = U.k_extremes_subclaim("1a", part, {"n_runs": 6}, min_effect=0.2)
    mean, lo, hi = _t([0.6, 0.7, 0.7])
    assert sub.effect == pytest.approx(mean) and sub.interval == pytest.approx([lo, hi])
    assert sub.effect_label == "final icl, K = 512 minus K = 64" and sub.n_runs == 6
    assert "at K = 64 iwl 0.500, icl 0.150" in sub.notes


def _cue(key: str, values: dict, common: bool = False) -> pd.DataFrame:
    """Runs per value of ``key``: {value: [icl_rel per seed]} (icl = icl_rel, iwl = 1 - icl_rel)."""
    rows = []
    for v, rels in values.items():
        for s, rel in enumerate(rels):
            row = {"run": f"{v}_{s}", key: v, "seed": s, "icl": rel, "iwl": 1 - rel, "icl_rel": rel}
            row["plateau"] = 0.125
            if common:
                row |= {"icl_b2": rel + 0.1, "ih_b2": 0.5, "icl_b2_rel": rel / 2}
            rows.append(row)
    return pd.DataFrame(rows)


def test_cue_subclaims_take_the_largest_b_and_the_best_eps_after_the_fact():
    part = _cue("task.B", {1: [0.0, 0.1, 0.05], 4: [0.3, 0.5, 0.4]}, common=True)
    own, shared = U.cue_subclaims(("1b", "1e"), "task.B", part, {}, min_effect=0.1, common_B=2)
    mean, lo, hi = _t([0.3, 0.5, 0.4])
    assert own.effect == pytest.approx(mean) and own.interval == pytest.approx([lo, hi])
    assert own.verdict == "supported" and "B = 4 (the largest B)" in own.effect_label
    assert shared.id == "1e" and shared.effect == pytest.approx(0.2)  # mean of icl_b2_rel at B = 4
    assert "B = 1: 0.150, 0.500; B = 4: 0.500, 0.500" in shared.notes
    # eps: the middle value has the highest mean; chosen after the fact, so at most weak
    part = _cue("task.eps", {0.0: [0.1, 0.1, 0.1], 0.1: [0.5, 0.6, 0.55], 0.2: [0.2, 0.3, 0.2]})
    own, shared = U.cue_subclaims(("1c", "1f"), "task.eps", part, {}, min_effect=0.1, common_B=2)
    assert own.effect == pytest.approx(0.55) and own.verdict == "weak" and shared is None
    assert "eps = 0.1 (the eps with the highest mean" in own.effect_label


def test_zipf_compares_iwl_where_zipf_first_learns_icl():
    rows = []
    for alpha, k, icl, iwl in (
        (1.0, 256, [0.3, 0.4, 0.3], [0.9, 0.9, 0.9]),
        (1.0, 512, [0.6, 0.7, 0.6], [0.5, 0.6, 0.4]),
        (0.0, 512, [0.9, 0.9, 0.9], [0.1, 0.2, 0.3]),
        (0.0, 256, [0.8, 0.8, 0.8], [0.2, 0.2, 0.2]),
    ):
        rows += [
            {"run": f"{alpha}_{k}_{s}", "task.alpha": alpha, K: k, "seed": s, "icl": a, "iwl": b}
            for s, (a, b) in enumerate(zip(icl, iwl, strict=True))
        ]
    part = pd.DataFrame(rows)
    sub = U.zipf_subclaim("1d", part, {}, min_effect=0.1)
    mean, lo, hi = _t([0.4, 0.4, 0.1])
    assert sub.effect == pytest.approx(mean) and sub.interval == pytest.approx([lo, hi])
    assert "at K = 512" in sub.effect_label and "K = 256: icl 0.333, iwl 0.900" in sub.notes
    low = part.assign(icl=0.1)
    none = U.zipf_subclaim("1d", low, {}, min_effect=0.1)
    assert none.verdict == "not tested" and none.notes.startswith("no K with Zipf icl >= 0.5")


def test_rope_ratio_is_the_geometric_mean_of_per_seed_crossing_ratios():
    k = {0: (0.25, 0.75), 1: (0.3, 0.7), 2: (0.2, 0.8)}  # one-hot at (64, 256)
    r = {0: (0.4, 0.7), 1: (0.45, 0.55), 2: (0.3, 0.65)}  # RoPE at (512, 2048)
    runs = pd.concat(
        [
            _curves(POS, {"onehot": {s: {64: a, 256: b} for s, (a, b) in k.items()}}),
            _curves(POS, {"rope": {s: {512: a, 2048: b} for s, (a, b) in r.items()}}),
        ]
    )
    arms = U.arm_crossings(runs, POS)
    sub = U.rope_ratio_subclaim("2a", "t", arms, "rope", "rope", False, "; tail", {"n_runs": 12})
    ratios = [_crossing(512, 2048, *r[s]) / _crossing(64, 256, *k[s]) for s in range(3)]
    assert sub.effect == pytest.approx(math.exp(np.mean(np.log(ratios))))
    assert sub.effect_label == U.RATIO_LABEL and "crossing K per seed: rope " in sub.notes
    assert sub.notes.split("; grid rule")[0].endswith("; tail") and sub.verdict == "supported"
    capped = U.rope_ratio_subclaim("2a", "t", arms, "rope", "rope", True, "", {})
    assert capped.verdict == "weak"


def test_shared_learned_k_is_the_largest_k_both_arms_learn():
    means = pd.Series({("onehot", 64): 0.6, ("rope", 64): 0.5, ("onehot", 128): 0.9, ("rope", 128): 0.4})
    assert U.shared_learned_k(means, "rope") == 64
    assert U.shared_learned_k(means.drop(("rope", 64)), "rope") is None


def _circuit_runs(delays: list[float], ih: tuple[float, float]) -> pd.DataFrame:
    rows = []
    for pos in ("onehot", "rope"):
        for s, d in enumerate(delays):
            shift = d if pos == "rope" else 0.0
            rows.append(
                {
                    "run": f"{pos}_{s}",
                    POS: pos,
                    K: 128,
                    "seed": s,
                    "final_icl": 0.9 if pos == "onehot" else 0.7,
                    "icl_onset": 100.0 + shift,
                    "icl_onset_plateau": 50.0 + shift / 2,
                    "steps_to_icl_half": 120.0 + shift,
                    "icl_resolution": 25.0 if pos == "onehot" else 10.0,
                    "final_ih": ih[pos == "rope"] + 0.01 * s,
                    "final_prev_token_label": 0.2,
                }
            )
    return pd.DataFrame(rows)


def test_circuit_subclaims_pair_onsets_and_ih_by_seed():
    runs = _circuit_runs([300.0, 400.0, 350.0], (0.8, 0.5))
    delay, weaker = U.circuit_subclaims(("2c", "2e"), "correct RoPE", runs, "rope", {}, ih_min_effect=0.05)
    mean, lo, hi = _t([300.0, 400.0, 350.0])
    assert delay.effect == pytest.approx(mean) and delay.interval == pytest.approx([lo, hi])
    assert (
        "checkpoint spacing 25 steps" in delay.notes and "leaving-the-plateau onset +175 steps" in delay.notes
    )
    assert weaker.effect == pytest.approx(-0.3) and weaker.verdict == "supported"
    assert "(0.700 vs 0.900)" in weaker.notes
    never = runs.assign(final_icl=0.3)
    subs = U.circuit_subclaims(("2d", "2f"), "published RoPE", never, "rope", {}, ih_min_effect=0.05)
    assert [(s.id, s.verdict, s.text) for s in subs] == [
        ("2d", "not tested", "published RoPE delays the ICL onset"),
        ("2f", "not tested", "published RoPE weakens the induction pattern"),
    ]


def test_shift_subclaim_ratio_small_shift_and_moving_cap():
    curves = {
        1: {s: {128: 0.25, 512: 0.75} for s in range(3)},  # crossing 256
        8: {s: {128: 0.1, 512: 0.7} for s in range(3)},
    }
    runs = _curves("model.n_heads", curves, still_moving=False)
    sub = U.shift_subclaim("3a", "model.n_heads", runs, {}, "text", note="first")
    ratio = _crossing(128, 512, 0.1, 0.7) / 256
    assert sub.effect == pytest.approx(ratio) and ratio < 1.5
    assert sub.notes.startswith("first; crossing K per seed: n_heads 1: ")
    assert f"a small shift ({ratio:.2f}x)" in sub.notes and "at K = 128 icl goes 0.250 -> 0.100" in sub.notes
    assert sub.effect_label.startswith("crossing K, n_heads = 8 / 1") and sub.text == "text"
    apart = {
        1: {s: {128: 0.3, 256: 0.8, 512: 0.9, 2048: 0.95} for s in range(3)},
        8: {s: {128: 0.1, 256: 0.2, 512: 0.3, 2048: 0.7 + 0.05 * s} for s in range(3)},
    }
    runs = _curves("model.n_heads", apart, still_moving=False)
    assert U.shift_subclaim("3a", "model.n_heads", runs, {}, "t").verdict == "supported"
    moving = runs.assign(still_moving=runs["run"] == "8_K=128_seed=0")
    sub = U.shift_subclaim("3a", "model.n_heads", moving, {}, "t")
    assert sub.verdict == "weak" and "1 of the compared runs still moving" in sub.notes


@pytest.mark.parametrize(
    ("estimate", "lo", "hi", "n", "expected"),
    [
        (3000.0, 2048.0, 4096.0, 3, "supported"),
        (3000.0, 2048.0, 4096.0, 2, "weak"),
        (1500.0, 1024.0, 2048.0, 3, "not supported"),  # touches a at a half-open edge: disjoint
        (2048.0, 1024.0, 3000.0, 3, "weak"),
        (math.nan, 4096.0, math.inf, 3, "not supported"),
        (math.nan, 1024.0, math.inf, 3, "not tested"),
    ],
)
def test_bracket_verdict(estimate, lo, hi, n, expected):
    assert U.bracket_verdict(estimate, lo, hi, n, (2048, 4096)) == expected


def test_bracket_subclaim_widens_the_geometric_mean_to_the_grid_cells():
    runs = _curves(POS, {"onehot": {s: {2048: 0.2 + 0.05 * s, 4096: 0.9} for s in range(3)}})
    rows = U.arm_crossings(runs, POS)["onehot"]
    sub = U.bracket_subclaim("P1", "t", rows, (2048, 4096), {"n_runs": 6}, "; tail")
    per_seed = [_crossing(2048, 4096, 0.2 + 0.05 * s, 0.9) for s in range(3)]
    assert sub.effect == pytest.approx(math.exp(np.mean(np.log(per_seed))))
    assert sub.interval == [2048.0, 4096.0]  # the seeds' interval lies inside the cell (2048, 4096]
    assert sub.verdict == "supported" and sub.notes.endswith("as half-open cells; tail")
