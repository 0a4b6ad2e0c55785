"""Pure helpers shared by the chain backends (no web3 import here).

Argument normalization (every bad argument is ChainError("InvalidArgument")),
the draft's channel-id formula, and key-to-address derivation.
"""
from __future__ import annotations

import functools
import re

import coincurve

from model.base import UINT96_MAX, UINT128_MAX
from wire.crypto import SECP256K1_HALF_N, SECP256K1_N, keccak

from .base import ChainError

__all__ = [
    "CLOSE_GRACE_PERIOD",
    "UINT128_MAX",
    "UINT256_MAX",
    "SECP256K1_N",
    "SECP256K1_HALF_N",
    "ESCROW_ERRORS",
    "keccak",
    "address_of_key",
    "norm_address",
    "norm_bytes32",
    "norm_amount",
    "norm_key",
    "sig_bytes",
    "compute_channel_id",
    "UINT96_MAX",
    "PRECOMPILE_ESCROW",
    "compute_channel_id_v2",
    "stand_in_expiring_nonce_hash",
]

CLOSE_GRACE_PERIOD = 15 * 60  # the escrow's CLOSE_GRACE_PERIOD (draft, "requestClose")
UINT256_MAX = 2**256 - 1

# The escrow's custom errors (TempoStreamChannel.sol); ChainError.reason is one of these
# for a reverted escrow call.
ESCROW_ERRORS = (
    "ChannelAlreadyExists",
    "ChannelNotFound",
    "ChannelFinalized",
    "InvalidSignature",
    "AmountExceedsDeposit",
    "AmountNotIncreasing",
    "NotPayer",
    "NotPayee",
    "TransferFailed",
    "CloseNotReady",
    "CloseAlreadyRequested",
)

_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_BYTES32_RE = re.compile(r"0x[0-9a-fA-F]{64}")
_HEX_RE = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


def norm_address(value: object, field: str) -> str:
    if not isinstance(value, str) or not _ADDRESS_RE.fullmatch(value):
        raise ChainError("InvalidArgument", f"{field}: expected a 0x-hex address, got {value!r}")
    return value.lower()


def norm_bytes32(value: object, field: str) -> str:
    if isinstance(value, (bytes, bytearray)) and len(value) == 32:
        return "0x" + bytes(value).hex()
    if not isinstance(value, str) or not _BYTES32_RE.fullmatch(value):
        raise ChainError("InvalidArgument", f"{field}: expected a 0x-hex bytes32, got {value!r}")
    return value.lower()


def norm_amount(value: object, field: str, limit: int = UINT128_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ChainError("InvalidArgument", f"{field}: expected an integer in [0, {limit}], got {value!r}")
    return value


def norm_key(key: object) -> bytes:
    if isinstance(key, str) and re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", key):
        return bytes.fromhex(key[2:] if key.startswith("0x") else key)
    if isinstance(key, (bytes, bytearray)) and len(key) == 32:
        return bytes(key)
    raise ChainError("InvalidArgument", "key: expected a 32-byte secp256k1 private key")


def sig_bytes(signature: object) -> bytes:
    """A voucher signature as bytes (bytes or 0x-hex accepted); its length is the escrow's business."""
    if isinstance(signature, (bytes, bytearray, memoryview)):
        return bytes(signature)
    if isinstance(signature, str) and _HEX_RE.fullmatch(signature):
        return bytes.fromhex(signature[2:])
    raise ChainError("InvalidArgument", f"signature: expected bytes or 0x-hex, got {signature!r}")


@functools.lru_cache(maxsize=4096)
def _address_of_key(key: bytes) -> str:
    public = coincurve.PrivateKey(key).public_key.format(compressed=False)[1:]
    return "0x" + keccak(public)[-20:].hex()


def address_of_key(key: object) -> str:
    """The lowercase address of a private key (cached: keys repeat a lot in long runs)."""
    try:
        return _address_of_key(norm_key(key))
    except ValueError as exc:  # zero or >= n
        raise ChainError("InvalidArgument", f"key: {exc}") from None


def _word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def compute_channel_id(
    payer: str, payee: str, token: str, salt: str, authorized_signer: str, escrow: str, chain_id: int
) -> str:
    """keccak256(abi.encode(payer, payee, token, salt, authorizedSigner, escrow, chainId))
    (draft, "Contract-Backed Channel State"). Arguments must already be normalized."""
    return "0x" + keccak(
        _word(payer)
        + _word(payee)
        + _word(token)
        + bytes.fromhex(salt[2:])
        + _word(authorized_signer)
        + _word(escrow)
        + chain_id.to_bytes(32, "big")
    ).hex()


# ----------------------------------------------------------------------------- v2

# The TIP-20 channel escrow precompile's address: mppx's default escrow for v2.
PRECOMPILE_ESCROW = "0x4d50500000000000000000000000000000000000"


def compute_channel_id_v2(descriptor, escrow: str, chain_id: int) -> str:
    """keccak256(abi.encode(payer, payee, operator, token, salt, authorizedSigner,
    expiringNonceHash, escrow, chainId)) (draft, "Channel Descriptor").
    `descriptor` is a base.ChannelDescriptor with normalized fields."""
    d = descriptor
    return "0x" + keccak(
        _word(d.payer)
        + _word(d.payee)
        + _word(d.operator)
        + _word(d.token)
        + bytes.fromhex(d.salt[2:])
        + _word(d.authorized_signer)
        + bytes.fromhex(d.expiring_nonce_hash[2:])
        + _word(escrow)
        + chain_id.to_bytes(32, "big")
    ).hex()


def stand_in_expiring_nonce_hash(payer: str, opens_so_far: int) -> str:
    """keccak256(abi.encode(payer, opensSoFar)): our stand-in for Tempo's expiringNonceHash.

    On Tempo the precompile hashes the open transaction's signing payload with its
    sender, which no contract on py-evm can see; our escrows hash the payer with
    the number of channels it opened before, which is just as unique per open and
    known to the client before it signs. Both v2 backends use this formula."""
    return "0x" + keccak(_word(payer) + opens_so_far.to_bytes(32, "big")).hex()
