"""Shared fixtures of the analysis tests: one small run where ICL really emerged.

The run is trained once per test session (about 4-6 s on one thread) and reused by every
test that needs a model with a real induction circuit.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mmicl_interp import load_run
from mmicl_interp.data.task import Batch
from mmicl_interp.runs import Run
from mmicl_interp.train import train
from tests.conftest import icl_run_config


@dataclass
class TrainedRun:
    """A trained run opened for analysis, with its last model and its suites."""

    run: Run
    model: object
    suites: dict[str, Batch]


@pytest.fixture(scope="session")
def icl_run(tmp_path_factory) -> TrainedRun:
    """A 2-layer attention-only model trained until ICL emerged (icl accuracy > 0.8)."""
    config = icl_run_config()
    path = tmp_path_factory.mktemp("icl_run") / "run"
    train(config, path, progress=False)
    run = load_run(path)
    return TrainedRun(run=run, model=run.model(), suites=run.suites())
