"""Tempo 0x76 transactions (the type mppx's client signs): decode, recover the sender, and sign one.

A Tempo transaction is `0x76 || rlp([chainId, maxPriorityFeePerGas, maxFeePerGas, gas, calls, accessList,
nonceKey, nonce, validBefore, validAfter, feeToken, feePayerSignatureOrSender, authorizationList,
(keyAuthorization,) signature])`, each call `[to, value, data]`, the sender's secp256k1 signature 65 bytes
`r || s || v` (v 27/28) over `keccak(0x76 || rlp(the fields without the signature))`. A fee payer's signature in
field 11 is replaced by the single byte 0x00, and the fee token dropped, in what the sender signs. The
precompile's expiringNonceHash of an open is `keccak(that signing preimage || sender)` (TIP-1034, as mppx's
`Channel.computeExpiringNonceHash`).

Only what the v2 escrow needs: secp256k1 senders (p256/webAuthn/keychain signatures are refused as malformed),
the escrow call read from the last call (earlier calls are the swap prefixes mppx allows; they are ignored here).
The harness's memory-v2 backend decodes these in `decode_tx`/`broadcast`, so a server on the harness's chain takes
an mppx client's open and topUp, and the reference client signs them when its deployment asks for Tempo
transactions (`MemoryChainV2.tx_format = "tempo"`), so mppx's server takes ours.
"""
from __future__ import annotations

from typing import Optional

import attrs
import coincurve
import rlp
from eth_abi import decode as abi_decode, encode as abi_encode

from ._common import SECP256K1_HALF_N, SECP256K1_N, keccak, norm_key
from .base import ChainError

TEMPO_TX_TYPE = 0x76
_DESCRIPTOR = "(address,address,address,address,bytes32,address,bytes32)"
_OPEN_TYPES = ["address", "address", "address", "uint96", "bytes32", "address"]
_TOPUP_TYPES = [_DESCRIPTOR, "uint96"]


def _selector(sig: str) -> bytes:
    return keccak(sig.encode())[:4]


OPEN_SELECTOR = _selector("open(address,address,address,uint96,bytes32,address)")
TOPUP_SELECTOR = _selector(f"topUp({_DESCRIPTOR},uint96)")


def _malformed(why: str) -> ChainError:
    return ChainError("MalformedTransaction", f"Tempo transaction: {why}")


def _int(b: object, what: str) -> int:
    if not isinstance(b, bytes) or (len(b) > 1 and b[0] == 0) or b == b"\x00":
        raise _malformed(f"{what} is not a canonical integer")
    return int.from_bytes(b, "big")


@attrs.frozen
class TempoTx:
    """A decoded Tempo transaction: its sender, chain, nonce key and nonce, calls (to, value, data) and the
    expiringNonceHash the precompile derives for an open in it."""

    sender: str
    chain_id: int
    nonce_key: int
    nonce: int
    calls: tuple
    expiring_nonce_hash: str
    tx_hash: str


def is_tempo(raw_tx: object) -> bool:
    return isinstance(raw_tx, str) and raw_tx[:4].lower() == "0x76"


