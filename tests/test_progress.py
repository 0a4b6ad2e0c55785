"""The live progress line: examples, steps per second and properties held on a terminal; nothing otherwise."""
from __future__ import annotations

import io

from conformance.harness import RunConfig
from conformance.progress import ProgressLine
from conformance.runner import run_pair


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(line: ProgressLine):
    with line:
        line.start("pair: model x model")
        rep = run_pair(RunConfig(client="model", server="model"), "quick", "pair", line)
        line.finish(rep)
    return rep


def test_a_terminal_sees_examples_rate_and_properties_held(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # wide enough for the whole line (a narrower one is cut, not wrapped)
    term = _Terminal()
    line = ProgressLine(1, term)
    rep = _run(line)
    held = sum(1 for v in rep.properties.values() if v == "held")
    assert held > 0
    assert line.examples == rep.examples > 0 and line.steps == rep.steps > 0
    text = line.line()
    assert f"{rep.examples} examples" in text and "steps/s" in text and f"{held}/" in text
    assert "properties held" in term.getvalue()  # rich drew it on the terminal, on one line
    assert "\n" not in term.getvalue().split("properties held")[0].split("|")[-1]


def test_a_narrow_terminal_gets_one_cut_line(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    term = _Terminal()
    with ProgressLine(1, term) as line:
        line.start("server: model x mutant:server-accepts-above-deposit")
    drawn = [ln for ln in term.getvalue().split("\n") if "1/1" in ln]
    assert len(drawn) == 1 and "…" in drawn[0]


def test_not_a_terminal_gets_nothing():
    pipe = io.StringIO()
    line = ProgressLine(1, pipe)
    _run(line)
    assert pipe.getvalue() == ""
    assert line.examples > 0  # it still counted


def test_the_collector_messages_feed_the_running_counts():
    line = ProgressLine(2, io.StringIO())
    line.start("server: model x reference")
    line("  10 examples, 240 steps, 3.0s")
    assert line.line().startswith("1/2 server: model x reference | 10 examples | 240 steps")
