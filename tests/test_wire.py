"""Wire boundary: round trips of every model and codec, and precise rejection of malformed input."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wire import (
    PROBLEMS,
    PROBLEMS_BY_URI,
    Challenge,
    ClosePayload,
    Credential,
    Descriptor,
    HighestVoucher,
    MalformedCredential,
    MalformedHeader,
    MalformedReceipt,
    MalformedRequest,
    MethodDetails,
    OpenPayload,
    ProblemDetails,
    Receipt,
    SessionRequest,
    SessionSnapshot,
    TopUpPayload,
    VoucherPayload,
    WireError,
    b64url_decode,
    b64url_encode,
    canonical_json,
    challenge_id,
    decode_opaque,
    decode_request,
    decode_snapshot_header,
    encode_authorization,
    encode_opaque,
    encode_problem,
    encode_receipt,
    encode_request,
    encode_snapshot_header,
    format_www_authenticate,
    parse_authorization,
    parse_problem,
    parse_receipt,
    parse_session_header,
    parse_www_authenticate,
    problem,
    verify_challenge_id,
)

FAST = settings(max_examples=30, deadline=None)

# ---------------------------------------------------------------- strategies


def _hex(n: int) -> st.SearchStrategy[str]:
    """0x + 2n hex digits in random case (mixed case is accepted and normalized)."""
    return st.binary(min_size=n, max_size=n).flatmap(
        lambda b: st.lists(st.booleans(), min_size=2 * n, max_size=2 * n).map(
            lambda ups: "0x" + "".join(c.upper() if u else c for c, u in zip(b.hex(), ups))
        )
    )


addresses = _hex(20)
bytes32s = _hex(32)
signatures = st.one_of(_hex(65), _hex(64))
transactions = st.integers(min_value=1, max_value=300).flatmap(_hex)
amounts = st.integers(min_value=0, max_value=2**128 - 1)
small_ints = st.integers(min_value=0, max_value=2**53 - 1)
json_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30)
header_text = st.text(
    alphabet=st.one_of(st.characters(exclude_categories=("Cs", "Cc")), st.sampled_from('\t"\\,= ;')),
    max_size=30,
)
b64url_values = st.from_regex(r"\A[A-Za-z0-9_-]{1,60}\Z")
timestamps = st.builds(
    lambda y, mo, d, h, mi, s, frac, tz: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{tz}",
    st.integers(1970, 2100), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23),
    st.integers(0, 59), st.integers(0, 59), st.sampled_from(["", ".5", ".123456"]),
    st.sampled_from(["Z", "+00:00", "-07:30"]),
)


def opt(strategy):
    return st.one_of(st.none(), strategy)


def build(cls, **fields):
    """A model from exactly these field strategies (no signature introspection)."""
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


descriptors = build(
    Descriptor, payer=addresses, payee=addresses, operator=addresses, token=addresses,
    salt=bytes32s, authorized_signer=addresses, expiring_nonce_hash=bytes32s,
)
highest_vouchers = build(
    HighestVoucher, channel_id=bytes32s, cumulative_amount=amounts, signature=signatures
)
snapshots = build(
    SessionSnapshot,
    accepted_cumulative=amounts, chain_id=small_ints, channel_id=bytes32s,
    close_requested_at=opt(amounts), deposit=amounts, descriptor=opt(descriptors), escrow=addresses,
    highest_voucher=opt(highest_vouchers), required_cumulative=amounts, settled=amounts, spent=amounts,
    units=opt(small_ints),
)
method_details = build(
    MethodDetails,
    escrow_contract=addresses, channel_id=opt(bytes32s), min_voucher_delta=opt(amounts),
    chain_id=opt(small_ints), operator=opt(addresses), session_protocol=opt(st.sampled_from(["v1", "v2"])),
    fee_payer=opt(st.booleans()), session_snapshot=opt(snapshots),
    accepted_cumulative=opt(amounts), spent=opt(amounts), deposit=opt(amounts), required_cumulative=opt(amounts),
)
requests = build(
    SessionRequest, amount=amounts, unit_type=opt(json_text), suggested_deposit=opt(amounts),
    currency=addresses, recipient=addresses, method_details=method_details,
)
challenges = build(
    Challenge,
    id=header_text.filter(bool), realm=header_text, method=st.from_regex(r"\A[a-z]{1,10}\Z"),
    intent=st.from_regex(r"\A[A-Za-z0-9-]{1,10}\Z"), request=b64url_values, expires=opt(timestamps),
    digest=opt(header_text), description=opt(header_text), opaque=opt(b64url_values),
)
payloads = st.one_of(
    build(
        OpenPayload, channel_id=bytes32s, transaction=transactions, authorized_signer=opt(addresses),
        descriptor=opt(descriptors), cumulative_amount=amounts, signature=signatures,
    ),
    build(
        TopUpPayload, channel_id=bytes32s, transaction=transactions, descriptor=opt(descriptors),
        additional_deposit=amounts,
    ),
    build(
        VoucherPayload, channel_id=bytes32s, descriptor=opt(descriptors), cumulative_amount=amounts,
        signature=signatures,
    ),
    build(
        ClosePayload, channel_id=bytes32s, descriptor=opt(descriptors), cumulative_amount=amounts,
        signature=signatures,
    ),
)
credentials = build(
    Credential, challenge=challenges, payload=payloads,
    source=opt(st.builds(lambda c, a: f"did:pkh:eip155:{c}:{a}", small_ints, addresses)),
)
receipts = build(
    Receipt, timestamp=timestamps, reference=bytes32s, challenge_id=json_text, channel_id=bytes32s,
    accepted_cumulative=amounts, spent=amounts, units=opt(small_ints), tx_hash=opt(bytes32s),
)

# ---------------------------------------------------------------- fixtures

CHANNEL = "0x" + "6d" * 32
SIG = "0x" + "ab" * 65
REQ = SessionRequest(
    amount=25, unit_type="llm_token", suggested_deposit=10_000_000,
    currency="0x20c0000000000000000000000000000000000000",
    recipient="0x742d35cc6634c0532925a3b844bc9e7595f8fe00",
    method_details=MethodDetails(escrow_contract="0x9d136eEa063eDE5418A6BC7bEafF009bBb6CFa70", chain_id=4217),
)
CHALLENGE = Challenge.issue(b"secret", realm="api.llm-service.com", request=REQ, expires="2025-01-06T12:05:00Z")


def _credential_json(**payload_overrides) -> dict:
    payload = {"action": "voucher", "channelId": CHANNEL, "cumulativeAmount": "250000", "signature": SIG}
    payload.update(payload_overrides)
    return {"challenge": CHALLENGE.to_wire(), "payload": {k: v for k, v in payload.items() if v is not None}}


def _auth(obj) -> str:
    return "Payment " + b64url_encode(json.dumps(obj).encode())


def _req_b64(obj) -> str:
    return b64url_encode(json.dumps(obj).encode())


def _request_json(**details) -> dict:
    md = {"escrowContract": "0x9d136eea063ede5418a6bc7beaff009bbb6cfa70"}
    md.update(details)
    return {"amount": "25", "currency": "0x" + "20" * 20, "recipient": "0x" + "74" * 20, "methodDetails": md}


def _receipt_json(**overrides) -> dict:
    r = {
        "method": "tempo", "intent": "session", "status": "success", "timestamp": "2025-01-06T12:08:30Z",
        "reference": CHANNEL, "challengeId": "c_1", "channelId": CHANNEL, "acceptedCumulative": "250000",
        "spent": "237500", "units": 500,
    }
    r.update(overrides)
    return {k: v for k, v in r.items() if v is not None}


# ---------------------------------------------------------------- round trips


@FAST
@given(requests)
def test_request_round_trip(request):
    encoded = encode_request(request)
    assert "=" not in encoded
    assert decode_request(encoded) == request
    assert encode_request(decode_request(encoded)) == encoded
    wire = request.to_wire()
    assert SessionRequest.model_validate(wire, context={"wire": True}).to_wire() == wire


@FAST
@given(challenges)
def test_challenge_header_round_trip(challenge):
    header = format_www_authenticate(challenge)
    assert header.startswith("Payment id=")
    assert parse_www_authenticate(header) == [challenge]


@FAST
@given(st.lists(challenges, min_size=1, max_size=3), st.data())
def test_several_challenges_among_other_schemes(found, data):
    others = ['Bearer realm="x", error="invalid_token"', "Basic", "Negotiate abc+/==", 'Newauth realm="a, b", type=1']
    parts = []
    for challenge in found:
        parts.extend(data.draw(st.lists(st.sampled_from(others), max_size=2)))
        parts.append(format_www_authenticate(challenge))
    parts.extend(data.draw(st.lists(st.sampled_from(others), max_size=2)))
    separator = data.draw(st.sampled_from([", ", ",", " ,\t", ", , "]))
    assert parse_www_authenticate(separator.join(parts)) == found


@FAST
@given(credentials)
def test_credential_round_trip(credential):
    header = encode_authorization(credential)
    assert header.startswith("Payment ") and "=" not in header
    assert parse_authorization(header) == credential
    assert parse_authorization("payment   " + header[len("Payment "):] + " ") == credential
    wire = credential.to_wire()
    assert Credential.model_validate(wire, context={"wire": True}).to_wire() == wire


@FAST
@given(receipts)
def test_receipt_round_trip(receipt):
    assert parse_receipt(encode_receipt(receipt)) == receipt


@FAST
@given(snapshots)
def test_snapshot_header_round_trip(snapshot):
    encoded = encode_snapshot_header(snapshot)
    assert "=" not in encoded
    assert decode_snapshot_header(encoded) == snapshot
    padded = base64.b64encode(canonical_json(snapshot.to_wire())).decode()  # mppx 0.11 style
    assert decode_snapshot_header(padded) == snapshot


@FAST
@given(st.dictionaries(json_text, json_text, max_size=4))
def test_opaque_round_trip(data):
    assert decode_opaque(encode_opaque(data)) == data


@FAST
@given(
    st.sampled_from(sorted(PROBLEMS)), opt(json_text), opt(bytes32s), opt(amounts),
    st.dictionaries(st.sampled_from(["retryAfter", "x-extra"]), st.one_of(json_text, small_ints), max_size=2),
)
def test_problem_round_trip(slug, detail, channel, top_up, extra):
    details = problem(slug, detail, channel_id=channel, required_top_up=top_up, **extra)
    parsed = parse_problem(encode_problem(details))
    assert parsed == details
    assert parsed.to_wire() == details.to_wire()
    for key, value in extra.items():
        assert parsed.to_wire()[key] == value


@FAST
@given(st.binary(max_size=64))
def test_b64url_round_trip(data):
    text = b64url_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url_decode(text) == data


# ---------------------------------------------------------------- specific encodings


def test_canonical_json_rfc8785_key_order():
    obj = {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7}
    text = canonical_json(obj).decode()
    order = [k for k in json.loads(text, object_pairs_hook=lambda p: [k for k, _ in p])]
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert canonical_json({"b": [1, True, None], "a": "x\"\n\u00e9"}) == b'{"a":"x\\"\\n\xc3\xa9","b":[1,true,null]}'


def test_request_wire_form_is_jcs_with_strings_for_amounts():
    decoded = json.loads(b64url_decode(encode_request(REQ)))
    assert decoded == {
        "amount": "25", "unitType": "llm_token", "suggestedDeposit": "10000000",
        "currency": "0x20c0000000000000000000000000000000000000",
        "recipient": "0x742d35cc6634c0532925a3b844bc9e7595f8fe00",
        "methodDetails": {"escrowContract": "0x9d136eea063ede5418a6bc7beaff009bbb6cfa70", "chainId": 4217},
    }
    assert b64url_decode(encode_request(REQ)) == canonical_json(decoded)


def test_challenge_id_is_the_seven_slot_hmac():
    req = encode_request(REQ)
    expected = base64.urlsafe_b64encode(
        hmac.new(b"k", f"r|tempo|session|{req}|2025-01-06T12:05:00Z||".encode(), hashlib.sha256).digest()
    ).rstrip(b"=").decode()
    assert challenge_id(b"k", "r", "tempo", "session", req, "2025-01-06T12:05:00Z") == expected
    # expires-without-digest and digest-without-expires bind differently
    assert challenge_id(b"k", "r", "m", "i", req, expires="x") != challenge_id(b"k", "r", "m", "i", req, digest="x")
    assert verify_challenge_id(b"secret", CHALLENGE)
    assert not verify_challenge_id(b"other", CHALLENGE)
    assert not verify_challenge_id(b"secret", CHALLENGE.model_copy(update={"realm": "evil"}))


def test_draft_example_credential_header():
    """The httpauth draft's example credential decodes (its payload is not a session payload)."""
    token = (
        "eyJjaGFsbGVuZ2UiOnsiaWQiOiJ4N1RnMnBMcVI5bUt2TndZM2hCY1phIiwicmVhbG0iOiJhcGkuZXhhbXBsZS5jb20iLCJtZXRob2Qi"
        "OiJleGFtcGxlIiwiaW50ZW50IjoiY2hhcmdlIiwicmVxdWVzdCI6ImV5SmhiVzkxYm5RaU9pSXhNREF3SWl3aVkzVnljbVZ1WTNraU9p"
        "SlZVMFFpTENKeVpXTnBjR2xsYm5RaU9pSmhZMk4wWHpFeU15SjkiLCJleHBpcmVzIjoiMjAyNS0wMS0xNVQxMjowNTowMFoifSwicGF5"
        "bG9hZCI6eyJwcm9vZiI6IjB4YWJjMTIzLi4uIn19"
    )
    with pytest.raises(MalformedCredential) as info:
        parse_authorization("Payment " + token)
    assert info.value.field == "payload.action"  # the example's payload has no session action


