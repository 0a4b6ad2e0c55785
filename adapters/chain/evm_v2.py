"""EvmChainV2: the v2 escrow (TIP20ChannelEscrow.sol) at the precompile's address on py-evm.

EvmChain with the v2 contract in place of TempoStreamChannel: its runtime code
is written into the genesis state at 0x4d50500000000000000000000000000000000000,
mppx's default v2 escrow (mppx >= 0.8.18 refuses another unless told to allow
custom escrows); the contract has no constructor state, so the runtime code is
all it needs. Time, nonces, gas and the simulate-then-send rule are EvmChain's.
Semantics mirror memory_v2.MemoryChainV2 check for check (see there).
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
from .memory_v2 import norm_descriptor

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


class EvmChainV2(EvmChain):
    """The v2 escrow at the precompile address plus the test token, on py-evm."""

    name = "evm-v2"
    _escrow_artifact = "TIP20ChannelEscrow"

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
        data = self._calldata(_OPEN, _OPEN_TYPES, [payee, operator, self.token, deposit, bytes.fromhex(salt[2:]), signer])
        with self._lock:
            raw = self._sign(payer_key, self.escrow, data, _GAS["open"], self._nonce(payer))
            enh = stand_in_expiring_nonce_hash(payer, self.opens_of(payer))
        return "0x" + raw.hex(), ChannelDescriptor(payer, payee, operator, self.token, salt, signer, enh)

    def build_topup_tx(self, payer_key: bytes, descriptor: ChannelDescriptor, amount: int) -> str:  # type: ignore[override]
        payer = address_of_key(payer_key)
        d = norm_descriptor(descriptor)
        amount = norm_amount(amount, "amount", UINT96_MAX)
        data = self._calldata(_TOPUP, _TOPUP_TYPES, [_abi_descriptor(d), amount])
        with self._lock:
            raw = self._sign(payer_key, self.escrow, data, _GAS["topUp"], self._nonce(payer))
        return "0x" + raw.hex()

    def decode_tx(self, raw_tx: str) -> DecodedTxV2:  # type: ignore[override]
        return self._decode(raw_tx)[0]

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
