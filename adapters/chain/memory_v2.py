"""MemoryChainV2: the v2 escrow (TIP-20 channel escrow precompile) and its token, in process.

It is MemoryChain with the precompile's rules in place of TempoStreamChannel's,
and mirrors adapters/chain/solidity/TIP20ChannelEscrow.sol check for check, so
tests/test_chain_v2.py runs one behaviour suite against it and evm-v2:

* Channels are named by their descriptor (draft, "Channel Descriptor"); the id
  is computed from it (`_common.compute_channel_id_v2`). A descriptor that
  differs in any field names another channel, so it is ChannelNotFound.
* Deposits, vouchers, settlement and capture are uint96: larger amounts are
  refused before signing (InvalidArgument) and a topUp past 2^96-1 is
  Panic(0x11), as the contract's checked uint96 arithmetic reverts.
* Vouchers are in the v2 domain ("TIP20 Channel Reserve", Voucher(bytes32
  channelId, uint96 cumulativeAmount)) with verifyingContract = the escrow,
  by default the precompile address.
* The operator named at open (zero for none) may settle and close like the payee.
* expiringNonceHash is `_common.stand_in_expiring_nonce_hash(payer, opens so
  far)`: the escrow counts each payer's opens.

Time, nonces, gas, the all-or-nothing failures and the client transaction
encoding are MemoryChain's (see memory.py); open's args are {authorizedSigner,
deposit, operator, payee, salt, token}, topUp's {additionalDeposit, descriptor}.
"""
from __future__ import annotations

import attrs

from wire.crypto import VoucherDomain, keccak, voucher_digest

from ._common import (
    PRECOMPILE_ESCROW,
    UINT96_MAX,
    address_of_key,
    compute_channel_id_v2,
    norm_address,
    norm_amount,
    norm_bytes32,
    sig_bytes,
    stand_in_expiring_nonce_hash,
)
from .base import ZERO_ADDRESS, ChainError, ChannelDescriptor, ChannelStateV2, DecodedTxV2
from .memory import MemoryChain, _Channel, _ecrecover
from . import tempo_tx

__all__ = ["IncludedOpens", "MemoryChainV2", "decode_tempo_v2", "include_tempo_tx", "norm_descriptor"]

_OPEN_ARGS = {"authorizedSigner", "deposit", "operator", "payee", "salt", "token"}
_TOPUP_ARGS = {"additionalDeposit", "descriptor"}
_DESCRIPTOR_FIELDS = ("payer", "payee", "operator", "token", "salt", "authorizedSigner", "expiringNonceHash")


def norm_descriptor(value: object, field: str = "descriptor") -> ChannelDescriptor:
    """A ChannelDescriptor with normalized fields, from a ChannelDescriptor or its JSON form
    (camelCase keys, as in a v2 credential); ChainError("InvalidArgument") otherwise."""
    if isinstance(value, ChannelDescriptor):
        d = value
        raw = (d.payer, d.payee, d.operator, d.token, d.salt, d.authorized_signer, d.expiring_nonce_hash)
    elif isinstance(value, dict) and set(value) == set(_DESCRIPTOR_FIELDS):
        raw = tuple(value[k] for k in _DESCRIPTOR_FIELDS)
    else:
        raise ChainError("InvalidArgument", f"{field}: expected a channel descriptor, got {value!r}")
    payer, payee, operator, token, salt, signer, enh = raw
    return ChannelDescriptor(
        norm_address(payer, f"{field}.payer"),
        norm_address(payee, f"{field}.payee"),
        norm_address(operator, f"{field}.operator"),
        norm_address(token, f"{field}.token"),
        norm_bytes32(salt, f"{field}.salt"),
        norm_address(signer, f"{field}.authorizedSigner"),
        norm_bytes32(enh, f"{field}.expiringNonceHash"),
    )


def descriptor_json(d: ChannelDescriptor) -> dict[str, str]:
    return dict(zip(_DESCRIPTOR_FIELDS, d.as_abi()))


class _ChannelV2(_Channel):
    __slots__ = ("descriptor",)

    def __init__(self, descriptor: ChannelDescriptor, deposit: int) -> None:
        super().__init__(descriptor.payer, descriptor.payee, descriptor.token, descriptor.authorized_signer, deposit)
        self.descriptor = descriptor



