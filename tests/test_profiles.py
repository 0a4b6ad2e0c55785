"""The two hint encodings ("flat": the seed's fields; "snapshot": the draft's sessionSnapshot) map to one Hints record."""
from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wire.crypto import VoucherDomain, address_of, sign_voucher, to_high_s
from wire.profiles import hints_from_request, method_details_with_hints, recoverer
from model.records import Hints, Voucher
from wire import (
    Descriptor,
    HighestVoucher,
    MalformedRequest,
    MethodDetails,
    SessionRequest,
    SessionSnapshot,
    WireError,
    decode_request,
    encode_request,
)

FAST = settings(max_examples=40, deadline=None)

KEY = bytes.fromhex("0123456789012345678901234567890123456789012345678901234567890123")
PAYER = address_of(KEY)
ESCROW = "0x9d136eea063ede5418a6bc7beaff009bbb6cfa70"
CHAIN = 4217
CHANNEL = "0x" + "11" * 32
OTHER = "0x" + "22" * 32
BASE = MethodDetails(escrow_contract=ESCROW, chain_id=CHAIN)
SIGNER = "0x" + "5a" * 20


def fixed_signer(channel_id: str, amount: int, signature: str) -> str | None:
    return SIGNER


def no_recover(channel_id: str, amount: int, signature: str) -> str | None:
    raise AssertionError("recover must not be called without a highestVoucher")


def _request(details: MethodDetails) -> SessionRequest:
    return SessionRequest(amount=10_000, currency="0x" + "20" * 20, recipient="0x" + "74" * 20, method_details=details)


def _through_wire(details: MethodDetails, recover=fixed_signer) -> Hints | None:
    """Server encodes, the challenge travels as base64url JSON, client decodes."""
    return hints_from_request(decode_request(encode_request(_request(details))), recover)


amounts = st.integers(min_value=0, max_value=2**96 - 1)
channels = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())
opt = lambda s: st.one_of(st.none(), s)  # noqa: E731

flat_hints = st.builds(
    Hints, channel_id=channels, accepted=opt(amounts), spent=opt(amounts), deposit=opt(amounts),
    required=opt(amounts),
)
snapshot_hints = st.builds(
    lambda cid, a, s, d, r, settled, close, with_proof: Hints(
        channel_id=cid, accepted=a, spent=s, deposit=d, required=r, settled=settled,
        close_requested_at=close, proof=Voucher(cid, a, SIGNER) if with_proof else None,
    ),
    channels, amounts, amounts, amounts, amounts, amounts, opt(st.integers(0, 2**64 - 1)), st.booleans(),
)


@FAST
@given(flat_hints)
def test_flat_round_trip(hints):
    details = method_details_with_hints(BASE, hints, "flat", chain_id=CHAIN, escrow=ESCROW, highest_voucher_signature=None)
    assert details.session_snapshot is None
    assert _through_wire(details, no_recover) == hints


@FAST
@given(snapshot_hints)
def test_snapshot_round_trip(hints):
    signature = "0x" + "ab" * 65 if hints.proof is not None else None
    details = method_details_with_hints(
        BASE, hints, "snapshot", chain_id=CHAIN, escrow=ESCROW, highest_voucher_signature=signature
    )
    assert details.session_snapshot is not None
    assert details.channel_id == hints.channel_id
    assert (details.accepted_cumulative, details.spent, details.deposit, details.required_cumulative) == (None,) * 4
    assert _through_wire(details) == hints


@FAST
@given(channels, amounts, amounts, amounts, amounts)
def test_both_encodings_give_the_same_hints(channel, accepted, spent, deposit, required):
    """The same server state, in either encoding, reaches the client as the same Hints (the flat subset)."""
    state = Hints(channel, accepted, spent, deposit, required, settled=0)
    via_flat = _through_wire(
        method_details_with_hints(BASE, state, "flat", chain_id=CHAIN, escrow=ESCROW, highest_voucher_signature=None)
    )
    via_snapshot = _through_wire(
        method_details_with_hints(BASE, state, "snapshot", chain_id=CHAIN, escrow=ESCROW, highest_voucher_signature=None)
    )
    assert via_snapshot == state
    assert via_flat == attrs.evolve(state, settled=None)
    assert attrs.evolve(via_snapshot, settled=None) == via_flat


@pytest.mark.parametrize("encoding", ["flat", "snapshot"])
def test_bare_channel_id_gives_only_channel_id(encoding):
    details = method_details_with_hints(
        BASE, Hints(channel_id=CHANNEL), encoding, chain_id=CHAIN, escrow=ESCROW, highest_voucher_signature="0x" + "ab" * 65
    )
    assert details == MethodDetails(escrow_contract=ESCROW, chain_id=CHAIN, channel_id=CHANNEL)
    hints = _through_wire(details, no_recover)
    assert hints == Hints(channel_id=CHANNEL)
    assert not hints.has_values


@pytest.mark.parametrize("encoding", ["flat", "snapshot"])
def test_no_hints_and_no_channel(encoding):
    stale = MethodDetails(escrow_contract=ESCROW, channel_id=OTHER, accepted_cumulative=5, spent=1)
    details = method_details_with_hints(stale, None, encoding, chain_id=CHAIN, escrow=ESCROW, highest_voucher_signature=None)
    assert details == MethodDetails(escrow_contract=ESCROW)
    assert _through_wire(details, no_recover) is None


def test_flat_values_without_channel_id_are_no_hints():
    details = MethodDetails(escrow_contract=ESCROW, accepted_cumulative=5, required_cumulative=6)
    assert _through_wire(details, no_recover) is None


