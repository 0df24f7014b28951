"""Our runs beside the published code's (mmicl_interp/sweep/published_compare.py) on hand-made
sweep tables and reference CSVs, each checked against a hand computation (no training)."""

import math

import pandas as pd

from mmicl_interp.sweep import published_compare as pc
from tests.sweep import curve_table


def _table(curves: dict[tuple[str, int], dict[str, list[float]]], every: int = 500) -> pd.DataFrame:
    """A sweep table over (variant, seed): each suite's accuracy at steps 0, every, 2 * every, ..."""
    return curve_table(
        curves,
        run=lambda p: f"{p[0]}_s{p[1]}",
        keys=lambda p: {"model.embed_init": p[0], "task.K": 64, "seed": p[1], "train.lr": 0.001},
        every=every,
    )


def test_side_reads_the_plateau_it_is_given():
    # icl 0.3 with iwl 0.9: above the default plateau 0.25 (neither), below a plateau of 0.5 (IWL)
    assert pc.side(0.3, 0.9) == "neither" and pc.side(0.3, 0.9, plateau=0.5) == "IWL"
    assert pc.side(0.8, 0.9) == "ICL"  # icl >= 0.8 wins whatever iwl is


def test_trajectories_put_icl_and_iwl_side_by_side_and_keep_the_swept_keys():
    table = _table({("unit", 0): {"icl": [0.1, 0.5], "iwl": [0.2, 0.4], "test": [0.0, 0.0]}})
    traj = pc.trajectories(table)
    assert list(traj.columns) == ["run", "step", "model.embed_init", "task.K", "seed", "icl", "iwl"]
    assert traj["icl"].tolist() == [0.1, 0.5] and traj["iwl"].tolist() == [0.2, 0.4]  # accuracy, not loss
    assert traj["step"].tolist() == [0, 500]


def test_step_rows_take_the_reported_steps_and_the_side_at_each_runs_last_step():
    table = _table(
        {
            ("unit", 1): {"icl": [0.0, 0.5, 0.9], "iwl": [0.0, 0.1, 0.1]},
            ("unit", 0): {"icl": [0.0, 0.1, 0.1], "iwl": [0.0, 0.3, 0.7]},
            ("init_std", 0): {"icl": [0.0, 0.4], "iwl": [0.0, 0.2]},  # stopped at step 500
        }
    )
    rows = pc.step_rows(pc.trajectories(table), ["model.embed_init", "seed"], (500, 1000))
    # sorted by the keys: init_std before unit, seed 0 before 1
    assert rows["run"].tolist() == ["init_std_s0", "unit_s0", "unit_s1"]
    assert rows["side"].tolist() == ["neither", "IWL", "ICL"]
    assert rows["last_step"].tolist() == [500, 1000, 1000]
    assert rows["icl_500"].tolist() == [0.4, 0.1, 0.5] and rows["iwl_1000"].tolist()[1:] == [0.7, 0.1]
    assert math.isnan(rows["icl_1000"].iloc[0])  # a step the run never reached stays empty
    last = pc.last_steps(pc.trajectories(table)).set_index("run")
    assert last["step"].to_dict() == {"unit_s1": 1000, "unit_s0": 1000, "init_std_s0": 500}
    assert last.loc["init_std_s0", "icl"] == 0.4


def test_mean_min_max_is_a_mean_and_a_range():
    assert pc.mean_min_max(pd.Series([0.2, 0.5, 0.8])) == "0.500 (0.200-0.800)"


def test_icl_iwl_and_step_table_summarise_each_variant_and_k_over_seeds():
    runs = pd.DataFrame(
        {
            "model.mlp_init": ["a", "a", "a", "b"],
            "task.K": [64, 64, 128, 64],
            "side": ["IWL", "ICL", "ICL", "neither"],
            "icl_500": [0.1, 0.5, 0.9, 0.2],
            "iwl_500": [0.6, 0.2, 0.0, 0.4],
        }
    )
    # variant a at K 64: icl mean (0.1 + 0.5) / 2 = 0.3, iwl mean (0.6 + 0.2) / 2 = 0.4
    assert pc.icl_iwl(runs.iloc[:2], 500) == "0.300 (0.100-0.500) / 0.400 (0.200-0.600)"
    lines = pc.step_table(runs, ["model.mlp_init"], {("a",): "A", ("b",): "B"}, (500,))
    assert lines == [
        "| variant | K | step 500 icl / iwl | side at 500 (per seed) |",
        "|---|---|---|---|",
        "| A | 64 | 0.300 (0.100-0.500) / 0.400 (0.200-0.600) | IWL, ICL |",
        "| A | 128 | 0.900 (0.900-0.900) / 0.000 (0.000-0.000) | ICL |",
        "| B | 64 | 0.200 (0.200-0.200) / 0.400 (0.400-0.400) | neither |",
    ]


