"""Every model rule on its accepting and rejecting paths (ids as in SPEC_NOTES.md)."""
import attrs
import pytest

from model import chain as escrow
from model import client as cl
from model import deviations as dv
from model import first_draft as fd
from model import server as sv
from model.base import Rejected
from model.chain import Chain
from model.messages import Challenge, Credential, Receipt, Request
from model.records import Hints, Voucher

A, P = "0xa", "0xpayee"


def opened(deposit=6, wallet=10):
    ch = escrow.mint(Chain(), A, wallet)
    return escrow.open_channel(ch, A, "c1", P, deposit)


# --- escrow ------------------------------------------------------------------

def test_E1_open_rejects_duplicate_and_uncovered_deposit():
    ch = opened()
    assert escrow.open_channel(ch, A, "c1", P, 1).code == "ChannelAlreadyExists"
    assert escrow.open_channel(ch, A, "c2", P, 100).code == "TransferFailed"


def test_E2_topup_payer_only_and_cancels_close():
    ch = escrow.request_close(opened(), A, "c1")
    assert ch.channel("c1").close_requested_at
    assert escrow.top_up(ch, "0xother", "c1", 1).code == "NotPayer"
    ch = escrow.top_up(ch, A, "c1", 2)
    assert ch.channel("c1").deposit == 8 and ch.channel("c1").close_requested_at == 0


def test_E3_settle_checks_signer_monotone_and_deposit():
    ch = opened()
    assert escrow.settle(ch, A, Voucher("c1", 2, A)).code == "NotPayee"
    assert escrow.settle(ch, P, Voucher("c1", 2, "0xevil")).code == "InvalidSignature"
    assert escrow.settle(ch, P, Voucher("c1", 7, A)).code == "AmountExceedsDeposit"
    ch = escrow.settle(ch, P, Voucher("c1", 2, A))
    assert ch.channel("c1").settled == 2 and ch.balance(P) == 2
    assert escrow.settle(ch, P, Voucher("c1", 2, A)).code == "AmountNotIncreasing"


def test_E4_close_captures_exactly_and_refunds():
    ch = escrow.settle(opened(), P, Voucher("c1", 1, A))
    assert escrow.close(ch, P, Voucher("c1", 3, A), 4).code == "AmountNotIncreasing"
    done = escrow.close(ch, P, Voucher("c1", 5, A), 3)
    assert done.channel("c1").finalized and done.balance(P) == 3 and done.balance(A) == 10 - 6 + 3
    assert done.total_tokens() == 10


def test_E5_E6_forced_close_after_grace():
    ch = escrow.request_close(opened(), A, "c1")
    assert escrow.withdraw(ch, A, "c1").code == "CloseNotReady"
    ch = escrow.advance_time(ch, escrow.CLOSE_GRACE_PERIOD)
    assert escrow.withdraw(ch, P, "c1").code == "NotPayer"
    done = escrow.withdraw(ch, A, "c1")
    assert done.channel("c1").finalized and done.balance(A) == 10


# --- server: the voucher rule --------------------------------------------------

CFG = sv.ServerConfig(payee=P, price=1, min_voucher_delta=0)


def record(accepted=2, spent=1):
    return sv.ServerChannel("c1", A, accepted, Voucher("c1", accepted, A), spent=spent, deposit=6)


@pytest.mark.parametrize("voucher,code,rule", [
    (Voucher("c1", 3, None), "invalid-signature", "V2"),
    (Voucher("c1", 3, "0xevil"), "signer-mismatch", "V2"),
    (Voucher("c1", 7, A), "amount-exceeds-deposit", "V4"),
    (Voucher("c1", 1, A), "verification-failed", "V5"),
])
def test_V_rejections(voucher, code, rule):
    r = sv.accept_voucher(CFG, record(), opened(), voucher)
    assert isinstance(r, Rejected) and (r.code, r.rule) == (code, rule)


def test_V1_unknown_and_finalized_channels_are_gone():
    assert sv.accept_voucher(CFG, None, opened(), Voucher("c1", 3, A)).code == "channel-not-found"
    closed = escrow.close(opened(), P, Voucher("c1", 2, A), 2)
    assert sv.accept_voucher(CFG, record(), closed, Voucher("c1", 3, A)).code == "channel-finalized"


def test_V3_pending_close_rejected():
    ch = escrow.request_close(opened(), A, "c1")
    assert sv.accept_voucher(CFG, record(), ch, Voucher("c1", 3, A)).rule == "V3"