def decode(raw_tx: str) -> TempoTx:
    """A signed Tempo transaction, or ChainError("MalformedTransaction")."""
    try:
        raw = bytes.fromhex(raw_tx[2:])
    except ValueError:
        raise _malformed("not hex") from None
    if not raw or raw[0] != TEMPO_TX_TYPE:
        raise _malformed("not type 0x76")
    try:
        fields = rlp.decode(raw[1:], strict=True)
    except Exception:  # rlp's DecodingError and its relatives
        raise _malformed("not RLP") from None
    if not isinstance(fields, list) or len(fields) not in (14, 15):
        raise _malformed(f"{len(fields) if isinstance(fields, list) else 'no'} fields (expected 14 or 15)")
    *unsigned, sig = fields
    if not isinstance(sig, bytes) or len(sig) != 65:
        raise _malformed("only secp256k1 sender signatures (65 bytes) are supported")
    r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    if v not in (27, 28) or not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_HALF_N):
        raise _malformed("invalid sender signature")
    signed = list(unsigned)
    if isinstance(signed[11], list):  # a fee payer co-signed: the sender signed the 0x00 marker, no fee token
        signed[11], signed[10] = b"\x00", b""
    preimage = bytes([TEMPO_TX_TYPE]) + rlp.encode(signed)
    try:
        public = coincurve.PublicKey.from_signature_and_message(sig[:64] + bytes([v - 27]), keccak(preimage),
                                                                 hasher=None)
    except Exception:
        raise _malformed("invalid sender signature") from None
    sender = keccak(public.format(compressed=False)[1:])[-20:]
    calls = []
    if not isinstance(fields[4], list):
        raise _malformed("calls is not a list")
    for c in fields[4]:
        if not (isinstance(c, list) and len(c) == 3 and all(isinstance(x, bytes) for x in c)):
            raise _malformed("a call is not [to, value, data]")
        to, value, data = c
        calls.append(("0x" + to.hex() if to else None, _int(value, "value") if value else 0, data))
    return TempoTx("0x" + sender.hex(), _int(fields[0], "chainId"), _int(fields[6], "nonceKey") if fields[6] else 0,
                   _int(fields[7], "nonce") if fields[7] else 0, tuple(calls),
                   "0x" + keccak(preimage + sender).hex(), "0x" + keccak(raw).hex())


def escrow_call(tx: TempoTx, escrow: str) -> tuple[str, tuple]:
    """The escrow call of a decoded transaction (its last call): ("open", (payee, operator, token, deposit, salt,
    authorizedSigner)) or ("topUp", (descriptor fields tuple, additionalDeposit)); ChainError otherwise."""
    if not tx.calls:
        raise _malformed("no calls")
    to, value, data = tx.calls[-1]
    if to is None or to.lower() != escrow.lower():
        raise ChainError("WrongContract", f"transaction calls {to}, the escrow is {escrow}")
    sel, body = data[:4], data[4:]
    try:
        if sel == OPEN_SELECTOR:
            payee, operator, token, deposit, salt, signer = abi_decode(_OPEN_TYPES, body)
            return "open", (payee.lower(), operator.lower(), token.lower(), deposit, "0x" + salt.hex(), signer.lower())
        if sel == TOPUP_SELECTOR:
            d, amount = abi_decode(_TOPUP_TYPES, body)
            return "topUp", (tuple("0x" + x.hex() if isinstance(x, bytes) else x.lower() for x in d), amount)
    except Exception:  # eth_abi's decoding errors
        raise _malformed("escrow calldata does not decode") from None
    raise ChainError("UnsupportedCall", "not an open or topUp transaction")


def sign(key: bytes, chain_id: int, nonce: int, to: str, data: bytes, gas: int = 500_000,
         valid_before: Optional[int] = None) -> str:
    """A Tempo transaction with one call (to, data), signed by `key` (no fee payer, no fee token)."""
    enc = lambda n: n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""  # noqa: E731
    unsigned = [enc(chain_id), enc(1), enc(1), enc(gas), [[bytes.fromhex(to[2:]), b"", data]], [], b"", enc(nonce),
                enc(valid_before) if valid_before is not None else b"", b"", b"", b"", []]
    preimage = bytes([TEMPO_TX_TYPE]) + rlp.encode(unsigned)
    sig = coincurve.PrivateKey(norm_key(key)).sign_recoverable(keccak(preimage), hasher=None)
    return "0x" + (bytes([TEMPO_TX_TYPE]) + rlp.encode(unsigned + [sig[:64] + bytes([27 + sig[64]])])).hex()


def open_calldata(payee: str, operator: str, token: str, deposit: int, salt: str, signer: str) -> bytes:
    return OPEN_SELECTOR + abi_encode(_OPEN_TYPES, [payee, operator, token, deposit, bytes.fromhex(salt[2:]), signer])


def topup_calldata(descriptor_abi: tuple, amount: int) -> bytes:
    d = [bytes.fromhex(v[2:]) if len(v) == 66 else v for v in descriptor_abi]
    return TOPUP_SELECTOR + abi_encode(_TOPUP_TYPES, [tuple(d), amount])


def expiring_nonce_hash(raw_tx: str) -> str:
    return decode(raw_tx).expiring_nonce_hash
