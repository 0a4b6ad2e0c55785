"""Small shared pieces of the model: rejections and frozen maps.

Every transition in the model is a pure function that returns either a new
state or a `Rejected` value naming the rule that refused it. Maps are tuples of
(key, value) pairs sorted by key, so every state is hashable and two equal
states compare equal (the checker deduplicates on that).
"""
from __future__ import annotations

from typing import Iterator, TypeVar

import attrs

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
