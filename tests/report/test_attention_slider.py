"""The report's attention slider over training (issue 23): one frame per checkpoint, each the
model's ``hook_pattern`` at that checkpoint (checked with an independent full
``run_with_cache``), data embedded safely, and the slider rendering offline in headless
Chromium when one is installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mmicl_interp.plots.attention_view import (
    AttentionFrames,
    frames_json,
    pick_frames,
    read_slider_frames,
    run_attention_frames,
    slider_html,
)
from mmicl_interp.report import write_report
from mmicl_interp.report.run_report import build_run_report
from mmicl_interp.runs import load_run
from tests.report.test_html import _left_the_page, browser  # noqa: F401  (the Chromium fixture)

EXAMPLE = Path(__file__).resolve().parents[2] / "checkpoints" / "example"


def full_cache_pattern(run, step: int, layer: int, head: int) -> np.ndarray:
    """Head ``LlayerHhead``'s pattern on icl sequence 0, from a full cache (no names filter)."""
    batch = run.suites()["icl"]
    with torch.no_grad():
        _, cache = run.model(step).run_with_cache(batch.inputs[:1], batch.pos_shift[:1])
    return cache[f"blocks.{layer}.attn.hook_pattern"][0, head].numpy()


@pytest.fixture(scope="module")
def example_page(tmp_path_factory):
    torch.set_num_threads(1)
    dst = tmp_path_factory.mktemp("runs") / "example"
    shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns("reports", "report.html"))
    run = load_run(dst)
    path = build_run_report(run, dst / "page.html", n_seqs=8, progress=False, log=None)
    return run, path.read_text(encoding="utf-8")


def test_synthetic_slider_has_one_frame_per_checkpoint_equal_to_hook_pattern(example_page):
    run, page = example_page
    (slider,) = read_slider_frames(page)
    assert slider["steps"] == run.steps and len(run.steps) == 50
    patterns = np.asarray(slider["patterns"])
    n_ctx = run.layout.n_ctx
    assert patterns.shape == (50, len(slider["heads"]), n_ctx, n_ctx)
    assert slider["heads"][0] == "L1H0"  # the best induction head of the shipped run
    batch = run.suites()["icl"]
    assert f"query c{int(batch.query_classes[0])}" in slider["tokens"]
    for i in (0, 20, 49):
        for h, name in enumerate(slider["heads"]):
            layer, head = int(name[1]), int(name[3])
            want = full_cache_pattern(run, run.steps[i], layer, head)
            np.testing.assert_allclose(patterns[i, h], want, atol=6e-5)
    assert not np.allclose(patterns[0], patterns[-1], atol=1e-2)  # the pattern changes over training


def test_run_attention_frames_and_frame_selection():
    run = load_run(EXAMPLE)
    frames = run_attention_frames(run, ["L0H0"], [0, 1000])
    assert frames.steps == [0, 1000] and frames.patterns.shape[:2] == (2, 1)
    np.testing.assert_allclose(frames.patterns[1, 0], full_cache_pattern(run, 1000, 0, 0), atol=1e-6)
    assert np.allclose(frames.patterns.sum(-1), 1.0, atol=1e-4)  # rows of a causal softmax
    assert pick_frames(list(range(10)), 4) == [0, 3, 6, 9]
    assert pick_frames([5, 7], 60) == [5, 7]
    with pytest.raises(ValueError, match="L<layer>H<head>"):
        run_attention_frames(run, ["head0"], [0])
    with pytest.raises(ValueError, match="shape"):
        AttentionFrames(steps=[0], heads=["L0H0"], tokens=["a", "b"], patterns=np.zeros((1, 1, 3, 3)))


def tiny_frames(tokens=("a", "b", "c"), steps=(0, 10, 20)) -> AttentionFrames:
    rng = np.random.default_rng(0)
    raw = np.tril(rng.random((len(steps), 2, len(tokens), len(tokens)))) + 1e-3
    raw = np.tril(raw)
    return AttentionFrames(
        steps=list(steps),
        heads=["L0H0", "L1H1"],
        tokens=list(tokens),
        patterns=raw / raw.sum(-1, keepdims=True),
        caption="test",
    )


def test_frames_json_survives_script_breaking_tokens():
    frames = tiny_frames(tokens=("</script><b>", "a&b", '"q"'))
    html = slider_html(frames)
    assert "</script><b>" not in html.split("attention-frames")[1].split("</script>")[0]
    (back,) = read_slider_frames(html)
    assert back["tokens"] == frames.tokens and back["steps"] == [0, 10, 20]
    np.testing.assert_allclose(back["patterns"], frames.patterns, atol=5e-5)
    assert json.loads(frames_json(frames))["heads"] == ["L0H0", "L1H1"]
    with pytest.raises(ValueError, match="start"):
        slider_html(frames, start=3)


READY = """(() => { const f = document.querySelectorAll('.attention-slider .attention-frame');
  return f.length > 0 && Array.from(f).every(el => el.childElementCount > 0); })()"""
PROBE = """(() => {
  const root = document.querySelector('.attention-slider');
  const input = root.querySelector('input.frame-slider');
  const before = root.querySelector('.frame-label').textContent;
  input.value = '0'; input.dispatchEvent(new Event('input'));
  const frames = Array.from(root.querySelectorAll('.attention-frame'));
  return JSON.stringify({before: before, after: root.querySelector('.frame-label').textContent,
    frames: frames.map(f => ({step: f.getAttribute('data-step'), shown: f.style.display !== 'none'})),
    cv: typeof window.CircuitsVis});
})()"""


@pytest.mark.slow
def test_slider_renders_offline_and_moves_in_headless_chromium(browser, tmp_path):  # noqa: F811
    path = write_report(tmp_path / "slider.html", [("Attention over training (n = 1)", tiny_frames())])
    out = browser.visit(path.as_uri(), READY, PROBE)
    assert out["loaded"] and out["ready"], out["probe"]
    probe = json.loads(out["probe"])
    assert probe["cv"] == "object"
    assert probe["before"] == "step 20 (3 of 3)" and probe["after"] == "step 0 (1 of 3)"
    assert probe["frames"] == [{"step": "20", "shown": False}, {"step": "0", "shown": True}]
    assert out["errors"] == []
    assert _left_the_page(out["requests"]) == []
