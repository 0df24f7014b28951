"""Attention patterns of a model on one sequence, drawn with circuitsvis and labelled by the layout.

``attention_view(model, batch, layout, index=0)`` caches only ``blocks.{l}.attn.hook_pattern``
for one sequence and passes the heads' patterns ``A[head, query_pos, key_pos]`` to
``circuitsvis.attention.attention_patterns``, with one token label per position read off
the layout: ``"item c17"`` (an exemplar item of class 17), ``"label 5"`` (a label token
showing label 5) and ``"query c17"`` (the query, of class 17). In the icl suite classes are
numbered within the suite's fresh (novel) set.

Offline HTML: ``str()`` of a circuitsvis object imports its script from a CDN and renders
blank without network; :func:`standalone_html` uses the object's ``local_src`` (the 1.3 MB
bundle inlined). :func:`circuitsvis_bundle` and :func:`circuitsvis_fragment` split a view
into the bundle and a small render call, so a page with many views (the report) holds the
bundle once.

Over training: :class:`AttentionFrames` holds chosen heads' patterns on one fixed sequence at
every checkpoint (:func:`run_attention_frames` for a run: one icl eval sequence; a real LM's
checkpoint series: :func:`mmicl_interp.real.series.series_attention_frames`), and
:func:`slider_html` draws them as one circuitsvis view with a slider over checkpoints: the
frames' data sit in the page as JSON and each frame is rendered (offline, from the inlined
bundle) when the slider first reaches it.
"""

from __future__ import annotations

import html as html_lib
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from circuitsvis.attention import attention_heads, attention_patterns
from circuitsvis.utils.render import RenderedHTML
from jaxtyping import Float

from mmicl_interp.data.layout import Layout
from mmicl_interp.data.task import Batch
from mmicl_interp.io import atomic_write_bytes

if TYPE_CHECKING:
    from mmicl_interp.model.transformer import ICLTransformer
    from mmicl_interp.runs import Run

ViewStyle = Literal["patterns", "heads"]
VIEW_STYLES: tuple[str, ...] = ("patterns", "heads")


def token_labels(layout: Layout, batch: Batch | None = None, index: int = 0) -> list[str]:
    """One label per position of sequence ``index``: ``item c17``, ``label 5``, ``query c17``.

    Without a batch the labels are positional (``item 0``, ``label 0``, ..., ``query``).
    Items of modalities other than ``m1`` are labelled ``{modality} item {i}``.
    """
    if batch is not None and not 0 <= index < len(batch):
        raise ValueError(f"index must lie in [0, {len(batch)}) for this batch, got {index}")
    labels = [f"pos {p}" for p in range(layout.n_ctx)]
    for modality, positions in layout.item_positions.items():
        for i, p in enumerate(positions):
            if modality == "m1" and batch is not None:
                labels[p] = f"item c{int(batch.context_classes[index, i])}"
            elif modality == "m1":
                labels[p] = f"item {i}"
            else:
                labels[p] = f"{modality} item {i}"
    for i, p in enumerate(layout.label_positions):
        labels[p] = f"label {int(batch.context_labels[index, i])}" if batch is not None else f"label {i}"
    for modality, p in layout.query_positions.items():
        if modality == "m1" and batch is not None:
            labels[p] = f"query c{int(batch.query_classes[index])}"
        else:
            labels[p] = "query" if modality == "m1" else f"{modality} query"
    return labels


def head_patterns(
    model: ICLTransformer,
    batch: Batch,
    *,
    index: int = 0,
    layers: int | list[int] | None = None,
) -> tuple[Float[torch.Tensor, "head q k"], list[str]]:
    """Attention patterns of the chosen layers' heads on sequence ``index``, and their names.

    Heads are stacked layer by layer (``L0H0, L0H1, ..., L1H0, ...``); ``layers`` is one
    layer, a list, or None for every layer. Only ``hook_pattern`` is cached.
    """
    n_layers = model.cfg.n_layers
    chosen = (
        list(range(n_layers)) if layers is None else [layers] if isinstance(layers, int) else list(layers)
    )
    bad = [layer for layer in chosen if not 0 <= layer < n_layers]
    if bad or not chosen:
        raise ValueError(f"layers must be in 0..{n_layers - 1}; got {layers!r}")
    if not 0 <= index < len(batch):
        raise ValueError(f"index must lie in [0, {len(batch)}) for this batch, got {index}")
    one = batch[index : index + 1]
    names = {f"blocks.{layer}.attn.hook_pattern" for layer in chosen}
    with torch.no_grad():
        _, cache = model.run_with_cache(one.inputs, one.pos_shift, names_filter=lambda n: n in names)
    patterns = torch.cat([cache[f"blocks.{layer}.attn.hook_pattern"][0] for layer in chosen], dim=0)
    head_names = [f"L{layer}H{h}" for layer in chosen for h in range(model.cfg.n_heads)]
    return patterns.detach().float().cpu(), head_names


