"""Head clamping (train.clamp_*): hand-built patterns, scores, the training window, gradients,
exact resume after a kill inside the window, and one-line config errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmicl_interp import checkpoints as ck
from mmicl_interp.analyses.attention import pattern_measures
from mmicl_interp.cli import main
from mmicl_interp.config import ConfigError, ModelConfig, RunConfig, TrainConfig
from mmicl_interp.data.layout import Layout
from mmicl_interp.data.task import Task
from mmicl_interp.model.transformer import ICLTransformer
from mmicl_interp.train import train
from mmicl_interp.train import trainer as trainer_module
from mmicl_interp.train.clamp import Clamp, clamped, induction_pattern, prev_token_pattern
from tests.conftest import TINY_TOML, tiny_run_config, tiny_task_config

REPO = Path(__file__).resolve().parents[2]


def _clamp(pattern: str, layer: int = 0, head: int = 0, start: int = 0, end: int = 10) -> Clamp:
    return Clamp(pattern, layer, head, start, end)


def _model(n_heads: int = 1, seed: int = 0) -> tuple[Task, ICLTransformer]:
    task_cfg = tiny_task_config()
    model = ICLTransformer.from_task(ModelConfig(n_max=4, n_heads=n_heads, d_head=4, seed=seed), task_cfg)
    return Task.create(task_cfg), model


def _pattern(model, batch, layer: int, clamp: Clamp | None, layout: Layout) -> torch.Tensor:
    with clamped(model, clamp, layout, batch):
        _, cache = model.run_with_cache(
            batch.inputs, batch.pos_shift, names_filter=f"blocks.{layer}.attn.hook_pattern"
        )
    return cache[f"blocks.{layer}.attn.hook_pattern"]


# ---------------------------------------------------------------- hand-built patterns
def test_prev_token_pattern_is_the_hand_written_matrix():
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [1, 0, 0, 0, 0],
            [0, 1, 0, 0, 0],
            [0, 0, 1, 0, 0],
            [0, 0, 0, 1, 0],
        ],
        dtype=torch.float32,
    )
    assert torch.equal(prev_token_pattern(Layout.unimodal(2).n_ctx), expected)


def test_induction_pattern_is_the_hand_written_matrix():
    # N = 3: items at 0, 2, 4, labels at 1, 3, 5, query at 6
    layout = Layout.unimodal(3)
    labels = torch.tensor([[0, 1, 0], [2, 2, 1]])
    targets = torch.tensor([0, 1])
    h = 0.5
    first = [
        [1, 0, 0, 0, 0, 0, 0],  # item 0: nothing earlier -> itself
        [0, 1, 0, 0, 0, 0, 0],  # label rows -> themselves
        [0, 0, 1, 0, 0, 0, 0],  # item 1 (label 1): no earlier label 1
        [0, 0, 0, 1, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0],  # item 2 (label 0): exemplar 0's label at 1
        [0, 0, 0, 0, 0, 1, 0],
        [0, h, 0, 0, 0, h, 0],  # query (target 0): labels of exemplars 0 and 2
    ]
    second = [
        [1, 0, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0],  # item 1 (label 2): exemplar 0's label
        [0, 0, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 0],  # item 2 (label 1): none earlier
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 1, 0],  # query (target 1): exemplar 2's label
    ]
    expected = torch.tensor([first, second], dtype=torch.float32)
    assert torch.equal(induction_pattern(layout, labels, targets), expected)


@pytest.mark.parametrize("kind", ["prev_token", "induction"])
def test_the_hooked_pattern_is_the_target_for_the_clamped_head_and_unchanged_for_the_others(kind):
    task, model = _model(n_heads=2)
    layout = task.layout
    batch = task.suites(0, 16)["icl"]
    clamp = _clamp(kind, layer=1, head=1)
    free = _pattern(model, batch, 1, None, layout)
    hooked = _pattern(model, batch, 1, clamp, layout)
    expected = clamp.target(layout, batch).expand(len(batch), -1, -1)
    assert torch.equal(hooked[:, 1], expected)
    assert torch.equal(hooked[:, 0], free[:, 0])
    assert not model.blocks[1].attn.hook_pattern.fwd_hooks  # removed on exit
    # the output follows the clamped pattern: the logits change
    with clamped(model, clamp, layout, batch):
        logits = model(batch.inputs, batch.pos_shift)
    assert not torch.allclose(logits, model(batch.inputs, batch.pos_shift))


def test_other_hooks_on_the_point_see_the_clamped_pattern():
    task, model = _model()
    batch = task.suites(0, 8)["icl"]
    seen = []
    model.blocks[0].attn.hook_pattern.add_hook(lambda p, hook: seen.append(p.clone()))
    with clamped(model, _clamp("prev_token"), task.layout):
        model(batch.inputs, batch.pos_shift)
    model.reset_hooks(including_permanent=True)
    assert torch.equal(seen[0][:, 0], prev_token_pattern(task.layout.n_ctx).expand(len(batch), -1, -1))


# ---------------------------------------------------------------- scores of the clamped head
def test_clamped_prev_token_head_scores_one_on_the_previous_token_measures():
    task, model = _model()
    batch = task.suites(0, 32)["icl"]
    pattern = _pattern(model, batch, 0, _clamp("prev_token"), task.layout)
    scores = pattern_measures(pattern, batch.matches(), task.layout)
    assert scores["prev_token"][0].item() == pytest.approx(1.0, abs=1e-6)
    assert scores["prev_token_label"][0].item() == pytest.approx(1.0, abs=1e-6)


def test_clamped_induction_head_scores_one_with_one_match_and_its_maximum_otherwise():
    task, model = _model()
    layout = task.layout
    batch = task.suites(0, 64)["icl"]
    pattern = _pattern(model, batch, 1, _clamp("induction", layer=1), layout)
    scores = pattern_measures(pattern, batch.matches(), layout)
    n_match = batch.matches().sum(-1).float()
    assert scores["tla"][0].item() == pytest.approx(1.0, abs=1e-6)
    assert scores["ih"][0].item() == pytest.approx((1 / n_match).mean().item(), abs=1e-6)
    assert (n_match > 1).any()  # so the maximum is below 1 there
    # one matching exemplar per sequence (at a random place): ih = tila = 1
    n, targets = layout.n_exemplars, batch.targets
    labels = (targets[:, None] + 1 + torch.arange(n)) % 8  # N < L distinct labels, none the target
    where = torch.randint(0, n, (len(batch),), generator=torch.Generator().manual_seed(0))
    labels[torch.arange(len(batch)), where] = targets
    target = induction_pattern(layout, labels, targets)[:, None]
    exact = pattern_measures(target, labels == targets[:, None], layout)
    assert exact["ih"].item() == pytest.approx(1.0) and exact["tila"].item() == pytest.approx(1.0)


# ---------------------------------------------------------------- gradients
def test_gradients_reach_every_parameter_but_the_clamped_heads_queries_and_keys():
    task, model = _model(n_heads=2)
    batch = task.suites(0, 32)["icl"]
    with clamped(model, _clamp("prev_token", layer=0, head=0), task.layout):
        loss = torch.nn.functional.cross_entropy(model(batch.inputs, batch.pos_shift), batch.targets)
    loss.backward()
    attn = model.blocks[0].attn
    for name in ("W_Q", "W_K"):
        grad = getattr(attn, name).grad
        assert torch.count_nonzero(grad[0]) == 0  # the clamped head's pattern ignores them
        assert torch.count_nonzero(grad[1]) > 0  # the other head still learns
    assert torch.count_nonzero(attn.W_V.grad[0]) > 0 and torch.count_nonzero(attn.W_O.grad[0]) > 0
    for name, param in model.named_parameters():
        if name.startswith("blocks.0.attn.W_Q") or name.startswith("blocks.0.attn.W_K"):
            continue
        if param.requires_grad:
            assert param.grad is not None and torch.count_nonzero(param.grad) > 0, name


# ---------------------------------------------------------------- the training window
def _record_patterns(monkeypatch, layer: int, head: int) -> list[tuple[bool, torch.Tensor]]:
    """Every forward pass of the next train() run: (training?, head's pattern rows)."""
    events: list[tuple[bool, torch.Tensor]] = []
    build = trainer_module.build_task_and_model

    def spy(config):
        task, model, provenance = build(config)

        def record(pattern, hook):
            events.append((model.training, pattern[:, head].detach().clone()))

        model.add_hook(f"blocks.{layer}.attn.hook_pattern", record, is_permanent=True)
        return task, model, provenance

    monkeypatch.setattr(trainer_module, "build_task_and_model", spy)
    return events


def _by_step(events, steps: int) -> list[tuple[list[torch.Tensor], torch.Tensor | None]]:
    """Split the events into (eval patterns, training pattern) per step: the loop evaluates the
    four suites at step s, then takes update s."""
    out, i = [], 0
    for s in range(steps + 1):
        evals = [p for training, p in events[i : i + 4] if not training]
        assert len(evals) == 4
        i += 4
        train_pattern = None
        if s < steps:
            assert events[i][0]
            train_pattern, i = events[i][1], i + 1
        out.append((evals, train_pattern))
    assert i == len(events)
    return out


def test_the_clamp_acts_on_the_window_steps_only_in_training_and_eval(tmp_path, monkeypatch):
    window = (3, 6)
    train_cfg = {"steps": 8, "eval_every": 1, "clamp_pattern": "prev_token", "clamp_start": 3, "clamp_end": 6}
    config = tiny_run_config(train=train_cfg)
    events = _record_patterns(monkeypatch, 0, 0)
    train(config, tmp_path / "run", progress=False)
    for step, (evals, trained) in enumerate(_by_step(events, 8)):
        for pattern in [*evals, *([trained] if trained is not None else [])]:
            score = pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean().item()
            if window[0] <= step < window[1]:
                assert score == pytest.approx(1.0, abs=1e-6), step
            else:
                assert score < 0.9, step


def test_an_induction_clamp_on_the_read_out_layer_acts_on_the_query_row(tmp_path, monkeypatch):
    layout = Layout.unimodal(tiny_task_config().N)
    train_cfg = {"steps": 3, "eval_every": 1, "clamp_pattern": "induction", "clamp_layer": 1, "clamp_end": 2}
    config = tiny_run_config(train=train_cfg)
    events = _record_patterns(monkeypatch, 1, 0)
    train(config, tmp_path / "run", progress=False)
    labels = layout.labels()

    def clamped_row(pattern: torch.Tensor) -> bool:
        """The query row puts all its mass on matching labels, or (no match: the iwl suite) on itself."""
        on_labels, on_self = pattern[:, -1, labels].sum(-1), pattern[:, -1, -1]
        whole = (on_labels - 1).abs().lt(1e-6) & on_self.eq(0)
        return bool((whole | (on_labels.eq(0) & on_self.eq(1))).all())

    for step, (evals, trained) in enumerate(_by_step(events, 3)):
        if trained is not None:
            assert trained.shape[-2] == 1  # training computes the last layer at the query only
            assert clamped_row(trained) == (step < 2), step
            assert (trained[:, -1, labels].sum(-1) > 0.999).all() == (step < 2)  # training is bursty
        for pattern in evals:
            assert clamped_row(pattern) == (step < 2), step


def test_update_refuses_to_run_without_its_step_when_a_clamp_is_set():
    task, model = _model()
    tc = TrainConfig(batch_size=4, clamp_pattern="prev_token", clamp_end=2)
    optimizer = trainer_module.make_optimizer(model, RunConfig(train=tc))
    update = trainer_module.make_update(model, optimizer, task, tc, torch.device("cpu"), torch.Generator())
    with pytest.raises(ValueError, match="step"):
        update()
    update(0)


def test_same_config_and_seed_give_the_same_clamped_weights(tmp_path):
    config = tiny_run_config(train={"clamp_pattern": "prev_token", "clamp_start": 2, "clamp_end": 9})
    train(config, tmp_path / "a", progress=False)
    train(config, tmp_path / "b", progress=False)
    unclamped = tiny_run_config()
    train(unclamped, tmp_path / "c", progress=False)
    last = ck.list_checkpoints(tmp_path / "a")[-1]
    wa, wb, wc = (load_file(ck.ckpt_path(tmp_path / r, last)) for r in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


# ---------------------------------------------------------------- resume inside the window
def test_a_run_killed_inside_the_clamp_window_resumes_bit_identical(tmp_path):
    text = TINY_TOML.replace("steps = 6", "steps = 9")  # checkpoints at 0, 3, 6, 9
    text += 'clamp_pattern = "prev_token"\nclamp_start = 2\nclamp_end = 8\n'
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-m", "mmicl_interp.cli", "train", str(cfg), "--out", str(killed), "--quiet"],
        env={**os.environ, trainer_module.KILL_ENV: "5"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr
    assert json.loads((killed / "manifest.json").read_text())["last_step"] == 3
    config = RunConfig.from_dict(json.loads((killed / "manifest.json").read_text())["config"])
    train(config, killed, resume=True, progress=False)
    train(config, tmp_path / "whole", progress=False)
    assert ck.read_metrics(killed) == ck.read_metrics(tmp_path / "whole")
    steps = ck.list_checkpoints(killed)
    assert steps == ck.list_checkpoints(tmp_path / "whole") and max(steps) == 9
    for step in steps:
        wa, wb = load_file(ck.ckpt_path(killed, step)), load_file(ck.ckpt_path(tmp_path / "whole", step))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"weights differ at step {step}"


# ---------------------------------------------------------------- config errors
BAD = [
    (["train.clamp_pattern=sideways"], "train.clamp_pattern", "none, prev_token, induction"),
    (["train.clamp_pattern=prev_token", "train.clamp_end=0"], "train.clamp_end", "> clamp_start=0"),
    (
        ["train.clamp_pattern=induction", "train.clamp_start=4", "train.clamp_end=4"],
        "train.clamp_end",
        "> clamp_start=4",
    ),
    (
        ["train.clamp_pattern=prev_token", "train.clamp_end=3", "train.clamp_layer=2"],
        "train.clamp_layer",
        "[0, 1]",
    ),
    (
        ["train.clamp_pattern=prev_token", "train.clamp_end=3", "train.clamp_head=1"],
        "train.clamp_head",
        "[0, 0]",
    ),
    (["train.clamp_layer=-1"], "train.clamp_layer", ">= 0"),
    (["train.clamp_start=1.5"], "train.clamp_start", "integer"),
]


@pytest.mark.parametrize("overrides,field,allowed", BAD)
def test_bad_clamp_values_exit_2_with_one_line_naming_the_field(tmp_path, capsys, overrides, field, allowed):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY_TOML)
    out = tmp_path / "o"
    args = ["train", str(cfg), "--out", str(out), "--quiet"]
    for text in overrides:
        args += ["--set", text]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0] and allowed in err[0], err
    assert not (out / "manifest.json").exists()


def test_an_unset_clamp_ignores_its_other_keys_and_an_encoder_run_refuses_one():
    RunConfig(train=TrainConfig(clamp_layer=7, clamp_end=0)).validate()  # pattern "none": unused
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(
            {
                "kind": "encoder",
                "task": {"K1": 64, "L1": 8, "D1": 8, "K2": 16, "L2": 8, "D2": 6, "N": 4, "B": 2},
                "model": {"encoder": "mlp", "n_max": 7},
                "train": {"clamp_pattern": "prev_token", "clamp_end": 2},
            }
        )
    assert err.value.field == "train.clamp_pattern"
