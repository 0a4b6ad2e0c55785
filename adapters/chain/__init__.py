"""Chain backends: the draft's v1 escrow plus a test token, behind one interface (base.Chain).

    make_chain("memory")  # in process, fast, no web3 (MemoryChain)
    make_chain("evm")     # the compiled escrow on py-evm via web3's tester provider (EvmChain)
    make_chain("rpc", url="http://127.0.0.1:8545")  # any JSON-RPC node, e.g. `python -m adapters.chain serve` (RpcChain)

All implement base.Chain and also offer reset(), voucher_digest(), total_supply()
and nonce_of() (RpcChain's reset needs resettable=True and a dev chain).
"""
from __future__ import annotations

from typing import Any

from .base import ZERO_ADDRESS, Chain, ChainError, ChannelState, DecodedTx

__all__ = ["make_chain", "Chain", "ChainError", "ChannelState", "DecodedTx", "ZERO_ADDRESS", "BACKENDS"]

BACKENDS = ("memory", "evm", "rpc")


def make_chain(name: str, **kw: Any) -> Chain:
    """A chain backend by name: "memory" (keyword arguments go to MemoryChain), "evm" (a fresh
    deployment) or "rpc" (keyword arguments go to RpcChain: url, and optionally escrow, token,
    resettable, timeout)."""
    if name == "memory":
        from .memory import MemoryChain

        return MemoryChain(**kw)
    if name == "evm":
        from .evm import EvmChain  # imports web3; only on this path

        return EvmChain(**kw)
    if name == "rpc":
        from .rpc import RpcChain  # imports web3; only on this path

        return RpcChain(**kw)
    raise ValueError(f"unknown chain backend {name!r}; choose one of {', '.join(BACKENDS)}")