def decode_tempo_v2(raw_tx: str, escrow: str, chain_id: int) -> tuple[DecodedTxV2, str]:
    """A Tempo 0x76 open or topUp of the v2 escrow at `escrow` (the escrow call is its last call; the sender
    recovered from its signature, an open's expiringNonceHash derived from the transaction as the precompile
    does); (decoded, tx hash). Both v2 backends decode Tempo transactions with it."""
    tx = tempo_tx.decode(raw_tx)
    if tx.chain_id != chain_id:
        raise ChainError("WrongChain", f"transaction is for chain {tx.chain_id}, this is {chain_id}")
    kind, args = tempo_tx.escrow_call(tx, escrow)
    if kind == "open":
        payee, operator, token, deposit, salt, signer = args
        d = ChannelDescriptor(tx.sender, payee, operator, token, salt, signer, tx.expiring_nonce_hash)
    else:
        d = norm_descriptor(dict(zip(_DESCRIPTOR_FIELDS, args[0])))
        deposit = args[1]
    cid = compute_channel_id_v2(d, escrow, chain_id)
    return DecodedTxV2(kind, tx.sender, escrow, tx.chain_id, cid, d, deposit), tx.tx_hash


def include_tempo_tx(chain, raw_tx: str) -> str:
    """Include a Tempo transaction on a v2 backend: its escrow call as its sender through `chain.apply_foreign`
    (with the sender's next nonce: Tempo's nonce keys and expiring nonces are not modelled; a transaction included
    before, kept in `chain._tempo_seen`, is InvalidNonce). Returns its hash."""
    with chain._lock:
        tx, tx_hash = decode_tempo_v2(raw_tx, chain.escrow, chain.chain_id)
        if tx_hash in chain._tempo_seen:
            raise ChainError("InvalidNonce", f"transaction {tx_hash} was already included")
        d = tx.descriptor
        if tx.kind == "open":
            args: tuple = (d.payee, d.operator, d.token, tx.amount, d.salt, d.authorized_signer)
        else:
            args = (d, tx.amount)
        chain.apply_foreign(tx.sender, tx.kind, args, d.expiring_nonce_hash if tx.kind == "open" else None)
        chain._tempo_seen.add(tx_hash)
    return tx_hash


class IncludedOpens:
    """The stand-in expiringNonceHash of a backend-encoded open depends on the payer's opens before it is mined
    (see the module docstring), so decoding the same open again after it was included would name another channel.
    A transaction means one thing whenever it is decoded (the precompile hashes the transaction itself): both v2
    backends remember the descriptor each included open created, by transaction hash, and decode that open as it.
    A server that crashed after broadcasting an open and is sent the same credential again (rule A1) so finds the
    channel the payer's deposit is in, instead of a phantom id."""

    _included_opens: dict

    def _remember_open(self, raw_tx: str, tx: DecodedTxV2) -> None:
        if tx.kind == "open":
            self._included_opens["0x" + keccak(bytes.fromhex(raw_tx[2:])).hex()] = tx.descriptor

    def _as_included(self, raw_tx: str, tx: DecodedTxV2) -> DecodedTxV2:
        d = self._included_opens.get("0x" + keccak(bytes.fromhex(raw_tx[2:])).hex()) if tx.kind == "open" else None
        if d is None:
            return tx
        return attrs.evolve(tx, descriptor=d, channel_id=compute_channel_id_v2(d, tx.to, tx.chain_id))

