"""Shared helpers of the sweep tests."""

import pandas as pd


def sweep_table(runs: dict, *, loss: bool = False) -> pd.DataFrame:
    """A tidy sweep table: per run ``{name: (K, seed, icl, iwl)}`` (seed None: no seed column) an
    eval at step 0 at half the final accuracies and one at step 10 at the finals; ``loss`` adds an
    icl loss row of 9.0 at each step."""
    rows = []
    for run, (k, seed, icl, iwl) in runs.items():
        keys = {"task.K": k, **({} if seed is None else {"seed": seed})}
        for step, scale in ((0, 0.5), (10, 1.0)):
            for suite, value in (("icl", icl), ("iwl", iwl)):
                rows.append(
                    dict(run=run, step=step, suite=suite, metric="accuracy", value=value * scale, **keys)
                )
            if loss:
                rows.append(dict(run=run, step=step, suite="icl", metric="loss", value=9.0, **keys))
    return pd.DataFrame(rows)


def curve_table(points: dict, run, keys, every: int = 10) -> pd.DataFrame:
    """A tidy sweep table from accuracy curves: ``points`` {point: {suite: [acc at step 0,
    every, 2 * every, ...]}}, each accuracy with a loss of 1 - accuracy; ``run(point)`` names
    the run and ``keys(point)`` gives its config columns."""
    rows = []
    for point, suites in points.items():
        for suite, curve in suites.items():
            for i, acc in enumerate(curve):
                for metric, value in (("accuracy", acc), ("loss", 1.0 - acc)):
                    step = every * i
                    rows.append(
                        dict(run=run(point), step=step, suite=suite, metric=metric, value=value) | keys(point)
                    )
    return pd.DataFrame(rows)
