"""mppx@0.6.31, the newest v1-only release (adapters/mppx-v1: the same adapter, its own pinned install), through
the generic pair machine on our v1 escrow (memory): its client opens its own channel on the harness's chain and its
server broadcasts the open (Tempo 0x76, decoded by the adapter; conformance/chain_rpc.py). Needs Node >= 20 (+ npm
for the first install); skipped only when they are missing or the install cannot run."""
from __future__ import annotations

from pathlib import Path

import pytest

from adapters.bridge.testing import node_adapter_or_skip
from conformance.__main__ import as_expected
from conformance.harness import RunConfig, Session
from conformance.runner import run_pair

MANIFEST = Path(__file__).resolve().parents[1] / "adapters" / "mppx-v1" / "manifest.json"
REQ = {"op": "request", "client": 0, "fault": "none", "key": True}


@pytest.fixture(scope="module")
def v1():
    adapter = node_adapter_or_skip(MANIFEST)
    assert adapter.hello["version"] == "0.6.31" and adapter.hello["sessions"] == ["v1"]
    adapter.close()


def test_v1_mppx_opens_pays_and_is_settled_on_our_v1_escrow(v1):
    s = Session(RunConfig(client="mppx-v1", server="mppx-v1", chain="memory", seed=7, shared=False, n_clients=1))
    try:
        results = [s.do(REQ) for _ in range(4)]  # unit money: deposit 4, price 1
        assert [r.outcome for r in results] == ["served"] * 4
        assert all(not r.violations for r in results), [r.violations for r in results]
        (cid,) = s.known_channels()
        st = s.chain.get_channel(cid)
        assert st.exists and st.payer == s.addrs[0] and st.deposit == 4  # opened by mppx, nothing seeded
        assert [fn for _, _, fn in s.clients[0].rpc.applied] == ["open"]
        s.do({"op": "settle"})
        assert s.chain.get_channel(cid).settled == 4
    finally:
        s.close()


def test_generic_pair_shows_f14_on_the_v1_release(v1, tmp_path):
    rep = run_pair(RunConfig(client="mppx-v1", server="mppx-v1", seed=1), profile="quick", machine="pair",
                   trace_dir=str(tmp_path))
    assert rep.skipped is None and rep.error is None and rep.steps > 0
    assert as_expected(rep) and "F14" in rep.findings, (rep.properties, rep.unexpected)


def test_v1_release_with_a_model_partner_is_skipped_never_passed(v1):
    rep = run_pair(RunConfig(client="model", server="mppx-v1"), profile="quick", machine="server")
    assert rep.skipped and rep.steps == 0