def test_V6_equal_is_idempotent_and_V7_min_delta():
    rec = record()
    assert sv.accept_voucher(CFG, rec, opened(), Voucher("c1", 2, A)) == rec
    strict = attrs.evolve(CFG, min_voucher_delta=2)
    assert sv.accept_voucher(strict, rec, opened(), Voucher("c1", 3, A)).code == "delta-too-small"
    assert sv.accept_voucher(strict, rec, opened(), Voucher("c1", 4, A)).accepted == 4


def test_C_charge_only_when_available():
    assert sv.charge(record(2, 1), 1).spent == 2
    assert sv.charge(record(2, 2), 1).code == "insufficient-balance"
    assert sv.charge(record(2, 2), 0).spent == 2  # HEAD and management cost nothing


def _server_with_channel():
    s = sv.Server().put(attrs.evolve(record(), seq=1))
    return s


def test_SH_required_is_max_of_accepted_and_spent_plus_price():
    assert sv.required_cumulative(record(5, 1), 1) == 5
    assert sv.required_cumulative(record(2, 2), 1) == 3
    # The landed mppx rule spent + price asks for an amount rule V5 must refuse:
    assert fd.required_spent_plus_price(record(5, 1), 1) == 2 < 5


def test_SH_hinted_and_legacy_challenges():
    s, ch = _server_with_channel(), opened()
    h = sv.author_challenge(CFG, s, ch, A, True).hints
    assert (h.channel_id, h.accepted, h.spent, h.required, h.deposit) == ("c1", 2, 1, 2, 6)
    assert h.proof is None  # rule UA1: no proof for a request that proved nothing (an address is no proof)
    proven = sv.author_challenge(CFG, s, ch, A, True, proven="c1").hints
    assert proven.proof == Voucher("c1", 2, A)  # snapshot hints carry the highest voucher to the channel's holder
    anyone = sv.author_challenge(attrs.evolve(CFG, rules=sv.ServerRules(discloses=dv.discloses_to_anyone)), s, ch, A, True).hints
    assert anyone.proof == Voucher("c1", 2, A)
    assert sv.author_challenge(attrs.evolve(CFG, hint_encoding="flat"), s, ch, A, True).hints.proof is None
    legacy = sv.author_challenge(attrs.evolve(CFG, hinted=False), s, ch, A, True).hints
    assert legacy == Hints("c1")
    assert sv.author_challenge(CFG, s, ch, "0xstranger", True).hints is None


def test_SH1_no_hints_for_closing_or_finalized_channels():
    s = _server_with_channel()
    assert sv.author_challenge(CFG, s, escrow.request_close(opened(), A, "c1"), A, True).hints is None
    bug = attrs.evolve(CFG, rules=sv.ServerRules(hintable=dv.hints_closing_channels))
    assert sv.author_challenge(bug, s, escrow.request_close(opened(), A, "c1"), A, True).hints is not None


def test_handle_idempotency_key_charges_once_and_head_is_free():
    s, ch = _server_with_channel(), opened()
    req = Request(A, True, Credential("voucher", "c1", Voucher("c1", 3, A)), key="k1")
    s1, ch1, r1 = sv.handle(CFG, s, ch, req)
    s2, ch2, r2 = sv.handle(CFG, s1, ch1, req)
    assert r1 == r2 and s2.record("c1").spent == s1.record("c1").spent == 2
    head = Request(A, False, Credential("voucher", "c1", Voucher("c1", 3, A)))
    s3, _, r3 = sv.handle(CFG, s2, ch2, head)
    assert r3.status == 200 and s3.record("c1").spent == 2


def test_handle_rejection_changes_nothing_and_carries_challenge():
    s, ch = _server_with_channel(), opened()
    req = Request(A, True, Credential("voucher", "c1", Voucher("c1", 1, A)))
    s1, ch1, r = sv.handle(CFG, s, ch, req)
    assert (s1, ch1) == (s, ch) and r.status == 402 and r.challenge is not None


def test_X_close_captures_max_spent_settled():
    s, ch = _server_with_channel(), opened()
    low = Request(A, False, Credential("close", "c1", Voucher("c1", 0, A)))
    assert sv.handle(CFG, s, ch, low)[2].problem == "verification-failed"
    ok = Request(A, False, Credential("close", "c1", Voucher("c1", 2, A)))
    s1, ch1, r = sv.handle(CFG, s, ch, ok)
    assert r.receipt.capture == 1 and ch1.balance(P) == 1 and ch1.channel("c1").finalized


# --- client: hint, trust and receipt rules ---------------------------------------