def test_draft_example_challenge_header_parses():
    header = (
        'Payment id="x7Tg2pLqR9mKvNwY3hBcZa",\r\n    realm="api.example.com",\n    method="example",'
        ' intent="charge", expires="2025-01-15T12:05:00Z",'
        ' request="eyJhbW91bnQiOiIxMDAwIiwiY3VycmVuY3kiOiJVU0QiLCJyZWNpcGllbnQiOiJhY2N0XzEyMyJ9"'
    )
    # obs-fold is not valid in a field value: unfolded, it parses
    unfolded = " ".join(line.strip() for line in header.splitlines())
    [challenge] = parse_www_authenticate(unfolded)
    assert challenge.id == "x7Tg2pLqR9mKvNwY3hBcZa" and challenge.method == "example"
    assert challenge.expires == "2025-01-15T12:05:00Z"


def test_token_values_case_insensitive_names_and_unknown_params():
    header = (
        'PAYMENT ID=abc, Realm="r", method=tempo, intent = session, request=e30, future="x", x=1,'
        ' Payment id="2", realm=r, method=tempo, intent=session, request=e30'
    )
    first, second = parse_www_authenticate(header)
    assert (first.id, first.realm, first.intent, first.request) == ("abc", "r", "session", "e30")
    assert second.id == "2"


