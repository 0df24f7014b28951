"""circuitsvis attention views: layout-labelled tokens, the model's patterns, offline HTML."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
import torch
from circuitsvis.utils.render import RenderedHTML

from mmicl_interp import load_run, plots
from mmicl_interp.data.layout import Layout
from mmicl_interp.data.task import Task
from mmicl_interp.report.html import external_resources
from mmicl_interp.train import train
from tests.conftest import tiny_run_config


@pytest.fixture
def batch(tiny_task: Task):
    return tiny_task.sample(3, torch.Generator().manual_seed(1), p_B=1.0)


def props_of(html: str) -> dict:
    """The JSON props circuitsvis passes to its component."""
    match = re.search(r"CircuitsVis\.\w+,\s*(\{.*\})\s*\)\s*</script>", html, re.S)
    assert match, "no render call found"
    return json.loads(match.group(1))


def test_token_labels_follow_the_layout(tiny_task: Task, batch):
    layout = tiny_task.layout  # N = 4: items 0,2,4,6; labels 1,3,5,7; query 8
    labels = plots.token_labels(layout, batch, index=2)
    assert len(labels) == layout.n_ctx == 9
    for i in range(4):
        assert labels[2 * i] == f"item c{int(batch.context_classes[2, i])}"
        assert labels[2 * i + 1] == f"label {int(batch.context_labels[2, i])}"
    assert labels[8] == f"query c{int(batch.query_classes[2])}"
    assert plots.token_labels(Layout.unimodal(2)) == ["item 0", "label 0", "item 1", "label 1", "query"]
    with pytest.raises(ValueError, match="index"):
        plots.token_labels(layout, batch, index=3)


def test_head_patterns_are_the_models_causal_patterns(tiny_model, batch):
    patterns, names = plots.head_patterns(tiny_model, batch, index=1)
    n_layers, n_heads = tiny_model.cfg.n_layers, tiny_model.cfg.n_heads
    assert names == [f"L{layer}H{h}" for layer in range(n_layers) for h in range(n_heads)]
    assert patterns.shape == (n_layers * n_heads, 9, 9)
    assert torch.allclose(patterns.sum(-1), torch.ones(n_layers * n_heads, 9), atol=1e-5)
    assert torch.all(patterns.triu(diagonal=1) == 0)  # causal
    _, cache = tiny_model.run_with_cache(batch.inputs, batch.pos_shift)
    assert torch.allclose(patterns[n_heads:], cache["blocks.1.attn.hook_pattern"][1], atol=1e-6)
    last, last_names = plots.head_patterns(tiny_model, batch, layers=n_layers - 1)
    assert last.shape[0] == n_heads and last_names[0] == f"L{n_layers - 1}H0"
    with pytest.raises(ValueError, match="layers"):
        plots.head_patterns(tiny_model, batch, layers=[n_layers])
    with pytest.raises(ValueError, match="index"):
        plots.head_patterns(tiny_model, batch, index=5)


def test_attention_view_object_and_props(tiny_model, tiny_task: Task, batch):
    view = plots.attention_view(tiny_model, batch, tiny_task.layout, index=0)
    assert isinstance(view, RenderedHTML)
    props = props_of(view.local_src)
    assert "CircuitsVis.AttentionPatterns" in view.local_src
    assert props["tokens"] == plots.token_labels(tiny_task.layout, batch, 0)
    patterns, _ = plots.head_patterns(tiny_model, batch, index=0)
    assert torch.allclose(torch.tensor(props["attention"], dtype=torch.float64), patterns.double(), atol=1e-4)

    heads = plots.attention_view(tiny_model, batch, tiny_task.layout, style="heads", layers=[1])
    hprops = props_of(heads.local_src)
    assert "CircuitsVis.AttentionHeads" in heads.local_src
    assert hprops["attentionHeadNames"] == ["L1H0", "L1H1"] and hprops["maskUpperTri"] is True
    with pytest.raises(ValueError, match="style"):
        plots.attention_view(tiny_model, batch, tiny_task.layout, style="grid")
    with pytest.raises(ValueError, match="n_ctx"):
        plots.attention_view(tiny_model, batch, Layout.unimodal(3))


def test_standalone_html_is_offline(tiny_model, tiny_task: Task, batch, tmp_path):
    view = plots.attention_view(tiny_model, batch, tiny_task.layout)
    assert "unpkg.com" in str(view)  # what NOT to save: str() loads from a CDN
    page = plots.standalone_html(view, title="L0/L1 on an icl sequence")
    assert page.startswith("<!DOCTYPE html>") and "unpkg" not in page
    assert external_resources(page) == []
    assert "var CircuitsVis=" in page  # the bundle is inlined
    assert not re.search(r'<div id="circuits-vis-[^"]*"[^>]*/>', page)  # no swallowing self-closing div
    path = plots.write_standalone_html(view, tmp_path / "view.html", title="L0/L1 on an icl sequence")
    assert path.read_text(encoding="utf-8") == page
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_fragment_drops_the_bundle_and_rewrites_cdn(tiny_model, tiny_task: Task, batch):
    view = plots.attention_view(tiny_model, batch, tiny_task.layout)
    local = plots.circuitsvis_fragment(view)
    assert len(local) < 20_000 and "var CircuitsVis=" not in local
    assert "CircuitsVis.render(" in local and "CircuitsVis.AttentionPatterns" in local
    cdn = plots.circuitsvis_fragment(str(view))
    assert "unpkg" not in cdn and "import" not in cdn
    assert "CircuitsVis.render(" in cdn and "CircuitsVis.AttentionPatterns" in cdn
    assert props_of(cdn) == props_of(local)
    bundle = plots.circuitsvis_bundle()
    assert bundle.startswith('"use strict";var CircuitsVis=') and "</script" not in bundle
    assert "sourceMappingURL" not in bundle
    with pytest.raises(ValueError, match="circuitsvis"):
        plots.circuitsvis_fragment("<p>not a view</p>")


def test_run_attention_view_loads_a_checkpoint(tmp_path):
    config = tiny_run_config(model={"mlp": "none"})
    train(config, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    first = run.steps[0]
    view = plots.run_attention_view(run, first, suite="icl", index=2, layers=0)
    props = props_of(view.local_src)
    icl = run.suites()["icl"]
    assert props["tokens"] == plots.token_labels(run.layout, icl, 2)
    patterns, _ = plots.head_patterns(run.model(first), icl, index=2, layers=0)
    assert torch.allclose(torch.tensor(props["attention"], dtype=torch.float64), patterns.double(), atol=1e-4)
    with pytest.raises(ValueError, match="suite"):
        plots.run_attention_view(run, suite="train")
