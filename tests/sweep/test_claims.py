"""claims.json: merging sections, the verdict rule, the Markdown table and the evidence helpers."""

import json
import math
import threading

import numpy as np
import pandas as pd
import pytest

from mmicl_interp.config import ConfigError
from mmicl_interp.io import CorruptFileError
from mmicl_interp.sweep import claims
from mmicl_interp.sweep.claims import (
    END,
    START,
    Section,
    SubClaim,
    bootstrap_difference,
    budget_text,
    n_seeds,
    ratio_interval,
    read_claims,
    render_table,
    replace_between_markers,
    still_moving,
    verdict,
    write_section,
)


def _section(key: str, verdict_: str = "weak", **kw) -> Section:
    sub = SubClaim(id=f"{key}a", text=f"claim {key}", verdict=verdict_, **kw)
    return Section(key=key, title=f"Claim {key}", subclaims=[sub], command="cmd", wall_time_s=12.0)


def test_writing_one_section_keeps_the_others(tmp_path):
    path = tmp_path / "claims.json"
    write_section(path, _section("2", effect=1.5))
    write_section(path, _section("1", effect=0.3))
    write_section(path, _section("2", "supported", effect=2.5))  # replaces 2 only
    data = json.loads(path.read_text())
    assert list(data["claims"]) == ["1", "2"]  # numeric order
    assert data["claims"]["1"]["subclaims"][0]["effect"] == 0.3
    assert data["claims"]["2"]["subclaims"][0] == pytest.approx(
        data["claims"]["2"]["subclaims"][0] | {"verdict": "supported", "effect": 2.5}
    )
    assert data["claims"]["2"]["subclaims"][0]["verdict"] == "supported"


def test_named_sections_sort_after_numbered_ones_and_nan_is_stored_as_null(tmp_path):
    path = tmp_path / "claims.json"
    write_section(path, _section("paper_arch", "not tested", effect=math.nan, interval=[1.0, math.inf]))
    write_section(path, _section("10"))
    write_section(path, _section("3"))
    data = json.loads(path.read_text())  # strict JSON: no NaN tokens
    assert list(data["claims"]) == ["3", "10", "paper_arch"]
    sub = data["claims"]["paper_arch"]["subclaims"][0]
    assert sub["effect"] is None and sub["interval"] == [1.0, "inf"]


