"""The self-contained HTML report: structure, libraries inlined once, and an offline render check.

The render check opens the written page in headless Chromium (Debian: ``apt-get install
chromium``; another binary via ``CHROMIUM_BIN``), driven over the DevTools protocol on a pipe
(stdlib only), with every connection routed to a local recording proxy that forwards nothing.
It asserts that every plotly figure drew its SVG, every circuitsvis view rendered, no script
error was raised, the page requested nothing but ``file:``/``data:``/``blob:`` URLs, and the
proxy saw no request except Chromium's own background services. A control page with a remote
image and script proves that both detectors see a request that leaves.
"""

from __future__ import annotations

import base64
import fcntl
import html as html_lib
import json
import os
import re
import shutil
import socketserver
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from plotly.offline import get_plotlyjs

from mmicl_interp.plots import attention_view, circuit_formation, ih_vs_icl, patching_heatmap
from mmicl_interp.report import build_report_html, external_resources, write_report
from mmicl_interp.report.html import CSP
from mmicl_interp.report.run_report import build_run_report
from mmicl_interp.runs import load_run
from tests.analyses.test_correlation import make_scores

PLOTLY_SIGNATURE = get_plotlyjs()[:200]
CV_SIGNATURE = '"use strict";var CircuitsVis='


def small_figure(title: str = "f") -> go.Figure:
    return go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 3, 2]), layout=dict(title=title))


# --------------------------------------------------------------------------- page structure
def test_plotly_js_inlined_exactly_once():
    page = build_report_html([(f"fig {i}", small_figure(str(i))) for i in range(3)])
    assert page.count(PLOTLY_SIGNATURE) == 1
    assert page.count("Plotly.newPlot(") == 3
    assert all(f'id="plotly-fig-{i}"' in page for i in (1, 2, 3))
    assert external_resources(page) == []
    assert CV_SIGNATURE not in page  # no circuitsvis view, no circuitsvis bundle


def test_circuitsvis_bundle_inlined_once_for_many_views(tiny_model, tiny_task):
    batch = tiny_task.sample(2, torch.Generator().manual_seed(0))
    v1 = attention_view(tiny_model, batch, tiny_task.layout, index=0)
    v2 = attention_view(tiny_model, batch, tiny_task.layout, index=1, style="heads")
    page = build_report_html([("a", v1), ("b", v2.local_src), ("c", str(v1))])
    assert page.count(CV_SIGNATURE) == 1
    assert page.count("CircuitsVis.render(") == 3
    assert "unpkg" not in page and external_resources(page) == []
    assert PLOTLY_SIGNATURE not in page
    assert not re.search(r'<div id="circuits-vis-[^"]*"[^>]*/>', page)


def test_sections_toc_tables_text_and_html():
    table = pd.DataFrame({"layer": [0, 1], "pearson": [0.123456, np.nan]})
    page = build_report_html(
        [
            ("Notes <b>&</b>", "Some **bold** text and <script>alert(1)</script>\n\n- one\n- two"),
            ("Correlations", table),
            ("Raw", '<p class="mine">raw html</p>'),
            ("Mixed", ["first *part*", small_figure()]),
        ],
        title="Run r",
        subtitle="ICL small",
    )
    assert page.startswith("<!DOCTYPE html>") and "<title>Run r</title>" in page and "ICL small" in page
    toc = re.search(r'<nav class="toc">(.*?)</nav>', page, re.S).group(1)
    anchors = re.findall(r'href="#([^"]+)"', toc)
    assert len(anchors) == 4 and all(f'id="{a}"' in page for a in anchors)
    assert "Notes &lt;b&gt;&amp;&lt;/b&gt;" in toc
    assert "<strong>bold</strong>" in page and "<li>one</li>" in page
    assert "<script>alert(1)</script>" not in page  # raw HTML inside Markdown is escaped
    assert '<table class="dataframe">' in page and "0.1235" in page and "–" in page
    assert '<p class="mine">raw html</p>' in page
    assert page.count("Plotly.newPlot(") == 1
    assert f'content="{CSP}"' in page
    assert "Content-Security-Policy" not in build_report_html([("t", "x")], csp=False)


def test_bad_sections_raise():
    with pytest.raises(ValueError, match=r"section 2 \('b'\).*got int"):
        build_report_html([("a", "fine"), ("b", 42)])
    with pytest.raises(ValueError, match="pair"):
        build_report_html([("only a title",)])
    with pytest.raises(ValueError, match="list of"):
        build_report_html("title")


