"""Every class of bad input to the reference server gets the right status and problem
type, a fresh challenge on 402, no receipt, and leaves the stored records (and the
chain) exactly as they were."""
from __future__ import annotations

import json

import httpx
import pytest

from adapters.reference import SessionClient
from wire.crypto import to_high_s

from .test_reference_support import (
    PATH,
    PAYEE_KEY,
    PRICE,
    assert_problem,
    authorization,
    b64,
    config,
    echo,
    get_challenge,
    memory_chain,
    new_key,
    payer_of,
    rebind,
    sign,
    unb64,
    voucher_payload,
)

UINT128_OVERFLOW = str(2**128)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One server with one channel: 2 requests served (accepted = spent = 2 * PRICE)."""
    from adapters.reference.server import serve

    tmp = tmp_path_factory.mktemp("errors")
    chain = memory_chain()
    key = new_key(chain)
    other_key = new_key(chain)
    rs = serve(config(chain, tmp, min_voucher_delta=PRICE // 2))
    client = SessionClient(rs.url, key, chain, max_deposit=10**6, max_price=PRICE)
    for _ in range(2):
        assert client.request("GET", PATH).status_code == 200
    # a second payer's channel, for cross-channel tampering
    other = SessionClient(rs.url, other_key, chain, max_deposit=10**6, max_price=PRICE)
    assert other.request("GET", PATH).status_code == 200
    yield {"chain": chain, "rs": rs, "key": key, "cid": client.channel_id, "other_key": other_key,
           "other_cid": other.channel_id, "url": rs.url}
    client.close_http()
    other.close_http()
    rs.stop()


def _state(w):
    chain = w["chain"]
    return (w["rs"].server.dump(), chain.get_channel(w["cid"]), chain.get_channel(w["other_cid"]),
            chain.nonce_of(payer_of(w["key"])), chain.balance_of(payer_of(w["key"])))


def _send(w, auth: str, method: str = "GET", **headers) -> httpx.Response:
    return httpx.request(method, w["url"] + PATH, headers={"Authorization": auth, **headers})


def _fresh(w, method="GET"):
    _, ch = get_challenge(w["url"], payer_of(w["key"]), method=method)
    return ch


def _cases(w):
    """(name, authorization header, expected status, expected problem slug)."""
    chain, key, cid = w["chain"], w["key"], w["cid"]
    ch = _fresh(w)
    good = echo(ch)
    accepted = 2 * PRICE
    deposit = chain.get_channel(cid).deposit
    sig_next = sign(chain, key, cid, accepted + PRICE)
    ok_payload = voucher_payload(cid, accepted + PRICE, sig_next)
    cases = []

    def add(name, auth, status, slug):
        cases.append((name, auth, status, slug))

    # --- malformed credentials (httpauth: 402 + malformed-credential)
    add("no token", "Payment", 402, "malformed-credential")
    add("bad base64", "Payment ***not-base64***", 402, "malformed-credential")
    add("padded base64", "Payment " + b64(b'{"a":1}') + "==", 402, "malformed-credential")
    add("not json", "Payment " + b64(b"this is not json"), 402, "malformed-credential")
    add("json array", "Payment " + b64([1, 2, 3]), 402, "malformed-credential")
    add("two tokens", "Payment abc def", 402, "malformed-credential")
    add("no payload", "Payment " + b64({"challenge": good}), 402, "malformed-credential")
    add("unknown action", authorization(good, {**ok_payload, "action": "refund"}), 402, "malformed-credential")
    add("missing signature", authorization(good, {k: v for k, v in ok_payload.items() if k != "signature"}),
        402, "malformed-credential")
    add("short signature", authorization(good, {**ok_payload, "signature": "0x1234"}), 402, "malformed-credential")
    add("amount as number", authorization(good, {**ok_payload, "cumulativeAmount": accepted + PRICE}),
        402, "malformed-credential")
    add("negative amount", authorization(good, {**ok_payload, "cumulativeAmount": "-1"}), 402, "malformed-credential")
    add("uint128 overflow", authorization(good, {**ok_payload, "cumulativeAmount": UINT128_OVERFLOW}),
        402, "malformed-credential")
    add("bad channel id", authorization(good, {**ok_payload, "channelId": "0x1234"}), 402, "malformed-credential")
    add("challenge missing id", authorization({k: v for k, v in good.items() if k != "id"}, ok_payload),
        402, "malformed-credential")

    # --- the echoed challenge (binding, expiry, ours)
    add("tampered id", authorization({**good, "id": good["id"][:-2] + "AA"}, ok_payload), 402, "challenge-not-found")
    req = unb64(good["request"])
    other_hint = json.loads(json.dumps(req))
    other_hint["methodDetails"]["channelId"] = w["other_cid"]
    other_hint["methodDetails"].pop("sessionSnapshot", None)
    add("hint for another channel edited in", authorization({**good, "request": b64(other_hint)}, ok_payload),
        402, "challenge-not-found")
    cheaper = {**req, "amount": "1"}
    add("price edited", authorization({**good, "request": b64(cheaper)}, ok_payload), 402, "challenge-not-found")
    wrong_escrow = json.loads(json.dumps(req))
    wrong_escrow["methodDetails"]["escrowContract"] = "0x" + "ee" * 20
    add("wrong escrow (unbound)", authorization({**good, "request": b64(wrong_escrow)}, ok_payload),
        402, "challenge-not-found")
    add("wrong escrow (validly bound)", authorization(rebind({**good, "request": b64(wrong_escrow)}), ok_payload),
        402, "challenge-not-found")
    wrong_chain = json.loads(json.dumps(req))
    wrong_chain["methodDetails"]["chainId"] = chain.chain_id + 1
    add("wrong chainId (validly bound)", authorization(rebind({**good, "request": b64(wrong_chain)}), ok_payload),
        402, "challenge-not-found")
    wrong_recipient = {**req, "recipient": "0x" + "dd" * 20}
    add("wrong recipient (validly bound)",
        authorization(rebind({**good, "request": b64(wrong_recipient)}), ok_payload), 402, "challenge-not-found")
    add("other secret", authorization(rebind(good, b"someone else"), ok_payload), 402, "challenge-not-found")
    add("other realm (validly bound)", authorization(rebind({**good, "realm": "evil.example"}), ok_payload),
        402, "challenge-not-found")
    add("expired", authorization(rebind({**good, "expires": "2020-01-01T00:00:00Z"}), ok_payload),
        402, "payment-expired")

    # --- vouchers
    unknown = "0x" + "42" * 32
    add("unknown channel", authorization(good, voucher_payload(unknown, PRICE, sign(chain, key, unknown, PRICE))),
        410, "channel-not-found")
    add("forged signature (other key)",
        authorization(good, voucher_payload(cid, accepted + PRICE, sign(chain, w["other_key"], cid, accepted + PRICE))),
        402, "signer-mismatch")
    add("signature over another amount",
        authorization(good, voucher_payload(cid, accepted + 2 * PRICE, sig_next)), 402, "signer-mismatch")
    add("unrecoverable signature (r = 0)",
        authorization(good, voucher_payload(cid, accepted + PRICE, "0x" + "00" * 32 + "11" * 32 + "1b")),
        402, "invalid-signature")
    add("high-s signature", authorization(good, voucher_payload(cid, accepted + PRICE, to_high_s(sig_next))),
        402, "invalid-signature")
    add("bad v byte", authorization(good, voucher_payload(cid, accepted + PRICE, sig_next[:-2] + "05")),
        402, "invalid-signature")
    add("amount above deposit",
        authorization(good, voucher_payload(cid, deposit + 1, sign(chain, key, cid, deposit + 1))),
        402, "amount-exceeds-deposit")
    add("below acceptedCumulative",
        authorization(good, voucher_payload(cid, accepted - PRICE, sign(chain, key, cid, accepted - PRICE))),
        402, "verification-failed")
    add("delta too small",
        authorization(good, voucher_payload(cid, accepted + 1, sign(chain, key, cid, accepted + 1))),
        402, "delta-too-small")
    add("equal voucher but nothing left to spend",
        authorization(good, voucher_payload(cid, accepted, sign(chain, key, cid, accepted))),
        402, "insufficient-balance")

    # --- open / topUp / close
    payee = payer_of(PAYEE_KEY)
    raw_bad_payee, cid_bad_payee = chain.build_open_tx(key, "0x" + "cc" * 20, 10 * PRICE, "0x" + "01" * 32,
                                                       "0x" + "00" * 20)
    add("open for another payee", authorization(good, {
        "action": "open", "type": "transaction", "channelId": cid_bad_payee, "transaction": raw_bad_payee,
        "cumulativeAmount": str(PRICE), "signature": sign(chain, key, cid_bad_payee, PRICE)}),
        402, "verification-failed")
    raw_ok, cid_ok = chain.build_open_tx(key, payee, 10 * PRICE, "0x" + "02" * 32, "0x" + "00" * 20)
    add("open with mismatched channelId", authorization(good, {
        "action": "open", "type": "transaction", "channelId": unknown, "transaction": raw_ok,
        "cumulativeAmount": str(PRICE), "signature": sign(chain, key, unknown, PRICE)}),
        402, "verification-failed")
    add("open with a forged initial voucher", authorization(good, {
        "action": "open", "type": "transaction", "channelId": cid_ok, "transaction": raw_ok,
        "cumulativeAmount": str(PRICE), "signature": sign(chain, w["other_key"], cid_ok, PRICE)}),
        402, "signer-mismatch")
    add("open with a voucher above its deposit", authorization(good, {
        "action": "open", "type": "transaction", "channelId": cid_ok, "transaction": raw_ok,
        "cumulativeAmount": str(11 * PRICE), "signature": sign(chain, key, cid_ok, 11 * PRICE)}),
        402, "amount-exceeds-deposit")
    add("open with garbage transaction", authorization(good, {
        "action": "open", "type": "transaction", "channelId": cid_ok, "transaction": "0xdeadbeef",
        "cumulativeAmount": str(PRICE), "signature": sign(chain, key, cid_ok, PRICE)}),
        402, "verification-failed")
    add("topUp of an unknown channel", authorization(good, {
        "action": "topUp", "type": "transaction", "channelId": unknown,
        "transaction": chain.build_topup_tx(key, cid, PRICE), "additionalDeposit": str(PRICE)}),
        410, "channel-not-found")
    add("topUp whose transaction names another channel", authorization(good, {
        "action": "topUp", "type": "transaction", "channelId": w["other_cid"],
        "transaction": chain.build_topup_tx(key, cid, PRICE), "additionalDeposit": str(PRICE)}),
        402, "verification-failed")
    add("topUp with a wrong additionalDeposit", authorization(good, {
        "action": "topUp", "type": "transaction", "channelId": cid,
        "transaction": chain.build_topup_tx(key, cid, PRICE), "additionalDeposit": str(2 * PRICE)}),
        402, "verification-failed")
    add("close below spent",
        authorization(good, voucher_payload(cid, PRICE, sign(chain, key, cid, PRICE), action="close")),
        402, "verification-failed")
    add("close above deposit",
        authorization(good, voucher_payload(cid, deposit + 1, sign(chain, key, cid, deposit + 1), action="close")),
        402, "amount-exceeds-deposit")
    add("close signed by another key",
        authorization(good, voucher_payload(cid, accepted, sign(chain, w["other_key"], cid, accepted),
                                            action="close")),
        402, "signer-mismatch")
    add("close of an unknown channel",
        authorization(good, voucher_payload(unknown, PRICE, sign(chain, key, unknown, PRICE), action="close")),
        410, "channel-not-found")
    return cases


def test_bad_inputs_change_nothing(world):
    w = world
    before = _state(w)
    cases = _cases(w)
    assert len(cases) > 40
    failures = []
    for name, auth, status, slug in cases:
        resp = _send(w, auth)
        try:
            assert_problem(resp, status, slug)
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
        if _state(w) != before:
            failures.append(f"{name}: stored records or chain changed")
            before = _state(w)
    assert not failures, "\n".join(failures)


def test_malformed_credential_names_the_field(world):
    w = world
    good = echo(_fresh(w))
    cid = w["cid"]
    resp = _send(w, authorization(good, voucher_payload(cid, UINT128_OVERFLOW, "0x" + "11" * 65)))
    assert_problem(resp, 402, "malformed-credential")
    body = resp.json()
    assert "cumulativeAmount" in body["detail"] and body.get("field") == "payload.cumulativeAmount"
    resp = _send(w, "Payment ***")
    assert "credential" in resp.json()["detail"]


def test_errors_on_head_also_change_nothing(world):
    w = world
    before = _state(w)
    good = echo(_fresh(w, method="HEAD"))
    resp = _send(w, authorization(good, voucher_payload(w["cid"], 1, "0x" + "00" * 65)), method="HEAD")
    assert resp.status_code == 402 and "www-authenticate" in resp.headers
    assert _state(w) == before


def test_other_scheme_is_a_plain_challenge(world):
    resp = _send(world, "Bearer abc")
    assert_problem(resp, 402, "payment-required")


def test_unpaid_challenge_shape(world):
    w = world
    resp, ch = get_challenge(w["url"], payer_of(w["key"]))
    assert_problem(resp, 402, "payment-required")
    assert ch.realm and ch.expires and ch.id
    req = ch.decoded_request()
    assert req.amount == PRICE and req.recipient == payer_of(PAYEE_KEY)
    md = req.method_details
    assert md.escrow_contract == w["chain"].escrow and md.chain_id == w["chain"].chain_id
    snap = md.session_snapshot
    assert md.channel_id == w["cid"] and snap.channel_id == w["cid"]
    assert (snap.accepted_cumulative, snap.spent, snap.required_cumulative) == (2 * PRICE, 2 * PRICE, 3 * PRICE)
    assert snap.highest_voucher is None  # rule UA1 (default proof_disclosure="authentic"): an address proves nothing
    # HEAD: nothing more is required than what is accepted
    _, head = get_challenge(w["url"], payer_of(w["key"]), method="HEAD")
    assert head.decoded_request().method_details.session_snapshot.required_cumulative == 2 * PRICE
    # unknown payer: no hints, a suggested deposit
    _, anon = get_challenge(w["url"], "0x" + "99" * 20)
    anon_req = anon.decoded_request()
    assert anon_req.method_details.channel_id is None and anon_req.suggested_deposit is not None
