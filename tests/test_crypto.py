"""EIP-712 voucher crypto: mppx 0.11 vectors, canonical signatures, bounds."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wire.crypto import (
    SECP256K1_HALF_N,
    SECP256K1_N,
    SignatureError,
    VoucherDomain,
    VoucherError,
    address_of,
    recover_voucher_signer,
    sign_voucher,
    to_compact,
    to_high_s,
    verify_voucher,
    voucher_digest,
)

KEY = bytes.fromhex("0123456789012345678901234567890123456789012345678901234567890123")
ADDRESS = "0x14791697260e4c9a71f18484c9f997b308e59325"
ESCROW = "0x9d136eEa063eDE5418A6BC7bEafF009bBb6CFa70"
PRECOMPILE = "0x4d50500000000000000000000000000000000000"
CHANNEL = "0x" + "11" * 32
AMOUNT = 250000

# (version, verifyingContract, digest, signature) computed by mppx@0.11.0 (reference notes)
VECTORS = [
    (
        "v1",
        ESCROW,
        "0x67dbb8b6640bb5279943f9fb2f3bed652c929493b97a57f7c8c6aa54a2f0ae67",
        "0x6b65a3892165630c668b505671f726fa3240347ebeee085c6ef4d616ffe58a1c"
        "4f1a1bd49005b95b25a3e7d8d3581f86ac3c274abeefe214b933004f10dfd2e71c",
    ),
    (
        "v2",
        ESCROW,
        "0x96df1c2be38716a1498f3a691bbd4049bc7520ad75fd7e38744b22d54af49ec4",
        "0x04b8824694846349b02eab98213e5fb86910195f1f9dcf9f8eb1dd66b9c584d3"
        "6f98ca69e126f1195320efd02fac3a213d86e082dee83aa70a53e1d61cbf5e4e1c",
    ),
    (
        "v2",
        PRECOMPILE,
        "0x0193b8672e0f544be6f54b83a14309a668c03f8d19d9b32e1a1dc49932f44122",
        "0xc3dc8b626b69f76eaab05513a296b6cbc1642c04fef052b14a704cada58f1d21"
        "3cf9505f9af29c1d9240ace5f5ada6c9c19964bdba0d9d5e34697ad4530a669b1b",
    ),
]


def test_address_of_vector_key():
    assert address_of(KEY) == ADDRESS


@pytest.mark.parametrize("version,contract,digest,signature", VECTORS)
def test_mppx_vectors_byte_for_byte(version, contract, digest, signature):
    domain = VoucherDomain(version, 4217, contract)
    assert "0x" + voucher_digest(domain, CHANNEL, AMOUNT).hex() == digest
    assert sign_voucher(KEY, domain, CHANNEL, AMOUNT) == signature
    assert recover_voucher_signer(domain, CHANNEL, AMOUNT, signature) == ADDRESS
    assert recover_voucher_signer(domain, CHANNEL, AMOUNT, signature.upper().replace("0X", "0x")) == ADDRESS
    assert verify_voucher(domain, CHANNEL, AMOUNT, signature, ADDRESS.upper().replace("0X", "0x"))


def test_domain_normalizes_contract_case():
    assert VoucherDomain("v1", 4217, ESCROW).verifying_contract == ESCROW.lower()


def test_v1_and_v2_reject_each_others_signature():
    v1 = VoucherDomain("v1", 4217, ESCROW)
    v2 = VoucherDomain("v2", 4217, ESCROW)
    sig_v1 = sign_voucher(KEY, v1, CHANNEL, AMOUNT)
    sig_v2 = sign_voucher(KEY, v2, CHANNEL, AMOUNT)
    assert recover_voucher_signer(v2, CHANNEL, AMOUNT, sig_v1) != ADDRESS
    assert recover_voucher_signer(v1, CHANNEL, AMOUNT, sig_v2) != ADDRESS
    assert not verify_voucher(v2, CHANNEL, AMOUNT, sig_v1, ADDRESS)
    assert not verify_voucher(v1, CHANNEL, AMOUNT, sig_v2, ADDRESS)


def test_other_contract_chain_amount_or_channel_do_not_verify():
    domain = VoucherDomain("v2", 4217, ESCROW)
    sig = sign_voucher(KEY, domain, CHANNEL, AMOUNT)
    assert not verify_voucher(VoucherDomain("v2", 4217, PRECOMPILE), CHANNEL, AMOUNT, sig, ADDRESS)
    assert not verify_voucher(VoucherDomain("v2", 42431, ESCROW), CHANNEL, AMOUNT, sig, ADDRESS)
    assert not verify_voucher(domain, CHANNEL, AMOUNT + 1, sig, ADDRESS)
    assert not verify_voucher(domain, "0x" + "12" * 32, AMOUNT, sig, ADDRESS)


@pytest.mark.parametrize("version,contract,digest,signature", VECTORS)
def test_high_s_twin_rejected(version, contract, digest, signature):
    domain = VoucherDomain(version, 4217, contract)
    twin = to_high_s(signature)
    assert twin != signature and len(twin) == 132
    assert int(twin[66:130], 16) > SECP256K1_HALF_N
    with pytest.raises(SignatureError, match="high-s") as info:
        recover_voucher_signer(domain, CHANNEL, AMOUNT, twin)
    assert info.value.field == "signature"
    with pytest.raises(SignatureError, match="high-s"):
        verify_voucher(domain, CHANNEL, AMOUNT, twin, ADDRESS)


def test_high_s_twin_is_a_valid_plain_ecdsa_signature():
    """The forged twin really is the malleated signature: flipping it back restores the original."""
    domain = VoucherDomain("v1", 4217, ESCROW)
    sig = sign_voucher(KEY, domain, CHANNEL, AMOUNT)
    assert to_high_s(to_high_s(sig)) == sig


@pytest.mark.parametrize("version,contract,digest,signature", VECTORS)
def test_compact_eip2098_accepted(version, contract, digest, signature):
    domain = VoucherDomain(version, 4217, contract)
    compact = to_compact(signature)
    assert len(compact) == 2 + 128
    assert recover_voucher_signer(domain, CHANNEL, AMOUNT, compact) == ADDRESS
    assert recover_voucher_signer(domain, CHANNEL, AMOUNT, bytes.fromhex(compact[2:])) == ADDRESS


def test_v_zero_one_rejected_like_the_escrow():
    """Draft "Signing Procedure" step 5: v is 27 or 28; our escrow refuses 0/1, so must we."""
    domain = VoucherDomain("v1", 4217, ESCROW)
    sig = sign_voucher(KEY, domain, CHANNEL, AMOUNT)
    raw = bytearray(bytes.fromhex(sig[2:]))
    raw[64] -= 27
    with pytest.raises(SignatureError, match="bad v"):
        recover_voucher_signer(domain, CHANNEL, AMOUNT, bytes(raw))


def _sig(r: int, s: int, v: int) -> str:
    return "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])).hex()


@pytest.mark.parametrize(
    "signature,needle",
    [
        ("0x1234", "wrong length"),
        ("0x" + "11" * 66, "wrong length"),
        ("0x" + "zz" * 65, "not valid hex"),
        ("11" * 65, "0x-prefixed"),
        ("0x" + "1" * 129, "not valid hex"),
        (_sig(1, 1, 29), "bad v"),
        (_sig(1, 1, 2), "bad v"),
        (_sig(0, 1, 27), "r is zero"),
        (_sig(SECP256K1_N, 1, 27), "r is zero or not below"),
        (_sig(1, 0, 27), "s is zero"),
        (_sig(1, SECP256K1_N, 27), "s is zero or not below"),
        (_sig(1, SECP256K1_HALF_N + 1, 27), "high-s"),
    ],
)
def test_malformed_signatures_raise(signature, needle):
    domain = VoucherDomain("v2", 4217, ESCROW)
    with pytest.raises(SignatureError, match=needle) as info:
        recover_voucher_signer(domain, CHANNEL, AMOUNT, signature)
    assert info.value.field == "signature"
    assert str(info.value).startswith("signature: ")


def test_unrecoverable_signature_raises():
    # r is not the x coordinate of any curve point for one of the parities, or the key is at infinity;
    # scan a few small r values for one that libsecp256k1 refuses.
    domain = VoucherDomain("v2", 4217, ESCROW)
    for r in range(1, 64):
        try:
            recover_voucher_signer(domain, CHANNEL, AMOUNT, _sig(r, 1, 27))
        except SignatureError as exc:
            assert "unrecoverable" in exc.reason
            return
    pytest.fail("no unrecoverable r found among small values")


def test_amount_bounds():
    v1 = VoucherDomain("v1", 4217, ESCROW)
    v2 = VoucherDomain("v2", 4217, ESCROW)
    voucher_digest(v1, CHANNEL, 2**128 - 1)
    voucher_digest(v2, CHANNEL, 2**96 - 1)
    voucher_digest(v1, CHANNEL, 0)
    for domain, amount in [(v1, 2**128), (v2, 2**96), (v1, -1), (v2, -1), (v2, 2**128 - 1)]:
        with pytest.raises(VoucherError, match="cumulativeAmount") as info:
            voucher_digest(domain, CHANNEL, amount)
        assert info.value.field == "cumulativeAmount"
        with pytest.raises(VoucherError):
            sign_voucher(KEY, domain, CHANNEL, amount)
    assert "uint96" in str(pytest.raises(VoucherError, voucher_digest, v2, CHANNEL, 2**96).value)
    assert "uint128" in str(pytest.raises(VoucherError, voucher_digest, v1, CHANNEL, 2**128).value)


def test_bad_channel_id_and_domain():
    domain = VoucherDomain("v1", 4217, ESCROW)
    with pytest.raises(VoucherError) as info:
        voucher_digest(domain, "0x1234", 1)
    assert info.value.field == "channelId"
    with pytest.raises(VoucherError) as info:
        VoucherDomain("v1", 4217, "0x1234")
    assert info.value.field == "verifyingContract"


@settings(max_examples=40, deadline=None)
@given(
    key=st.integers(min_value=1, max_value=SECP256K1_N - 1),
    version=st.sampled_from(["v1", "v2"]),
    data=st.data(),
    channel=st.binary(min_size=32, max_size=32),
    chain_id=st.integers(min_value=1, max_value=2**64),
)
def test_sign_recover_round_trip(key, version, data, channel, chain_id):
    limit = 2**128 - 1 if version == "v1" else 2**96 - 1
    amount = data.draw(st.integers(min_value=0, max_value=limit))
    domain = VoucherDomain(version, chain_id, PRECOMPILE)
    private_key = key.to_bytes(32, "big")
    channel_id = "0x" + channel.hex()
    sig = sign_voucher(private_key, domain, channel_id, amount)
    assert len(sig) == 132 and sig == sig.lower() and sig[-2:] in ("1b", "1c")
    assert int(sig[66:130], 16) <= SECP256K1_HALF_N
    assert recover_voucher_signer(domain, channel_id, amount, sig) == address_of(private_key)
    assert recover_voucher_signer(domain, channel, amount, to_compact(sig)) == address_of(private_key)