def test_concurrent_writers_lose_no_section(tmp_path):
    path = tmp_path / "claims.json"
    threads = [threading.Thread(target=write_section, args=(path, _section(str(k)))) for k in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(read_claims(path)["claims"], key=int) == [str(k) for k in range(1, 9)]


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "claims.json"
    write_section(path, _section("1", effect=0.3))
    before = path.read_text()

    def boom(tmp):
        tmp.write_text('{"half": ')
        raise OSError("disk full")

    monkeypatch.setattr("mmicl_interp.io.atomic_write_text", lambda p, text: claims_io_fail(p, boom))
    with pytest.raises(OSError):
        write_section(path, _section("2"))
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def claims_io_fail(path, write):
    from mmicl_interp.io import atomic_write

    atomic_write(path, write)


def test_corrupt_or_foreign_file_is_named(tmp_path):
    path = tmp_path / "claims.json"
    path.write_text('{"claims": ')
    with pytest.raises(CorruptFileError) as err:
        write_section(path, _section("1"))
    assert err.value.path == path
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a claims file"):
        read_claims(path)


def test_unknown_verdict_is_refused():
    with pytest.raises(ConfigError, match="supported, weak, not supported, not tested, inside noise"):
        SubClaim(id="1a", text="x", verdict="holds")


@pytest.mark.parametrize(
    ("args", "kw", "expected"),
    [
        ((None,), {}, "not tested"),
        ((math.nan, [0.1, 0.2]), {}, "not tested"),
        ((0.3, [-0.1, 0.5]), {}, "inside noise"),  # interval holds 0
        ((0.0, None), {}, "inside noise"),  # no effect at all
        ((1.2, [0.9, 1.6]), {"null": 1.0}, "inside noise"),  # a ratio whose interval holds 1
        ((0.3, [0.2, 0.4]), {"n_seeds": 5}, "supported"),
        ((0.3, [0.2, 0.4]), {"n_seeds": 2}, "weak"),  # too few seeds
        ((0.3, None), {}, "weak"),  # no interval
        ((0.03, [0.01, 0.05]), {"min_effect": 0.1}, "weak"),  # too small to matter
        ((-0.3, [-0.4, -0.2]), {}, "not supported"),  # the wrong sign
        ((-0.3, None), {}, "not supported"),
        ((-0.3, [-0.4, -0.2]), {"expected": "negative"}, "supported"),
        ((2.9, [1.5, math.inf]), {"null": 1.0}, "supported"),  # an unreached bound is inf
        ((0.5, [math.nan, math.nan]), {}, "weak"),
        ((0.3, [0.2, 0.4]), {"n_seeds": 5, "at_most_weak": True}, "weak"),  # e.g. picked after the fact
        ((0.3, [-0.1, 0.5]), {"at_most_weak": True}, "inside noise"),  # the cap lowers, never raises
        ((-0.3, [-0.4, -0.2]), {"at_most_weak": True}, "not supported"),
    ],
)
def test_verdict_rule(args, kw, expected):
    assert verdict(*args, **kw) == expected


def test_rendered_table_has_one_row_per_subclaim_with_its_evidence(tmp_path):
    path = tmp_path / "claims.json"
    sub = SubClaim(
        id="2a",
        text="RoPE | raises the threshold",
        verdict="weak",
        effect=2.884,
        effect_label="crossing K ratio",
        interval=[1.5, math.inf],
        interval_kind="bootstrap",
        n_runs=60,
        n_unique_configs=58,
        n_seeds=5,
        steps=10000,
        wall_time_s=600.0,
        notes="v1",
    )
    write_section(path, Section("2", "Claim 2", [sub, SubClaim(id="2b", text="delay", verdict="not tested")]))
    write_section(path, _section("1"))
    lines = render_table(read_claims(path))
    assert len(lines) == 2 + 3
    assert lines[2].startswith("| 1a. claim 1 | **weak** |")
    assert "`cmd`" in lines[2] and "| 12 s |" in lines[2]
    row = lines[3]
    assert "RoPE \\| raises" in row  # a pipe in text does not split the cell
    assert "crossing K ratio: 2.88 [1.5, inf] (bootstrap)" in row
    assert "| 60 (58 unique) | 5 | 10000 |" in row and "| 10.0 min |" in row
    assert lines[4].startswith("| 2b. delay | **not tested** | - |")


def test_replace_between_markers_keeps_the_text_around_and_needs_both_markers():
    text = f"intro\n{START}\nold | table\n{END}\noutro\n"
    out = replace_between_markers(text, "| new |\n")
    assert out == f"intro\n{START}\n| new |\n{END}\noutro\n"
    assert replace_between_markers(out, "| new |") == out  # idempotent
    with pytest.raises(ConfigError, match="claims:start"):
        replace_between_markers("no markers", "| t |", "README.md")


def test_bootstrap_difference_matches_the_means_and_brackets_them():
    a, b = [0.1, 0.2, 0.3], [0.8, 0.9, 1.0]
    diff, lo, hi = bootstrap_difference(a, b)
    assert diff == pytest.approx(0.7)
    assert 0.5 <= lo <= diff <= hi <= 0.9  # the extremes: 0.8 - 0.3 and 1.0 - 0.1
    same = bootstrap_difference([0.5, 0.5], [0.5, 0.5])
    assert same == (0.0, 0.0, 0.0)
    assert all(math.isnan(v) for v in bootstrap_difference([], [1.0]))


def test_ratio_interval_is_conservative():
    num = {"threshold": 600.0, "lo": 500.0, "hi": math.inf}
    den = {"threshold": 200.0, "lo": 150.0, "hi": 250.0}
    assert ratio_interval(num, den) == (3.0, 2.0, math.inf)


def _table(curves: dict[str, list[float]], seeds: dict[str, int] | None = None) -> pd.DataFrame:
    rows = []
    for run, values in curves.items():
        for step, v in zip(np.arange(len(values)) * 100, values, strict=True):
            rows.append(dict(run=run, step=int(step), suite="icl", metric="accuracy", value=v))
    table = pd.DataFrame(rows)
    if seeds is not None:
        table["seed"] = table["run"].map(seeds)
        table["task.K"] = table["run"].str[0]
    return table


def test_still_moving_flags_runs_that_change_over_the_last_fifth():
    flat = [0.1, 0.5, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.905, 0.905]
    rising = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.72, 0.74, 0.76]
    assert still_moving(_table({"flat": flat, "rising": rising})) == ["rising"]
    # eval noise around a plateau (+-0.01, max - min 0.02) is not a trend
    noisy = [0.1, 0.5, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.91, 0.89, 0.91]
    assert still_moving(_table({"noisy": noisy})) == []