CC = cl.ClientConfig(name="a", payer=A)


def test_H_open_when_nothing_known():
    made = cl.next_credential(CC, cl.ClientState(), Challenge(1), escrow.mint(Chain(), A, 10), True)
    st, cred = made
    assert cred.action == "open" and cred.voucher.amount == 1 and st.entry.signed_max == 1


def test_H1_hydrate_and_sign_required():
    hints = Hints("c1", accepted=2, spent=2, deposit=6, required=3, proof=Voucher("c1", 2, A))
    st, cred = cl.next_credential(CC, cl.ClientState(), Challenge(1, hints), opened(), True)
    assert cred.voucher.amount == 3 and st.entry.accepted == 2


def test_H2_bare_channel_id_recovers_from_chain_settled():
    ch = escrow.settle(opened(), P, Voucher("c1", 2, A))
    st, cred = cl.next_credential(CC, cl.ClientState(), Challenge(1, Hints("c1")), ch, True)
    assert cred.voucher.amount == 3


def test_H3b_never_below_own_signature():
    st = cl.ClientState(entry=cl.Entry("c1", 6, 0, 0, signed_max=4))
    hints = Hints("c1", accepted=2, spent=2, deposit=6, required=3, proof=Voucher("c1", 2, A))
    _, cred = cl.next_credential(CC, st, Challenge(1, hints), opened(), True)
    assert cred.voucher.amount == 4
    bug = attrs.evolve(CC, rules=cl.ClientRules(amount=fd.sign_exactly_required))
    assert cl.next_credential(bug, st, Challenge(1, hints), opened(), True)[1].voucher.amount == 3


def test_H4_inflated_hint_refused_and_proof_lifts_it():
    lie = Hints("c1", accepted=6, spent=6, deposit=6, required=6)
    r = cl.next_credential(CC, cl.ClientState(), Challenge(1, lie), opened(), True)
    assert isinstance(r, cl.Refused) and r.reason == "hint-bound-exceeded"
    forged = attrs.evolve(lie, proof=Voucher("c1", 5, None))
    assert isinstance(cl.next_credential(CC, cl.ClientState(), Challenge(1, forged), opened(), True), cl.Refused)
    proven = attrs.evolve(lie, required=6, proof=Voucher("c1", 5, A))
    assert cl.next_credential(CC, cl.ClientState(), Challenge(1, proven), opened(), True)[1].voucher.amount == 6
    allowed = attrs.evolve(CC, max_unproven=5)
    assert cl.next_credential(allowed, cl.ClientState(), Challenge(1, lie), opened(), True)[1].voucher.amount == 6


def test_H_hint_for_someone_elses_channel_is_ignored():
    ch = escrow.mint(opened(), "0xb", 10)
    ch = escrow.open_channel(ch, "0xb", "cb", P, 4)
    _, cred = cl.next_credential(CC, cl.ClientState(), Challenge(1, Hints("cb", 1, 1, 4, 2)), ch, True)
    assert cred.action == "open"


def test_H5_top_up_when_voucher_exceeds_deposit():
    st = cl.ClientState(entry=cl.Entry("c1", 6, 6, 6, signed_max=6))
    _, cred = cl.next_credential(CC, st, Challenge(1), opened(), True)
    assert cred.action == "topUp"


def test_H5b_top_up_covers_the_shortfall():
    """A charge further above the deposit than the configured top-up: the top-up adds the shortfall, so the next
    challenge is paid with a voucher, not answered with a second top-up; the planted bug adds top_up only."""
    cfg = attrs.evolve(CC, top_up=1)
    st = cl.ClientState(entry=cl.Entry("c1", 6, 6, 6, signed_max=6))
    chain = opened(deposit=6, wallet=10)
    _, cred = cl.next_credential(cfg, st, Challenge(3), chain, True)
    assert (cred.action, cred.amount) == ("topUp", 3)  # 9 - 6, above top_up = 1
    assert cl.next_credential(cfg, st, Challenge(1), chain, True)[1].amount == 1  # a shortfall of 1: top_up
    chain = escrow.top_up(chain, A, "c1", cred.amount)
    assert cl.next_credential(cfg, st, Challenge(3), chain, True)[1].voucher.amount == 9
    bug = attrs.evolve(cfg, rules=attrs.evolve(cfg.rules, top_up=dv.tops_up_configured))
    assert cl.next_credential(bug, st, Challenge(3), opened(deposit=6, wallet=10), True)[1].amount == 1
    poor = opened(deposit=6, wallet=8)  # 2 left in the wallet, 3 needed: refused, nothing sent
    r = cl.next_credential(cfg, st, Challenge(3), poor, True)
    assert isinstance(r, cl.Refused) and r.reason == "deposit-exhausted"


