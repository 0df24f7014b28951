"""The fidelity script's rules (analyses/published_ablation.py) on hand-made per-run tables: a
run's side, P1 on grid cells against the published code's (2048, 4096], P2 on touching cells."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    path = ROOT / "analyses" / "published_ablation.py"
    spec = importlib.util.spec_from_file_location("published_ablation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COMMON = dict(n_runs=6, n_unique_configs=6, n_seeds=3, steps=2000, command="c", wall_time_s=1.0)


def _finals(icl_by_k: dict[int, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"task.K": k, "seed": s, "icl": v} for k, values in icl_by_k.items() for s, v in enumerate(values)]
    )


@pytest.mark.parametrize(
    "icl,iwl,side",
    [(0.95, 0.03, "ICL"), (0.12, 0.82, "IWL"), (0.30, 0.70, "neither"), (0.20, 0.50, "neither")],
)
def test_side_needs_high_icl_or_high_iwl_below_the_plateau(script, icl, iwl, side):
    assert script.side(icl, iwl) == side


def test_p1_is_supported_only_when_every_seed_crosses_in_the_published_cell(script):
    onehot = _finals({2048: [0.12, 0.11, 0.13], 4096: [0.99, 0.99, 0.98]})
    p1 = script.boundary_subclaims(onehot, pd.DataFrame(), COMMON)[0]
    assert p1.verdict == "supported" and p1.interval == [2048.0, 4096.0]
    # the old paper model learns at 2048 already: its crossing lies below the published cell
    low = _finals({1024: [0.1, 0.1, 0.1], 2048: [0.9, 0.8, 0.95], 4096: [0.99, 0.99, 0.99]})
    assert script.boundary_subclaims(low, pd.DataFrame(), COMMON)[0].verdict == "not supported"


def test_p2_on_touching_cells_shows_the_direction_but_not_the_size(script):
    onehot = _finals({2048: [0.12, 0.11, 0.13], 4096: [0.99, 0.99, 0.98]})
    rope = _finals({4096: [0.18, 0.17, 0.19], 8192: [0.9, 0.88, 0.89]})
    p2 = script.boundary_subclaims(onehot, rope, COMMON)[1]
    # RoPE in (4096, 8192] over one-hot in (2048, 4096]: the ratio lies in (1, 4]
    assert p2.verdict == "weak" and p2.interval[0] == pytest.approx(1.0) and p2.interval[1] >= 4.0
    same = _finals({4096: [0.6, 0.7, 0.8], 8192: [0.9, 0.9, 0.9]})
    below = script.boundary_subclaims(same, _finals({2048: [0.1, 0.1, 0.1], 4096: [0.9, 0.9, 0.9]}), COMMON)
    assert below[1].verdict in ("not supported", "inside noise")
