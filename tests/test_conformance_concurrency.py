"""Concurrent steps and the linearizability check LZ (conformance/concurrency.py)."""
from __future__ import annotations

import threading

import pytest

from conformance.concurrency import Op, Scheduler, linearize
from conformance.harness import RunConfig
from conformance.machines import new_session
from model import chain as escrow
from model import server as msv
from model.messages import Credential, Request
from model.records import Voucher

PAYER, PAYEE, CID = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "cc" * 32
CFG = msv.ServerConfig(payee=PAYEE, price=1, hinted=True, hint_encoding="snapshot")


def _opened(accepted: int = 1, deposit: int = 4):
    """A model server and chain with one channel: accepted = spent = `accepted`."""
    chain = escrow.mint(escrow.Chain(), PAYER, 10)
    req = Request(PAYER, True, Credential("open", CID, Voucher(CID, accepted, PAYER), amount=deposit, payer=PAYER), "k0")
    server, chain, resp = msv.handle(CFG, msv.Server(), chain, req, True)
    assert resp.status == 200
    return server, chain


def _voucher(amount: int, key: str) -> Request:
    return Request(PAYER, True, Credential("voucher", CID, Voucher(CID, amount, PAYER)), key)


def test_two_devices_signing_the_same_amount_linearize():
    server, chain = _opened()
    ops = [Op("device 0", _voucher(2, "a"), 1, 4, 200, (2, 2)), Op("device 1", _voucher(2, "b"), 2, 3, 402)]
    found, why = linearize(CFG, True, server, chain, ops, {CID: (2, 2)}, {CID: (4, 0, False)})
    assert found is not None, why
    assert found.order == (0, 1)
    assert found.steps == ((1, 2), (2, 2))  # the first is charged, the second is not


def test_a_lost_update_is_not_linearizable_and_says_why():
    server, chain = _opened()
    # both served from the same spent: what a read-modify-write outside the channel's lock gives
    ops = [Op("device 0", _voucher(2, "a"), 1, 4, 200, (2, 2)), Op("device 1", _voucher(2, "b"), 2, 3, 200, (2, 2))]
    found, why = linearize(CFG, True, server, chain, ops, {CID: (2, 2)}, {CID: (4, 0, False)})
    assert found is None
    assert "no sequential order" in why and "device 1" in why and "the model answers 402" in why


def test_final_records_must_match_too():
    server, chain = _opened()
    ops = [Op("retry", _voucher(3, "k"), 1, 3, 200, (3, 2)), Op("original", _voucher(3, "k"), 2, 4, 200, (3, 2))]
    found, _ = linearize(CFG, True, server, chain, ops, {CID: (3, 2)}, {CID: (4, 0, False)})
    assert found is not None  # the same key: charged once, the second answered from the stored response
    found, why = linearize(CFG, True, server, chain, ops, {CID: (3, 3)}, {CID: (4, 0, False)})
    assert found is None and "explains every answer, but server record" in why  # charged twice


def test_real_time_order_is_respected():
    server, chain = _opened()
    # op 0 completed before op 1 began; only "1 then 0" would explain a 402 for 0 and a 200 for 1
    ops = [Op("first", _voucher(2, "a"), 1, 2, 402), Op("second", _voucher(2, "b"), 3, 4, 200, (2, 2))]
    found, _ = linearize(CFG, True, server, chain, ops, {CID: (2, 2)}, {CID: (4, 0, False)})
    assert found is None
    overlapping = [Op("first", _voucher(2, "a"), 1, 4, 402), Op("second", _voucher(2, "b"), 2, 3, 200, (2, 2))]
    found, why = linearize(CFG, True, server, chain, overlapping, {CID: (2, 2)}, {CID: (4, 0, False)})
    assert found is not None and found.order == (1, 0), why


def test_scheduler_follows_the_schedule_at_checkpoints():
    sched = Scheduler()
    seen, lock = [], threading.Lock()

    def worker(name):
        def run():
            for point in ("read", "commit"):
                with lock:
                    seen.append(f"{name}:{point}")
                sched.checkpoint(point)
            with lock:
                seen.append(f"{name}:end")
            return name
        return run

    assert sched.run([worker("a"), worker("b")], [0, 1, 1, 0, 0, 1]) == ["a", "b"]
    assert seen == ["a:read", "b:read", "b:commit", "a:commit", "a:end", "b:end"]
    sched.checkpoint("read")  # outside a scheduled run: a no-op


# fixed step lists: every race scenario, with schedules that interleave inside the server
STEPS = [
    {"op": "request", "client": 0, "fault": "none"},
    {"op": "request", "client": 1, "fault": "none"},
    {"op": "concurrent", "client": 0, "kind": "devices", "schedule": [0, 1, 0, 1, 1]},
    {"op": "top_up", "client": 0},
    {"op": "concurrent", "client": 0, "kind": "retry", "ahead": 2, "schedule": [0, 1, 0, 1]},
    {"op": "concurrent", "client": 0, "kind": "topup_voucher", "schedule": [0, 1, 0, 1, 1]},
    {"op": "concurrent", "client": 1, "kind": "close_charge", "ahead": 1, "schedule": [0, 1, 1, 0]},
]


def _run(server: str, machine: str = "server", client: str = "model"):
    s = new_session(RunConfig(client=client, server=server, seed=3, wallet=12), machine)
    try:
        for step in STEPS:
            s.do(step)
        return s
    finally:
        s.close()


@pytest.mark.parametrize("server", ["conformance.reference_impl:reference_server", "conformance.model_impl:model_server"])
@pytest.mark.parametrize("machine", ["server", "pair"])
def test_correct_servers_are_linearizable(server, machine):
    s = _run(server, machine, "model" if machine == "server" else "reference")
    assert s.failures() == []
    ran = [r for r in s.results if r.step["op"] == "concurrent"]
    assert [r.outcome for r in ran if r.outcome in ("noop", "skipped")] == []  # every scenario really ran
    assert s.extra_claims()["LZ"]


@pytest.mark.parametrize("mutant", ["server-racy-charge", "server-racy-idempotency", "server-racy-close"])
def test_race_mutants_break_lz(mutant):
    s = _run(f"mutant:{mutant}")
    lz = [m for _, p, m in s.failures() if p == "LZ"]
    assert lz, s.failures()
    assert "no sequential order" in lz[0]


def test_reference_server_handles_checkpoints_under_its_lock():
    """The reference server calls the hook inside its per-channel lock: a thread paused there makes the other
    wait (it is blocked, not paused), and the history stays linearizable."""
    s = _run("reference")
    trace = s.sched.trace
    assert any(point == "read" for _, point in trace) and any(point == "commit" for _, point in trace)


def test_a_transaction_refused_on_chain_changes_nothing():
    """Two devices of one payer top up at once with one account nonce: the second transaction fails on chain
    (the model's chain has no nonces); a refused topUp that changed nothing is linearizable."""
    server, chain = _opened()
    top = lambda n: Request(PAYER, False, Credential("topUp", CID, amount=2, payer=PAYER, tx_nonce=n))
    ops = [Op("device 0", top(1), 1, 4, 200), Op("device 1", top(2), 2, 3, 402)]
    found, why = linearize(CFG, True, server, chain, ops, {CID: (1, 1)}, {CID: (6, 0, False)})
    assert found is not None, why
    found, _ = linearize(CFG, True, server, chain, ops, {CID: (1, 1)}, {CID: (8, 0, False)})
    assert found is None  # both deposits applied while one was refused: not explained