def test_format_escapes_quotes_and_backslashes():
    challenge = CHALLENGE.model_copy(update={"description": 'say "hi" \\ bye, ok=1'})
    header = format_www_authenticate(challenge)
    assert 'description="say \\"hi\\" \\\\ bye, ok=1"' in header
    assert parse_www_authenticate(header) == [challenge]


def test_format_rejects_control_characters():
    with pytest.raises(MalformedHeader) as info:
        format_www_authenticate(CHALLENGE.model_copy(update={"description": "a\r\nSet-Cookie: x"}))
    assert info.value.field == "description"


def test_hex_normalized_to_lowercase_on_the_wire():
    obj = _credential_json(channelId="0x" + "AB" * 32, signature="0x" + "CD" * 65)
    credential = parse_authorization(_auth(obj))
    assert credential.payload.channel_id == "0x" + "ab" * 32
    assert credential.to_wire()["payload"]["signature"] == "0x" + "cd" * 65
    request = decode_request(_req_b64(_request_json(channelId="0x" + "Ef" * 32)))
    assert request.method_details.channel_id == "0x" + "ef" * 32
    assert request.method_details.escrow_contract == "0x9d136eea063ede5418a6bc7beaff009bbb6cfa70"


def test_unknown_fields_ignored_everywhere():
    obj = _credential_json(future={"x": 1}, extra=True)
    obj["futureTop"] = [1, 2]
    obj["challenge"]["newParam"] = "v"
    assert parse_authorization(_auth(obj)) == parse_authorization(_auth(_credential_json()))
    snap = {
        "acceptedCumulative": "1", "chainId": 4217, "channelId": CHANNEL, "deposit": "9", "escrow": "0x" + "9d" * 20,
        "requiredCumulative": "2", "settled": "0", "spent": "1", "brandNew": {"a": 1},
    }
    req = _request_json(newHint="x", sessionSnapshot=snap, chainId=4217)
    req["alsoNew"] = 1
    parsed = decode_request(_req_b64(req))
    assert parsed.method_details.session_snapshot.accepted_cumulative == 1
    receipt = parse_receipt(b64url_encode(json.dumps(_receipt_json(extraField="z")).encode()))
    assert receipt.units == 500