def attention_view(
    model: ICLTransformer,
    batch: Batch,
    layout: Layout,
    *,
    index: int = 0,
    layers: int | list[int] | None = None,
    style: ViewStyle = "patterns",
) -> RenderedHTML:
    """A circuitsvis view of the attention patterns on sequence ``index``, tokens labelled.

    ``style="patterns"`` uses ``circuitsvis.attention.attention_patterns`` (heads are
    numbered in the order of :func:`head_patterns`: layer by layer); ``"heads"`` uses
    ``attention_heads`` with the heads named ``L{l}H{h}``.
    """
    if style not in VIEW_STYLES:
        raise ValueError(f"style must be one of {', '.join(VIEW_STYLES)}; got {style!r}")
    if batch.inputs.shape[1] != layout.n_ctx:
        raise ValueError(
            f"batch sequences have {batch.inputs.shape[1]} positions but layout.n_ctx is {layout.n_ctx}"
        )
    patterns, names = head_patterns(model, batch, index=index, layers=layers)
    tokens = token_labels(layout, batch, index)
    values = np.round(patterns.numpy().astype(np.float64), 4)
    if style == "heads":  # this component drops plain spaces from its axis labels
        tokens = [t.replace(" ", "\u00a0") for t in tokens]
        return attention_heads(values, tokens, attention_head_names=names, mask_upper_tri=True)
    return attention_patterns(tokens=tokens, attention=values)


def run_attention_view(
    run: Run,
    step: int | None = None,
    *,
    suite: str = "icl",
    index: int = 0,
    layers: int | list[int] | None = None,
    style: ViewStyle = "patterns",
) -> RenderedHTML:
    """:func:`attention_view` for checkpoint ``step`` (default: last) of a run, on one of its suites."""
    suites = run.suites()
    if suite not in suites:
        raise ValueError(f"suite must be one of {', '.join(suites)}; got {suite!r}")
    return attention_view(run.model(step), suites[suite], run.layout, index=index, layers=layers, style=style)


# --------------------------------------------------------------------------- over training
@dataclass
class AttentionFrames:
    """Heads' attention patterns on one fixed sequence at each checkpoint (a slider's frames).

    ``patterns[f, h]`` is head ``heads[h]``'s pattern ``A[query, key]`` at checkpoint
    ``steps[f]`` (the heads are the same in every frame; ``tokens`` label the positions).
    """

    steps: list[int]
    heads: list[str]
    tokens: list[str]
    patterns: Float[np.ndarray, "frame head q k"]
    caption: str = ""

    def __post_init__(self) -> None:
        shape = np.shape(self.patterns)
        want = (len(self.steps), len(self.heads), len(self.tokens), len(self.tokens))
        if shape != want:
            raise ValueError(f"patterns must have shape (frame, head, q, k) = {want}; got {shape}")


def parse_head(name: str) -> tuple[int, int]:
    """``"L1H0"`` -> ``(1, 0)``."""
    m = re.fullmatch(r"L(\d+)H(\d+)", name)
    if not m:
        raise ValueError(f"a head is named L<layer>H<head>, got {name!r}")
    return int(m.group(1)), int(m.group(2))


def pick_frames(steps: Sequence[int], max_frames: int | None) -> list[int]:
    """``steps`` itself, or ``max_frames`` of them evenly spaced by index (first and last kept)."""
    steps = list(steps)
    if max_frames is None or len(steps) <= max_frames:
        return steps
    if max_frames < 2:
        raise ValueError(f"max_frames must be >= 2, got {max_frames}")
    idx = np.unique(np.round(np.linspace(0, len(steps) - 1, max_frames)).astype(int))
    return [steps[i] for i in idx]


