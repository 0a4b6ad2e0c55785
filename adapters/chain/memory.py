"""MemoryChain: the escrow and its token, in process, for long property runs.

It mirrors adapters/chain/solidity/TempoStreamChannel.sol and TestToken.sol
check for check and in the same order, so a call fails here with the same
ChainError reason (the Solidity custom error's name) as on the evm backend;
tests/test_chain_contract.py runs one behaviour suite against both.

What it also mirrors of the evm backend:

* Time. `now()` is the block timestamp the next transaction executes at. Every
  transaction that goes through is mined in a block of its own, one second
  after the previous one, so `now()` moves on by one per transaction;
  `advance_time(s)` moves it on by `s`. `fund` is three transactions (gas
  money, mint, approve) and moves it on by three.
* Nonces. Each sender has a nonce; a client transaction is built with the
  sender's current nonce and is refused with ChainError("InvalidNonce") when it
  no longer matches, so broadcasting the same transaction twice fails. Direct
  calls (settle, close, request_close, withdraw) and `fund`'s approve use up a
  nonce too.
* Failures. A call or transaction that would revert is refused before anything
  changes: no nonce is used and no time passes (the evm backend simulates each
  transaction first and does not send one that would revert).
* Gas. A key that was never passed to `fund` cannot send transactions
  (ChainError("InsufficientFunds")), as it would have no gas money on evm.

Client transactions are 0x-hex of the canonical JSON
{"args", "chainId", "kind", "nonce", "to"} (sorted keys, no spaces, amounts as
decimal strings) followed by a 65-byte r||s||v secp256k1 signature over the
keccak256 of that JSON; `decode_tx` recovers the sender from it.

No web3 import on this path: it has to be fast.
"""
from __future__ import annotations

import json
import re
import threading
from typing import Any

import coincurve

from wire.crypto import VoucherDomain, voucher_digest

from ._common import (
    CLOSE_GRACE_PERIOD,
    SECP256K1_HALF_N,
    SECP256K1_N,
    UINT128_MAX,
    UINT256_MAX,
    address_of_key,
    compute_channel_id,
    keccak,
    norm_address,
    norm_amount,
    norm_bytes32,
    norm_key,
    sig_bytes,
)
from .base import ZERO_ADDRESS, ChainError, ChannelState, DecodedTx

__all__ = ["MemoryChain"]

_S_MASK = (1 << 255) - 1
_DECIMAL_RE = re.compile(r"0|[1-9][0-9]{0,39}")
_TX_KEYS = {"args", "chainId", "kind", "nonce", "to"}
_OPEN_ARGS = {"authorizedSigner", "deposit", "payee", "salt", "token"}
_TOPUP_ARGS = {"additionalDeposit", "channelId"}


class _Channel:
    __slots__ = ("payer", "payee", "token", "authorized_signer", "deposit", "settled", "close_requested_at", "finalized")

    def __init__(self, payer: str, payee: str, token: str, authorized_signer: str, deposit: int) -> None:
        self.payer = payer
        self.payee = payee
        self.token = token
        self.authorized_signer = authorized_signer
        self.deposit = deposit
        self.settled = 0
        self.close_requested_at = 0
        self.finalized = False


def _ecrecover(digest: bytes, sig: bytes) -> str | None:
    """TempoStreamChannel._recover followed by the ecrecover precompile; None for address(0)."""
    if len(sig) == 65:
        r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    elif len(sig) == 64:
        r, vs = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        s, v = vs & _S_MASK, (vs >> 255) + 27
    else:
        return None
    if s > SECP256K1_HALF_N or v not in (27, 28):
        return None
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):  # the precompile returns nothing
        return None
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v - 27]), digest, hasher=None
        )
    except Exception:  # no point for this r
        return None
    return "0x" + keccak(public.format(compressed=False)[1:])[-20:].hex()


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _malformed(detail: str) -> ChainError:
    return ChainError("MalformedTransaction", detail)