def test_external_resources_detection():
    html = (
        '<script src="https://cdn.plot.ly/plotly.js"></script><link rel="stylesheet" href="//x.org/a.css">'
        '<img src="http://example.com/a.png"><a href="https://example.com/page">a link</a>'
        '<script type="module">import { render } from "https://unpkg.com/circuitsvis/esm.js";</script>'
        '<script src="local.js"></script>'
    )
    assert external_resources(html) == [
        "https://cdn.plot.ly/plotly.js",
        "//x.org/a.css",
        "http://example.com/a.png",
        "https://unpkg.com/circuitsvis/esm.js",
    ]


def test_write_report(tmp_path):
    path = write_report(tmp_path / "sub" / "report.html", [("t", "hello")], title="T")
    assert path == tmp_path / "sub" / "report.html"
    text = path.read_text(encoding="utf-8")
    assert "<h1>T</h1>" in text and "hello" in text


# --------------------------------------------------------------------------- the run report
EXAMPLE = Path(__file__).resolve().parents[2] / "checkpoints" / "example"


def copy_example(dst: Path, keep_steps=None, analysis: bool = True) -> Path:
    """A copy of the shipped example run, optionally without its analysis table and with only
    the checkpoints ``keep_steps``."""
    keep = None if keep_steps is None else {f"step_{s:07d}.safetensors" for s in keep_steps}

    def ignore(folder: str, names: list[str]) -> list[str]:
        if keep is not None and Path(folder).name == "ckpt":
            return [n for n in names if n not in keep]
        drop = {"reports", "report.html"} | (set() if analysis else {"analysis.parquet"})
        return [n for n in names if n in drop]

    return Path(shutil.copytree(EXAMPLE, dst, ignore=ignore))


def section_texts(page: str) -> dict[str, str]:
    """Each report section's heading -> its visible text (scripts and tags removed)."""
    out = {}
    for body in re.findall(r'<section class="report-section"[^>]*>(.*?)</section>', page, re.S):
        heading = html_lib.unescape(re.sub(r"<[^>]+>", "", re.search(r"<h2>(.*?)</h2>", body, re.S).group(1)))
        text = re.sub(r"<script\b.*?</script>", " ", body, flags=re.S)
        out[re.sub(r"^\d+\.\s*", "", heading.strip())] = html_lib.unescape(re.sub(r"<[^>]+>", " ", text))
    return out


def plotly_figures(section_html: str) -> list[tuple[list, dict]]:
    """(data, layout) of every Plotly.newPlot call in a piece of the page."""
    decoder = json.JSONDecoder()
    figures = []
    for match in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', section_html):
        data, end = decoder.raw_decode(section_html, match.end())
        rest = re.match(r"\s*,\s*", section_html[end:])
        layout, _ = decoder.raw_decode(section_html, end + rest.end())
        figures.append((data, layout))
    return figures


