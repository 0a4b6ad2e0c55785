"""EvmChainV2: the v2 escrow (TIP20ChannelEscrow.sol) at the precompile's address on py-evm.

EvmChain with the v2 contract in place of TempoStreamChannel: its runtime code
is written into the genesis state at 0x4d50500000000000000000000000000000000000,
mppx's default v2 escrow (mppx >= 0.8.18 refuses another unless told to allow
custom escrows); the contract has no constructor state, so the runtime code is
all it needs. Time, nonces, gas and the simulate-then-send rule are EvmChain's.
Semantics mirror memory_v2.MemoryChainV2 check for check (see there).

Tempo 0x76 transactions (mppx's client signs them, mppx's server takes only them) cannot run on py-evm. As on
memory-v2, `decode_tx` and `broadcast` take them, and `tx_format = "tempo"` makes build_open_tx/build_topup_tx sign
them; their escrow call is relayed (`apply_foreign`, also what conformance/chain_rpc.py calls for an SDK's own
transactions) as an ordinary transaction of the same sender, signed with the key the harness funded it with (a
test chain holds the keys of the accounts it funded, as a dev node holds its unlocked accounts). An open goes
through the escrow's harness-only `openWithNonceHash` with the expiringNonceHash the precompile derives from the
Tempo transaction, so the channel gets the id the SDK computed.
"""
from __future__ import annotations

from typing import Any

import eth_abi

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
from .evm import _GAS, EvmChain, _malformed, _selector
from . import tempo_tx
from .memory_v2 import IncludedOpens, decode_tempo_v2, include_tempo_tx, norm_descriptor

__all__ = ["EvmChainV2"]

_DESC = "(address,address,address,address,bytes32,address,bytes32)"
_STATE = "(uint96,uint96,uint32)"
_OPEN = "open(address,address,address,uint96,bytes32,address)"
_OPEN_TYPES = ["address", "address", "address", "uint96", "bytes32", "address"]
_TOPUP = f"topUp({_DESC},uint96)"
_TOPUP_TYPES = [_DESC, "uint96"]


def _abi_descriptor(d: ChannelDescriptor) -> tuple:
    return (d.payer, d.payee, d.operator, d.token, bytes.fromhex(d.salt[2:]), d.authorized_signer, bytes.fromhex(d.expiring_nonce_hash[2:]))


def _from_abi(t: tuple) -> ChannelDescriptor:
    payer, payee, operator, token, salt, signer, enh = t
    return ChannelDescriptor(
        payer.lower(), payee.lower(), operator.lower(), token.lower(), "0x" + bytes(salt).hex(), signer.lower(), "0x" + bytes(enh).hex()
    )