class MemoryChainV2(IncludedOpens, MemoryChain):
    """An in-process v2 escrow plus test token (see the module docstring)."""

    name = "memory-v2"
    # What build_open_tx/build_topup_tx sign: "memory" (MemoryChain's canonical-JSON encoding) or "tempo" (Tempo
    # 0x76 transactions, adapters/chain/tempo_tx.py, the type mppx's server requires). decode_tx and broadcast
    # take both.
    tx_format = "memory"

    def __init__(self, *, chain_id: int = 31337, start_time: int = 1_700_000_000, escrow: str = PRECOMPILE_ESCROW, token: str | None = None) -> None:
        super().__init__(chain_id=chain_id, start_time=start_time, escrow=escrow, token=token)
        self.domain = VoucherDomain("v2", chain_id, self.escrow)

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self._opens: dict[str, int] = {}
            self._tempo_seen: set[str] = set()  # hashes of the Tempo transactions already included
            self._included_opens: dict[str, ChannelDescriptor] = {}

    # ------------------------------------------------------------------------ reads

    def get_channel(self, channel_id: str) -> ChannelStateV2:
        cid = norm_bytes32(channel_id, "channel_id")
        ch = self._channels.get(cid)
        if ch is None:
            return ChannelStateV2(cid, ZERO_ADDRESS, ZERO_ADDRESS, ZERO_ADDRESS, ZERO_ADDRESS, 0, 0, 0, False)
        d = ch.descriptor
        return ChannelStateV2(
            cid, d.payer, d.payee, d.token, d.authorized_signer, ch.deposit, ch.settled, ch.close_requested_at,
            ch.finalized, d.operator, d.salt, d.expiring_nonce_hash,
        )

    def compute_channel_id(self, descriptor: ChannelDescriptor) -> str:  # type: ignore[override]
        return compute_channel_id_v2(norm_descriptor(descriptor), self.escrow, self.chain_id)

    def opens_of(self, payer: str) -> int:
        """How many channels the payer has opened here (the input of its next expiringNonceHash)."""
        return self._opens.get(norm_address(payer, "payer"), 0)

    def voucher_digest(self, channel_id: str, cumulative_amount: int) -> bytes:
        return voucher_digest(
            self.domain, norm_bytes32(channel_id, "channel_id"), norm_amount(cumulative_amount, "cumulative_amount", UINT96_MAX)
        )

    # ------------------------------------------------------- client-signed transactions

    def _next_descriptor(self, payer: str, payee: str, operator: str, token: str, salt: str, signer: str) -> ChannelDescriptor:
        enh = getattr(self, "_foreign_enh", None) or stand_in_expiring_nonce_hash(payer, self._opens.get(payer, 0))
        return ChannelDescriptor(payer, payee, operator, token, salt, signer, enh)

    def build_open_tx(  # type: ignore[override]
        self, payer_key: bytes, payee: str, deposit: int, salt: str, authorized_signer: str, operator: str = ZERO_ADDRESS
    ) -> tuple[str, ChannelDescriptor]:
        payer = address_of_key(payer_key)
        args = {
            "authorizedSigner": norm_address(authorized_signer or ZERO_ADDRESS, "authorized_signer"),
            "deposit": str(norm_amount(deposit, "deposit", UINT96_MAX)),
            "operator": norm_address(operator or ZERO_ADDRESS, "operator"),
            "payee": norm_address(payee, "payee"),
            "salt": norm_bytes32(salt, "salt"),
            "token": self.token,
        }
        with self._lock:
            if self.tx_format == "tempo":
                data = tempo_tx.open_calldata(args["payee"], args["operator"], self.token, int(args["deposit"]),
                                              args["salt"], args["authorizedSigner"])
                raw = tempo_tx.sign(payer_key, self.chain_id, self._nonces.get(payer, 0), self.escrow, data)
                enh = tempo_tx.decode(raw).expiring_nonce_hash
                return raw, ChannelDescriptor(payer, args["payee"], args["operator"], self.token, args["salt"],
                                              args["authorizedSigner"], enh)
            d = self._next_descriptor(payer, args["payee"], args["operator"], self.token, args["salt"], args["authorizedSigner"])
            return self._sign_tx(payer_key, "open", args), d

    def build_topup_tx(self, payer_key: bytes, descriptor: ChannelDescriptor, amount: int) -> str:  # type: ignore[override]
        args = {
            "additionalDeposit": str(norm_amount(amount, "amount", UINT96_MAX)),
            "descriptor": descriptor_json(norm_descriptor(descriptor)),
        }
        if self.tx_format == "tempo":
            data = tempo_tx.topup_calldata(norm_descriptor(descriptor).as_abi(), int(args["additionalDeposit"]))
            with self._lock:
                nonce = self._nonces.get(address_of_key(payer_key), 0)
            return tempo_tx.sign(payer_key, self.chain_id, nonce, self.escrow, data)
        return self._sign_tx(payer_key, "topUp", args)

    def sequential_nonce(self, raw_tx: str) -> int | None:
        """A Tempo transaction: None (nonce keys and expiring nonces are not modelled: a Tempo open not yet
        included may still apply after the sender's other transactions); otherwise MemoryChain's."""
        if tempo_tx.is_tempo(raw_tx):
            return None
        return super().sequential_nonce(raw_tx)

    def decode_tx(self, raw_tx: str) -> DecodedTxV2:  # type: ignore[override]
        if tempo_tx.is_tempo(raw_tx):
            return self._decode_tempo(raw_tx)[0]
        return self._as_included(raw_tx, self._decode(raw_tx)[0])

    def _decode_tempo(self, raw_tx: str) -> tuple[DecodedTxV2, str]:
        return decode_tempo_v2(raw_tx, self.escrow, self.chain_id)

    def _decode_args(self, kind: str, args: object, sender: str, chain_id: int) -> DecodedTxV2:  # type: ignore[override]
        if not isinstance(args, dict) or set(args) != (_OPEN_ARGS if kind == "open" else _TOPUP_ARGS):
            raise ChainError("InvalidArgument", "wrong argument names")
        if kind == "open":
            d = self._next_descriptor(
                sender,
                norm_address(args["payee"], "payee"),
                norm_address(args["operator"], "operator"),
                norm_address(args["token"], "token"),
                norm_bytes32(args["salt"], "salt"),
                norm_address(args["authorizedSigner"], "authorizedSigner"),
            )
            amount = self._decimal(args["deposit"], UINT96_MAX)
        else:
            d = norm_descriptor(args["descriptor"])
            amount = self._decimal(args["additionalDeposit"], UINT96_MAX)
        cid = compute_channel_id_v2(d, self.escrow, self.chain_id)
        return DecodedTxV2(kind, sender, self.escrow, chain_id, cid, d, amount)

    def broadcast(self, raw_tx: str) -> str:
        if tempo_tx.is_tempo(raw_tx):
            return self._broadcast_tempo(raw_tx)
        with self._lock:
            tx, nonce, raw = self._decode(raw_tx)
            if tx.kind == "open":
                d = tx.descriptor
                args = (d.payee, d.operator, d.token, tx.amount, d.salt, d.authorized_signer)
            else:
                args = (tx.descriptor, tx.amount)
            self._execute(tx.sender, tx.kind, args, nonce)
            self._remember_open(raw_tx, tx)
        return "0x" + keccak(raw).hex()

    def _broadcast_tempo(self, raw_tx: str) -> str:
        return include_tempo_tx(self, raw_tx)

    def apply_foreign(self, sender: str, kind: str, args: tuple, expiring_nonce_hash: str | None = None) -> None:
        """MemoryChain.apply_foreign with v2 args (descriptors as ChannelDescriptor); an open takes the
        expiringNonceHash the precompile derives from that transaction instead of our stand-in."""
        with self._lock:
            self._foreign_enh = norm_bytes32(expiring_nonce_hash, "expiring_nonce_hash") if expiring_nonce_hash else None
            try:
                super().apply_foreign(sender, kind, args)
            finally:
                self._foreign_enh = None

    # ---------------------------------------------------------------------- direct calls

    def settle(self, payee_key: bytes, descriptor: ChannelDescriptor, cumulative_amount: int, signature: bytes) -> str:  # type: ignore[override]
        args = (norm_descriptor(descriptor), norm_amount(cumulative_amount, "cumulative_amount", UINT96_MAX), sig_bytes(signature))
        return self._call(payee_key, "settle", args)

    def close(  # type: ignore[override]
        self, payee_key: bytes, descriptor: ChannelDescriptor, cumulative_amount: int, capture_amount: int, signature: bytes
    ) -> str:
        args = (
            norm_descriptor(descriptor),
            norm_amount(cumulative_amount, "cumulative_amount", UINT96_MAX),
            norm_amount(capture_amount, "capture_amount", UINT96_MAX),
            sig_bytes(signature),
        )
        return self._call(payee_key, "close", args)

    def request_close(self, payer_key: bytes, descriptor: ChannelDescriptor) -> str:  # type: ignore[override]
        return self._call(payer_key, "requestClose", (norm_descriptor(descriptor),))

    def withdraw(self, payer_key: bytes, descriptor: ChannelDescriptor) -> str:  # type: ignore[override]
        return self._call(payer_key, "withdraw", (norm_descriptor(descriptor),))

    # ------------------------------------------------------------------- the escrow

    def _live_v2(self, d: ChannelDescriptor) -> tuple[str, _ChannelV2]:
        cid = compute_channel_id_v2(d, self.escrow, self.chain_id)
        return cid, self._live(cid)

    def _check_voucher_v2(self, ch: _ChannelV2, channel_id: str, amount: int, signature: bytes) -> None:
        expected = ch.descriptor.expected_signer
        signer = _ecrecover(voucher_digest(self.domain, channel_id, amount), signature)
        if signer is None or signer != expected:
            raise ChainError("InvalidSignature", f"recovered {signer}, expected {expected}")

    @staticmethod
    def _check_payee_side(ch: _ChannelV2, sender: str) -> None:
        """settle and close: the payee, or the operator when one was named at open."""
        if sender != ch.payee and (ch.descriptor.operator == ZERO_ADDRESS or sender != ch.descriptor.operator):
            raise ChainError("NotPayee", sender)

    def _open(self, sender: str, payee: str, operator: str, token: str, deposit: int, salt: str, authorized_signer: str) -> None:  # type: ignore[override]
        d = self._next_descriptor(sender, payee, operator, token, salt, authorized_signer)
        cid = compute_channel_id_v2(d, self.escrow, self.chain_id)
        if cid in self._channels:  # cannot happen with a fresh expiringNonceHash; the contract checks too
            raise ChainError("ChannelAlreadyExists", cid)
        self._check_pull(token, sender, deposit)
        self._channels[cid] = _ChannelV2(d, deposit)
        self._opens[sender] = self._opens.get(sender, 0) + 1
        self._pull(sender, deposit)

    def _settle(self, sender: str, d: ChannelDescriptor, amount: int, signature: bytes) -> None:  # type: ignore[override]
        cid, ch = self._live_v2(d)
        self._check_payee_side(ch, sender)
        self._check_voucher_v2(ch, cid, amount, signature)
        if amount > ch.deposit:
            raise ChainError("AmountExceedsDeposit", f"{amount} > {ch.deposit}")
        if amount <= ch.settled:
            raise ChainError("AmountNotIncreasing", f"{amount} <= {ch.settled}")
        delta = amount - ch.settled
        ch.settled = amount
        self._move(self.escrow, ch.payee, delta)

    def _topUp(self, sender: str, d: ChannelDescriptor, amount: int) -> None:  # type: ignore[override]
        _, ch = self._live_v2(d)
        if sender != ch.payer:
            raise ChainError("NotPayer", sender)
        if ch.deposit + amount > UINT96_MAX:
            raise ChainError("Panic(0x11)", "deposit overflows uint96")
        self._check_pull(ch.token, sender, amount)
        ch.deposit += amount
        ch.close_requested_at = 0
        self._pull(sender, amount)

    def _close(self, sender: str, d: ChannelDescriptor, amount: int, capture: int, signature: bytes) -> None:  # type: ignore[override]
        cid, ch = self._live_v2(d)
        self._check_payee_side(ch, sender)
        self._check_voucher_v2(ch, cid, amount, signature)
        if amount > ch.deposit:
            raise ChainError("AmountExceedsDeposit", f"{amount} > {ch.deposit}")
        if capture < ch.settled or capture > amount:
            raise ChainError("AmountNotIncreasing", f"capture {capture} outside [{ch.settled}, {amount}]")
        delta, refund = capture - ch.settled, ch.deposit - capture
        ch.settled = capture
        ch.finalized = True
        self._move(self.escrow, ch.payee, delta)
        self._move(self.escrow, ch.payer, refund)

    def _requestClose(self, sender: str, d: ChannelDescriptor) -> None:  # type: ignore[override]
        super()._requestClose(sender, compute_channel_id_v2(d, self.escrow, self.chain_id))

    def _withdraw(self, sender: str, d: ChannelDescriptor) -> None:  # type: ignore[override]
        super()._withdraw(sender, compute_channel_id_v2(d, self.escrow, self.chain_id))
