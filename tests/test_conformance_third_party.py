"""The third party of the server machine (conformance/adversary.py THIRD_PARTY_KINDS; TP1, TP2) on fixed
step lists: the reference server refuses it everything (each forgery with signer-mismatch); each rule-UA mutant is
caught by TP1/TP2, and each signer-check mutant (a close or an equal voucher not verified) by TP2 or SV."""
from __future__ import annotations

import pytest

from conformance.harness import RunConfig
from conformance.machines import new_session

STEPS = [
    {"op": "request", "client": 0, "fault": "none", "key": True},
    # unspent authorization: two prices (its head_advance), then another key's voucher at acceptedCumulative
    {"op": "adversary", "client": 0, "kind": "forged_replay"},
    {"op": "adversary", "client": 0, "kind": "thirdparty_replay"},
    {"op": "adversary", "client": 0, "kind": "thirdparty_close"},
    {"op": "settle"},
    {"op": "adversary", "client": 0, "kind": "thirdparty_replay"},
    {"op": "adversary", "client": 0, "kind": "thirdparty_close"},
    {"op": "adversary", "client": 0, "kind": "forged_close"},  # a close voucher signed by the third party's key
    {"op": "request", "client": 1, "fault": "none", "key": True},  # the payer's other device is still served
]


def _run(server: str):
    s = new_session(RunConfig(client="model", server=server), "server")
    try:
        return [s.do(step) for step in STEPS]
    finally:
        s.close()


def test_reference_server_refuses_the_third_party_everything():
    results = _run("reference")
    assert all(not r.violations for r in results), [r.violations for r in results if r.violations]
    assert results[-1].outcome == "served"
    assert any(w.origin == "adversary" and w.action == "close" for r in results for w in r.wires)
    for kind in ("forged_replay", "forged_close"):  # each forgery reached the signer check and stopped there
        sent = [(w.action, w.amount, w.status, w.problem) for r in results if r.step.get("kind") == kind
                for w in r.wires if w.origin == "adversary" and w.amount is not None]
        assert any(problem == "signer-mismatch" for *_, problem in sent), (kind, sent)


@pytest.mark.parametrize("mutant,prop", [("server-discloses-proof-to-anyone", "TP"),
                                         ("server-settled-voucher-spends", "TP2"),
                                         ("server-close-no-signer-check", "TP2"),
                                         ("server-replay-skips-signer", "SV")])
def test_rule_ua_mutants_are_caught_by_the_third_party(mutant, prop):
    results = _run(f"mutant:{mutant}")
    found = [p for r in results for p, _ in r.violations]
    assert any(p.startswith(prop) for p in found), found