def test_seed_flat_hint_fields():
    req = _request_json(channelId=CHANNEL, acceptedCumulative="250000", spent="240000", deposit="1000000",
                        requiredCumulative="250000")
    md = decode_request(_req_b64(req)).method_details
    assert (md.channel_id, md.accepted_cumulative, md.spent, md.deposit, md.required_cumulative) == (
        CHANNEL, 250000, 240000, 1000000, 250000)


def test_amounts_canonical_on_output():
    req = decode_request(_req_b64({**_request_json(), "amount": "0025"}))
    assert req.amount == 25
    assert json.loads(b64url_decode(encode_request(req)))["amount"] == "25"


def test_snapshot_header_rejects_mixed_alphabets_and_bad_padding():
    for bad in ["e30==", "eyJ+_A==", "e30===", "e3=0", "e30*"]:
        with pytest.raises(MalformedHeader) as info:
            decode_snapshot_header(bad)
        assert info.value.field == "snapshot"
        assert info.value.where == "Payment-Session-Snapshot header"


def test_session_header():
    assert parse_session_header(" 0x" + "AB" * 32) == "0x" + "ab" * 32
    with pytest.raises(MalformedHeader):
        parse_session_header("0x1234")


def test_problem_table():
    assert PROBLEMS["invalid-signature"].uri == "https://paymentauth.org/problems/session/invalid-signature"
    assert PROBLEMS["channel-not-found"].status == 410
    assert PROBLEMS["method-unsupported"].status == 400
    assert PROBLEMS["payment-required"].uri == "https://paymentauth.org/problems/payment-required"
    assert len(PROBLEMS) == 15 and len(PROBLEMS_BY_URI) == 15
    body = json.loads(encode_problem(problem("amount-exceeds-deposit", "too much", channel_id=CHANNEL, deposit=5)))
    assert body == {
        "type": "https://paymentauth.org/problems/session/amount-exceeds-deposit", "title": "Amount Exceeds Deposit",
        "status": 402, "detail": "too much", "channelId": CHANNEL, "deposit": "5",
    }
    assert isinstance(parse_problem(b'{"title":"t","status":402}'), ProblemDetails)


