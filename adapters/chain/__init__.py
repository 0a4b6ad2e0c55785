"""Chain backends: the draft's v1 escrow plus a test token, behind one interface (base.Chain).

    make_chain("memory")  # in process, fast, no web3 (MemoryChain)
    make_chain("evm")     # the compiled escrow on py-evm via web3's tester provider (EvmChain)
    make_chain("rpc", url="http://127.0.0.1:8545")  # any JSON-RPC node, e.g. `python -m adapters.chain serve` (RpcChain)
    make_chain("memory-v2")  # the v2 escrow (TIP-20 channel precompile), in process (MemoryChainV2, base.ChainV2)
    make_chain("evm-v2")     # TIP20ChannelEscrow.sol at the precompile address on py-evm (EvmChainV2)

deployment.deployment_of(chain) says which protocol a backend speaks and what follows from it.

All implement base.Chain and also offer reset(), voucher_digest(), total_supply()
and nonce_of() (RpcChain's reset needs resettable=True and a dev chain).
"""
from __future__ import annotations

from typing import Any

from .base import ZERO_ADDRESS, Chain, ChainError, ChainV2, ChannelDescriptor, ChannelState, ChannelStateV2, DecodedTx, DecodedTxV2

__all__ = [
    "make_chain", "Chain", "ChainError", "ChannelState", "DecodedTx", "ZERO_ADDRESS", "BACKENDS",
    "ChainV2", "ChannelDescriptor", "ChannelStateV2", "DecodedTxV2", "BACKENDS_V2",
]

BACKENDS = ("memory", "evm", "rpc")
BACKENDS_V2 = ("memory-v2", "evm-v2")


def make_chain(name: str, **kw: Any) -> Chain | ChainV2:
    """A chain backend by name: "memory" (keyword arguments go to MemoryChain), "evm" (a fresh
    deployment), "rpc" (keyword arguments go to RpcChain: url, and optionally escrow, token,
    resettable, timeout), "memory-v2" or "evm-v2"."""
    if name == "memory":
        from .memory import MemoryChain

        return MemoryChain(**kw)
    if name == "evm":
        from .evm import EvmChain  # imports web3; only on this path

        return EvmChain(**kw)
    if name == "rpc":
        from .rpc import RpcChain  # imports web3; only on this path

        return RpcChain(**kw)
    if name == "memory-v2":
        from .memory_v2 import MemoryChainV2

        return MemoryChainV2(**kw)
    if name == "evm-v2":
        from .evm_v2 import EvmChainV2  # imports web3; only on this path

        return EvmChainV2(**kw)
    raise ValueError(f"unknown chain backend {name!r}; choose one of {', '.join(BACKENDS + BACKENDS_V2)}")
