"""The deployment seam: one record the harness hands to every adapter.

A Deployment says which session protocol a chain backend speaks and everything
that follows from it: the voucher domain, the amount bound, how a channel id is
made, and the chain operations (the backend itself, a base.Chain for v1 or a
base.ChainV2 for v2). Adapters ask the deployment instead of assuming v1.

    dep = deployment_of(make_chain("memory-v2"))
    dep.protocol        # "v2"
    dep.domain          # VoucherDomain("v2", chain_id, escrow)
    dep.max_amount      # 2**96 - 1
    dep.chain.open ...  # the backend's operations

The channel-id operations (`open_tx`, `topup_tx`, `settle`, `close`,
`request_close`, `withdraw`, `descriptor`, `model_channel`) are the seam the
conformance harness hands to adapters: one call shape on both protocols. They
name a channel by its id; on v2 the descriptor every v2 write needs is read
from the escrow's record of that id (so they work for channels that exist;
an open returns the descriptor it will create).
"""
from __future__ import annotations

from typing import Literal, Optional, Union

import attrs

from wire.crypto import VoucherDomain

from .base import ZERO_ADDRESS, Chain, ChainError, ChainV2, ChannelDescriptor

__all__ = ["Deployment", "OpenTx", "deployment_of", "PROTOCOL_OF_BACKEND"]


@attrs.frozen
class OpenTx:
    """A signed (not sent) open: the raw transaction, the channel id it creates, and on v2 its descriptor."""

    raw: str
    channel_id: str
    descriptor: Optional[ChannelDescriptor] = None

# Which session protocol each backend name speaks (draft, "Protocol Versions").
PROTOCOL_OF_BACKEND: dict[str, Literal["v1", "v2"]] = {
    "memory": "v1",
    "evm": "v1",
    "rpc": "v1",
    "memory-v2": "v2",
    "evm-v2": "v2",
}