# ---------------------------------------------------------------- malformed input, precisely located


def _expect(exc_type, field, fn, *args):
    with pytest.raises(exc_type) as info:
        fn(*args)
    err = info.value
    assert isinstance(err, WireError)
    assert err.field == field, str(err)
    assert str(err).startswith(f"{err.where}: {field}: ")
    return err


@pytest.mark.parametrize(
    "value,field",
    [
        (_credential_json(cumulativeAmount="1.5"), "payload.cumulativeAmount"),
        (_credential_json(cumulativeAmount="-1"), "payload.cumulativeAmount"),
        (_credential_json(cumulativeAmount="+1"), "payload.cumulativeAmount"),
        (_credential_json(cumulativeAmount=""), "payload.cumulativeAmount"),
        (_credential_json(cumulativeAmount=" 1"), "payload.cumulativeAmount"),
        (_credential_json(cumulativeAmount="1\n"), "payload.cumulativeAmount"),
        (_credential_json(cumulativeAmount="\u0661"), "payload.cumulativeAmount"),  # Arabic-Indic digit one
        (_credential_json(cumulativeAmount=str(2**128)), "payload.cumulativeAmount"),
        (_credential_json(cumulativeAmount="0" * 50 + "1"), None),  # leading zeros are digits; fine
        (_credential_json(cumulativeAmount=250000), "payload.cumulativeAmount"),
        (_credential_json(cumulativeAmount=True), "payload.cumulativeAmount"),
        (_credential_json(cumulativeAmount=None), "payload.cumulativeAmount"),
        (_credential_json(action="refund"), "payload.action"),
        (_credential_json(action=None), "payload.action"),
        (_credential_json(action=1), "payload.action"),
        (_credential_json(channelId="0x1234"), "payload.channelId"),
        (_credential_json(channelId="6d" * 32), "payload.channelId"),
        (_credential_json(channelId="0x" + "zz" * 32), "payload.channelId"),
        (_credential_json(signature="0x" + "ab" * 63), "payload.signature"),
        (_credential_json(signature="0x" + "a" * 129), "payload.signature"),
        (_credential_json(descriptor={"payer": "0x" + "11" * 20}), "payload.descriptor.payee"),
        (_credential_json(action="open", transaction="0x76"), "payload.type"),
        (_credential_json(action="open", type="transaction"), "payload.transaction"),
        (_credential_json(action="open", type="tx", transaction="0x76"), "payload.type"),
        (_credential_json(action="topUp", type="transaction", transaction="0x7"), "payload.transaction"),
        ({**_credential_json(), "payload": "voucher"}, "payload"),
        ({"payload": _credential_json()["payload"]}, "challenge"),
        ({"challenge": {**CHALLENGE.to_wire(), "id": ""}, "payload": _credential_json()["payload"]}, "challenge.id"),
        ({"challenge": {**CHALLENGE.to_wire(), "method": "Tempo"}, "payload": _credential_json()["payload"]},
         "challenge.method"),
        ({"challenge": {**CHALLENGE.to_wire(), "request": "e30="}, "payload": _credential_json()["payload"]},
         "challenge.request"),
        ({"challenge": {k: v for k, v in CHALLENGE.to_wire().items() if k != "realm"},
          "payload": _credential_json()["payload"]}, "challenge.realm"),
        ({**_credential_json(), "source": 5}, "source"),
    ],
)
def test_malformed_credentials(value, field):
    if field is None:
        assert parse_authorization(_auth(value)).payload.cumulative_amount == 1
        return
    err = _expect(MalformedCredential, field, parse_authorization, _auth(value))
    assert err.where == "Authorization header"


