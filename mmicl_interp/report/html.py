"""One self-contained HTML page from an ordered list of sections; it opens with no network.

``build_report_html([(title, content), ...])`` where each content is:

- a plotly ``Figure``: ``fig.to_html(full_html=False, include_plotlyjs=False)``; plotly.js
  itself is inlined once in the page head (``plotly.offline.get_plotlyjs()``);
- a circuitsvis view (the object, its ``local_src`` or its HTML string): the circuitsvis
  bundle is inlined once in the head and each view keeps only its render call;
- :class:`~mmicl_interp.plots.attention_view.AttentionFrames`: one circuitsvis view with a
  slider over checkpoints (:func:`~mmicl_interp.plots.attention_view.slider_html`; the
  bundle inlined once as above);
- a pandas ``DataFrame``: an HTML table (floats to 4 significant digits);
- a string: circuitsvis HTML as above; other HTML when it starts with ``<``; else Markdown
  (rendered with markdown-it, raw HTML in it escaped);
- a list or tuple of the above, rendered in order.

The page has a title, a table of contents and simple CSS, and carries a Content Security
Policy that forbids any network fetch (``default-src 'none'``; inline scripts and styles,
data/blob images allowed), so even a stray external reference cannot leave the machine.
"""

from __future__ import annotations

import datetime as _dt
import html as html_lib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from mmicl_interp.io import atomic_write_bytes
from mmicl_interp.plots.attention_view import (
    AttentionFrames,
    circuitsvis_bundle,
    circuitsvis_fragment,
    is_circuitsvis,
    slider_html,
)

Section = tuple[str, Any]

CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'"
)

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg-alt: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
header, nav.toc, main { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 24px; border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 1.7em; }
header p.meta { margin: 0 0 16px; color: var(--muted); font-size: 0.9em; }
nav.toc { padding-top: 12px; padding-bottom: 8px; }
nav.toc h2 { font-size: 1.05em; margin: 0 0 4px; }
nav.toc ol { margin: 0; padding-left: 1.4em; columns: 2; }
nav.toc a, section h2 a { color: var(--accent); text-decoration: none; }
section.report-section { border-top: 1px solid var(--line); padding: 12px 0 20px; }
section.report-section h2 { font-size: 1.3em; margin: 8px 0 12px; }
.item { margin: 8px 0 16px; overflow-x: auto; }
.item-text table { border-collapse: collapse; }
.item-text th, .item-text td { border: 1px solid var(--line); padding: 4px 8px; }
table.dataframe { border-collapse: collapse; font-size: 0.9em; font-variant-numeric: tabular-nums; }
table.dataframe th, table.dataframe td { border: 1px solid var(--line); padding: 4px 8px; text-align: right; }
table.dataframe thead th { background: var(--bg-alt); }
table.dataframe tbody tr:nth-child(even) { background: #fbfcfd; }
pre, code { background: var(--bg-alt); border-radius: 4px; font-size: 0.9em; }
pre { padding: 8px 12px; overflow-x: auto; }
.attention-slider input.frame-slider { width: min(420px, 60vw); vertical-align: middle; }
.attention-slider .frame-label { font-variant-numeric: tabular-nums; font-weight: 600; }
.attention-slider .frame-caption { color: var(--muted); }
footer { max-width: 1180px; margin: 0 auto; padding: 16px 24px 32px; color: var(--muted); font-size: 0.85em; }
"""

_EXTERNAL = re.compile(
    r"""<(?:script|img|iframe|link|source|video|audio|embed|object)\b[^>]*?\b(?:src|href|data)\s*=\s*["']?"""
    r"""((?:https?:)?//[^"'\s>]+)"""
    r"""|\b(?:import|from)\s*\(?\s*["']((?:https?:)?//[^"']+)["']""",
    re.I,
)


def external_resources(html: str) -> list[str]:
    """URLs that a page's HTML would fetch from the network (script/img/link/... sources, JS imports).

    Plain links (``<a href>``) are not fetched and are not listed.
    """
    return [a or b for a, b in _EXTERNAL.findall(html)]


def _slug(title: str, i: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48]
    return f"s{i}-{slug}" if slug else f"s{i}"


def _markdown(text: str) -> str:
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # rich brings markdown-it-py; fall back to preformatted text
        return f"<pre>{html_lib.escape(text)}</pre>"
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def _table(df: pd.DataFrame) -> str:
    show_index = not isinstance(df.index, pd.RangeIndex) or df.index.name is not None
    return df.to_html(
        index=show_index,
        border=0,
        na_rep="–",
        max_rows=500,
        float_format=lambda v: f"{v:.4g}",
        escape=True,
    )


class _Renderer:
    """Turns section contents into HTML, noting which bundles the page needs."""

    def __init__(self) -> None:
        self.plotly = False
        self.circuitsvis = False
        self.n_fig = 0

    def render(self, content: Any, where: str) -> str:
        if isinstance(content, (list, tuple)):
            return "\n".join(self.render(c, where) for c in content)
        if isinstance(content, go.Figure):
            self.plotly = True
            self.n_fig += 1
            body = content.to_html(
                full_html=False,
                include_plotlyjs=False,
                include_mathjax=False,
                div_id=f"plotly-fig-{self.n_fig}",
                config={"displaylogo": False, "responsive": True},
            )
            return f'<div class="item item-plotly">{body}</div>'
        if isinstance(content, AttentionFrames):
            self.circuitsvis = True
            return f'<div class="item item-slider">{slider_html(content)}</div>'
        if is_circuitsvis(content):
            self.circuitsvis = True
            return f'<div class="item item-circuitsvis">{circuitsvis_fragment(content)}</div>'
        if isinstance(content, pd.DataFrame):
            return f'<div class="item item-table">{_table(content)}</div>'
        if isinstance(content, pd.Series):
            return f'<div class="item item-table">{_table(content.to_frame())}</div>'
        if isinstance(content, str):
            if content.lstrip().startswith("<"):
                return f'<div class="item item-html">{content}</div>'
            return f'<div class="item item-text">{_markdown(content)}</div>'
        raise ValueError(
            f"section {where}: content must be a plotly Figure, a circuitsvis view or HTML, attention "
            "frames, a pandas DataFrame, Markdown/HTML text, or a list of these; got "
            f"{type(content).__name__}"
        )


def build_report_html(
    sections: Sequence[Section],
    *,
    title: str = "mmicl-interp report",
    subtitle: str | None = None,
    csp: bool = True,
) -> str:
    """One self-contained HTML page from ``[(title, content), ...]`` (see the module docstring).

    plotly.js and the circuitsvis bundle are each inlined at most once, only when a section
    needs them. ``csp`` adds a Content Security Policy that blocks every network fetch.
    """
    if isinstance(sections, (str, bytes)) or not isinstance(sections, Sequence):
        raise ValueError("sections must be a list of (title, content) pairs")
    renderer = _Renderer()
    toc, bodies = [], []
    for i, section in enumerate(sections, start=1):
        if not (isinstance(section, tuple) and len(section) == 2 and isinstance(section[0], str)):
            raise ValueError(f"sections[{i - 1}] must be a (title, content) pair with a str title")
        name, content = section
        anchor = _slug(name, i)
        body = renderer.render(content, f"{i} ({name!r})")
        toc.append(f'<li><a href="#{anchor}">{html_lib.escape(name)}</a></li>')
        bodies.append(
            f'<section class="report-section" id="{anchor}">\n'
            f'<h2><a href="#{anchor}">{i}.</a> {html_lib.escape(name)}</h2>\n{body}\n</section>'
        )

    head = ['<meta charset="utf-8">', '<meta name="viewport" content="width=device-width, initial-scale=1">']
    if csp:
        head.append(f'<meta http-equiv="Content-Security-Policy" content="{CSP}">')
    head += [f"<title>{html_lib.escape(title)}</title>", f"<style>{CSS}</style>"]
    if renderer.plotly:
        from plotly.offline import get_plotlyjs

        head.append(
            '<script type="text/javascript">' + get_plotlyjs().replace("</script", "<\\/script") + "</script>"
        )
    if renderer.circuitsvis:
        head.append('<script type="text/javascript">' + circuitsvis_bundle() + "</script>")

    from mmicl_interp import __version__

    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    meta = html_lib.escape(subtitle) + " · " if subtitle else ""
    nav = (
        '<nav class="toc"><h2>Contents</h2><ol>\n' + "\n".join(toc) + "\n</ol></nav>"
        if toc
        else '<nav class="toc"><p>No sections.</p></nav>'
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            *head,
            "</head>",
            "<body>",
            f'<header><h1>{html_lib.escape(title)}</h1><p class="meta">{meta}generated {stamp} '
            f"by mmicl-interp {__version__}</p></header>",
            nav,
            "<main>",
            *bodies,
            "</main>",
            "<footer>Self-contained: plotly.js and circuitsvis are inlined; no network needed.</footer>",
            "</body>",
            "</html>",
            "",
        ]
    )


def write_report(
    path: str | Path,
    sections: Sequence[Section],
    *,
    title: str = "mmicl-interp report",
    subtitle: str | None = None,
    csp: bool = True,
) -> Path:
    """Build the page (:func:`build_report_html`) and write it atomically as UTF-8; returns the path."""
    text = build_report_html(sections, title=title, subtitle=subtitle, csp=csp)
    return atomic_write_bytes(path, text.encode("utf-8"))


__all__ = ["CSP", "Section", "build_report_html", "external_resources", "write_report"]
