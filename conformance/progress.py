"""A live progress line for `run` and `matrix` (rich), quiet when the output is not a terminal.

    3/14 server: model x mutant:server-free-replay | 45 examples | 812 steps, 96 steps/s | 31/40 properties held

Examples and steps come from the machine's own progress messages while it runs (conformance/machines.py
Collector: "N examples, M steps, Ts"), properties from each finished `PairReport`.
"""
from __future__ import annotations

import re
import sys
import time
from typing import Optional, TextIO

import attrs

from .runner import PairReport

_COLLECTOR = re.compile(r"(\d+) examples, (\d+) steps")


@attrs.define
class ProgressLine:
    """Call it as run_pair's `progress` hook; `start` before each machine run, `finish` with its report."""

    total_runs: int
    stream: TextIO = attrs.field(factory=lambda: sys.stderr)
    enabled: Optional[bool] = None  # None: only when `stream` is a terminal
    runs_done: int = 0
    label: str = ""
    examples: int = 0  # of the finished runs
    steps: int = 0
    held: int = 0
    checked: int = 0  # properties that held or were violated (not the skipped or unclaimed ones)
    _running: tuple = (0, 0)  # (examples, steps) of the run in progress
    _t0: float = attrs.field(factory=time.monotonic)
    _live: object = None

    def __attrs_post_init__(self) -> None:
        if self.enabled is None:
            self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def __enter__(self) -> "ProgressLine":
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            # transient: the line disappears when the run ends, leaving the printed report as it was
            self._live = Live(self._text(), console=Console(file=self.stream), refresh_per_second=4, transient=True)
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def start(self, label: str) -> None:
        self.label, self._running = label, (0, 0)
        self._show()

    def __call__(self, message: str) -> None:
        m = _COLLECTOR.search(message)
        if m:
            self._running = (int(m.group(1)), int(m.group(2)))
            self._show()

    def finish(self, report: PairReport) -> None:
        self.runs_done += 1
        self._running = (0, 0)
        self.examples += report.examples
        self.steps += report.steps
        self.held += sum(1 for v in report.properties.values() if v == "held")
        self.checked += sum(1 for v in report.properties.values() if v == "held" or v.startswith("VIOLATED"))
        self._show()

    def line(self) -> str:
        examples, steps = self.examples + self._running[0], self.steps + self._running[1]
        rate = steps / max(time.monotonic() - self._t0, 1e-9)
        return (f"{min(self.runs_done + 1, self.total_runs)}/{self.total_runs} {self.label} | {examples} examples"
                f" | {steps} steps, {rate:.0f} steps/s | {self.held}/{self.checked} properties held")

    def _text(self):
        from rich.text import Text

        return Text(self.line(), no_wrap=True, overflow="ellipsis")  # one line: cut on a narrow terminal, not wrapped

    def _show(self) -> None:
        if self._live is not None:
            self._live.update(self._text())