class EvmChainV2(IncludedOpens, EvmChain):
    """The v2 escrow at the precompile address plus the test token, on py-evm."""

    name = "evm-v2"
    _escrow_artifact = "TIP20ChannelEscrow"
    # What build_open_tx/build_topup_tx sign: "evm" (EIP-1559 transactions py-evm runs) or "tempo" (Tempo 0x76,
    # relayed; see the module docstring). decode_tx and broadcast take both.
    tx_format = "evm"

    def __init__(self) -> None:
        super().__init__()
        self._relay_keys: dict[str, bytes] = {}
        self._tempo_seen: set[str] = set()
        self._included_opens: dict[str, ChannelDescriptor] = {}

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self._relay_keys: dict[str, bytes] = {}  # address -> key, of every account `fund` funded
            self._tempo_seen: set[str] = set()  # hashes of the Tempo transactions already relayed
            self._included_opens: dict[str, ChannelDescriptor] = {}

    def fund(self, key: bytes, amount: int) -> str:
        addr = super().fund(key, amount)
        with self._lock:
            self._relay_keys[addr] = key
        return addr

    def _genesis_state(self, backend: Any, escrow_art: dict[str, Any]) -> Any:
        state = dict(backend.generate_genesis_state())
        state[bytes.fromhex(PRECOMPILE_ESCROW[2:])] = {
            "balance": 0,
            "nonce": 1,  # a contract account (EIP-161)
            "code": bytes.fromhex(escrow_art["deployedBytecode"][2:]),
            "storage": {},
        }
        return state

    def _place_escrow(self, escrow_art: dict[str, Any]) -> str:
        return PRECOMPILE_ESCROW  # already there, from the genesis state

    # ------------------------------------------------------------------------ reads

    def get_channel(self, channel_id: str) -> ChannelStateV2:
        cid = norm_bytes32(channel_id, "channel_id")
        ((desc, (settled, deposit, requested)),) = self._view(
            self.escrow, "getChannelById(bytes32)", ["bytes32"], [bytes.fromhex(cid[2:])], [f"({_DESC},{_STATE})"]
        )
        (finalized,) = self._view(self.escrow, "finalized(bytes32)", ["bytes32"], [bytes.fromhex(cid[2:])], ["bool"])
        d = _from_abi(desc)
        return ChannelStateV2(
            cid, d.payer, d.payee, d.token, d.authorized_signer, deposit, settled, requested, finalized,
            d.operator, d.salt, d.expiring_nonce_hash,
        )

    def compute_channel_id(self, descriptor: ChannelDescriptor) -> str:  # type: ignore[override]
        """The escrow's own computeChannelId (an eth_call)."""
        d = norm_descriptor(descriptor)
        types = ["address", "address", "address", "address", "bytes32", "address", "bytes32"]
        (cid,) = self._view(self.escrow, f"computeChannelId({','.join(types)})", types, list(_abi_descriptor(d)), ["bytes32"])
        return "0x" + bytes(cid).hex()

    def opens_of(self, payer: str) -> int:
        return self._view(self.escrow, "opensOf(address)", ["address"], [norm_address(payer, "payer")], ["uint256"])[0]

    def voucher_digest(self, channel_id: str, cumulative_amount: int) -> bytes:
        cid = bytes.fromhex(norm_bytes32(channel_id, "channel_id")[2:])
        amount = norm_amount(cumulative_amount, "cumulative_amount", UINT96_MAX)
        (digest,) = self._view(self.escrow, "getVoucherDigest(bytes32,uint96)", ["bytes32", "uint96"], [cid, amount], ["bytes32"])
        return bytes(digest)

    # ------------------------------------------------------- client-signed transactions

    def build_open_tx(  # type: ignore[override]
        self, payer_key: bytes, payee: str, deposit: int, salt: str, authorized_signer: str, operator: str = ZERO_ADDRESS
    ) -> tuple[str, ChannelDescriptor]:
        payer = address_of_key(payer_key)
        payee = norm_address(payee, "payee")
        operator = norm_address(operator or ZERO_ADDRESS, "operator")
        deposit = norm_amount(deposit, "deposit", UINT96_MAX)
        salt = norm_bytes32(salt, "salt")
        signer = norm_address(authorized_signer or ZERO_ADDRESS, "authorized_signer")
        if self.tx_format == "tempo":
            data = tempo_tx.open_calldata(payee, operator, self.token, deposit, salt, signer)
            with self._lock:
                raw = tempo_tx.sign(payer_key, self.chain_id, self._nonce(payer), self.escrow, data)
            enh = tempo_tx.decode(raw).expiring_nonce_hash
            return raw, ChannelDescriptor(payer, payee, operator, self.token, salt, signer, enh)
        data = self._calldata(_OPEN, _OPEN_TYPES, [payee, operator, self.token, deposit, bytes.fromhex(salt[2:]), signer])
        with self._lock:
            raw = self._sign(payer_key, self.escrow, data, _GAS["open"], self._nonce(payer))
            enh = stand_in_expiring_nonce_hash(payer, self.opens_of(payer))
        return "0x" + raw.hex(), ChannelDescriptor(payer, payee, operator, self.token, salt, signer, enh)

    def build_topup_tx(self, payer_key: bytes, descriptor: ChannelDescriptor, amount: int) -> str:  # type: ignore[override]
        payer = address_of_key(payer_key)
        d = norm_descriptor(descriptor)
        amount = norm_amount(amount, "amount", UINT96_MAX)
        if self.tx_format == "tempo":
            with self._lock:
                return tempo_tx.sign(payer_key, self.chain_id, self._nonce(payer), self.escrow,
                                     tempo_tx.topup_calldata(d.as_abi(), amount))
        data = self._calldata(_TOPUP, _TOPUP_TYPES, [_abi_descriptor(d), amount])
        with self._lock:
            raw = self._sign(payer_key, self.escrow, data, _GAS["topUp"], self._nonce(payer))
        return "0x" + raw.hex()

    def decode_tx(self, raw_tx: str) -> DecodedTxV2:  # type: ignore[override]
        if tempo_tx.is_tempo(raw_tx):
            return decode_tempo_v2(raw_tx, self.escrow, self.chain_id)[0]
        return self._as_included(raw_tx, self._decode(raw_tx)[0])

    def sequential_nonce(self, raw_tx: str) -> int | None:
        """A Tempo transaction: None (its nonce keys and expiring nonces are not modelled, as on memory-v2)."""
        if tempo_tx.is_tempo(raw_tx):
            return None
        return super().sequential_nonce(raw_tx)

    def broadcast(self, raw_tx: str) -> str:
        if not tempo_tx.is_tempo(raw_tx):
            with self._lock:
                tx = self.decode_tx(raw_tx)  # before it is mined: the stand-in hash reads the payer's opens
                tx_hash = super().broadcast(raw_tx)
                self._remember_open(raw_tx, tx)
            return tx_hash
        return include_tempo_tx(self, raw_tx)

    def apply_foreign(self, sender: str, kind: str, args: tuple, expiring_nonce_hash: str | None = None) -> None:
        """MemoryChainV2.apply_foreign on py-evm: one escrow call of a transaction py-evm cannot run (a Tempo
        0x76 one, decoded here or by an adapter) sent as an ordinary transaction of `sender`, with the key it was
        funded with; an open through openWithNonceHash with the transaction's expiringNonceHash. Reverts raise
        the escrow's own errors, as a direct call does."""
        if kind not in ("open", "topUp", "settle", "close", "requestClose", "withdraw"):
            raise ChainError("InvalidArgument", f"escrow call {kind!r}")
        sender = norm_address(sender, "sender")
        with self._lock:
            key = self._relay_keys.get(sender)
            if key is None:
                raise ChainError("UnknownSender", f"{sender} was not funded on this chain: there is no key to relay "
                                 f"its {kind} with")
            if kind == "open":
                if not expiring_nonce_hash:
                    raise ChainError("InvalidArgument", "an open needs the transaction's expiringNonceHash")
                payee, operator, token, deposit, salt, signer = args
                self.open_with_nonce_hash(key, payee, operator, token, deposit, salt, signer, expiring_nonce_hash)
            elif kind == "topUp":
                d, amount = args
                data = self._calldata(_TOPUP, _TOPUP_TYPES, [_abi_descriptor(norm_descriptor(d)), norm_amount(amount, "amount", UINT96_MAX)])
                super().broadcast("0x" + self._sign(key, self.escrow, data, _GAS["topUp"], self._nonce(sender)).hex())
            elif kind == "settle":
                self.settle(key, *args)
            elif kind == "close":
                self.close(key, *args)
            elif kind == "requestClose":
                self.request_close(key, *args)
            else:
                self.withdraw(key, *args)

    def _decode_call(self, sender: str, chain_id: int, data: bytes) -> DecodedTxV2:  # type: ignore[override]
        if data[:4] == _selector(_OPEN):
            kind, types = "open", _OPEN_TYPES
        elif data[:4] == _selector(_TOPUP):
            kind, types = "topUp", _TOPUP_TYPES
        else:
            raise ChainError("UnsupportedCall", f"not an open or topUp call (selector 0x{data[:4].hex()})")
        try:
            args = eth_abi.decode(types, data[4:])
        except Exception as exc:
            raise _malformed(f"bad arguments: {exc}") from None
        if kind == "open":
            payee, operator, token, amount, salt_b, signer = args
            enh = stand_in_expiring_nonce_hash(sender, self.opens_of(sender))
            d = ChannelDescriptor(sender, payee.lower(), operator.lower(), token.lower(), "0x" + bytes(salt_b).hex(), signer.lower(), enh)
        else:
            desc, amount = args
            d = _from_abi(desc)
        return DecodedTxV2(kind, sender, self.escrow, chain_id, compute_channel_id_v2(d, self.escrow, self.chain_id), d, amount)

    # ---------------------------------------------------------------------- direct calls

    def open_with_nonce_hash(  # the harness's relay of an SDK's own open (TIP20ChannelEscrow.openWithNonceHash)
        self, payer_key: bytes, payee: str, operator: str, token: str, deposit: int, salt: str, authorized_signer: str,
        expiring_nonce_hash: str,
    ) -> str:
        """Open as the payer with the expiringNonceHash the precompile derives from the SDK's open transaction,
        so the channel gets the id the SDK computed (py-evm cannot execute a Tempo 0x76 transaction)."""
        args = [
            norm_address(payee, "payee"),
            norm_address(operator or ZERO_ADDRESS, "operator"),
            norm_address(token, "token"),
            norm_amount(deposit, "deposit", UINT96_MAX),
            bytes.fromhex(norm_bytes32(salt, "salt")[2:]),
            norm_address(authorized_signer or ZERO_ADDRESS, "authorized_signer"),
            bytes.fromhex(norm_bytes32(expiring_nonce_hash, "expiring_nonce_hash")[2:]),
        ]
        types = _OPEN_TYPES + ["bytes32"]
        sig = f"openWithNonceHash({','.join(types)})"
        return self._transact(payer_key, self.escrow, "open", sig, types, args)

    def settle(self, payee_key: bytes, descriptor: ChannelDescriptor, cumulative_amount: int, signature: bytes) -> str:  # type: ignore[override]
        args = [
            _abi_descriptor(norm_descriptor(descriptor)),
            norm_amount(cumulative_amount, "cumulative_amount", UINT96_MAX),
            sig_bytes(signature),
        ]
        return self._transact(payee_key, self.escrow, "settle", f"settle({_DESC},uint96,bytes)", [_DESC, "uint96", "bytes"], args)

    def close(  # type: ignore[override]
        self, payee_key: bytes, descriptor: ChannelDescriptor, cumulative_amount: int, capture_amount: int, signature: bytes
    ) -> str:
        args = [
            _abi_descriptor(norm_descriptor(descriptor)),
            norm_amount(cumulative_amount, "cumulative_amount", UINT96_MAX),
            norm_amount(capture_amount, "capture_amount", UINT96_MAX),
            sig_bytes(signature),
        ]
        types = [_DESC, "uint96", "uint96", "bytes"]
        return self._transact(payee_key, self.escrow, "close", f"close({_DESC},uint96,uint96,bytes)", types, args)

    def request_close(self, payer_key: bytes, descriptor: ChannelDescriptor) -> str:  # type: ignore[override]
        args = [_abi_descriptor(norm_descriptor(descriptor))]
        return self._transact(payer_key, self.escrow, "requestClose", f"requestClose({_DESC})", [_DESC], args)

    def withdraw(self, payer_key: bytes, descriptor: ChannelDescriptor) -> str:  # type: ignore[override]
        args = [_abi_descriptor(norm_descriptor(descriptor))]
        return self._transact(payer_key, self.escrow, "withdraw", f"withdraw({_DESC})", [_DESC], args)