def test_large_effects_print_as_whole_numbers_not_in_e_notation():
    sub = {"effect": 1382.47, "interval": [1375.98, 1390.55], "effect_label": "crossing K"}
    assert claims.effect_text(sub) == "crossing K: 1382 [1376, 1391]"
    assert claims.effect_text({"effect": 3.4858, "interval": [3.196, 3.877]}) == "3.49 [3.2, 3.88]"
    assert claims.effect_text({"effect": 63.3, "interval": [23.6, 98.9]}) == "63.3 [23.6, 98.9]"


def test_budget_text_counts_the_runs_the_plateau_stop_ended_early():
    assert budget_text(3000, 1000, pd.Series([3000, 3000])) == "3000 steps per run"
    text = budget_text(10000, 3000, pd.Series([3000, 10000, 5500]))
    assert text.startswith("up to 10000 steps per run, stopped at the icl plateau from step 3000 on")
    assert text.endswith("2 of 3 runs stopped early, last step 3000-10000 (median 5500)")


def test_n_seeds_counts_the_fewest_seeds_behind_a_point():
    table = _table(
        {"a0": [0.1] * 3, "a1": [0.2] * 3, "a2": [0.2] * 3, "b0": [0.3] * 3, "b1": [0.3] * 3},
        {"a0": 0, "a1": 1, "a2": 2, "b0": 0, "b1": 1},
    )
    assert n_seeds(table) == 2
    assert claims.n_seeds(table.drop(columns=["seed"])) == 1


def test_the_committed_readme_tables_are_the_render_of_the_committed_claims_json():
    """The claims tables are generated, not typed: both READMEs hold exactly the table that
    ``analyses/make_tables.py`` renders from ``analyses/results/claims.json`` (rerun it after
    a claim script)."""
    from pathlib import Path

    from mmicl_interp.sweep.claims import read_claims

    root = Path(__file__).resolve().parents[2]
    table = "\n".join(render_table(read_claims(root / "analyses" / "results" / "claims.json")))
    for readme in (root / "README.md", root / "analyses" / "README.md"):
        text = readme.read_text()
        hint = f"{readme}: run analyses/make_tables.py"
        assert replace_between_markers(text, table, str(readme)) == text, hint
    assert "| 6a." in table and "| 4" in table  # claim 6 and claim 4 are in the table


# --------------------------------------------------------------------------- paired judgements and the rules
T_0975_4 = 2.776445  # t_{0.975, 4}, from a t table
T_0975_2 = 4.302653  # t_{0.975, 2}


def _crossings(arm: dict[int, tuple[float, float, float]]) -> pd.DataFrame:
    """seed_crossings rows: seed -> (crossing, cell_lo, cell_hi)."""
    return pd.DataFrame([dict(seed=s, crossing=c, cell_lo=lo, cell_hi=hi) for s, (c, lo, hi) in arm.items()])


