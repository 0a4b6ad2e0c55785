"""Small shared pieces of the model: rejections, frozen maps, the escrow's amount bounds and keccak256
(a pure hash: the escrow derives v2 channel ids with it, rule E1b; `wire/crypto.py` re-exports it).

Every transition in the model is a pure function that returns either a new
state or a `Rejected` value naming the rule that refused it. Maps are tuples of
(key, value) pairs sorted by key, so every state is hashable and two equal
states compare equal (the checker deduplicates on that).
"""
from __future__ import annotations

from typing import Iterator, TypeVar

import attrs

try:  # safe-pysha3 is several times faster than the pycryptodome backend
    from sha3 import keccak_256 as _keccak_256

    def keccak(data: bytes) -> bytes:
        """keccak256 (the pre-standard SHA-3 used by Ethereum)."""
        return _keccak_256(data).digest()

except ImportError:  # pragma: no cover - depends on the environment
    from eth_hash.auto import keccak as _eth_keccak

    def keccak(data: bytes) -> bytes:
        """keccak256 (the pre-standard SHA-3 used by Ethereum)."""
        return _eth_keccak(data)


K = TypeVar("K")
V = TypeVar("V")


@attrs.frozen
class Rejected:
    """A typed refusal: `code` is the problem type (draft, "Rejection and Error
    Responses", or the escrow's custom error name); `rule` the SPEC_NOTES rule id."""

    code: str
    rule: str
    detail: str = ""


UINT96_MAX = 2**96 - 1
"""The v2 escrow's amount bound (draft, "Precompile-Backed Channel State": uint96)."""
UINT128_MAX = 2**128 - 1
"""The v1 escrow's amount bound (draft: uint128); also the wire's largest amount."""

FrozenMap = tuple  # tuple[tuple[K, V], ...] sorted by key


def fm_get(m: FrozenMap, key, default=None):
    for k, v in m:
        if k == key:
            return v
    return default


def fm_set(m: FrozenMap, key, value) -> FrozenMap:
    items = [(k, v) for k, v in m if k != key]
    items.append((key, value))
    items.sort(key=lambda kv: kv[0])
    return tuple(items)


def fm_values(m: FrozenMap) -> Iterator:
    return (v for _, v in m)
