"""Crash points inside a request (conformance/crash.py, property CR) and B1 on implementations (conformance/b1.py):
the rules are reached on correct adapters without a false alarm, adapters without the capability get them SKIPPED
(never passed), and the planted bugs are seen by the property they break."""
from __future__ import annotations

import pytest

from conformance.harness import RunConfig
from conformance.machines import new_session

REF_SERVER = "conformance.reference_impl:reference_server"
LEGACY_SERVER = "conformance.reference_impl:legacy_server"

# a crash after the open's broadcast, then the same client goes on; a crash after the commit, then a retry
CRASH_STEPS = [
    {"op": "request", "client": 0, "fault": "crash_after_broadcast", "key": True},
    {"op": "request", "client": 0, "fault": "none", "key": True},
    {"op": "request", "client": 1, "fault": "crash_after_commit", "key": True},
    {"op": "request", "client": 1, "fault": "none", "key": True},
    {"op": "duplicate", "client": 1},
    {"op": "settle"},
    {"op": "request", "client": 0, "fault": "none", "key": True},
]


_OPEN: list = []


@pytest.fixture(autouse=True)
def _close_sessions():
    yield
    while _OPEN:
        _OPEN.pop().close()


def _run(machine: str, server: str, chain: str, steps, client: str = "model"):
    s = new_session(RunConfig(client=client, server=server, chain=chain, seed=5), machine)
    _OPEN.append(s)
    return s, [s.do(dict(st)) for st in steps]


@pytest.mark.parametrize("chain", ["memory", "memory-v2"])
@pytest.mark.parametrize("server", [REF_SERVER, LEGACY_SERVER])
@pytest.mark.parametrize("machine", ["server", "pair"])
def test_crashes_on_the_reference_server_raise_no_false_alarm(machine, server, chain):
    client = "model" if machine == "server" else "conformance.reference_impl:reference_client"
    s, results = _run(machine, server, chain, CRASH_STEPS, client)
    assert [v for r in results for v in r.violations] == []
    assert s.crash_watch.crashes == {"broadcast": 1, "respond": 1}  # both windows were really reached
    crashed = [w for r in results for w in r.wires if w.fate == "server-crashed"]
    assert [w.note for w in crashed] == ["crash:broadcast", "crash:respond"]
    orphan = crashed[0].channel_id
    rec = s.server.record(orphan)
    assert rec is not None and rec.deposit == s.chain.get_channel(orphan).deposit  # adopted from the chain
    assert s.extra_claims()["CR"] is True and "CR" not in s.skipped


def test_the_twin_keeps_the_chain_effect_and_not_the_record():
    s, results = _run("server", REF_SERVER, "memory", CRASH_STEPS[:1])
    assert results[0].twin_outcome == "unknown"
    (tcid,) = [t for t, _ in s.twin.chain.channels]
    assert s.twin.server.record(tcid) is None  # window (a): the record did not survive
    s2, r2 = _run("server", REF_SERVER, "memory", CRASH_STEPS[:2])
    assert r2[1].outcome == r2[1].twin_outcome == "served"  # the next request adopts it on both sides


def test_crash_rules_are_skipped_for_a_server_without_crash_points():
    s, results = _run("server", "model", "memory", CRASH_STEPS[:2])
    assert "crash points" in s.skipped["CR"]
    assert not any(w.fate == "server-crashed" for r in results for w in r.wires)


def test_the_orphan_property_sees_a_server_that_never_adopts():
    s, results = _run("server", "mutant:server-loses-orphan", "memory", CRASH_STEPS[:2])
    assert any(p == "CR" for p, _ in results[1].violations), results[1].violations


@pytest.mark.parametrize("server", ["reference", "legacy", "model", "model-legacy"])
def test_b1_shadow_runs_the_other_configuration_without_a_false_alarm(server):
    s, results = _run("server", server, "memory-v2", CRASH_STEPS)
    assert s.b1 is not None and "B1" not in s.skipped
    assert s.b1.hinted == (server in ("legacy", "model-legacy"))
    assert s.b1.compared >= 5 and s.b1.retired is None
    assert [v for r in results for v in r.violations] == []


def test_b1_sees_a_legacy_configuration_that_refuses_an_equal_voucher():
    steps = [{"op": "request", "client": 0, "fault": "none", "key": True}, {"op": "head", "client": 0}]
    s, results = _run("server", "mutant:server-legacy-refuses-equal", "memory", steps)
    assert [p for p, _ in results[1].violations] == ["B1"]
    assert s.b1.retired == "diverged"


def test_b1_stays_skipped_where_no_shadow_runs():
    s, _ = _run("pair", "reference", "memory", CRASH_STEPS[:1], client="reference")
    assert s.b1 is None and "B1" in s.skipped  # the pair machine does not claim it


def test_a_concurrent_step_retires_the_shadow():
    steps = [{"op": "request", "client": 0, "fault": "none", "key": True},
             {"op": "concurrent", "client": 0, "kind": "retry", "schedule": [0, 1], "ahead": 1},
             {"op": "head", "client": 0}]
    s, _ = _run("server", "mutant:server-legacy-refuses-equal", "memory", steps)
    assert s.b1.retired is not None and s.b1.retired.startswith("a concurrent step")