def test_judge_difference_is_the_paired_t_interval_written_out():
    a = pd.Series({0: 0.10, 1: 0.12, 2: 0.08, 3: 0.11, 4: 0.09})
    b = pd.Series({4: 0.70, 3: 0.81, 2: 0.66, 1: 0.74, 0: 0.77})  # any order: matched on the seed
    j = claims.judge_difference(a, b)
    d = [b[s] - a[s] for s in range(5)]
    mean = sum(d) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)
    assert j.effect == pytest.approx(mean)
    assert j.interval == pytest.approx(
        [mean - T_0975_4 * sd / math.sqrt(5), mean + T_0975_4 * sd / math.sqrt(5)]
    )
    assert j.kind == "95% paired t over 5 seeds" and j.verdict == "supported"
    assert claims.judge_difference(a.iloc[:2], b, min_seeds=3).verdict == "weak"  # 2 seeds in common


def test_judge_mean_is_the_t_interval_over_seeds():
    j = claims.judge_mean([0.25, 0.05, 0.30], min_effect=0.1)
    mean = 0.2
    sd = math.sqrt(((0.05) ** 2 + 0.15**2 + 0.1**2) / 2)
    assert j.interval == pytest.approx(
        [mean - T_0975_2 * sd / math.sqrt(3), mean + T_0975_2 * sd / math.sqrt(3)]
    )
    assert j.verdict == "inside noise" and j.kind == "95% t over 3 seeds"


def test_grid_rule_widens_an_interpolated_crossing_ratio_to_the_ratio_of_the_cells():
    rope = _crossings({0: (600.0, 512, 1024), 1: (640.0, 512, 1024), 2: (620.0, 512, 1024)})
    onehot = _crossings({0: (170.0, 128, 256), 1: (176.0, 128, 256), 2: (173.0, 128, 256)})
    j = claims.judge_crossing_ratio(rope, onehot)
    logs = [math.log(600 / 170), math.log(640 / 176), math.log(620 / 173)]
    assert j.effect == pytest.approx(math.exp(sum(logs) / 3))
    assert j.interval == [2.0, 8.0]  # at least [512 / 256, 1024 / 128]
    assert j.verdict == "supported" and "widened to the grid cells" in j.kind
    assert "widened to at least their ratio [2, 8]" in j.note and "K (512, 1024]" in j.note
    # the seed interval alone is far narrower; "cap" keeps it and caps the verdict instead
    capped = claims.judge_crossing_ratio(rope, onehot, rule="cap")
    assert capped.verdict == "weak" and 3.0 < capped.interval[0] < capped.interval[1] < 4.0
    assert "capped at weak" in capped.note and "seeds only" in capped.kind
    # a seed interval wider than the cells stays as wide
    wide = _crossings({0: (300.0, 256, 512), 1: (900.0, 512, 1024), 2: (620.0, 512, 1024)})
    j = claims.judge_crossing_ratio(wide, onehot)
    seeds = claims.paired_log_ratio_interval(
        wide.set_index("seed")["crossing"], onehot.set_index("seed")["crossing"]
    )
    assert j.interval == pytest.approx([min(seeds.lo, 1.0), max(seeds.hi, 8.0)])
    with pytest.raises(ValueError, match="rule"):
        claims.judge_crossing_ratio(rope, onehot, rule="shrink")


def test_grid_rule_adjacent_cells_show_the_direction_not_the_size():
    # crossings in (128, 192] and (192, 256]: the ratio is > 1 but its size is not resolved
    small = _crossings({s: (160.0 + s, 128, 192) for s in range(5)})
    big = _crossings({s: (215.0 + s, 192, 256) for s in range(5)})
    j = claims.judge_crossing_ratio(big, small)
    assert j.interval[0] == 1.0 and j.verdict == "weak" and "only touch" in j.note
    # the same cells: the widened interval holds 1, inside noise
    same = _crossings({s: (170.0 + 2 * s, 128, 192) for s in range(5)})
    assert claims.judge_crossing_ratio(same, small).verdict == "inside noise"
    # a crossing never reached: judged on the cells only, at most weak
    never = _crossings({s: (math.nan, 512, math.inf) for s in range(3)})
    j = claims.judge_crossing_ratio(never, small.iloc[:3])
    assert j.effect is None and j.verdict == "weak" and j.interval == [512 / 192, math.inf]


