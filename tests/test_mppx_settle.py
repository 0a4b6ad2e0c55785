"""The payee's settle through mppx's own API (`tempo.settle(store, client, channelId)` of mppx/server, the adapter's
`server.settle`), on the harness's v2 chains, and what the settle transaction publishes (FINDINGS.md F137): a
third party holding no payer key takes the voucher from the settle transaction and closes the payer's channel with
it through mppx's route handler. The reference server refuses the same close (rule UA2)."""
from __future__ import annotations

import pytest

from conformance.harness import RunConfig
from conformance.machines import new_session
from conformance.mppx_impl import rpc_for

from adapters.bridge.testing import node_adapter_or_skip

REQUEST = {"op": "request", "client": 0, "fault": "none", "key": True}
STEPS = [REQUEST, REQUEST, {"op": "settle"}, {"op": "adversary", "client": 0, "kind": "thirdparty_close"}]


@pytest.fixture(autouse=True)
def _node():
    node_adapter_or_skip()  # builds the mppx adapter once, or skips saying why (no Node >= 20)


def _run(server: str, chain: str = "memory-v2"):
    s = new_session(RunConfig(client="model", server=server, chain=chain), "server")
    results = [s.do(step) for step in STEPS]
    return s, results


@pytest.mark.parametrize("chain", ["memory-v2", "evm-v2"])
def test_mppx_settles_through_its_own_api(chain):
    s = new_session(RunConfig(client="model", server="mppx", chain=chain), "server")
    try:
        for step in (REQUEST, REQUEST, {"op": "settle"}):
            assert not s.do(step).violations
        assert s.server.settle_path == "implementation" and s.server.last_settle["settled"] is True
        cid = next(iter(s.known_channels()))
        rec = s.server.record(cid)
        assert s.chain.get_channel(cid).settled == rec.accepted == rec.settled == 2  # mppx recorded what it settled
        sent = [(side, fn) for side, _, fn, _ in rpc_for(s.env).calls]
        assert ("server", "settle") in sent  # mppx's own transaction, through the rpc callback
        s.do({"op": "settle"})  # nothing above settled: mppx's settle reverts and says so; nothing changes
        assert s.server.last_settle["settled"] is False and "reverted" in s.server.last_settle["reason"]
        assert s.chain.get_channel(cid).settled == 2
    finally:
        s.close()


def test_f137_reproduction_third_party_closes_with_the_settled_voucher():
    """FINDING F137 as mppx 0.11.0 shows it (passes while it does): the close voucher is exactly the one mppx's
    settle transaction carried, and mppx finalizes the payer's channel for the third party."""
    s, results = _run("mppx")
    try:
        cid = next(iter(s.known_channels()))
        settles = [args for side, _, fn, args in rpc_for(s.env).calls if side == "server" and fn == "settle"]
        assert settles, "mppx sent no settle transaction"
        _, amount, signature = settles[-1]  # settle(descriptor, cumulativeAmount, signature): public calldata
        close = [w for w in results[-1].wires if w.origin == "adversary" and w.action == "close"]
        assert close and close[-1].amount == amount == s.chain.get_channel(cid).settled
        assert s.public_vouchers[cid] == (amount, "0x" + signature.hex())
        assert close[-1].status == 204 and s.chain.get_channel(cid).finalized
        assert [p for p, _ in results[-1].violations] == ["TP2"]
    finally:
        s.close()


@pytest.mark.xfail(strict=True, reason="FINDING F137: mppx accepts a cooperative close at cumulative = settled from "
                                       "anyone (FINDINGS.md); rule UA2 refuses it")
def test_mppx_refuses_a_close_with_the_settled_voucher():
    s, results = _run("mppx")
    try:
        assert not results[-1].violations
    finally:
        s.close()


@pytest.mark.parametrize("server,chain", [("reference", "memory-v2"), ("reference", "memory"), ("model", "memory-v2")])
def test_reference_and_model_refuse_the_close_with_the_settled_voucher(server, chain):
    s, results = _run(server, chain)
    try:
        assert all(not r.violations for r in results), [r.violations for r in results if r.violations]
        cid = next(iter(s.known_channels()))
        assert s.public_vouchers.get(cid, (0,))[0] == s.chain.get_channel(cid).settled == 2  # the loot was there
        close = [w for w in results[-1].wires if w.origin == "adversary" and w.action == "close"]
        assert close and close[-1].status == 402 and not s.chain.get_channel(cid).finalized
    finally:
        s.close()
