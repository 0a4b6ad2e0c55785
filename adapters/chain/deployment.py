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
"""
from __future__ import annotations

from typing import Literal, Union

import attrs

from model.crypto import VoucherDomain

from .base import Chain, ChainV2, ChannelDescriptor

__all__ = ["Deployment", "deployment_of", "PROTOCOL_OF_BACKEND"]

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