class MemoryChain:
    """An in-process v1 escrow plus test token (see the module docstring)."""

    name = "memory"

    def __init__(
        self,
        *,
        chain_id: int = 31337,
        start_time: int = 1_700_000_000,
        escrow: str | None = None,
        token: str | None = None,
    ) -> None:
        self.chain_id = chain_id
        tag = chain_id.to_bytes(32, "big")
        self.escrow = norm_address(escrow, "escrow") if escrow else "0x" + keccak(b"memory escrow" + tag)[-20:].hex()
        self.token = norm_address(token, "token") if token else "0x" + keccak(b"memory token" + tag)[-20:].hex()
        self.grace_period = CLOSE_GRACE_PERIOD
        self.domain = VoucherDomain("v1", chain_id, self.escrow)
        self._start_time = start_time
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Back to the freshly deployed state: no channels, balances, allowances or nonces."""
        with self._lock:
            self._now = self._start_time
            self._channels: dict[str, _Channel] = {}
            self._balances: dict[str, int] = {}
            self._allowances: dict[tuple[str, str], int] = {}
            self._total_supply = 0
            self._nonces: dict[str, int] = {}
            self._gas: set[str] = set()

    # ------------------------------------------------------------ accounts and tokens

    def fund(self, key: bytes, amount: int) -> str:
        addr = address_of_key(key)
        amount = norm_amount(amount, "amount", UINT256_MAX)
        with self._lock:
            if self._total_supply + amount > UINT256_MAX:
                raise ChainError("Panic(0x11)", "mint overflows totalSupply")
            self._gas.add(addr)  # tx 1: gas money
            self._now += 1
            self._total_supply += amount  # tx 2: mint
            self._balances[addr] = self._balances.get(addr, 0) + amount
            self._now += 1
            self._allowances[(addr, self.escrow)] = UINT256_MAX  # tx 3: approve, signed by the key
            self._nonces[addr] = self._nonces.get(addr, 0) + 1
            self._now += 1
        return addr

    def balance_of(self, address: str) -> int:
        return self._balances.get(norm_address(address, "address"), 0)

    def total_supply(self) -> int:
        return self._total_supply

    def nonce_of(self, address: str) -> int:
        return self._nonces.get(norm_address(address, "address"), 0)

    def sequential_nonce(self, raw_tx: str) -> int | None:
        """The sender nonce a signed client transaction consumes (it applies only while that is the
        sender's nonce, so two transactions with one nonce exclude each other); ChainError if malformed."""
        return self._decode(raw_tx)[1]

    # ------------------------------------------------------------------------ reads

    def get_channel(self, channel_id: str) -> ChannelState:
        cid = norm_bytes32(channel_id, "channel_id")
        ch = self._channels.get(cid)
        if ch is None:
            return ChannelState(cid, ZERO_ADDRESS, ZERO_ADDRESS, ZERO_ADDRESS, ZERO_ADDRESS, 0, 0, 0, False)
        return ChannelState(
            cid, ch.payer, ch.payee, ch.token, ch.authorized_signer,
            ch.deposit, ch.settled, ch.close_requested_at, ch.finalized,
        )

    def get_channels_batch(self, channel_ids: list[str]) -> list[ChannelState]:
        """The escrow's getChannelsBatch."""
        return [self.get_channel(c) for c in channel_ids]

    def compute_channel_id(self, payer: str, payee: str, token: str, salt: str, authorized_signer: str) -> str:
        return compute_channel_id(
            norm_address(payer, "payer"),
            norm_address(payee, "payee"),
            norm_address(token, "token"),
            norm_bytes32(salt, "salt"),
            norm_address(authorized_signer or ZERO_ADDRESS, "authorized_signer"),
            self.escrow,
            self.chain_id,
        )

    def voucher_digest(self, channel_id: str, cumulative_amount: int) -> bytes:
        """The escrow's getVoucherDigest."""
        return voucher_digest(
            self.domain, norm_bytes32(channel_id, "channel_id"), norm_amount(cumulative_amount, "cumulative_amount")
        )

    def now(self) -> int:
        """The block timestamp the next transaction will execute at."""
        return self._now

    def advance_time(self, seconds: int) -> None:
        seconds = norm_amount(seconds, "seconds", UINT256_MAX)
        with self._lock:
            self._now += seconds

    # ------------------------------------------------------- client-signed transactions

    def _sign_tx(self, key: bytes, kind: str, args: dict[str, str]) -> str:
        sender = address_of_key(key)
        payload = {"args": args, "chainId": self.chain_id, "kind": kind, "nonce": self._nonces.get(sender, 0), "to": self.escrow}
        body = _canonical(payload)
        sig = coincurve.PrivateKey(norm_key(key)).sign_recoverable(keccak(body), hasher=None)
        return "0x" + body.hex() + sig[:64].hex() + bytes([27 + sig[64]]).hex()

    def build_open_tx(self, payer_key: bytes, payee: str, deposit: int, salt: str, authorized_signer: str) -> tuple[str, str]:
        payer = address_of_key(payer_key)
        args = {
            "authorizedSigner": norm_address(authorized_signer or ZERO_ADDRESS, "authorized_signer"),
            "deposit": str(norm_amount(deposit, "deposit")),
            "payee": norm_address(payee, "payee"),
            "salt": norm_bytes32(salt, "salt"),
            "token": self.token,
        }
        cid = compute_channel_id(
            payer, args["payee"], self.token, args["salt"], args["authorizedSigner"], self.escrow, self.chain_id
        )
        return self._sign_tx(payer_key, "open", args), cid

    def build_topup_tx(self, payer_key: bytes, channel_id: str, amount: int) -> str:
        args = {
            "additionalDeposit": str(norm_amount(amount, "amount")),
            "channelId": norm_bytes32(channel_id, "channel_id"),
        }
        return self._sign_tx(payer_key, "topUp", args)

    def decode_tx(self, raw_tx: str) -> DecodedTx:
        return self._decode(raw_tx)[0]

    def _decode(self, raw_tx: str) -> tuple[DecodedTx, int, bytes]:
        if not isinstance(raw_tx, str) or not raw_tx.startswith("0x"):
            raise _malformed("expected 0x-hex")
        try:
            raw = bytes.fromhex(raw_tx[2:])
        except ValueError:
            raise _malformed("not hex") from None
        if len(raw) <= 65:
            raise _malformed("too short")
        body, sig = raw[:-65], raw[-65:]
        r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
        if v not in (27, 28) or not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_HALF_N):
            raise _malformed("invalid transaction signature")
        try:
            public = coincurve.PublicKey.from_signature_and_message(sig[:64] + bytes([v - 27]), keccak(body), hasher=None)
        except Exception:
            raise _malformed("invalid transaction signature") from None
        sender = "0x" + keccak(public.format(compressed=False)[1:])[-20:].hex()
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise _malformed("body is not JSON") from None
        if not isinstance(payload, dict) or set(payload) != _TX_KEYS or _canonical(payload) != body:
            raise _malformed("body is not a canonical transaction")
        nonce, chain_id, to, kind, args = (payload[k] for k in ("nonce", "chainId", "to", "kind", "args"))
        if type(nonce) is not int or nonce < 0 or type(chain_id) is not int:
            raise _malformed("bad nonce or chainId")
        if chain_id != self.chain_id:
            raise ChainError("WrongChain", f"transaction is for chain {chain_id}, this is {self.chain_id}")
        if not isinstance(to, str) or to.lower() != self.escrow:
            raise ChainError("WrongContract", f"transaction calls {to}, the escrow is {self.escrow}")
        if kind not in ("open", "topUp"):
            raise ChainError("UnsupportedCall", f"not an open or topUp transaction: {kind!r}")
        try:
            decoded = self._decode_args(kind, args, sender, chain_id)
        except ChainError as exc:
            raise _malformed(f"bad arguments: {exc.detail}") from None
        return decoded, nonce, raw

    def _decode_args(self, kind: str, args: object, sender: str, chain_id: int) -> DecodedTx:
        if not isinstance(args, dict) or set(args) != (_OPEN_ARGS if kind == "open" else _TOPUP_ARGS):
            raise ChainError("InvalidArgument", "wrong argument names")
        if kind == "open":
            payee = norm_address(args["payee"], "payee")
            token = norm_address(args["token"], "token")
            salt = norm_bytes32(args["salt"], "salt")
            signer = norm_address(args["authorizedSigner"], "authorizedSigner")
            amount = self._decimal(args["deposit"])
            cid = compute_channel_id(sender, payee, token, salt, signer, self.escrow, self.chain_id)
            return DecodedTx("open", sender, self.escrow, chain_id, cid, payee, token, amount, salt, signer)
        cid = norm_bytes32(args["channelId"], "channelId")
        return DecodedTx("topUp", sender, self.escrow, chain_id, cid, amount=self._decimal(args["additionalDeposit"]))

    @staticmethod
    def _decimal(value: object, limit: int = UINT128_MAX) -> int:
        if not isinstance(value, str) or not _DECIMAL_RE.fullmatch(value):
            raise ChainError("InvalidArgument", f"amount: expected a decimal string, got {value!r}")
        return norm_amount(int(value), "amount", limit)

    def broadcast(self, raw_tx: str) -> str:
        with self._lock:
            tx, nonce, raw = self._decode(raw_tx)
            if tx.kind == "open":
                args = (tx.payee, tx.token, tx.amount, tx.salt, tx.authorized_signer)
            else:
                args = (tx.channel_id, tx.amount)
            self._execute(tx.sender, tx.kind, args, nonce)
        return "0x" + keccak(raw).hex()

    def apply_foreign(self, sender: str, kind: str, args: tuple, expiring_nonce_hash: str | None = None) -> None:
        """Run one escrow call of a transaction this backend cannot decode itself (a Tempo 0x76 transaction an
        adapter decoded, its sender recovered there: conformance/chain_rpc.py) as `sender`, with the sender's next
        nonce. `args` are the escrow function's own (channel ids as 0x-hex, signatures as bytes). v1 ignores
        `expiring_nonce_hash` (MemoryChainV2 uses it)."""
        if kind not in ("open", "topUp", "settle", "close", "requestClose", "withdraw"):
            raise ChainError("InvalidArgument", f"escrow call {kind!r}")
        sender = norm_address(sender, "sender")
        with self._lock:
            self._execute(sender, kind, args, self._nonces.get(sender, 0))

    # ---------------------------------------------------------------------- direct calls

    def settle(self, payee_key: bytes, channel_id: str, cumulative_amount: int, signature: bytes) -> str:
        args = (norm_bytes32(channel_id, "channel_id"), norm_amount(cumulative_amount, "cumulative_amount"), sig_bytes(signature))
        return self._call(payee_key, "settle", args)

    def close(self, payee_key: bytes, channel_id: str, cumulative_amount: int, signature: bytes, capture_amount: int | None = None) -> str:
        cum = norm_amount(cumulative_amount, "cumulative_amount")
        capture = cum if capture_amount is None else norm_amount(capture_amount, "capture_amount")
        args = (norm_bytes32(channel_id, "channel_id"), cum, capture, sig_bytes(signature))
        return self._call(payee_key, "close", args)

    def request_close(self, payer_key: bytes, channel_id: str) -> str:
        return self._call(payer_key, "requestClose", (norm_bytes32(channel_id, "channel_id"),))

    def withdraw(self, payer_key: bytes, channel_id: str) -> str:
        return self._call(payer_key, "withdraw", (norm_bytes32(channel_id, "channel_id"),))

    def _call(self, key: bytes, kind: str, args: tuple) -> str:
        sender = address_of_key(key)
        with self._lock:
            nonce = self._nonces.get(sender, 0)
            self._execute(sender, kind, args, nonce)
            shown = [a.hex() if isinstance(a, bytes) else a for a in args]
            blob = _canonical({"chainId": self.chain_id, "from": sender, "kind": kind, "args": [str(a) for a in shown], "nonce": nonce})
        return "0x" + keccak(blob).hex()

    # ------------------------------------------------------------------- the escrow

    def _execute(self, sender: str, kind: str, args: tuple, nonce: int) -> None:
        """Run one transaction: every check happens before any state changes."""
        expected = self._nonces.get(sender, 0)
        if nonce != expected:
            raise ChainError("InvalidNonce", f"expected nonce {expected}, got {nonce}")
        if sender not in self._gas:
            raise ChainError("InsufficientFunds", f"{sender} has no gas money (use fund())")
        getattr(self, "_" + kind)(sender, *args)
        self._nonces[sender] = expected + 1
        self._now += 1

    def _live(self, channel_id: str) -> _Channel:
        ch = self._channels.get(channel_id)
        if ch is None:
            raise ChainError("ChannelNotFound", channel_id)
        if ch.finalized:
            raise ChainError("ChannelFinalized", channel_id)
        return ch

    def _check_voucher(self, ch: _Channel, channel_id: str, amount: int, signature: bytes) -> None:
        expected = ch.payer if ch.authorized_signer == ZERO_ADDRESS else ch.authorized_signer
        signer = _ecrecover(voucher_digest(self.domain, channel_id, amount), signature)
        if signer is None or signer != expected:
            raise ChainError("InvalidSignature", f"recovered {signer}, expected {expected}")

    def _check_pull(self, token: str, owner: str, amount: int) -> None:
        """The escrow's _pull: zero is refused; TestToken.transferFrom must succeed."""
        if amount == 0:
            raise ChainError("TransferFailed", "nothing to escrow")
        if token != self.token:
            raise ChainError("TransferFailed", f"{token} is not a token here")
        allowed = self._allowances.get((owner, self.escrow), 0)
        if allowed != UINT256_MAX and allowed < amount:
            raise ChainError("TransferFailed", "allowance too low")
        if self._balances.get(owner, 0) < amount:
            raise ChainError("TransferFailed", "balance too low")

    def _pull(self, owner: str, amount: int) -> None:
        key = (owner, self.escrow)
        allowed = self._allowances.get(key, 0)
        if allowed != UINT256_MAX:
            self._allowances[key] = allowed - amount
        self._move(owner, self.escrow, amount)

    def _move(self, frm: str, to: str, amount: int) -> None:
        if amount:
            self._balances[frm] -= amount
            self._balances[to] = self._balances.get(to, 0) + amount

    def _open(self, sender: str, payee: str, token: str, deposit: int, salt: str, authorized_signer: str) -> None:
        cid = compute_channel_id(sender, payee, token, salt, authorized_signer, self.escrow, self.chain_id)
        if cid in self._channels:
            raise ChainError("ChannelAlreadyExists", cid)
        self._check_pull(token, sender, deposit)
        self._channels[cid] = _Channel(sender, payee, token, authorized_signer, deposit)
        self._pull(sender, deposit)

    def _settle(self, sender: str, channel_id: str, amount: int, signature: bytes) -> None:
        ch = self._live(channel_id)
        if sender != ch.payee:
            raise ChainError("NotPayee", sender)
        self._check_voucher(ch, channel_id, amount, signature)
        if amount > ch.deposit:
            raise ChainError("AmountExceedsDeposit", f"{amount} > {ch.deposit}")
        if amount <= ch.settled:
            raise ChainError("AmountNotIncreasing", f"{amount} <= {ch.settled}")
        delta = amount - ch.settled
        ch.settled = amount
        self._move(self.escrow, ch.payee, delta)

    def _topUp(self, sender: str, channel_id: str, amount: int) -> None:
        ch = self._live(channel_id)
        if sender != ch.payer:
            raise ChainError("NotPayer", sender)
        if ch.deposit + amount > UINT128_MAX:
            raise ChainError("Panic(0x11)", "deposit overflows uint128")
        self._check_pull(ch.token, sender, amount)
        ch.deposit += amount
        ch.close_requested_at = 0
        self._pull(sender, amount)

    def _close(self, sender: str, channel_id: str, amount: int, capture: int, signature: bytes) -> None:
        ch = self._live(channel_id)
        if sender != ch.payee:
            raise ChainError("NotPayee", sender)
        self._check_voucher(ch, channel_id, amount, signature)
        if amount > ch.deposit:
            raise ChainError("AmountExceedsDeposit", f"{amount} > {ch.deposit}")
        if capture < ch.settled or capture > amount:
            raise ChainError("AmountNotIncreasing", f"capture {capture} outside [{ch.settled}, {amount}]")
        delta, refund = capture - ch.settled, ch.deposit - capture
        ch.settled = capture
        ch.finalized = True
        self._move(self.escrow, ch.payee, delta)
        self._move(self.escrow, ch.payer, refund)

    def _requestClose(self, sender: str, channel_id: str) -> None:
        ch = self._live(channel_id)
        if sender != ch.payer:
            raise ChainError("NotPayer", sender)
        if ch.close_requested_at != 0:
            raise ChainError("CloseAlreadyRequested", channel_id)
        ch.close_requested_at = self._now

    def _withdraw(self, sender: str, channel_id: str) -> None:
        ch = self._live(channel_id)
        if sender != ch.payer:
            raise ChainError("NotPayer", sender)
        if ch.close_requested_at == 0 or self._now < ch.close_requested_at + self.grace_period:
            raise ChainError("CloseNotReady", f"now {self._now}, requested at {ch.close_requested_at}")
        refund = ch.deposit - ch.settled
        ch.finalized = True
        self._move(self.escrow, ch.payer, refund)
