"""Hypothesis state machines over a `Session` (conformance/harness.py).

Which named adapters each machine drives (harness.machine_config, printed as "drives:"):

pair      (a) a real client against a real server through the harness network, with faults.
server    (b) the real server named by --server (the --client adapter is not driven) against the model client
              (legacy when --client is legacy) plus an adversary that sends what a
              normal client never would (stale, replayed, lower, above deposit, forged or high-s
              signatures, another channel's voucher, keyless replays); every verdict is compared
              with model.server.handle on the same inputs (conformance/adversary.py).
client    (c) the real client named by --client (the --server adapter is not driven) against the model server
              behind a liar (stale or inflated hints, hints for another channel, receipts going backwards), the
              twin lying the same way (model/system.py LIES); H1, C1, R1 checked.

Every rule is one protocol step (a dict), so the minimal failing example is a
JSON steps file that `python -m conformance replay FILE` runs again.
"""
from __future__ import annotations

import time

import attrs
from typing import Callable, Optional

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from .harness import RunConfig, Session, machine_config
from .trace import render_steps

PROFILES = {
    # name: (max_examples, steps per example)
    "quick": (10, 20),
    "ci": (20, 25),
    "deep": (200, 50),
    "mutants": (60, 40),  # mutants --profile quick: a few more steps, no shrinking (time to kill)
    "mutants-ci": (150, 40),  # mutants --profile ci (the run stops at the first kill)
}


# Prices and amounts as real services have them (draft "Cost Calculation", "Insufficient Balance During
# Streaming"): each example draws one. name: (price, deposit, top_up, wallet). "unit" is the model checker's
# world; "odd" has deposits and top-ups that are not multiples of the price, so balances are partial, and a top-up
# smaller than the price, so a charge can be short of the deposit by more than one top-up (rule H5b); "large"
# is 18-decimal token amounts; "bound" sits just under 2^96 (the v2 bound; v1's is 2^128), where an
# implementation that computes in floats or 64-bit integers breaks.
MONEY = {
    "unit": (1, 4, 2, 6),
    "odd": (3, 10, 2, 20),
    "large": (10**18, 4 * 10**18 + 7, 2 * 10**18 + 3, 10**19),
    "bound": (2**93, 2**95 + 3, 2**93 + 1, 2**96 - 1),
}
MONEY_NAMES = tuple(MONEY)  # sampled_from shrinks towards the first: unit amounts


class ConformanceFailure(AssertionError):
    pass


class Collector:
    """What the runs of one pair saw: sessions, steps, the last failing session."""

    def __init__(self, progress: Optional[Callable[[str], None]] = None):
        self.sessions: list[Session] = []
        self.steps = 0
        self.failing: Optional[Session] = None
        # known(session, violations) -> a known finding id of the pair, or None; a session that shows a known
        # finding is kept in `found` (one per id) and its example ends there, the exploration goes on
        self.known: Optional[Callable[[Session, list], Optional[str]]] = None
        self.found: dict = {}
        self.progress = progress
        self.t0 = time.monotonic()

    def add(self, s: Session) -> None:
        self.sessions.append(s)
        if self.progress and len(self.sessions) % 5 == 0:
            self.progress(f"  {len(self.sessions)} examples, {self.steps} steps, {time.monotonic() - self.t0:.1f}s")


def new_session(rc: RunConfig, machine: str) -> Session:
    """A fresh session of `machine` on the configuration it really runs (harness.machine_config)."""
    from .adversary import AdversarySession, LyingServerSession

    cls = {"pair": Session, "server": AdversarySession, "client": LyingServerSession}[machine]
    return cls(machine_config(rc, machine))


def operations(rc: RunConfig, machine: str) -> list[str]:
    """The step kinds of a machine, weighted by repetition (sampled_from shrinks towards the
    first entry: a plain request)."""
    ops = ["request"] * 6 + ["head", "duplicate", "restart_client", "restart_server", "settle", "top_up",
                              "request_close", "advance_time", "close"]
    if machine != "server":  # the server machine's adversary already drives its rare states (and kills stay fast)
        ops += ["targeted"]
    if rc.faults:
        ops += ["deliver_held_request"]
    if machine == "server":
        ops += ["adversary"] * 8 + ["variant"] * 4 + ["probe"] * 4
    if machine == "client":
        ops += ["lie"] * 8
    if concurrent_kinds(rc, machine):
        ops += ["concurrent"] * 3
    return ops