@pytest.mark.parametrize(
    "header,field",
    [
        ("Bearer abc", "scheme"),
        ("Payment", "credential"),
        ("Payment ", "credential"),
        ("Payment abc def", "credential"),
        ("Payment " + b64url_encode(b'{"a":1}') + "==", "credential"),
        ("Payment " + base64.b64encode(b'{"challenge":{}}??').decode(), "credential"),  # '+' or '/' or '='
        ("Payment e30.", "credential"),
        ("Payment " + b64url_encode(b"not json"), "credential"),
        ("Payment " + b64url_encode(b"[1,2]"), "credential"),
        ("Payment " + b64url_encode(b'"str"'), "credential"),
        ("Payment " + b64url_encode(b'{"a":1,"a":2}'), "credential"),
        ("Payment " + b64url_encode(b"\xff\xfe"), "credential"),
        ("Payment " + b64url_encode(b'{"x": NaN}'), "credential"),
        ("Payment a", "credential"),  # impossible length
        ("Payment e31", "credential"),  # non-canonical trailing bits
    ],
)
def test_malformed_authorization_headers(header, field):
    _expect(MalformedCredential, field, parse_authorization, header)


@pytest.mark.parametrize(
    "request_json,field",
    [
        ({**_request_json(), "amount": "1.0"}, "request.amount"),
        ({**_request_json(), "amount": 25}, "request.amount"),
        ({**_request_json(), "amount": str(2**128)}, "request.amount"),
        ({k: v for k, v in _request_json().items() if k != "currency"}, "request.currency"),
        ({**_request_json(), "currency": "0x" + "20" * 19}, "request.currency"),
        ({**_request_json(), "recipient": "usd"}, "request.recipient"),
        ({k: v for k, v in _request_json().items() if k != "methodDetails"}, "request.methodDetails"),
        (_request_json(escrowContract=None), "request.methodDetails.escrowContract"),
        (_request_json(channelId="0x1234"), "request.methodDetails.channelId"),
        (_request_json(chainId="4217"), "request.methodDetails.chainId"),
        (_request_json(chainId=4217.5), "request.methodDetails.chainId"),
        (_request_json(chainId=True), "request.methodDetails.chainId"),
        (_request_json(sessionProtocol="v3"), "request.methodDetails.sessionProtocol"),
        (_request_json(feePayer="true"), "request.methodDetails.feePayer"),
        (_request_json(minVoucherDelta="-5"), "request.methodDetails.minVoucherDelta"),
        (_request_json(acceptedCumulative="1e3"), "request.methodDetails.acceptedCumulative"),
        (_request_json(requiredCumulative=str(2**128)), "request.methodDetails.requiredCumulative"),
        (_request_json(deposit=100), "request.methodDetails.deposit"),
        (_request_json(spent="+0"), "request.methodDetails.spent"),
        (_request_json(sessionSnapshot={"acceptedCumulative": "1"}), "request.methodDetails.sessionSnapshot.chainId"),
        (_request_json(sessionSnapshot={
            "acceptedCumulative": "1", "chainId": 1, "channelId": CHANNEL, "deposit": "1", "escrow": "0x" + "11" * 20,
            "requiredCumulative": "1", "settled": "0", "spent": "1",
            "highestVoucher": {"channelId": CHANNEL, "cumulativeAmount": "x", "signature": SIG}}),
         "request.methodDetails.sessionSnapshot.highestVoucher.cumulativeAmount"),
    ],
)
def test_malformed_requests(request_json, field):
    err = _expect(MalformedRequest, field, decode_request, _req_b64(request_json))
    assert err.where == "challenge request"


