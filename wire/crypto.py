"""EIP-712 voucher digests, signing and signer recovery (draft-tempo-session-00).

Pure functions, no I/O. The digest is assembled directly from keccak256 and
32-byte ABI words (draft, "Voucher Signing Format" / "Signing Procedure");
the domain separator is cached per domain. Recovery goes straight to
libsecp256k1 through coincurve after the canonical-signature checks of the
draft's "Signature Malleability" section.
"""
from __future__ import annotations

import functools
import re
from typing import Literal

import attrs
import coincurve
from eth_keys import KeyAPI
from eth_keys.backends import CoinCurveECCBackend

from model.base import keccak  # a pure hash: the escrow model (rule E1b) needs it too


__all__ = [
    "SECP256K1_N",
    "SECP256K1_HALF_N",
    "UINT96_MAX",
    "UINT128_MAX",
    "CryptoError",
    "VoucherError",
    "SignatureError",
    "VoucherDomain",
    "keccak",
    "domain_separator",
    "voucher_digest",
    "sign_voucher",
    "parse_signature",
    "recover_voucher_signer",
    "verify_voucher",
    "address_of",
    "to_high_s",
    "to_compact",
]

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
"""The draft's half order (section "Signature Malleability"): s MUST be <= this."""

from model.base import UINT96_MAX, UINT128_MAX  # noqa: E402 (re-exported: defined once, in model/base.py)

_EIP712_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_DOMAIN_NAMES = {"v1": "Tempo Stream Channel", "v2": "TIP20 Channel Reserve"}
_VOUCHER_TYPES = {
    "v1": "Voucher(bytes32 channelId,uint128 cumulativeAmount)",
    "v2": "Voucher(bytes32 channelId,uint96 cumulativeAmount)",
}
_VOUCHER_TYPEHASH = {v: keccak(t.encode()) for v, t in _VOUCHER_TYPES.items()}
_AMOUNT_MAX = {"v1": UINT128_MAX, "v2": UINT96_MAX}
_AMOUNT_TYPE = {"v1": "uint128", "v2": "uint96"}

_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_BYTES32_RE = re.compile(r"0x[0-9a-fA-F]{64}")
_HEX_RE = re.compile(r"(?:0[xX])?([0-9a-fA-F]*)")
_HEX_BODY_RE = re.compile(r"[0-9a-fA-F]*")

_KEYS = KeyAPI(backend=CoinCurveECCBackend)


class CryptoError(ValueError):
    """Base of the voucher crypto errors; `field` names the offending voucher field."""

    def __init__(self, field: str, what: str) -> None:
        super().__init__(f"{field}: {what}")
        self.field = field
        self.what = what


class VoucherError(CryptoError):
    """A voucher field cannot be EIP-712 encoded (draft, "Type Definitions")."""


class SignatureError(CryptoError):
    """A signature is malformed or non-canonical (draft, "Signature Malleability")."""

    def __init__(self, reason: str) -> None:
        super().__init__("signature", reason)
        self.reason = reason


def _check_address(value: str, field: str) -> str:
    if not isinstance(value, str) or not _ADDRESS_RE.fullmatch(value):
        raise VoucherError(field, f"expected a 20-byte 0x-hex address, got {value!r}")
    return value.lower()


def _verifying_contract(value: str) -> str:
    return _check_address(value, "verifyingContract")


