"""The example run's analysis numbers equal those recorded before the prompt-seam refactor.

``tests/fixtures/example_reference.json`` was written by
``tests/fixtures/make_example_reference.py`` with the analysis code of an earlier commit
(named in the file). Every measure, ablation, patching and composition number of
``checkpoints/example`` must still match it within atol 1e-6, through the old-style calls
(``ref.compute``) and through the ``(model, prompts)`` API (:func:`compute_through_prompts`);
on a GPU the latter runs on CUDA too (atol 1e-4).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mmicl_interp import load_run
from mmicl_interp.analyses.ablation import ablate_heads
from mmicl_interp.analyses.attention import attention_measures
from mmicl_interp.analyses.patching import (
    attribution_patch,
    corrupt_batch,
    patch_head_outputs,
    patch_head_outputs_by_pos,
    patch_resid_pre,
    patching_setup,
    path_patch,
)
from mmicl_interp.analyses.weights import all_composition_scores
from mmicl_interp.prompts import ICLPrompts
from tests.fixtures import make_example_reference as ref

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "example_reference.json"
REFERENCE = json.loads(FIXTURE.read_text())


def _close(actual, expected, what: str, atol: float = 1e-6) -> None:
    a, e = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    np.testing.assert_allclose(a, e, atol=atol, rtol=0, equal_nan=True, err_msg=what)


def _compare(got: dict, want: dict, path: str = "", atol: float = 1e-6) -> None:
    assert set(got) == set(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
    for key, value in want.items():
        where = f"{path}/{key}"
        if isinstance(value, dict):
            _compare(got[key], value, where, atol)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            assert len(got[key]) == len(value), where
            for g, w in zip(got[key], value, strict=True):
                assert {k: g[k] for k in ("suite", "metric")} == {k: w[k] for k in ("suite", "metric")}, where
                _close([g["clean"], g["ablated"]], [w["clean"], w["ablated"]], where, atol)
        else:
            _close(got[key], value, where, atol)


@pytest.mark.parametrize("step", [pytest.param(1000), pytest.param(400, marks=pytest.mark.slow)])
def test_example_run_numbers_equal_the_recorded_reference(step):
    got = json.loads(json.dumps(ref.compute((step,))))["steps"][str(step)]
    _compare(got, REFERENCE["steps"][str(step)], f"step {step}")


def compute_through_prompts(step: int, device: str = "cpu") -> dict:
    """The recorded numbers again, through the ``(model, prompts)`` API: every suite as
    :class:`ICLPrompts`, patching from a pair of clean / corrupted prompts."""
    run = load_run(ref.ROOT / "checkpoints" / "example")
    layout = run.layout
    suites = {name: ICLPrompts.from_batch(b, layout).to(device) for name, b in run.suites().items()}
    model = run.model(step).to(device)
    rec: dict = {"measures": {k: ref.as_list(v) for k, v in attention_measures(model, suites["icl"]).items()}}
    rec["ablation"] = {
        f"{method}:{heads}": ablate_heads(model, suites, heads, method, seed=0)
        .rename(columns={"value": "ablated"})[["suite", "metric", "clean", "ablated"]]
        .to_dict("records")
        for method in ("zero", "mean", "resample")
        for heads in ("L0H0", "L1H0", "L0H0,L1H0")
    }
    rec["patching"] = {}
    icl = ref.first(run.suites()["icl"], ref.N_PATCH)
    clean_batch = replace(icl, pos_shift=torch.zeros_like(icl.pos_shift))
    for kind in ("label", "item"):
        corrupted_batch, alt = corrupt_batch(clean_batch, run.task, layout, kind, seed=0)
        clean = ICLPrompts.from_batch(clean_batch, layout).to(device)
        corrupted = ICLPrompts.from_batch(corrupted_batch, layout, alternatives=alt).to(device)
        setup = patching_setup(model, clean, corrupted, kind=kind)
        rec["patching"][kind] = {
            "clean_ld": setup.clean_ld,
            "corrupt_ld": setup.corrupt_ld,
            "head": ref.as_list(patch_head_outputs(model, setup)),
            "head_by_pos": ref.as_list(patch_head_outputs_by_pos(model, setup)),
            "resid_pre": ref.as_list(patch_resid_pre(model, setup)),
            "path": {c: ref.as_list(v) for c, v in path_patch(model, setup).items()},
            "attribution": {c: ref.as_list(v) for c, v in attribution_patch(model, setup).items()},
        }
    rec["composition"] = {k: ref.as_list(v) for k, v in all_composition_scores(model).items()}
    return rec


def test_the_prompts_api_gives_the_recorded_numbers():
    got = json.loads(json.dumps(compute_through_prompts(1000)))
    _compare(got, REFERENCE["steps"]["1000"], "prompts API, step 1000")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_prompts_api_on_cuda_matches_the_recorded_numbers():
    got = json.loads(json.dumps(compute_through_prompts(1000, "cuda")))
    want = REFERENCE["steps"]["1000"]
    _compare(got, want, "cuda, step 1000", atol=1e-4)