def plotly_array(value) -> np.ndarray:
    """A plotly JSON array: a (nested) list, or a typed array {dtype, bdata, shape}."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            arr = arr.reshape([int(x) for x in str(shape).split(",")])
        return arr.astype(float)
    return np.asarray(value, dtype=float)


@pytest.mark.slow
def test_run_report_of_the_example_states_n_and_shares_colour_scales(tmp_path):
    """The report of the shipped example: every section states its n (the final accuracy on the
    analysis's n = 1000 next to ablation/patching on n_seqs), path patching's k / q / v share one
    symmetric colour scale, onsets state their rule, and the page is titled by the run id."""
    run = load_run(copy_example(tmp_path / "example"))
    lines: list[str] = []
    out = build_run_report(run, tmp_path / "page.html", n_seqs=8, progress=False, log=lines.append)
    page = out.read_text(encoding="utf-8")
    assert f"<title>mmicl-interp report: {run.name}</title>" in page
    assert lines == [f"report: using {run.path / 'analysis.parquet'} (50 checkpoints of run {run.name})"]

    texts = section_texts(page)
    assert len(texts) >= 12
    for heading, text in texts.items():
        assert re.search(r"\bn = \d+", heading + text) or "no sequences" in heading, heading
    final = next(h for h in texts if h.startswith("Final accuracy"))
    assert "n = 1000 sequences per suite" in final  # the run's eval size (analysis.parquet)
    ablation = [h for h in texts if h.startswith("Ablation")]
    assert ablation and all("n = 8 sequences per suite" in h for h in ablation)
    patching = [h for h in texts if h.startswith("Patching")]
    assert len(patching) == 3 and all("n = 8 icl sequences" in h for h in patching)
    assert "n = 1000 sequences per suite at each of 50 checkpoints" in texts["Summary"]
    onsets = next(t for h, t in texts.items() if h.startswith("Onsets"))
    assert "rises by >= 0.1" in onsets

    sections = re.findall(r'<section class="report-section"[^>]*>.*?</section>', page, re.S)
    (path_section,) = [s for s in sections if "Patching (path, item corruption)" in s]
    ((data, layout),) = plotly_figures(path_section)
    heatmaps = [t for t in data if t["type"] == "heatmap"]
    assert len(heatmaps) == 3 and {t["coloraxis"] for t in heatmaps} == {"coloraxis"}
    assert not any("zmin" in t or "zmax" in t for t in heatmaps)
    m = max(float(np.nanmax(np.abs(plotly_array(t["z"])))) for t in heatmaps)
    axis = layout["coloraxis"]
    assert axis["cmin"] == pytest.approx(-m) and axis["cmax"] == pytest.approx(m) and m > 0.5
    # the per-head heatmaps: one figure, one coloraxis on [0, 1] at least
    (heat_section,) = [s for s in sections if "Per-head prev_token_label, ih, tila" in s]
    ((data, layout),) = plotly_figures(heat_section)
    assert len(data) == 3 and {t["coloraxis"] for t in data} == {"coloraxis"}
    assert layout["coloraxis"]["cmin"] <= 0 and layout["coloraxis"]["cmax"] >= 1


def test_report_computes_the_missing_analysis_once_and_keeps_it(tmp_path, monkeypatch):
    """A run without analysis.parquet: the report scores it, saves RUN/analysis.parquet, says so,
    and the next call reuses the file instead of scoring again."""
    from mmicl_interp.analyses.tables import read_table, table_runs
    from mmicl_interp.report import run_report

    run = load_run(copy_example(tmp_path / "ex", keep_steps=(900, 1000), analysis=False))
    lines: list[str] = []
    table = run_report.run_scores(run, progress=False, log=lines.append)
    saved = run.path / "analysis.parquet"
    assert saved.is_file() and run.name in table_runs(saved)
    assert sorted(set(table["step"])) == [900, 1000] and set(table["run"]) == {run.name}
    assert any("saved the analysis" in line and str(saved) in line for line in lines)
    # the same numbers as the shipped table (written earlier by `mmicl analyze`)
    shipped = read_table(EXAMPLE / "analysis.parquet").drop(columns="run")
    keys = ["step", "suite", "metric", "layer", "head"]
    both = table.drop(columns="run").merge(shipped, on=keys, how="left", suffixes=("", "_shipped"))
    assert len(both) == len(table) == 48 and np.allclose(both["value"], both["value_shipped"], atol=1e-5)
    pd.testing.assert_frame_equal(
        read_table(saved).reset_index(drop=True), table.reset_index(drop=True), check_like=True
    )

    def recompute(*args, **kwargs):
        raise AssertionError("the saved analysis was not reused")

    monkeypatch.setattr(run_report, "analyze_run", recompute)
    monkeypatch.setattr(run_report, "circuit_scores", recompute)
    again: list[str] = []
    reused = run_report.run_scores(load_run(run.path), progress=False, log=again.append)
    pd.testing.assert_frame_equal(reused.reset_index(drop=True), table.reset_index(drop=True))
    assert again == [f"report: using {saved} (2 checkpoints of run {run.name})"]


# --------------------------------------------------------------------------- headless Chromium
BROWSER_SERVICE_SUFFIXES = (".google.com", ".googleapis.com", ".gvt1.com")
"""Chromium's own background traffic (updates, time, accounts) that flags do not fully stop."""


def find_chromium() -> str | None:
    candidates = [
        os.environ.get("CHROMIUM_BIN"),
        "/usr/lib/chromium/chromium",  # Debian's binary, without the wrapper's extra flags
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        shutil.which("google-chrome"),
    ]
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


class RecordingProxy:
    """An HTTP(S) proxy on 127.0.0.1 that records each request line and forwards nothing."""

    def __init__(self):
        self.requests: list[str] = []
        seen = self.requests

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    line = self.request.recv(65536).split(b"\r\n", 1)[0]
                    seen.append(line.decode("latin-1"))
                    self.request.sendall(
                        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                except OSError:
                    pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Browser:
    """Headless Chromium spoken to over ``--remote-debugging-pipe`` (fds 3 and 4, NUL-framed JSON)."""

    def __init__(self, binary: str, proxy_port: int, profile: str):
        child_in, self._write_fd = os.pipe()
        self._read_fd, child_out = os.pipe()
        high_in = fcntl.fcntl(child_in, fcntl.F_DUPFD, 10)
        high_out = fcntl.fcntl(child_out, fcntl.F_DUPFD, 10)
        os.close(child_in)
        os.close(child_out)

        def to_fds_3_and_4():
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-extensions", "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection", "--metrics-recording-only", "--disable-breakpad",
            "--disable-features=Translate,OptimizationHints,MediaRouter,NetworkTimeServiceQuerying",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            f"--proxy-server=http://127.0.0.1:{proxy_port}", "--proxy-bypass-list=<-loopback>",
            "--remote-debugging-pipe", "about:blank",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args,
            pass_fds=(3, 4),
            preexec_fn=to_fds_3_and_4,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(high_in)
        os.close(high_out)
        self.events: list[dict] = []
        self._replies: dict[int, dict] = {}
        self._next_id = 0
        self._closed = False
        self._cv = threading.Condition()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._read_fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cv:
                    self._closed = True
                    self._cv.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cv:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cv.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30):
        self._next_id += 1
        msg_id = self._next_id
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._write_fd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cv:
            while msg_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise TimeoutError(f"Chromium did not answer {method}")
                self._cv.wait(left)
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_for_event(self, method: str, session: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._cv.wait(left)
        return True

    def visit(self, url: str, ready_js: str, probe_js: str, timeout: float = 30) -> dict:
        """Open ``url`` in a fresh tab, wait until ``ready_js`` is true, return the probe and the log."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Runtime", "Page", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        loaded = self.wait_for_event("Page.loadEventFired", session, timeout)
        deadline = time.monotonic() + timeout
        ready = False
        while loaded and time.monotonic() < deadline:
            result = self.send(
                "Runtime.evaluate", {"expression": ready_js, "returnByValue": True}, session=session
            )
            if result.get("result", {}).get("value") is True:
                ready = True
                break
            time.sleep(0.2)
        time.sleep(0.3)  # let late requests, if any, be logged
        probe = self.send(
            "Runtime.evaluate", {"expression": probe_js, "returnByValue": True}, session=session
        )
        self.send("Target.closeTarget", {"targetId": target})
        with self._cv:
            events = [e for e in self.events if e.get("sessionId") == session]
        errors = [
            e["params"]["exceptionDetails"].get("exception", {}).get("description")
            or e["params"]["exceptionDetails"].get("text")
            for e in events
            if e["method"] == "Runtime.exceptionThrown"
        ]
        errors += [
            e["params"]["entry"]["text"]
            for e in events
            if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
        ]
        errors += [
            json.dumps(e["params"]["args"])
            for e in events
            if e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error"
        ]
        return {
            "loaded": loaded,
            "ready": ready,
            "probe": probe.get("result", {}).get("value"),
            "requests": [
                e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"
            ],
            "errors": errors,
        }

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except (TimeoutError, RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._write_fd)
        os.close(self._read_fd)


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    if binary is None:
        pytest.skip(
            "headless Chromium not found (Debian: apt-get install -y chromium chromium-driver; "
            "or set CHROMIUM_BIN): the offline render check of the report needs it"
        )
    proxy = RecordingProxy()
    with tempfile.TemporaryDirectory(prefix="mmicl-chromium-") as profile:
        b = Browser(binary, proxy.port, profile)
        b.proxy = proxy
        try:
            yield b
        finally:
            b.close()
            proxy.close()


def _host(request_line: str) -> str:
    """The host of a proxy request line: ``CONNECT h:443 HTTP/1.1`` or ``GET http://h/p HTTP/1.1``."""
    target = request_line.split(" ")[1] if " " in request_line else request_line
    target = re.sub(r"^[a-z]+://", "", target)
    return target.split("/")[0].rsplit(":", 1)[0]


def _left_the_page(requests: list[str]) -> list[str]:
    return [u for u in requests if not u.startswith(("file:", "data:", "blob:", "about:"))]


READY_JS = """
(() => {
  const figs = Array.from(document.querySelectorAll('.item-plotly'));
  const views = Array.from(document.querySelectorAll('.item-circuitsvis [id^="circuits-vis-"]'));
  return figs.length > 0 && figs.every(el => el.querySelector('svg.main-svg'))
      && views.every(el => el.childElementCount > 0);
})()
"""
PROBE_JS = """
JSON.stringify({
  figures: Array.from(document.querySelectorAll('.item-plotly')).map(el => ({
    svgs: el.querySelectorAll('svg.main-svg').length,
    traces: el.querySelectorAll('g.trace, g.hm, image').length,
    plotted: !!(el.querySelector('.js-plotly-plot') || {})._fullLayout})),
  views: Array.from(document.querySelectorAll('.item-circuitsvis [id^="circuits-vis-"]')).map(el => ({
    children: el.childElementCount, text: el.innerText.slice(0, 2000)})),
  sections: document.querySelectorAll('section.report-section').length,
  plotlyGlobal: typeof window.Plotly, cvGlobal: typeof window.CircuitsVis
})
"""


@pytest.mark.slow
def test_report_renders_offline_in_headless_chromium(browser, tmp_path, tiny_model, tiny_task):
    scores = make_scores()
    batch = tiny_task.sample(2, torch.Generator().manual_seed(0), p_B=1.0)
    view = attention_view(tiny_model, batch, tiny_task.layout, index=0)
    heads = attention_view(tiny_model, batch, tiny_task.layout, index=1, style="heads")
    sections = [
        ("Notes", "Synthetic scores; **two** figures and two attention views."),
        ("Circuit formation", circuit_formation(scores, log_x=True)),
        ("IH vs ICL", ih_vs_icl(scores)),
        ("Path patching", patching_heatmap(torch.tensor([[0.2, -0.4], [0.0, 0.9]]), ["a", "b"], ["c", "d"])),
        ("Attention (patterns)", view),
        ("Attention (heads, from a CDN string)", str(heads)),
        ("A table", pd.DataFrame({"x": [1.0, 2.0]})),
    ]
    path = write_report(tmp_path / "report.html", sections)
    html = path.read_text(encoding="utf-8")
    assert external_resources(html) == []
    assert not re.search(r"""<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*["']?https?:""", html, re.I)

    before = len(browser.proxy.requests)
    out = browser.visit(path.as_uri(), READY_JS, PROBE_JS)
    proxied = browser.proxy.requests[before:]
    assert out["loaded"] and out["ready"], f"page did not finish rendering: {out['probe']}"
    probe = json.loads(out["probe"])
    assert probe["sections"] == len(sections)
    assert probe["plotlyGlobal"] == "object" and probe["cvGlobal"] == "object"
    assert len(probe["figures"]) == 3
    for fig in probe["figures"]:
        assert fig["svgs"] >= 1 and fig["traces"] >= 1 and fig["plotted"], fig
    assert len(probe["views"]) == 2
    assert all(v["children"] > 0 for v in probe["views"])
    assert f"query c{int(batch.query_classes[0])}" in probe["views"][0]["text"].replace("\u00a0", " ")
    assert "L1H1" in probe["views"][1]["text"]  # head names (heads view draws tokens on a canvas)
    assert out["errors"] == []
    assert _left_the_page(out["requests"]) == []
    assert any(u.startswith("file:") for u in out["requests"])  # the detector saw the page itself
    strays = [r for r in proxied if not _host(r).endswith(BROWSER_SERVICE_SUFFIXES)]
    assert strays == []


def test_chromium_check_detects_requests_that_leave(browser, tmp_path):
    leak = tmp_path / "leak.html"
    leak.write_text(
        '<!DOCTYPE html><html><body><img src="http://example.com/x.png">'
        '<script src="https://cdn.example.org/a.js"></script><p id="ok">hi</p></body></html>',
        encoding="utf-8",
    )
    before = len(browser.proxy.requests)
    out = browser.visit(leak.as_uri(), "!!document.getElementById('ok')", "document.title", timeout=15)
    left = _left_the_page(out["requests"])
    assert "http://example.com/x.png" in left and "https://cdn.example.org/a.js" in left
    hosts = {_host(r) for r in browser.proxy.requests[before:]}
    assert {"example.com", "cdn.example.org"} <= hosts  # reached our proxy, never the network
