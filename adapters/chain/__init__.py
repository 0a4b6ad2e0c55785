"""Chain backends: the draft's v1 escrow plus a test token, behind one interface (base.Chain).

    make_chain("memory")  # in process, fast, no web3 (MemoryChain)
    make_chain("evm")     # the compiled escrow on py-evm via web3's tester provider (EvmChain)

Both implement base.Chain and also offer reset(), voucher_digest(), total_supply()
and nonce_of(). There is no "rpc" backend yet (README.md beside this file says why).
"""
from __future__ import annotations

from typing import Any

from .base import ZERO_ADDRESS, Chain, ChainError, ChannelState, DecodedTx

__all__ = ["make_chain", "Chain", "ChainError", "ChannelState", "DecodedTx", "ZERO_ADDRESS", "BACKENDS"]

BACKENDS = ("memory", "evm")


def make_chain(name: str, **kw: Any) -> Chain:
    """A fresh chain backend by name: "memory" (keyword arguments go to MemoryChain) or "evm"."""
    if name == "memory":
        from .memory import MemoryChain

        return MemoryChain(**kw)
    if name == "evm":
        from .evm import EvmChain  # imports web3; only on this path

        return EvmChain(**kw)
    raise ValueError(f"unknown chain backend {name!r}; choose one of {', '.join(BACKENDS)}")