@pytest.mark.parametrize(
    "value",
    ["", "e30=", "e3 0", "e30+", "!!!!", "a", b64url_encode(b"[]"), b64url_encode(b"{"), b64url_encode(b"null")],
)
def test_malformed_request_encodings(value):
    _expect(MalformedRequest, "request", decode_request, value)


@pytest.mark.parametrize(
    "header,field",
    [
        ('Payment realm="r", method="tempo", intent="session", request="e30"', "id"),
        ('Payment id="", realm="r", method="tempo", intent="session", request="e30"', "id"),
        ('Payment id="a", method="tempo", intent="session", request="e30"', "realm"),
        ('Payment id="a", realm="r", intent="session", request="e30"', "method"),
        ('Payment id="a", realm="r", method="tempo", request="e30"', "intent"),
        ('Payment id="a", realm="r", method="tempo", intent="session"', "request"),
        ('Payment id="a", realm="r", method="Tempo", intent="session", request="e30"', "method"),
        ('Payment id="a", realm="r", method="tempo", intent="ses sion", request="e30"', "intent"),
        ('Payment id="a", realm="r", method="tempo", intent="session", request="e30="', "request"),
        ('Payment id="a", realm="r", method="tempo", intent="session", request="e30", expires="tomorrow"', "expires"),
        ('Payment id="a", id="b", realm="r", method="tempo", intent="session", request="e30"', "id"),
        ('Payment id="a, realm="r"', "id"),  # id's quoted value swallows ', realm='
        ('Payment id="unterminated', "id"),
        ('Payment id="a" realm="r"', "id"),
        ("Payment", "id"),
        ("Payment abc==", "id"),
        ('Payment id=, realm="r"', "id"),
        ('Bearer realm="x", Payment', "id"),
        ('Payment id="a\x01b", realm="r", method="tempo", intent="session", request="e30"', "id"),
        ("=", "auth-scheme"),
    ],
)
def test_malformed_challenge_headers(header, field):
    err = _expect(MalformedHeader, field, parse_www_authenticate, header)
    assert err.where == "WWW-Authenticate header"


