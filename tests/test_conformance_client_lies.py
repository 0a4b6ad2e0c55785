"""The lies at the edges of rule H4 (conformance/adversary.py CRAFTED_LIES) on a fixed step list of machine (c):
correct clients (reference, model) sign a target exactly at the trust bound, and nothing above it for a target one
price above or for a highestVoucher proof signed by another key; each H4 mutant is caught by HB."""
from __future__ import annotations

import pytest

from conformance.harness import RunConfig
from conformance.machines import new_session

STEPS = [
    {"op": "request", "client": 0, "fault": "none", "key": True},  # opens: signed one price
    {"op": "request", "client": 0, "lie": "forged_proof", "key": True},  # the deposit, "proven" by another key
    {"op": "request", "client": 0, "lie": "edge_at", "key": True},  # exactly floor + price
    {"op": "request", "client": 0, "lie": "edge_over", "key": True},  # floor + 2 x price
    {"op": "request", "client": 0, "fault": "none", "key": True},  # honest again: served
]


def _run(client: str, chain: str = "memory"):
    # a deposit that covers every lie's target: a target above it is answered with a topUp first, and the lie
    # (told on the first challenge only) is gone when the client signs
    s = new_session(RunConfig(client=client, server="model", chain=chain, deposit=10, wallet=20), "client")
    try:
        return [s.do(step) for step in STEPS]
    finally:
        s.close()


def _lied_and_signed(r):
    """(the lie's hinted requiredCumulative, the client's vouchers of the step, the most it had signed before)."""
    lied = [w.hints["required"] for w in r.wires if w.note == f"lie:{r.step['lie']}" and w.hints
            and "required" in w.hints]
    signed = [w.amount for w in r.wires if w.origin == "client" and w.action == "voucher"]
    return (lied[0] if lied else None), signed


@pytest.mark.parametrize("chain", ["memory", "memory-v2"])
@pytest.mark.parametrize("client", ["reference", "model"])
def test_correct_clients_sign_at_the_bound_and_not_above(client, chain):
    results = _run(client, chain)
    assert all(not r.violations for r in results), [r.violations for r in results if r.violations]
    assert results[-1].outcome == "served"
    high = max(w.amount for w in results[0].wires if w.origin == "client" and w.amount is not None)
    for r in results[1:4]:
        lied, signed = _lied_and_signed(r)
        assert lied is not None, f"{r.step['lie']}: the liar told nothing"
        if r.step["lie"] == "edge_at":
            assert lied == high + 1 and lied in signed, (lied, signed)  # the bound itself is signed
        else:
            assert lied > high + 1 and all(a <= high + 1 for a in signed), (r.step["lie"], lied, high, signed)
        high = max([high] + signed)


@pytest.mark.parametrize("mutant,lie", [("client-proof-signer-unchecked", "forged_proof"),
                                        ("client-bound-extra-price", "edge_over")])
def test_h4_mutants_are_caught_by_their_lie(mutant, lie):
    results = _run(f"mutant:{mutant}")
    caught = [r.step.get("lie") for r in results if any(p == "HB" for p, _ in r.violations)]
    assert caught[:1] == [lie], [(r.step.get("lie"), r.violations) for r in results]