def test_R1_receipts_merge_by_max_and_never_touch_signed_max():
    e = cl.Entry("c1", 6, accepted=4, spent=3, signed_max=4)
    stale = Receipt("c1", 2, 2)
    assert cl.merge_receipt(e, stale) == e
    assert cl.merge_receipt(e, Receipt("c1", 5, 4)) == attrs.evolve(e, accepted=5, spent=4)
    assert fd.overwrite_from_receipt(e, stale).signed_max == 2


def test_legacy_client_ignores_hint_values():
    legacy = attrs.evolve(CC, hinted=False)
    hints = Hints("c1", accepted=4, spent=4, deposit=6, required=5, proof=Voucher("c1", 4, A))
    _, cred = cl.next_credential(legacy, cl.ClientState(), Challenge(1, hints), opened(), True)
    assert cred.voucher.amount == 1  # settled (0) + price


def test_restart_keeps_only_persisted():
    st = cl.ClientState(entry=cl.Entry("c1", 6, 2, 2, 2), persisted=cl.Entry("c1", signed_max=2))
    assert cl.restart(attrs.evolve(CC, persist=True), st).persisted.signed_max == 2
    assert cl.restart(CC, st).persisted is None and cl.restart(CC, st).entry is None


def test_I1_cached_response_only_for_an_authentic_credential():
    s, ch = _server_with_channel(), opened()
    good = Request(A, True, Credential("voucher", "c1", Voucher("c1", 3, A)), key="k1")
    s1, ch1, r1 = sv.handle(CFG, s, ch, good)
    forged = Request(A, True, Credential("voucher", "c1", Voucher("c1", 3, None)), key="k1")
    _, _, r2 = sv.handle(CFG, s1, ch1, forged)
    assert r1.status == 200 and r2.status == 402 and r2.problem == "invalid-signature"


def test_H6_price_above_the_clients_limit_is_refused():
    capped = attrs.evolve(CC, max_price=1)
    r = cl.next_credential(capped, cl.ClientState(), Challenge(5), escrow.mint(Chain(), A, 10), True)
    assert isinstance(r, cl.Refused) and r.reason == "price-too-high"


def test_H7_challenge_for_another_escrow_is_refused():
    r = cl.next_credential(CC, cl.ClientState(), Challenge(1, foreign=True), escrow.mint(Chain(), A, 10), True)
    assert isinstance(r, cl.Refused) and r.reason == "challenge-rejected"
    bug = attrs.evolve(CC, rules=cl.ClientRules(foreign=dv.ignores_domain))
    assert cl.next_credential(bug, cl.ClientState(), Challenge(1, foreign=True), escrow.mint(Chain(), A, 10),
                              True)[1].action == "open"


def test_G1_a_410_asks_the_chain_and_keeps_a_live_channel_known():
    st = cl.ClientState(entry=cl.Entry("c1", 6, 2, 2, signed_max=2))
    kept = cl.on_gone(CC, st, opened(), "c1")
    assert kept.entry is None and cl.holdings(kept) == ("c1",)
    # it is not paid on again by itself (a bare challenge opens) but a hint for it is followed, at what it signed
    _, cred = cl.next_credential(CC, kept, Challenge(1, Hints("c1")), opened(), True)
    assert cred.action == "voucher" and cred.voucher.amount == 3
    assert cl.on_gone(attrs.evolve(CC, rules=cl.ClientRules(holds_escrow=dv.forgets_on_gone)), st, opened(), "c1").entry is None
    assert cl.holdings(cl.on_gone(attrs.evolve(CC, rules=cl.ClientRules(holds_escrow=dv.forgets_on_gone)), st, opened(), "c1")) == ()
    assert cl.holdings(cl.on_gone(CC, st, Chain(), "c1")) == ()  # absent on chain: forgotten


def test_G1_switching_channels_keeps_the_old_one_known():
    ch = escrow.open_channel(opened(), A, "c2", P, 2)
    st = cl.ClientState(entry=cl.Entry("c1", 6, 2, 2, signed_max=2))
    st2, _ = cl.next_credential(CC, st, Challenge(1, Hints("c2", 0, 0, 2, 1)), ch, True)
    assert st2.entry.channel_id == "c2" and set(cl.holdings(st2)) == {"c1", "c2"}
