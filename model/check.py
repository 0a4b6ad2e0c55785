"""An exhaustive checker of the model, in the spirit of TLC.

    python -m model.check [--depth N] [--scenario SUBSTR] [--jobs N] [--plain]

Breadth-first over every interleaving of the system's actions from the initial
state, deduplicating states; every state property is checked in every state and
every step property on every transition. A violation prints the shortest trace
as numbered steps. Exit status 1 when a scenario that claims no violation has
one, or a known-limit scenario does not show the violation it names.

`explore` here is the plain statement of the search; `model.fastcheck.explore`
is the same search with cheaper bookkeeping, and is what the CLI runs unless
`--plain` is given (tests/test_fastcheck.py holds the two to the same answers).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections import deque

import attrs

from . import ghosts
from .ghosts import Ghosts
from .properties import PROPERTIES, b1_other_mode, check_state, check_step
from .scenarios import Scenario, default_scenarios
from .symmetry import canonical_keys
from .system import Act, Config, StepInfo, System, actions, initial, transition

Explored = tuple[System, Ghosts]
"""A state of the search: the deployment (the rules' state) and the checker's ghosts (`model.ghosts`)."""


def start(cfg: Config) -> Explored:
    """The initial explored state."""
    return initial(cfg), ghosts.initial(len(cfg.clients))


def step(cfg: Config, s: System, g: Ghosts, act: Act) -> tuple[System, Ghosts, StepInfo]:
    """The checker's step: one action of the rules (`model.system.transition`), observed for property B1
    (`b1_other_mode`), the ghosts advanced from what it reports (`model.ghosts.observe`), then the symmetry
    reduction (`model.symmetry`), so that states that differ only in Idempotency-Key names are one state."""
    nxt, info = transition(cfg, s, act, None, b1_other_mode)
    nxt, ng = canonical_keys(nxt, ghosts.observe(g, info), tuple(c.name for c in cfg.clients))
    return nxt, ng, info


@attrs.frozen
class Counterexample:
    property_id: str
    message: str
    trace: tuple[tuple[Act, StepInfo], ...]

    def render(self, cfg: Config) -> str:
        lines = [f"violates {self.property_id}: {self.message}", "shortest trace:"]
        for n, (act, info) in enumerate(self.trace, 1):
            lines.append(f"  {n}. {act.describe(cfg)}" + (f" -> {info.outcome}" if info.outcome else ""))
            for ex in info.exchanges:
                lines.append(f"       {render_exchange(ex)}")
        return "\n".join(lines)


def render_exchange(ex) -> str:
    req, resp = ex.request, ex.response
    if req.credential is None:
        left = "request (no credential)" if req.content else "HEAD (no credential)"
    else:
        c = req.credential
        amt = f" cumulative={c.voucher.amount}" if c.voucher else ""
        dep = f" deposit+={c.amount}" if c.action in ("open", "topUp") else ""
        key = f" key={req.key}" if req.key else ""
        left = f"{'GET' if req.content else 'HEAD'} {c.action} {c.channel_id}{amt}{dep}{key}"
    if resp is None:
        return f"{left}  =>  (lost in the network)"
    if resp.status == 200 and resp.receipt:
        r = resp.receipt
        right = f"200 receipt accepted={r.accepted} spent={r.spent}" + (f" capture={r.capture}" if r.capture is not None else "")
    else:
        right = f"{resp.status} {resp.problem}"
        if resp.challenge is not None:
            h = resp.challenge.hints
            if h is None:
                right += " [no hints]"
            elif not h.has_values:
                right += f" [channelId={h.channel_id}]"
            else:
                right += (f" [hints {h.channel_id} accepted={h.accepted} spent={h.spent} "
                          f"deposit={h.deposit} required={h.required}{' +proof' if h.proof else ''}]")
    return f"{left}  =>  {right}"


@attrs.frozen
class Result:
    states: int
    transitions: int
    seconds: float
    depth: int
    counterexample: Counterexample | None
    max_round_trips: int


def explore(cfg: Config, depth: int, props=PROPERTIES, stop_at_first: bool = True) -> Result:
    began = time.perf_counter()
    e0 = start(cfg)
    parent: dict[Explored, tuple[Explored, Act, StepInfo] | None] = {e0: None}
    frontier = deque([(e0, 0)])
    transitions, max_rt = 0, 0

    def trace_to(e: Explored) -> list:
        out = []
        while parent[e] is not None:
            prev, act, info = parent[e]
            out.append((act, info))
            e = prev
        return out[::-1]

    bad = check_state(cfg, *e0, props)
    if bad:
        return Result(1, 0, time.perf_counter() - began, 0, Counterexample(*bad[0], ()), 0)
    while frontier:
        e, d = frontier.popleft()
        if d >= depth:
            continue
        s, g = e
        for act in actions(cfg, s):
            nxt, ng, info = step(cfg, s, g, act)
            transitions += 1
            max_rt = max(max_rt, info.round_trips)
            ne = (nxt, ng)
            bad = check_step(cfg, s, g, info, nxt, props)
            if not bad and ne not in parent:
                bad = check_state(cfg, nxt, ng, props)
            if bad:
                trace = tuple(trace_to(e)) + ((act, info),)
                return Result(len(parent), transitions, time.perf_counter() - began, d + 1,
                              Counterexample(bad[0][0], bad[0][1], trace), max_rt)
            if ne not in parent:
                parent[ne] = (e, act, info)
                frontier.append((ne, d + 1))
    return Result(len(parent), transitions, time.perf_counter() - began, depth, None, max_rt)


def run_scenario(sc: Scenario, depth: int | None = None, fast: bool = True) -> tuple[Result, bool]:
    if fast:
        from .fastcheck import explore as fast_explore  # imported late: fastcheck imports this module
        res = fast_explore(sc.config, depth or sc.depth)
    else:
        res = explore(sc.config, depth or sc.depth)
    if sc.expect is None:
        ok = res.counterexample is None
    else:
        ok = res.counterexample is not None and res.counterexample.property_id == sc.expect
    return res, ok


def _run_named(job: tuple[str, int | None, bool]) -> tuple[str, Result, bool]:
    name, depth, fast = job
    sc = next(s for s in default_scenarios() if s.name == name)
    res, ok = run_scenario(sc, depth, fast)
    return name, res, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.check", description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=None, help="override every scenario's depth (default 8)")
    ap.add_argument("--scenario", default="", help="run only scenarios whose name contains this")
    ap.add_argument("--quiet", action="store_true", help="print counterexamples only where a claim fails")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="scenarios explored in parallel")
    ap.add_argument("--plain", action="store_true", help="use the plain explorer (model.check.explore)")
    args = ap.parse_args(argv)
    total_states = total_time = 0.0
    failures = violations = 0
    wall = time.perf_counter()
    chosen = {s.name: s for s in default_scenarios() if args.scenario in s.name}
    jobs = [(name, args.depth, not args.plain) for name in chosen]
    if args.jobs > 1 and len(jobs) > 1:
        pool = multiprocessing.get_context("fork").Pool(args.jobs)
        results = pool.imap(_run_named, jobs)
    else:
        pool, results = None, map(_run_named, jobs)
    for name, res, ok in results:
        sc = chosen[name]
        total_states += res.states
        total_time += res.seconds
        rate = res.states / res.seconds if res.seconds else 0
        if sc.expect is None:
            status = "ok" if ok else "VIOLATION"
        else:
            status = f"known limit shown ({sc.expect})" if ok else f"KNOWN LIMIT NOT SHOWN ({sc.expect})"
        print(f"{sc.name:48s} depth {res.depth:2d}  {res.states:8d} states  {res.transitions:9d} transitions  "
              f"{rate:8.0f} states/s  max round trips {res.max_round_trips}  {status}")
        if res.counterexample and (not ok or not args.quiet):
            text = res.counterexample.render(sc.config)
            if sc.expect is not None and ok:
                print(f"    why: {sc.why}")
            print("    " + text.replace("\n", "\n    "))
        if not ok:
            failures += 1
            if sc.expect is None:
                violations += 1
    if pool is not None:
        pool.close()
    rate = total_states / total_time if total_time else 0
    print(f"\nsummary: {int(total_states)} states explored in {total_time:.1f} s of checking "
          f"({rate:.0f} states/s per process; {time.perf_counter() - wall:.1f} s wall with {args.jobs} jobs); "
          f"{violations} violations; {failures} scenarios not as claimed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
