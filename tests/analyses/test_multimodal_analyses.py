"""Analyses on the triplet layout: multimodal attention measures, per-modality item
corruptions, stage 1 vs stage 2 heads, and the run report of a stage-2 run."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mmicl_interp import load_run
from mmicl_interp.analyses.attention import attention_measures
from mmicl_interp.analyses.patching import corrupt_batch
from mmicl_interp.analyses.stages import stage_comparison, stage_wide
from mmicl_interp.analyses.tidy import COLUMNS
from mmicl_interp.cli import main
from mmicl_interp.config import ModelConfig, MultimodalTaskConfig, RunConfig
from mmicl_interp.data.multimodal import MultimodalTask
from mmicl_interp.model.transformer import ICLTransformer
from mmicl_interp.prompts import ICLPrompts
from mmicl_interp.report.run_report import build_run_report, stage_section
from mmicl_interp.train import train
from tests.conftest import tiny_run_config

# a 12-step stage 2 has not learned ICL yet: its corruptions barely move the logit difference
UNTRAINED = pytest.mark.filterwarnings("ignore:the item_m2 corruption does not change")

MM_KEYS = {"prev_token", "prev_token_label", "prev_token_label2", "ih", "tila", "tla", "tiia_m1", "tiia_m2"}


def mm_task(**changes) -> MultimodalTask:
    """A small two-modality task with D1 != D2, so the column blocks cannot be confused."""
    values = dict(K1=64, L1=8, D1=8, K2=16, L2=8, D2=6, N=4, B=2, eps1=0.5, eps2=0.0, eval_size=32)
    config = MultimodalTaskConfig(**{**values, **changes})
    config.validate()
    return MultimodalTask.create(config)


def stage2_dict(stage1: Path) -> dict:
    """A tiny stage-2 config on top of a tiny stage-1 run (the pattern of tests/train/test_pipeline.py)."""
    return {
        "name": "stage2",
        "kind": "multimodal",
        "task": {"K1": 64, "L1": 8, "D1": 8, "K2": 16, "L2": 8, "D2": 6, "N": 4, "B": 2, "eval_size": 64},
        "model": {"n_max": 7},
        "train": {"steps": 12, "batch_size": 16, "eval_every": 4, "ckpt_log_points": 4, "ckpt_every": 6},
        "pipeline": {"init_from": str(stage1), "freeze": ["embed", "blocks"]},
    }


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("stages")
    train(tiny_run_config(model={"n_max": 7}), root / "stage1", progress=False)
    train(RunConfig.from_dict(stage2_dict(root / "stage1")), root / "stage2", progress=False)
    return root / "stage1", root / "stage2"


# ---------------------------------------------------------------------- attention measures
def test_attention_measures_on_a_multimodal_model_give_the_multimodal_keys():
    task = mm_task()
    model = ICLTransformer.from_task(ModelConfig(n_max=7, n_heads=2), task.config)
    batch = task.suites(1, 32)["icl"]
    layout = task.layout
    measures = attention_measures(model, batch, layout)
    assert set(measures) == MM_KEYS
    assert all(v.shape == (2, 2) for v in measures.values())
    # offset 2 (label -> M1 item) and the M2 item attention, checked by hand
    _, cache = model.run_with_cache(batch.inputs, batch.pos_shift)
    pattern = cache["blocks.1.attn.hook_pattern"]
    labels, m2 = layout.labels(), layout.items("m2")
    expected = pattern[:, :, labels, labels - 2].mean(dim=(0, 2))  # A[label, label - 2]
    torch.testing.assert_close(measures["prev_token_label2"][1], expected)
    q, matches = layout.readout_position, batch.matches().float()
    to_m2 = (pattern[:, :, q, m2] * matches[:, None]).sum(-1) / matches.sum(-1)[:, None]
    torch.testing.assert_close(measures["tiia_m2"][1], to_m2.mean(0))
    # the prompts form: the same numbers, bit for bit
    through_prompts = attention_measures(model, ICLPrompts.from_batch(batch, layout))
    assert all(torch.equal(through_prompts[k], v) for k, v in measures.items())


# ---------------------------------------------------------------------- corruptions
@pytest.mark.parametrize("kind", ["item_m1", "item_m2"])
def test_item_corruption_changes_only_its_modalitys_columns_at_matching_items(kind):
    task = mm_task()
    layout, D1 = task.layout, task.config.D1
    batch = task.suites(1, 48)["icl"]
    corrupted, alt = corrupt_batch(batch, task, layout, kind, seed=3)
    matches = batch.matches()
    modality = kind[-2:]
    positions = layout.items(modality)
    columns = slice(0, D1) if modality == "m1" else slice(D1, None)
    allowed = torch.zeros_like(batch.inputs, dtype=torch.bool)
    for i, p in enumerate(positions.tolist()):
        allowed[:, p, columns] = matches[:, i, None]
    changed = corrupted.inputs != batch.inputs
    assert not (changed & ~allowed).any()  # other modality, labels, queries, non-matching exemplars
    new = corrupted.inputs[:, positions, columns]
    old = batch.inputs[:, positions, columns]
    assert (new[matches] != old[matches]).any(-1).all()  # every matching item is replaced
    # the modality's own eps: eps2 = 0 gives one fresh M2 vector per sequence, eps1 = 0.5 does not
    for b in range(len(batch)):
        fresh = new[b, matches[b]]
        if fresh.shape[0] > 1:
            same = torch.allclose(fresh, fresh[:1].expand_as(fresh))
            assert same == (modality == "m2")
    # the corrupted exemplars lose their class in that modality only
    field, other = ("context_classes", "context_classes2")[:: 1 if modality == "m1" else -1]
    assert (getattr(corrupted, field)[matches] == -1).all()
    assert torch.equal(getattr(corrupted, field)[~matches], getattr(batch, field)[~matches])
    assert torch.equal(getattr(corrupted, other), getattr(batch, other))
    assert torch.equal(corrupted.context_labels, batch.context_labels)
    assert (alt != batch.targets).all()


def test_item_is_item_m1_and_item_m2_needs_a_multimodal_layout(tiny_task):
    batch = tiny_task.suites(1, 16)["icl"]
    a, alt_a = corrupt_batch(batch, tiny_task, tiny_task.layout, "item", seed=2)
    b, alt_b = corrupt_batch(batch, tiny_task, tiny_task.layout, "item_m1", seed=2)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(alt_a, alt_b)
    with pytest.raises(ValueError, match="item_m2.*multimodal|multimodal.*item_m2|only m1"):
        corrupt_batch(batch, tiny_task, tiny_task.layout, "item_m2")
    mm = mm_task()
    mm_batch = mm.suites(1, 16)["icl"]
    c, _ = corrupt_batch(mm_batch, mm, mm.layout, "item", seed=2)
    d, _ = corrupt_batch(mm_batch, mm, mm.layout, "item_m1", seed=2)
    assert torch.equal(c.inputs, d.inputs)


@UNTRAINED
def test_patch_cli_accepts_item_m2_on_multimodal_runs_and_refuses_it_on_unimodal_ones(stages, capsys):
    stage1, stage2 = stages
    args = ["--kind", "path", "--corruption", "item_m2", "--n-seqs", "32", "--quiet"]
    assert main(["patch", str(stage2), *args]) == 0
    assert (stage2 / "reports" / "patch_step12_path_item_m2_seed0_n32.json").is_file()
    capsys.readouterr()
    assert main(["patch", str(stage1), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--corruption" in err[0] and "multimodal" in err[0]


# ---------------------------------------------------------------------- stage 1 vs stage 2
def test_stage_comparison_puts_both_stages_side_by_side(stages):
    stage1, stage2 = stages
    run = load_run(stage2)
    long = stage_comparison(run, n_seqs=32, device="cpu")
    assert list(long.columns) == [*COLUMNS, "stage"]
    first = load_run(stage1)
    assert set(long.loc[long["stage"] == "stage1", "run"]) == {first.run_id}
    assert set(long.loc[long["stage"] == "stage2", "run"]) == {run.run_id}
    table = stage_wide(long)
    assert list(table.columns) == ["metric", "layer", "head", "stage1", "stage2", "change"]
    assert set(table["metric"]) == MM_KEYS
    assert len(table) == len(MM_KEYS) * 2  # 2 layers x 1 head
    assert long.attrs["stage1_step"] == 12 and long.attrs["stage2_step"] == 12
    both = table[~table["metric"].isin(["prev_token_label2", "tiia_m2"])]
    assert both[["stage1", "stage2"]].notna().all().all()
    assert table.loc[table["metric"] == "prev_token_label2", "stage1"].isna().all()
    # stage 1 is scored on its own (unimodal) icl suite, stage 2 on its own
    s1 = attention_measures(first.model(), first.suites(32)["icl"], first.layout)
    s2 = attention_measures(run.model(), run.suites(32)["icl"], run.layout)
    ih = table[table["metric"] == "ih"].sort_values("layer")
    torch.testing.assert_close(torch.tensor(ih["stage1"].to_numpy()).float(), s1["ih"][:, 0])
    torch.testing.assert_close(torch.tensor(ih["stage2"].to_numpy()).float(), s2["ih"][:, 0])
    torch.testing.assert_close(
        torch.tensor(ih["change"].to_numpy()).float(), s2["ih"][:, 0] - s1["ih"][:, 0]
    )
    tiia = table[table["metric"] == "tiia_m1"].sort_values("layer")
    torch.testing.assert_close(torch.tensor(tiia["stage1"].to_numpy()).float(), s1["tiia"][:, 0])


def test_stage_section_says_so_when_the_stage1_run_is_gone(stages, tmp_path):
    run = load_run(stages[1])
    gone = replace(run, manifest={**run.manifest, "init_from": str(tmp_path / "deleted")})
    text = stage_section(gone, n_seqs=16)
    assert isinstance(text, str) and "no longer exists" in text and "deleted" in text
    with pytest.raises(FileNotFoundError):
        stage_comparison(gone, n_seqs=16)


@UNTRAINED
def test_run_report_of_a_stage2_run_compares_the_stages_and_path_patches_m2_items(stages, tmp_path):
    out = build_run_report(load_run(stages[1]), tmp_path / "page.html", n_seqs=32, progress=False)
    html = out.read_text()
    assert "Stage 1 vs stage 2 heads" in html
    assert "prev_token_label2" in html
    assert "Patching (path, item_m2 corruption)" in html