def concurrent_kinds(rc: RunConfig, machine: str) -> tuple:
    """The concurrent scenarios a machine runs (conformance/concurrency.py). `devices` needs two devices of one
    payer and, since a race has no single sequential twin to follow the clients' choices, the `must` strength,
    and not machine `server`, whose SV and SH compare every later answer with that twin; the harness-sent races
    test a server, so machine `client` (whose server is the model) runs only `devices`."""
    from .concurrency import RAW_KINDS

    kinds = () if machine == "client" else RAW_KINDS
    if rc.shared and rc.n_clients >= 2 and rc.strength == "must" and machine != "server":
        kinds = ("devices",) + kinds
    return kinds


def build_machine(rc: RunConfig, collector: Collector, machine: str = "pair"):
    from .adversary import ADVERSARY_KINDS, CLIENT_LIES, VARIANT_KINDS

    rc = machine_config(rc, machine)
    clients = st.integers(0, rc.n_clients - 1)
    faults = st.sampled_from(["none", "none", "hold_request", "hold_response"] if rc.faults else ["none"])
    ops = operations(rc, machine)
    kinds = concurrent_kinds(rc, machine)
    counter = [0]

    class Machine(RuleBasedStateMachine):
        @initialize(money=st.sampled_from(MONEY_NAMES))
        def start(self, money):
            counter[0] += 1
            price, deposit, top_up, wallet = MONEY[money]
            self.session = new_session(attrs.evolve(rc, seed=rc.seed * 10_000 + counter[0], price=price,
                                                    deposit=deposit, top_up=top_up, wallet=wallet), machine)
            collector.add(self.session)

        def teardown(self):
            if getattr(self, "session", None) is not None:
                self.session.close()

        def _do(self, step: dict) -> None:
            if getattr(self, "finding", None):
                return  # this example showed a known finding: its later steps would only echo it
            r = self.session.do(step)
            collector.steps += 1
            bad = r.violations + ([("EQ", f"{w}: implementation {a}, model {b}") for w, a, b in r.mismatches]
                                  if rc.strength == "strict" else [])
            fid = collector.known(self.session, bad) if bad and collector.known is not None else None
            if fid is not None:
                self.finding = fid
                collector.found.setdefault(fid, self.session)
                return
            if bad:
                collector.failing = self.session
                raise ConformanceFailure(f"{bad[0][0]}: {bad[0][1]}\n" + render_steps(self.session.results))

        @rule(data=st.data())
        def step(self, data):
            op = data.draw(st.sampled_from(ops), label="op")
            step = {"op": op}
            if op not in ("restart_server", "settle", "advance_time"):
                step["client"] = data.draw(clients, label="client")
            if op == "request":
                step["fault"] = data.draw(faults, label="fault")
                step["key"] = data.draw(st.booleans().map(lambda b: not b), label="key")
                if step["fault"] == "hold_response":
                    step["fault"] = self._crash_fault(step["client"])
            if op == "restart_client":
                step["keep"] = data.draw(st.booleans().map(lambda b: not b), label="keep")
            if op == "adversary":
                step["kind"] = self._adversary_kind(data, step["client"])
            if op == "variant":  # the same credential written differently, or an altered challenge (adversary.py)
                step = {"op": "adversary", "client": step["client"],
                        "kind": self._adversary_kind(data, step["client"], VARIANT_KINDS)}
            if op == "concurrent":  # two operations at once; the schedule says who runs at each checkpoint
                step = {"op": "concurrent", "client": step["client"],
                        "kind": data.draw(st.sampled_from(kinds), label="kind"),
                        "schedule": data.draw(st.lists(st.integers(0, 1), min_size=2, max_size=6), label="schedule")}
                if step["kind"] in ("retry", "close_charge"):
                    step["ahead"] = data.draw(st.integers(1, 2), label="ahead")
            if op == "targeted":
                return self._targeted(data, step["client"])
            if op == "lie":
                step = {"op": "request", "client": step["client"],
                        "lie": data.draw(st.sampled_from(CLIENT_LIES), label="lie"),
                        "key": data.draw(st.booleans().map(lambda b: not b), label="key")}
            self._do(step)

        def _adversary_kind(self, data, i: int, pool: tuple = ADVERSARY_KINDS) -> str:
            """Coverage first: the attack (or wire variant) kinds this example has not yet tried on a live channel,
            before any repeats. Drawn uniformly from all ~16 attacks or 11 variants, some seeds never sent one kind
            (high_s, same:foreign_source) while a client held a channel, and the one-rule bug only it reaches
            survived the ci profile (server-accepts-high-s seed 3, server-trusts-source seed 2). A kind counts as
            tried only when the client has a channel: without one every attack is a no-op, so a client without one
            first makes a plain request (which opens it)."""
            tried = self.__dict__.setdefault("tried_kinds", set())
            untried = [k for k in pool if k not in tried]
            kind = data.draw(st.sampled_from(untried or pool), label="kind")
            if not self._has_channel(i):  # every attack needs a live channel: open one first (a plain request)
                self._do({"op": "request", "client": i, "fault": "none", "key": True})
            if self._has_channel(i):
                tried.add(kind)
            return kind

        # Targeted sequences (op "targeted", one op in ~25): states the random steps rarely reach (issue 9 item 7),
        # each a short run of ordinary steps, guarded by a precondition (a client with a channel; else a plain
        # request). Kept inside the one `step` rule: as @precondition rules of their own, Hypothesis's rule
        # scheduler gave them half of all steps and the ci kills of the older mutants took several times longer.
        def _has_channel(self, i: int) -> bool:
            s = getattr(self, "session", None)
            return s is not None and s.clients[i].view().channel_id is not None

        def _crash_fault(self, i: int) -> str:
            """A server crash inside a request (conformance/crash.py), where the server offers crash points: a
            dropped response drawn for a client without a channel (its request opens one) becomes a crash after
            the open's broadcast, and every second other dropped response a crash after the commit (the twin's
            event is then the same hold_response). No draw of its own: the steps Hypothesis explores, and so the
            older mutants' kills, stay as they were."""
            from .crash import crash_points

            points = crash_points(self.session.server)
            if "broadcast" in points and not self._has_channel(i):
                return "crash_after_broadcast"
            self.drops = getattr(self, "drops", 0) + 1
            return "crash_after_commit" if "respond" in points and self.drops % 2 == 0 else "hold_response"

        def _targeted(self, data, i: int) -> None:
            kinds = ["pending_forced_close", "close_after_advance"]
            kind = data.draw(st.sampled_from(kinds), label="targeted")
            if not self._has_channel(i):
                kind = "request"
            if kind == "pending_forced_close":  # a forced close pending while the client keeps paying (V3)
                self._do({"op": "request_close", "client": i})
                self._do({"op": "request", "client": i, "fault": "none", "key": True})
                if data.draw(st.booleans(), label="advance"):  # and the grace period passing
                    self._do({"op": "advance_time"})
                    self._do({"op": "request", "client": i, "fault": "none", "key": True})
            elif kind == "close_after_advance":  # a cooperative close right after an advance (unsettled spent: CX)
                self._do({"op": "request", "client": i, "fault": "none", "key": True})
                self._do({"op": "close", "client": i})
            else:
                self._do({"op": "request", "client": i, "fault": "none", "key": True})

    Machine.__name__ = f"Conformance_{machine}"
    return Machine


def run_machine(rc: RunConfig, profile: str = "ci", machine: str = "pair", progress=None,
                known: Optional[Callable] = None) -> Collector:
    """Explore with Hypothesis (seeded by rc.seed: a run is reproducible) and stop at the first failure;
    runner.minimize then shrinks it by replaying step lists, within a time budget. With `known` (a bridge
    adapter's known findings, runner.known_finding), an example showing a known finding is collected and the
    exploration goes on, so one run reports every finding it meets, and fails only on an unexpected one."""
    from hypothesis import Phase

    examples, steps = PROFILES[profile]
    col = Collector(progress)
    col.known = known
    from hypothesis import seed

    cls = seed(rc.seed)(build_machine(rc, col, machine))  # --seed picks the exploration; a run is reproducible
    s = settings(max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
                 derandomize=False, suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                 print_blob=False, phases=[Phase.explicit, Phase.generate])
    try:
        run_state_machine_as_test(cls, settings=s)
        col.failing = None
    except ConformanceFailure:
        pass  # collector.failing holds the minimal failing session (Hypothesis replays it last)
    return col
