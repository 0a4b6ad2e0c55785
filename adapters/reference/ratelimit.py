"""Per-key token buckets for the reference server (draft-tempo-session-00, "Denial of Service":
servers MUST rate-limit voucher submissions, SHOULD at 10 per second per session).

A bucket holds at most `burst` tokens and refills at `rate` tokens per second of
`clock`. The table is bounded: at most `max_keys` buckets, the least recently used
one forgotten first (a forgotten bucket comes back full, which only ever favours the
sender, never blocks an honest one).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Hashable

import attrs

__all__ = ["RateLimiter"]


@attrs.define
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    def __init__(
        self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self.clock = clock
        self.max_keys = max_keys
        self._guard = threading.Lock()
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable) -> float | None:
        """Take one token for `key`: None when granted, else the seconds until one is available."""
        now = self.clock()
        with self._guard:
            bucket = self._buckets.pop(key, None)
            if bucket is None:
                bucket = _Bucket(self.burst, now)
            else:
                elapsed = max(0.0, now - bucket.stamp)
                bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
                bucket.stamp = now
            self._buckets[key] = bucket  # most recently used last
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / self.rate