def test_headers_without_payment_challenges():
    assert parse_www_authenticate('Bearer realm="x", Basic realm="y"') == []
    assert parse_www_authenticate("") == []
    assert parse_www_authenticate(" , ,") == []


@pytest.mark.parametrize(
    "receipt,field",
    [
        (_receipt_json(status="failed"), "status"),
        (_receipt_json(method="stripe"), "method"),
        (_receipt_json(intent=None), "intent"),
        (_receipt_json(timestamp="yesterday"), "timestamp"),
        (_receipt_json(acceptedCumulative=1), "acceptedCumulative"),
        (_receipt_json(spent="1.5"), "spent"),
        (_receipt_json(units="500"), "units"),
        (_receipt_json(units=-1), "units"),
        (_receipt_json(channelId="0x" + "6d" * 31), "channelId"),
        (_receipt_json(txHash="0xabc"), "txHash"),
        (_receipt_json(challengeId=None), "challengeId"),
    ],
)
def test_malformed_receipts(receipt, field):
    err = _expect(MalformedReceipt, field, parse_receipt, b64url_encode(json.dumps(receipt).encode()))
    assert err.where == "Payment-Receipt header"


def test_malformed_receipt_encodings():
    _expect(MalformedReceipt, "receipt", parse_receipt, "e30=")
    _expect(MalformedReceipt, "receipt", parse_receipt, b64url_encode(b"[]"))


def test_b64url_decode_is_strict():
    for bad in ["ab==", "ab+c", "ab/c", "a", "ab c", "é", "e31"]:
        with pytest.raises(WireError):
            b64url_decode(bad)
    assert b64url_decode("") == b""


def test_python_construction_accepts_ints_but_wire_does_not():
    assert VoucherPayload(channel_id=CHANNEL, cumulative_amount=7, signature=SIG).cumulative_amount == 7
    with pytest.raises(ValueError):
        VoucherPayload(channel_id=CHANNEL, cumulative_amount=-7, signature=SIG)
    with pytest.raises(ValueError):
        VoucherPayload(channel_id=CHANNEL, cumulative_amount=2**128, signature=SIG)
    with pytest.raises(ValueError):
        VoucherPayload.model_validate(
            {"action": "voucher", "channelId": CHANNEL, "cumulativeAmount": 7, "signature": SIG}, context={"wire": True}
        )


@given(st.text(alphabet=st.sampled_from(['a', ' ', '\t', '"', '\\', '\x01', '\x7f', '\u00e9', '\U0001f600', ',', '=']),
               max_size=24))
def test_quoted_string_fast_path_agrees_with_the_character_walk(body):
    """The regular expression of `_Scanner.quoted` accepts exactly what the character walk accepts, with the
    same value and end offset (the walk only runs to name an error)."""
    from wire import MalformedHeader
    from wire.headers import _Scanner

    text = '"' + body

    def run(walk: bool):
        s = _Scanner(text)
        try:
            value = s._quoted_error("x") if walk else s.quoted("x")
        except MalformedHeader as exc:
            return ("error", str(exc))
        return (value, s.i)

    assert run(False) == run(True)