def _chain_id(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**256:
        raise VoucherError("chainId", f"expected a uint256 integer, got {value!r}")
    return value


@attrs.frozen
class VoucherDomain:
    """The EIP-712 domain of a voucher (draft, "Domain Separator").

    `version` selects the session protocol: "v1" (name "Tempo Stream Channel",
    uint128 amounts) or "v2" (name "TIP20 Channel Reserve", uint96 amounts);
    the EIP-712 domain `version` field is "1" for both.
    """

    version: Literal["v1", "v2"] = attrs.field(validator=attrs.validators.in_(("v1", "v2")))
    chain_id: int = attrs.field(converter=_chain_id)
    verifying_contract: str = attrs.field(converter=_verifying_contract)

    @property
    def name(self) -> str:
        """The EIP-712 domain name for this session protocol."""
        return _DOMAIN_NAMES[self.version]

    @property
    def max_amount(self) -> int:
        """Largest encodable cumulativeAmount: 2^128-1 (v1) or 2^96-1 (v2)."""
        return _AMOUNT_MAX[self.version]


@functools.lru_cache(maxsize=256)
def domain_separator(domain: VoucherDomain) -> bytes:
    """keccak256(abi.encode(typehash, name, version, chainId, verifyingContract)).

    Draft, "Signing Procedure" step 1.
    """
    return keccak(
        _EIP712_DOMAIN_TYPEHASH
        + keccak(domain.name.encode())
        + keccak(b"1")
        + domain.chain_id.to_bytes(32, "big")
        + bytes(12)
        + bytes.fromhex(domain.verifying_contract[2:])
    )


def _channel_id_bytes(channel_id: str | bytes) -> bytes:
    if isinstance(channel_id, (bytes, bytearray)):
        if len(channel_id) != 32:
            raise VoucherError("channelId", f"expected 32 bytes, got {len(channel_id)}")
        return bytes(channel_id)
    if not isinstance(channel_id, str) or not _BYTES32_RE.fullmatch(channel_id):
        raise VoucherError("channelId", f"expected a 0x-prefixed bytes32 hex string, got {channel_id!r}")
    return bytes.fromhex(channel_id[2:])


def _amount_word(domain: VoucherDomain, amount: int) -> bytes:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise VoucherError("cumulativeAmount", f"expected an integer, got {amount!r}")
    limit = _AMOUNT_MAX[domain.version]
    if not 0 <= amount <= limit:
        raise VoucherError(
            "cumulativeAmount",
            f"{amount} is outside {_AMOUNT_TYPE[domain.version]} range [0, {limit}] "
            f"of the {domain.version} voucher type",
        )
    return amount.to_bytes(32, "big")


def voucher_digest(domain: VoucherDomain, channel_id: str | bytes, cumulative_amount: int) -> bytes:
    """The EIP-712 signing hash of a voucher (draft, "Signing Procedure" steps 1-3).

    Raises VoucherError(field="cumulativeAmount") when the amount does not fit
    uint128 (v1) / uint96 (v2), and VoucherError(field="channelId") for a
    channel id that is not bytes32.
    """
    struct_hash = keccak(
        _VOUCHER_TYPEHASH[domain.version]
        + _channel_id_bytes(channel_id)
        + _amount_word(domain, cumulative_amount)
    )
    return keccak(b"\x19\x01" + domain_separator(domain) + struct_hash)


def _private_key_bytes(private_key: bytes | str) -> bytes:
    if isinstance(private_key, str):
        m = _HEX_RE.fullmatch(private_key)
        if m is None or len(m.group(1)) != 64:
            raise VoucherError("privateKey", "expected 32 bytes of hex")
        return bytes.fromhex(m.group(1))
    if len(private_key) != 32:
        raise VoucherError("privateKey", f"expected 32 bytes, got {len(private_key)}")
    return bytes(private_key)


def sign_voucher(
    private_key: bytes | str, domain: VoucherDomain, channel_id: str | bytes, amount: int
) -> str:
    """Sign a voucher: 0x + r||s||v (v 27/28), low-s, RFC 6979 deterministic.

    Draft, "Signing Procedure" steps 4-5.
    """
    digest = voucher_digest(domain, channel_id, amount)
    sig = _KEYS.PrivateKey(_private_key_bytes(private_key)).sign_msg_hash(digest)
    r, s, v = sig.r, sig.s, sig.v
    if s > SECP256K1_HALF_N:  # libsecp256k1 never does this; be explicit anyway
        s, v = SECP256K1_N - s, v ^ 1
    return "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + v])).hex()


def _signature_bytes(signature: str | bytes) -> bytes:
    if isinstance(signature, (bytes, bytearray, memoryview)):
        raw = bytes(signature)
    elif isinstance(signature, str):
        if not signature.startswith(("0x", "0X")):
            raise SignatureError("expected a 0x-prefixed hex string")
        body = signature[2:]
        if len(body) % 2 or not _HEX_BODY_RE.fullmatch(body):
            raise SignatureError("not valid hex")
        raw = bytes.fromhex(body)
    else:
        raise SignatureError(f"expected hex string or bytes, got {type(signature).__name__}")
    if len(raw) not in (64, 65):
        raise SignatureError(
            f"wrong length: {len(raw)} bytes (expected 65-byte r||s||v or 64-byte EIP-2098 compact)"
        )
    return raw


def parse_signature(signature: str | bytes) -> tuple[int, int, int]:
    """Split and check a signature into (r, s, recovery id 0/1).

    Accepts 65-byte r||s||v (v 27/28 only, as the escrow) and 64-byte EIP-2098 compact
    r||yParityAndS. Enforces the draft's canonical form ("Signature
    Malleability"): 0 < r < n, 0 < s <= n/2.
    """
    raw = _signature_bytes(signature)
    r = int.from_bytes(raw[:32], "big")
    if len(raw) == 65:
        s = int.from_bytes(raw[32:64], "big")
        v = raw[64]
        if v in (27, 28):
            rec = v - 27
        else:  # the draft's signing procedure step 5; the escrow refuses 0/1 too
            raise SignatureError(f"bad v byte {v} (expected 27 or 28)")
    else:
        vs = int.from_bytes(raw[32:], "big")
        rec, s = vs >> 255, vs & ((1 << 255) - 1)
    if r == 0 or r >= SECP256K1_N:
        raise SignatureError("r is zero or not below the secp256k1 order")
    if s == 0 or s >= SECP256K1_N:
        raise SignatureError("s is zero or not below the secp256k1 order")
    if s > SECP256K1_HALF_N:
        raise SignatureError("high-s value (s > secp256k1n/2): non-canonical, malleable signature")
    return r, s, rec


def _address_from_public(public: coincurve.PublicKey) -> str:
    return "0x" + keccak(public.format(compressed=False)[1:])[-20:].hex()


def recover_voucher_signer(
    domain: VoucherDomain, channel_id: str | bytes, amount: int, signature: str | bytes
) -> str:
    """Recover the lowercase address that signed a voucher.

    Draft, "Voucher Verification" steps 2-4 and "Signature Malleability".
    Raises SignatureError for malformed or non-canonical signatures and for
    signatures from which no public key can be recovered.
    """
    r, s, rec = parse_signature(signature)
    digest = voucher_digest(domain, channel_id, amount)
    compact = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([rec])
    try:
        public = coincurve.PublicKey.from_signature_and_message(compact, digest, hasher=None)
    except Exception as exc:  # libsecp256k1 reports failure without detail
        raise SignatureError(f"unrecoverable: no public key for this digest ({exc})") from None
    return _address_from_public(public)


def verify_voucher(
    domain: VoucherDomain,
    channel_id: str | bytes,
    amount: int,
    signature: str | bytes,
    expected_signer: str,
) -> bool:
    """True when the voucher recovers to `expected_signer` (case-insensitive).

    Draft, "Voucher Verification" step 4. A malformed signature still raises
    SignatureError; a well-formed one by another key returns False.
    """
    return recover_voucher_signer(domain, channel_id, amount, signature) == expected_signer.lower()


def address_of(private_key: bytes | str) -> str:
    """The lowercase Ethereum address of a secp256k1 private key."""
    key = coincurve.PrivateKey(_private_key_bytes(private_key))
    return _address_from_public(key.public_key)


def to_high_s(signature: str | bytes) -> str:
    """Test helper: the malleated twin (r, n - s, v flipped) as 65-byte hex.

    The result verifies under plain ECDSA but MUST be rejected (draft,
    "Signature Malleability"); forged inputs for the conformance suites.
    """
    raw = _signature_bytes(signature)
    r = int.from_bytes(raw[:32], "big")
    if len(raw) == 65:
        s, v = int.from_bytes(raw[32:64], "big"), raw[64]
        rec = v - 27 if v >= 27 else v
    else:
        vs = int.from_bytes(raw[32:], "big")
        rec, s = vs >> 255, vs & ((1 << 255) - 1)
    return "0x" + (
        r.to_bytes(32, "big") + (SECP256K1_N - s).to_bytes(32, "big") + bytes([27 + (rec ^ 1)])
    ).hex()


def to_compact(signature: str | bytes) -> str:
    """The EIP-2098 64-byte compact form (r || yParity<<255 | s) of a canonical signature."""
    r, s, rec = parse_signature(signature)
    return "0x" + (r.to_bytes(32, "big") + ((rec << 255) | s).to_bytes(32, "big")).hex()