def run_attention_frames(
    run: Run,
    heads: Sequence[str],
    steps: Sequence[int] | None = None,
    *,
    suite: str = "icl",
    index: int = 0,
) -> AttentionFrames:
    """``heads``' patterns (``L{l}H{h}`` names) on one eval sequence of ``suite`` at each of
    ``steps`` (default: every checkpoint of the run); only ``hook_pattern`` is cached."""
    suites = run.suites()
    if suite not in suites:
        raise ValueError(f"suite must be one of {', '.join(suites)}; got {suite!r}")
    batch = suites[suite]
    pairs = [parse_head(h) for h in heads]
    layers = sorted({layer for layer, _ in pairs})
    steps = list(run.steps if steps is None else steps)
    frames = []
    for step in steps:
        patterns, names = head_patterns(run.model(step), batch, index=index, layers=layers)
        where = {name: i for i, name in enumerate(names)}
        frames.append(patterns[[where[h] for h in heads]].numpy())
    return AttentionFrames(
        steps=[int(s) for s in steps],
        heads=list(heads),
        tokens=token_labels(run.layout, batch, index),
        patterns=np.stack(frames) if frames else np.zeros((0, len(heads), 0, 0)),
        caption=f"{suite} sequence {index}",
    )


_SLIDER_IDS = itertools.count()

SLIDER_JS = """
(function () {
  var root = document.getElementById(%(id)s);
  var data = JSON.parse(root.querySelector("script.attention-frames").textContent);
  var input = root.querySelector("input.frame-slider");
  var label = root.querySelector("span.frame-label");
  var view = root.querySelector("div.frame-view");
  var shown = {};
  function show(i) {
    Object.keys(shown).forEach(function (k) { shown[k].style.display = "none"; });
    label.textContent = "step " + data.steps[i] + " (" + (i + 1) + " of " + data.steps.length + ")";
    if (!shown[i]) {
      var div = document.createElement("div");
      div.id = root.id + "-frame-" + i;
      div.className = "attention-frame";
      div.setAttribute("data-step", String(data.steps[i]));
      view.appendChild(div);
      shown[i] = div;
      CircuitsVis.render(div.id, CircuitsVis.AttentionPatterns,
        {tokens: data.tokens, attention: data.patterns[i], headLabels: data.heads});
    }
    shown[i].style.display = "";
  }
  input.addEventListener("input", function () { show(parseInt(input.value, 10)); });
  show(parseInt(input.value, 10));
})();
"""


def frames_json(frames: AttentionFrames, decimals: int = 4) -> str:
    """The frames as JSON (``steps``, ``heads``, ``tokens``, ``patterns`` rounded to ``decimals``),
    safe inside a ``<script>`` element."""
    data = {
        "steps": frames.steps,
        "heads": frames.heads,
        "tokens": frames.tokens,
        "patterns": np.round(np.asarray(frames.patterns, dtype=np.float64), decimals).tolist(),
    }
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def slider_html(frames: AttentionFrames, start: int | None = None) -> str:
    """An HTML block: a circuitsvis ``AttentionPatterns`` view of ``frames`` with a slider over
    checkpoints (starting at the last, or frame ``start``). Needs :func:`circuitsvis_bundle`
    on the page (the report inlines it once)."""
    n = len(frames.steps)
    if n == 0:
        raise ValueError("frames holds no checkpoint")
    start = n - 1 if start is None else start
    if not 0 <= start < n:
        raise ValueError(f"start must lie in [0, {n}), got {start}")
    uid = f"mmicl-slider-{next(_SLIDER_IDS)}"
    caption = html_lib.escape(frames.caption)
    return (
        f'<div class="attention-slider" id="{uid}" data-frames="{n}">\n'
        f'<p class="slider-controls"><label>checkpoint <input class="frame-slider" type="range" min="0" '
        f'max="{n - 1}" step="1" value="{start}" aria-label="checkpoint"></label> '
        f'<span class="frame-label">step {frames.steps[start]}</span>'
        + (f' <span class="frame-caption">· {caption}</span>' if caption else "")
        + "</p>\n"
        f'<script type="application/json" class="attention-frames">{frames_json(frames)}</script>\n'
        '<div class="frame-view"></div>\n'
        f"<script>{SLIDER_JS % {'id': json.dumps(uid)}}</script>\n</div>"
    )


def read_slider_frames(html: str) -> list[dict]:
    """The frames data of every slider in a page (what :func:`slider_html` embedded), in order."""
    found = re.findall(r'<script type="application/json" class="attention-frames">(.*?)</script>', html, re.S)
    return [json.loads(text) for text in found]  # "<\\/" is JSON's escaped "/"


