"""The example run's analysis numbers equal those recorded before the prompt-seam refactor.

``tests/fixtures/example_reference.json`` was written by
``tests/fixtures/make_example_reference.py`` with the analysis code of an earlier commit
(named in the file). Every measure, ablation, patching and composition number of
``checkpoints/example`` must still match it within atol 1e-6.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import make_example_reference as ref

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "example_reference.json"
REFERENCE = json.loads(FIXTURE.read_text())


def _close(actual, expected, what: str) -> None:
    a, e = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    np.testing.assert_allclose(a, e, atol=1e-6, rtol=0, equal_nan=True, err_msg=what)


def _compare(got: dict, want: dict, path: str = "") -> None:
    assert set(got) == set(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
    for key, value in want.items():
        where = f"{path}/{key}"
        if isinstance(value, dict):
            _compare(got[key], value, where)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            assert len(got[key]) == len(value), where
            for g, w in zip(got[key], value, strict=True):
                assert {k: g[k] for k in ("suite", "metric")} == {k: w[k] for k in ("suite", "metric")}, where
                _close([g["clean"], g["ablated"]], [w["clean"], w["ablated"]], where)
        else:
            _close(got[key], value, where)


@pytest.mark.parametrize("step", [pytest.param(1000), pytest.param(400, marks=pytest.mark.slow)])
def test_example_run_numbers_equal_the_recorded_reference(step):
    got = json.loads(json.dumps(ref.compute((step,))))["steps"][str(step)]
    _compare(got, REFERENCE["steps"][str(step)], f"step {step}")