@attrs.frozen
class Deployment:
    """A chain backend together with the protocol facts every adapter needs."""

    protocol: Literal["v1", "v2"]
    chain: Union[Chain, ChainV2]

    @property
    def domain(self) -> VoucherDomain:
        """The voucher domain: name by protocol, version "1", the chain id, verifyingContract = the escrow."""
        return VoucherDomain(self.protocol, self.chain.chain_id, self.chain.escrow)

    @property
    def max_amount(self) -> int:
        """The amount bound on deposits, vouchers, settlement and capture: 2^128-1 (v1) or 2^96-1 (v2)."""
        return self.domain.max_amount

    @property
    def chain_id(self) -> int:
        return self.chain.chain_id

    @property
    def escrow(self) -> str:
        return self.chain.escrow

    @property
    def token(self) -> str:
        return self.chain.token

    def channel_id_v1(self, payer: str, payee: str, token: str, salt: str, authorized_signer: str) -> str:
        """v1: the escrow's computeChannelId over (payer, payee, token, salt, authorizedSigner, escrow, chainId)."""
        self._require("v1")
        return self.chain.compute_channel_id(payer, payee, token, salt, authorized_signer)  # type: ignore[call-arg]

    def channel_id_v2(self, descriptor: ChannelDescriptor) -> str:
        """v2: from the descriptor (draft, "Channel Descriptor")."""
        self._require("v2")
        return self.chain.compute_channel_id(descriptor)  # type: ignore[call-arg]

    def to_json(self) -> dict:
        """The deployment as a bridge adapter is handed it (adapters/bridge/PROTOCOL.md, "The deployment"):
        camelCase JSON, amounts as decimal strings."""
        return {
            "sessionProtocol": self.protocol,
            "backend": self.chain.name,
            "chainId": self.chain_id,
            "escrowContract": self.escrow,
            "currency": self.token,
            "voucherDomain": {"name": self.domain.name, "version": "1", "chainId": self.chain_id,
                              "verifyingContract": self.escrow},
            "amountType": "uint96" if self.is_v2 else "uint128",
            "maxAmount": str(self.max_amount),
            "channelId": "descriptor" if self.is_v2 else "escrow-open",
            "closeGracePeriod": self.chain.grace_period,
        }

    # -- the channel-id seam: one call shape on v1 and v2

    @property
    def is_v2(self) -> bool:
        return self.protocol == "v2"

    def descriptor(self, channel_id: str) -> Optional[ChannelDescriptor]:
        """v2: the descriptor of an existing channel, from the escrow's record (ChainError ChannelNotFound
        if there is none); v1: None (v1 channels have no descriptor)."""
        if not self.is_v2:
            return None
        st = self.chain.get_channel(channel_id)
        if not st.exists:
            raise ChainError("ChannelNotFound", channel_id)
        return st.descriptor

    def check_amount(self, amount: int, what: str = "amount") -> int:
        """ChainError("InvalidArgument") when `amount` is outside [0, max_amount]."""
        if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= self.max_amount:
            raise ChainError("InvalidArgument", f"{what} {amount!r} is outside [0, {self.max_amount}]")
        return amount

    def open_tx(self, payer_key: bytes, payee: str, deposit: int, salt: str,
                authorized_signer: str = ZERO_ADDRESS, operator: str = ZERO_ADDRESS) -> OpenTx:
        """Sign (not send) an open. v1: the id is the escrow's computeChannelId (no operator on v1);
        v2: the id is the descriptor's."""
        if self.is_v2:
            raw, d = self.chain.build_open_tx(payer_key, payee, deposit, salt, authorized_signer, operator)
            return OpenTx(raw, self.chain.compute_channel_id(d), d)
        if operator != ZERO_ADDRESS:
            raise ChainError("InvalidArgument", "a v1 escrow has no operator")
        raw, cid = self.chain.build_open_tx(payer_key, payee, deposit, salt, authorized_signer)
        return OpenTx(raw, cid)

    def topup_tx(self, payer_key: bytes, channel_id: str, amount: int) -> str:
        return self.chain.build_topup_tx(payer_key, self._name(channel_id), amount)

    def settle(self, payee_key: bytes, channel_id: str, cumulative_amount: int, signature: bytes) -> str:
        return self.chain.settle(payee_key, self._name(channel_id), cumulative_amount, signature)

    def close(self, payee_key: bytes, channel_id: str, cumulative_amount: int, capture_amount: int,
              signature: bytes) -> str:
        """Cooperative close capturing `capture_amount` (both protocols; v1 through its capture extension)."""
        if self.is_v2:
            return self.chain.close(payee_key, self._name(channel_id), cumulative_amount, capture_amount, signature)
        return self.chain.close(payee_key, channel_id, cumulative_amount, signature, capture_amount=capture_amount)

    def request_close(self, payer_key: bytes, channel_id: str) -> str:
        return self.chain.request_close(payer_key, self._name(channel_id))

    def withdraw(self, payer_key: bytes, channel_id: str) -> str:
        return self.chain.withdraw(payer_key, self._name(channel_id))

    def now(self) -> int:
        return self.chain.now()

    def advance_time(self, seconds: int) -> None:
        self.chain.advance_time(seconds)

    def model_channel(self, channel_id: str):
        """The channel as the model's record (model.chain.EscrowChannel), or None when it does not exist."""
        from model.chain import EscrowChannel

        st = self.chain.get_channel(channel_id)
        if not st.exists:
            return None
        operator = getattr(st, "operator", ZERO_ADDRESS)
        return EscrowChannel(st.channel_id, st.payer, st.payee, st.expected_signer, st.deposit, st.settled,
                             st.close_requested_at, st.finalized,
                             operator=None if operator == ZERO_ADDRESS else operator)

    def model_descriptor(self, channel_id: str):
        """v2: the channel's descriptor as the model's record (model.chain.Descriptor); v1: None."""
        from model.chain import Descriptor

        d = self.descriptor(channel_id)
        return None if d is None else Descriptor(*d.as_abi())

    def _name(self, channel_id: str):
        """What the backend's writes name a channel by: the id (v1) or the descriptor (v2)."""
        return self.descriptor(channel_id) if self.is_v2 else channel_id

    def _require(self, protocol: str) -> None:
        if self.protocol != protocol:
            raise ValueError(f"this is a {self.protocol} deployment ({self.chain.name}); the call is {protocol}-only")


def deployment_of(chain: Union[Chain, ChainV2]) -> Deployment:
    """The Deployment of a backend made by make_chain (its protocol from its name)."""
    try:
        protocol = PROTOCOL_OF_BACKEND[chain.name]
    except KeyError:
        raise ValueError(f"unknown chain backend {chain.name!r}; known: {', '.join(PROTOCOL_OF_BACKEND)}") from None
    return Deployment(protocol, chain)
