"""Progress off a terminal: plain periodic lines, never carriage returns."""

from __future__ import annotations

import io

from mmicl_interp import progress as P


class _Clock:
    """A fake ``time.monotonic`` advanced by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_off_a_tty_many_updates_give_few_plain_lines(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(P.time, "monotonic", clock)
    log = io.StringIO()
    assert not log.isatty()
    bar = P.progress_bar(100_000, "train", enabled=True, unit="step", every_s=30.0, file=log)
    for _ in range(100_000):
        clock.now += 0.01  # 100k updates over 1000 s: at most one line per 30 s
        bar.update(1)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 1 <= len(lines) <= 1000 // 30 + 2
    assert lines[-1] == "train: 100000/100000 step"  # the last line is the final count


def test_off_a_tty_iteration_without_time_passing_prints_only_the_final_line(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(P.time, "monotonic", clock)
    log = io.StringIO()
    items = list(P.progress(range(5000), desc="scores", file=log))
    assert items == list(range(5000))
    assert log.getvalue() == "scores: 5000/5000 it\n"


def test_disabled_progress_writes_nothing():
    log = io.StringIO()
    with P.progress_bar(10, "quiet", enabled=False, file=log) as bar:
        for _ in range(10):
            bar.update(1)
    assert log.getvalue() == ""


def test_initial_count_and_postfix_appear_in_the_plain_line():
    log = io.StringIO()
    bar = P.progress_bar(4, "sweep", initial=3, unit="run", file=log)
    bar.set_postfix_str("seed=1")
    bar.update(1)
    bar.close()
    bar.close()  # closing twice prints once
    assert log.getvalue().splitlines() == ["sweep: 4/4 run  seed=1"]