def test_crossing_estimate_is_a_geometric_mean_with_the_union_of_the_cells():
    rows = _crossings({0: (1376.0, 1024, 2048), 1: (1391.0, 1024, 2048), 2: (1380.0, 1024, 2048)})
    est, cell = claims.crossing_estimate(rows)
    logs = [math.log(v) for v in (1376.0, 1391.0, 1380.0)]
    m = sum(logs) / 3
    sd = math.sqrt(sum((x - m) ** 2 for x in logs) / 2)
    assert est.estimate == pytest.approx(math.exp(m))
    assert (est.lo, est.hi) == pytest.approx(
        (math.exp(m - T_0975_2 * sd / math.sqrt(3)), math.exp(m + T_0975_2 * sd / math.sqrt(3)))
    )
    assert cell == (1024.0, 2048.0) and claims.widen_to_cells(est.bounds, cell) == [1024.0, 2048.0]
    assert claims.crossing_text(rows).endswith("in K (1024, 2048]")
    assert claims.cell_text((8192, math.inf)) == "K > 8192"


@pytest.mark.parametrize(
    ("effect", "interval", "spacing", "expected"),
    [
        (63.3, [-0.1, 126.7], 25.0, "inside noise"),  # the interval holds 0
        (63.3, [10.0, 116.0], 25.0, "weak"),  # above 0, but the lower bound is not past the spacing
        (63.3, [30.0, 96.0], 25.0, "supported"),  # the lower bound exceeds the spacing
        (20.0, [15.0, 25.0], 25.0, "inside noise"),  # below the spacing: unresolved
        (-40.0, [-60.0, -30.0], 25.0, "not supported"),  # earlier, not later
        (math.nan, None, 25.0, "not tested"),
    ],
)
def test_delay_rule(effect, interval, spacing, expected):
    v, note = claims.delay_verdict(effect, interval, spacing, n_seeds=5)
    assert v == expected
    if expected == "weak":
        assert "does not exceed the checkpoint spacing (25 steps)" in note


def test_judge_delay_pairs_onsets_by_seed_and_applies_the_delay_rule():
    onehot = pd.Series({0: 388.4615, 1: 352.4590, 2: 360.1190, 3: 330.6818, 4: 331.2909})
    rope = pd.Series({0: 418.0555, 1: 460.7143, 2: 361.0000, 3: 387.5000, 4: 452.3437})
    j = claims.judge_delay(onehot, rope, 25.0)
    assert j.effect == pytest.approx(63.32, abs=0.01) and j.interval[0] < 0 < j.interval[1]
    assert j.verdict == "inside noise" and "holds 0" in j.note


def test_range_text_says_range_and_is_not_bracketed():
    text = claims.range_text(pd.Series([0.862, 0.946, 0.90]), "runs")
    assert text == "0.903 (range 0.862 to 0.946 over 3 runs)" and "[" not in text
    assert claims.range_text([]) == "-"


def test_judgement_becomes_a_subclaim_with_its_kind_and_note():
    j = claims.Judgement("weak", 1.3, [1.0, 2.0], "95% paired t", "grid rule: widened")
    sub = j.subclaim("3a", "text", "ratio", "cells", n_seeds=5)
    assert (sub.verdict, sub.interval_kind, sub.notes, sub.n_seeds) == (
        "weak",
        "95% paired t",
        "cells; grid rule: widened",
        5,
    )


def test_moving_runs_read_the_column_or_the_committed_report(tmp_path):
    runs = pd.DataFrame({"run": ["a", "b", "c"], "still_moving": [False, True, False]})
    assert claims.moving_runs(runs) == ["b"]
    plain = runs.drop(columns="still_moving")
    report = tmp_path / "r.md"
    report.write_text(
        "x\nRuns still moving at the end (icl changed by >= 0.01 over the last 20%): 1 of 120 (b).\n"
    )
    assert claims.moving_runs(plain, report) == ["b"]
    report.write_text("Runs whose icl still moves at the end (least-squares trend >= 0.01): none.\n")
    assert claims.moving_runs(plain, report) == []
    report.write_text("Runs still moving at the end (...): 12 of 120 (a, b, c, d, e, f, g, h, i, j, ...).\n")
    assert claims.moving_runs(plain, report) is None  # cut short: not known
    assert claims.moving_runs(plain, tmp_path / "missing.md") is None