# --------------------------------------------------------------------------- offline HTML
_SELF_CLOSING_DIV = re.compile(r'(<div id="circuits-vis-[^"]*"[^>]*?)\s*/>')
_CDN_RENDER = re.compile(
    r'import\s*\{\s*render\s*,\s*(\w+)\s*\}\s*from\s*"[^"]*circuitsvis[^"]*"\s*;?\s*render\(\s*("[^"]*")\s*,\s*\1\s*,',
    re.S,
)


def _bundle_file() -> Path:
    import circuitsvis

    return Path(circuitsvis.__file__).resolve().parent / "dist" / "cdn" / "iife.js"


@lru_cache(maxsize=1)
def _raw_bundle() -> str:
    return _bundle_file().read_text(encoding="utf-8")


def circuitsvis_bundle() -> str:
    """The circuitsvis browser bundle (defines the global ``CircuitsVis``), safe to inline once.

    For a classic ``<script>`` in the page head; the source-map comment is dropped and any
    ``</script`` is escaped.
    """
    js = _raw_bundle()
    js = re.sub(r"//# sourceMappingURL=\S+\s*$", "", js)
    return js.replace("</script", "<\\/script")


def is_circuitsvis(content: object) -> bool:
    """True for a circuitsvis object or an HTML string rendered by circuitsvis."""
    if isinstance(content, RenderedHTML):
        return True
    if not isinstance(content, str):
        return False
    return ("circuits-vis-" in content and "CircuitsVis" in content) or bool(_CDN_RENDER.search(content))


def _fix_div(html: str) -> str:
    """circuitsvis writes ``<div .../>``, which HTML parses as an open div swallowing what follows."""
    return _SELF_CLOSING_DIV.sub(r"\1></div>", html)


def circuitsvis_fragment(view: RenderedHTML | str) -> str:
    """A view's HTML without the inlined bundle: needs :func:`circuitsvis_bundle` on the page.

    Accepts the object, its ``local_src`` or its CDN ``str()``: a CDN import is rewritten to
    the page's global ``CircuitsVis``. A ``local_src`` from another circuitsvis version keeps
    its own bundle (still offline). Raises ValueError on HTML that is not a circuitsvis view.
    """
    src = view.local_src if isinstance(view, RenderedHTML) else view
    if not isinstance(src, str) or not is_circuitsvis(src):
        raise ValueError("view must be a circuitsvis object or HTML rendered by circuitsvis")
    src = _fix_div(src)
    inlined = _raw_bundle().replace("</script>", "")  # exactly as circuitsvis inlines it
    if inlined in src:
        src = src.replace(inlined, "")
    src = _CDN_RENDER.sub(r"CircuitsVis.render(\2, CircuitsVis.\1,", src)
    if re.search(r"""\bfrom\s*["'](?:https?:)?//""", src):
        raise ValueError("view imports a script from the network and could not be made offline")
    return src


def standalone_html(view: RenderedHTML, title: str = "Attention patterns") -> str:
    """A complete HTML page of one view that renders offline (from the view's ``local_src``)."""
    if not isinstance(view, RenderedHTML):
        raise ValueError(f"view must be a circuitsvis RenderedHTML object, got {type(view).__name__}")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html_lib.escape(title)}</title>\n</head>\n<body>\n"
        f'<h1 style="font-family: sans-serif; font-size: 1.2em">{html_lib.escape(title)}</h1>\n'
        f'<div class="circuitsvis">{_fix_div(view.local_src)}</div>\n</body>\n</html>\n'
    )


def write_standalone_html(view: RenderedHTML, path: str | Path, title: str = "Attention patterns") -> Path:
    """Write :func:`standalone_html` atomically; returns the path."""
    text = standalone_html(view, title)
    return atomic_write_bytes(path, text.encode("utf-8"))


__all__ = [
    "VIEW_STYLES",
    "AttentionFrames",
    "attention_view",
    "circuitsvis_bundle",
    "circuitsvis_fragment",
    "head_patterns",
    "frames_json",
    "is_circuitsvis",
    "parse_head",
    "pick_frames",
    "read_slider_frames",
    "run_attention_frames",
    "run_attention_view",
    "slider_html",
    "standalone_html",
    "token_labels",
    "write_standalone_html",
]