def test_snapshot_proof_recovered_with_real_signature():
    domain = VoucherDomain("v2", CHAIN, ESCROW)
    signature = sign_voucher(KEY, domain, CHANNEL, 250_000)
    state = Hints(CHANNEL, 250_000, 240_000, 1_000_000, 250_000, settled=0, proof=Voucher(CHANNEL, 250_000, PAYER))
    details = method_details_with_hints(BASE, state, "snapshot", chain_id=CHAIN, escrow=ESCROW, highest_voucher_signature=signature)
    assert details.session_snapshot.highest_voucher.signature == signature
    assert _through_wire(details, recoverer(domain)) == state
    # under the v1 domain the same signature recovers someone else
    wrong = _through_wire(details, recoverer(VoucherDomain("v1", CHAIN, ESCROW)))
    assert wrong.proof.signer not in (None, PAYER)


def test_snapshot_proof_with_bad_signature_has_no_signer():
    domain = VoucherDomain("v2", CHAIN, ESCROW)
    forged = to_high_s(sign_voucher(KEY, domain, CHANNEL, 250_000))
    state = Hints(CHANNEL, 250_000, 240_000, 1_000_000, 250_000, settled=0, proof=Voucher(CHANNEL, 250_000, PAYER))
    details = method_details_with_hints(BASE, state, "snapshot", chain_id=CHAIN, escrow=ESCROW, highest_voucher_signature=forged)
    hints = _through_wire(details, recoverer(domain))
    assert hints.proof == Voucher(CHANNEL, 250_000, None)
    assert hints.accepted == 250_000  # the values still arrive; trusting them is the model's decision


def test_snapshot_without_signature_has_no_proof():
    state = Hints(CHANNEL, 1, 1, 9, 2, settled=0, proof=Voucher(CHANNEL, 1, SIGNER))
    details = method_details_with_hints(BASE, state, "snapshot", chain_id=CHAIN, escrow=ESCROW, highest_voucher_signature=None)
    assert details.session_snapshot.highest_voucher is None
    assert _through_wire(details, no_recover) == attrs.evolve(state, proof=None)


def test_snapshot_carries_descriptor_and_close_request():
    descriptor = Descriptor(
        payer=PAYER, payee="0x" + "74" * 20, operator="0x" + "00" * 20, token="0x" + "20" * 20,
        salt="0x" + "aa" * 32, authorized_signer="0x" + "00" * 20, expiring_nonce_hash="0x" + "bb" * 32,
    )
    state = Hints(CHANNEL, 5, 4, 10, 6, settled=3, close_requested_at=1736165100)
    details = method_details_with_hints(
        BASE, state, "snapshot", chain_id=CHAIN, escrow=ESCROW, highest_voucher_signature=None, descriptor=descriptor
    )
    snap = details.session_snapshot
    assert snap.descriptor == descriptor and snap.escrow == ESCROW and snap.chain_id == CHAIN
    assert _through_wire(details) == state


def test_flat_drops_what_it_cannot_carry():
    state = Hints(CHANNEL, 5, 4, 10, 6, settled=3, close_requested_at=7, proof=Voucher(CHANNEL, 5, SIGNER))
    details = method_details_with_hints(
        BASE, state, "flat", chain_id=CHAIN, escrow=ESCROW, highest_voucher_signature="0x" + "ab" * 65
    )
    assert _through_wire(details, no_recover) == Hints(CHANNEL, 5, 4, 10, 6)


def test_snapshot_requires_its_values():
    with pytest.raises(MalformedRequest) as info:
        method_details_with_hints(
            BASE, Hints(CHANNEL, accepted=5, spent=4, deposit=10, required=6), "snapshot",
            chain_id=CHAIN, escrow=ESCROW, highest_voucher_signature=None,
        )
    assert info.value.field == "request.methodDetails.sessionSnapshot.settled"


def _snapshot(**overrides) -> SessionSnapshot:
    fields = dict(
        accepted_cumulative=5, chain_id=CHAIN, channel_id=CHANNEL, deposit=10, escrow=ESCROW,
        required_cumulative=6, settled=0, spent=4,
    )
    fields.update(overrides)
    return SessionSnapshot(**fields)


@pytest.mark.parametrize(
    "details,field",
    [
        (
            MethodDetails(escrow_contract=ESCROW, channel_id=OTHER, session_snapshot=_snapshot()),
            "request.methodDetails.sessionSnapshot.channelId",
        ),
        (
            MethodDetails(escrow_contract=ESCROW, session_snapshot=_snapshot(escrow="0x" + "4d" * 20)),
            "request.methodDetails.sessionSnapshot.escrow",
        ),
        (
            MethodDetails(escrow_contract=ESCROW, chain_id=42431, session_snapshot=_snapshot()),
            "request.methodDetails.sessionSnapshot.chainId",
        ),
    ],
)
def test_snapshot_for_another_channel_is_rejected(details, field):
    with pytest.raises(WireError) as info:
        _through_wire(details)
    assert info.value.field == field
    assert info.value.where == "challenge request"


def test_snapshot_wins_over_flat_fields_and_matching_channel_is_fine():
    details = MethodDetails(
        escrow_contract=ESCROW, channel_id=CHANNEL.upper().replace("0X", "0x"), accepted_cumulative=999,
        session_snapshot=_snapshot(),
    )
    assert _through_wire(details) == Hints(CHANNEL, 5, 4, 10, 6, settled=0)


def test_proof_keeps_its_own_channel_id():
    """A highestVoucher for another channel is passed through; the model must compare channel ids."""
    snap = _snapshot(highest_voucher=HighestVoucher(channel_id=OTHER, cumulative_amount=5, signature="0x" + "ab" * 65))
    hints = _through_wire(MethodDetails(escrow_contract=ESCROW, session_snapshot=snap))
    assert hints.channel_id == CHANNEL and hints.proof == Voucher(OTHER, 5, SIGNER)
