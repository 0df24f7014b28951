"""The example run shipped in checkpoints/example loads with the current code and still
shows what it was shipped for: ICL at chance at step 0 and near 1 at the end."""

from pathlib import Path

from mmicl_interp import load_config, load_run
from mmicl_interp.analyses.tables import read_table
from mmicl_interp.train.evaluate import accuracy_and_loss, suite_logits

EXAMPLE = Path(__file__).resolve().parents[1] / "checkpoints" / "example"


def test_shipped_run_is_the_default_config_and_complete():
    run = load_run(EXAMPLE)
    assert run.complete
    assert run.config == load_config("default")
    assert len(run.steps) >= 40 and run.steps[0] == 0 and run.steps[-1] == run.config.train.steps


def test_shipped_checkpoints_reproduce_icl_emergence_with_the_current_code():
    run = load_run(EXAMPLE)
    icl = run.suites(300)["icl"]
    first, _ = accuracy_and_loss(suite_logits(run.model(0), icl), icl.targets)
    last, _ = accuracy_and_loss(suite_logits(run.model(), icl), icl.targets)
    chance = 1 / run.config.task.L
    assert first < 2 * chance
    assert last > 0.9


def test_shipped_analysis_table_covers_every_checkpoint():
    run = load_run(EXAMPLE)
    table = read_table(EXAMPLE / "analysis.parquet")
    assert sorted(table["step"].unique()) == run.steps
    final_ih = table[(table["metric"] == "ih") & (table["step"] == run.steps[-1])]["value"].max()
    assert final_ih > 0.2


def test_attribution_patching_agrees_in_rank_with_activation_patching_on_the_default_run():
    import numpy as np

    from mmicl_interp.analyses import patching
    from mmicl_interp.analyses.correlation import spearman

    run = load_run(EXAMPLE)
    model = run.model()
    setup = patching.prepare_patching(model, run.suites(128)["icl"], run.task, run.layout, kind="label")
    activation = patching.patch_resid_pre(model, setup).flatten().numpy()
    attribution = patching.attribution_patch(model, setup)["resid_pre"].flatten().numpy()
    assert spearman(activation, attribution) > 0.5
    assert np.argmax(activation) == np.argmax(attribution)