def test_reference_lines_set_the_published_codes_seeds_beside_ours(tmp_path):
    ref = pd.DataFrame(
        [
            dict(K=64, seed=s, step=500, suite=suite, accuracy=v, loss=0.0)
            for s, (icl, iwl) in enumerate([(0.1, 0.7), (0.3, 0.9)])
            for suite, v in (("icl", icl), ("iwl", iwl), ("test", 0.5))
        ]
    )
    path = tmp_path / "published_reference.csv"
    ref.to_csv(path, index=False)
    ours = pd.DataFrame(
        {"task.K": [64] * 3, "icl_500": [0.0, 0.3, 0.6], "iwl_500": [1.0, 0.5, 0.9], "icl_1000": [1.0] * 3}
    )
    lines = pc.reference_lines(ours, (500, 1000), path)
    assert lines[0] == "### Against the published code"
    # the reference has no step 1000, so only step 500 is compared: ref mean icl (0.1 + 0.3) / 2
    assert lines[-3:] == [
        "| K | step | published code icl / iwl | `published` icl / iwl | seeds (ref / ours) |",
        "|---|---|---|---|---|",
        "| 64 | 500 | 0.200 (0.100-0.300) / 0.800 (0.700-0.900) | 0.300 (0.000-0.600) / 0.800 (0.500-1.000) "
        "| 2 / 3 |",
    ]
    missing = pc.reference_lines(ours, (500,), tmp_path / "none.csv")
    assert missing == ["No published reference table (none.csv): run analyses/published_reference.py."]


def test_arm_lines_pair_the_arms_by_seed():
    table = _table(
        {
            ("init_std", 0): {"icl": [0.0, 0.2], "iwl": [0.0, 0.9]},
            ("init_std", 1): {"icl": [0.0, 0.3], "iwl": [0.0, 0.8]},
            ("init_std", 2): {"icl": [0.0, 0.1], "iwl": [0.0, 0.7]},
            ("unit", 0): {"icl": [0.0, 0.9], "iwl": [0.0, 0.1]},
            ("unit", 1): {"icl": [0.0, 0.6], "iwl": [0.0, 0.2]},
            ("unit", 2): {"icl": [0.0, 0.8], "iwl": [0.0, 0.0]},
        }
    )
    lines, last = pc.arm_lines(table, "model.embed_init", "init_std", "unit", "W_E init")
    assert lines[2:4] == [
        "| init_std | 3 | 500 | 0.200 (0.100-0.300) | 0.800 (0.700-0.900) |",
        "| unit | 3 | 500 | 0.767 (0.600-0.900) | 0.100 (0.000-0.200) |",
    ]
    d = [0.9 - 0.2, 0.6 - 0.3, 0.8 - 0.1]  # unit minus init_std, seed by seed
    m = sum(d) / 3
    half = 4.302653 * math.sqrt(sum((x - m) ** 2 for x in d) / 2) / math.sqrt(3)  # t_{0.975, 2}
    assert lines[-1] == (
        f"icl, unit minus init_std, paired by seed: {m:+.3f} [{m - half:.3f}, {m + half:.3f}] "
        "(95% paired t over 3 seeds)."
    )
    assert len(last) == 6 and (last["step"] == 500).all()


def test_moving_text_names_few_runs_and_refers_many_to_the_report():
    assert "not known" in pc.moving_text(None, 4, "r.md")
    assert "at a plateau" in pc.moving_text([], 4, "r.md")
    assert pc.moving_text(["a", "b"], 4, "r.md").endswith("in 2 of 4 runs: a, b")
    assert pc.moving_text([str(i) for i in range(7)], 9, "r.md").endswith("in 7 of 9 runs: see r.md")


def test_boundary_figure_draws_each_position_and_the_published_boundary():
    summary = pd.DataFrame(
        [
            {"model.positions": p, "task.K": k, "suite": s, "mean": 0.5, "min": 0.4, "max": 0.6, "count": 2}
            for p in ("onehot", "rope")
            for k in (64, 128)
            for s in ("icl", "iwl")
        ]
    )
    runs = pd.DataFrame(
        [{"model.positions": p, "task.K": k, "best_ih": 0.3} for p in ("onehot", "rope") for k in (64, 128)]
    )
    fig = pc.boundary_figure(summary, runs, ["onehot", "rope"], (2048, 4096))
    names = [t.name for t in fig.data]
    assert names[:6] == ["onehot icl", "onehot iwl", "onehot ih", "rope icl", "rope iwl", "rope ih"]
    boundary = [t for t in fig.data if t.name == "published code's boundary"]
    assert [list(t.x) for t in boundary] == [[2048, 2048], [4096, 4096]]
    assert [t.showlegend for t in boundary] == [True, False]
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log"
