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