def test_rejudge_section_carries_what_the_csv_cannot_give(tmp_path):
    path = tmp_path / "claims.json"
    old = SubClaim(
        "2a", "t", "supported", 3.5, n_runs=120, n_unique_configs=118, steps=10000, command="full cmd"
    )
    write_section(path, Section("2", "T", [old], "full cmd", 900.0))
    new = SubClaim("2a", "t", "weak", 3.6, notes="grid rule", n_runs=120, n_seeds=5)
    claims.rejudge_section(path, Section("2", "T", [new], "default cmd"), "runs.csv")
    sub = read_claims(path)["claims"]["2"]["subclaims"][0]
    assert sub["n_unique_configs"] == 118 and sub["steps"] == 10000 and sub["wall_time_s"] == 900.0
    assert sub["command"] == "full cmd" and sub["verdict"] == "weak" and sub["n_seeds"] == 5
    assert sub["notes"] == "grid rule; judged from runs.csv (--from-results)"
    assert read_claims(path)["claims"]["2"]["command"] == "full cmd"


def test_rejudge_section_keeps_the_subclaims_of_grids_it_did_not_judge(tmp_path):
    """3b re-judged from its CSV: 3a and 3c (other grids) stay byte for byte, ids in order."""
    path = tmp_path / "claims.json"
    old = [
        SubClaim("3a", "heads", "weak", 1.34, notes="a notes", n_runs=50, command="cmd a"),
        SubClaim("3b", "layers", "supported", 1.5, n_runs=75, command="cmd b"),
        SubClaim("3c", "split", "weak", None, notes="c notes", n_runs=80, command="cmd c"),
    ]
    write_section(path, Section("3", "T", old, "full cmd", 600.0))
    before = {s["id"]: s for s in read_claims(path)["claims"]["3"]["subclaims"]}
    new = SubClaim("3b", "layers", "inside noise", 1.07, n_runs=75)
    claims.rejudge_section(path, Section("3", "T", [new], "default cmd"), "claim3_layers_runs.csv", keep=True)
    after = read_claims(path)["claims"]["3"]["subclaims"]
    assert [s["id"] for s in after] == ["3a", "3b", "3c"]
    assert after[0] == before["3a"] and after[2] == before["3c"]
    assert after[1]["verdict"] == "inside noise" and after[1]["command"] == "cmd b"
    assert after[1]["notes"] == "judged from claim3_layers_runs.csv (--from-results)"
    claims.rejudge_section(path, Section("3", "T", [new], "default cmd"), "x.csv")  # keep=False: 3b alone
    assert [s["id"] for s in read_claims(path)["claims"]["3"]["subclaims"]] == ["3b"]


def test_keep_others_adds_the_old_subclaims_their_wall_time_and_the_full_command(tmp_path):
    path = tmp_path / "claims.json"
    write_section(
        path, Section("3", "T", [SubClaim("3a", "h", "weak"), SubClaim("3c", "s", "weak")], "full", 600.0)
    )
    section = claims.keep_others(
        path, Section("3", "T", [SubClaim("3b", "l", "inside noise")], "part", 100.0)
    )
    assert [sc.id for sc in section.subclaims] == ["3a", "3b", "3c"]
    assert section.wall_time_s == 700.0 and section.command == "full"
    alone = claims.keep_others(
        tmp_path / "none.json", Section("3", "T", [SubClaim("3b", "l", "weak")], "part", 100.0)
    )
    assert (
        [sc.id for sc in alone.subclaims] == ["3b"] and alone.wall_time_s == 100.0 and alone.command == "part"
    )
