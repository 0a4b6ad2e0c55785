"""Rule UA (UA1 disclosure, UA2 public vouchers, UA3 authenticate first) and the third party of the
checker (properties TP1-TP3), on the model. Ids as in SPEC_NOTES.md section 4b."""
import attrs

from model import chain as escrow
from model import client as cl
from model import deviations as dv
from model import server as sv
from model.check import explore
from model.messages import Challenge, Credential, Request
from model.records import Hints, Voucher
from model.scenarios import default_scenarios
from model.check import start, step
from model.system import ATTACKER, Act

A, P = "0xa", "0xpayee"
CFG = sv.ServerConfig(payee=P, price=1)
SCENARIOS = {s.name: s for s in default_scenarios()}


def _chain(settled=0, deposit=6):
    ch = escrow.open_channel(escrow.mint(escrow.Chain(), A, 10), A, "c1", P, deposit)
    return escrow.settle(ch, P, Voucher("c1", settled, A)) if settled else ch


def _server(accepted, spent):
    rec = sv.ServerChannel("c1", A, accepted, Voucher("c1", accepted, A), spent=spent, deposit=6, seq=1)
    return sv.Server().put(rec)


def test_UA1_proof_only_for_a_credential_above_settled_signed_by_the_channel_signer():
    chain, server = _chain(settled=2), _server(4, 2)
    unpaid = sv.handle(CFG, server, chain, Request(A, True))[2]
    assert unpaid.challenge.hints.accepted == 4 and unpaid.challenge.hints.proof is None
    public = Request(A, True, Credential("voucher", "c1", Voucher("c1", 2, A)))  # the settled voucher
    assert sv.proves_holder(chain, public.credential) is None
    assert sv.handle(CFG, server, chain, public)[2].challenge.hints.proof is None
    forged = Request(A, True, Credential("voucher", "c1", Voucher("c1", 3, "0xevil")))
    assert sv.handle(CFG, server, chain, forged)[2].challenge.hints.proof is None
    own = Request(A, True, Credential("voucher", "c1", Voucher("c1", 3, A)))  # below accepted, but the payer's
    resp = sv.handle(CFG, server, chain, own)[2]
    assert resp.problem == "verification-failed" and resp.challenge.hints.proof == Voucher("c1", 4, A)


def test_UA2_a_public_equal_voucher_buys_nothing_and_closes_nothing():
    chain, server = _chain(settled=4), _server(4, 2)  # unspent authorization 2, all of it settled
    replay = Request(ATTACKER, True, Credential("voucher", "c1", Voucher("c1", 4, A)))
    s2, c2, resp = sv.handle(CFG, server, chain, replay)
    assert (resp.status, resp.problem) == (402, "verification-failed") and (s2, c2) == (server, chain)
    assert resp.challenge.hints is None  # the attacker named itself: nobody's hints
    head = sv.handle(CFG, server, chain, attrs.evolve(replay, content=False))[2]
    assert head.status == 200  # idempotent and free (V6): nothing consumed
    close = Request(ATTACKER, False, Credential("close", "c1", Voucher("c1", 4, A)))
    assert sv.handle(CFG, server, chain, close)[2].problem == "verification-failed"
    bug = attrs.evolve(CFG, rules=sv.ServerRules(buys_nothing=dv.nothing_public))
    assert sv.handle(bug, server, chain, replay)[2].status == 200
    assert sv.handle(bug, server, chain, close)[1].channel("c1").finalized


def test_UA2_required_is_above_settled_when_the_equal_voucher_is_public():
    chain, server = _chain(settled=4), _server(4, 2)
    h = sv.author_challenge(CFG, server, chain, A, True).hints
    assert h.required == 5  # not 4: the voucher at 4 is public
    assert sv.author_challenge(attrs.evolve(CFG, min_voucher_delta=2), server, chain, A, True).hints.required == 6
    assert sv.author_challenge(CFG, server, chain, A, False).hints.required == 4  # HEAD costs nothing


def test_UA3_a_client_without_memory_authenticates_then_follows_the_proof():
    chain, server = _chain(settled=1), _server(4, 4)
    cc = cl.ClientConfig(name="a", payer=A)
    unpaid = sv.handle(CFG, server, chain, Request(A, True))[2].challenge
    st, auth = cl.next_credential(cc, cl.ClientState(), unpaid, chain, True, authenticated=False)
    assert auth.action == "voucher" and auth.voucher.amount == 2 and auth.authenticates  # settled + price
    assert st.entry.accepted == 0  # the unproven hint did not enter the view
    server2, chain2, resp = sv.handle(CFG, server, chain, Request(A, True, auth))
    assert resp.problem == "verification-failed" and resp.challenge.hints.proof is not None
    _, paid = cl.next_credential(cc, st, resp.challenge, chain2, True, authenticated=True)
    assert paid.voucher.amount == 5
    # once authenticated, without the proof it refuses (H4) instead of authenticating again
    assert isinstance(cl.next_credential(cc, st, unpaid, chain, True, authenticated=True), cl.Refused)


def test_UA3_close_voucher_is_above_settled():
    chain = _chain(settled=3)
    cc = cl.ClientConfig(name="a", payer=A)
    st = cl.ClientState(entry=cl.Entry("c1", deposit=6, accepted=3, spent=3, signed_max=3))
    _, cred = cl.close_credential(cc, st, Challenge(1, Hints("c1", 3, 3, 6, 3, proof=None)), chain)
    assert cred.voucher.amount == 4


def test_TP_the_third_party_peeks_but_is_refused_everything():
    cfg = SCENARIOS["third party p=1"].config
    s, g = start(cfg)
    for act in (Act("request", 0), Act("settle"), Act("attack_peek", 0)):
        s, g, info = step(cfg, s, g, act)
    assert dict(s.loot)["alice.1"].amount == 1  # the settled voucher is public
    for kind in ("attack_replay", "attack_close"):
        nxt, _, info = step(cfg, s, g, Act(kind, target="alice.1"))
        assert info.outcome.startswith("failed:") and nxt.chain == s.chain


def test_TP_checker_finds_each_rule_broken():
    for name in ("UA1 off: proof to anyone p=1", "UA2 off: settled voucher spends p=1"):
        res = explore(SCENARIOS[name].config, 4)
        assert res.counterexample is not None and res.counterexample.property_id == "TP2", name
        assert any(a.kind.startswith("attack_") for a, _ in res.counterexample.trace)
