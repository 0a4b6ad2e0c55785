"""How the ghost variables of `model.system.System` grow (checker bookkeeping, not rules: no party
reads them). `model.system` records with these; `model.fastcheck` replays them from a `StepInfo`
(its `signatures` and `charged`) when it reuses a transition computed on another state."""
from __future__ import annotations

from .base import FrozenMap, fm_get, fm_set


def note_signed(signed: FrozenMap, channel_id: str, amount: int) -> FrozenMap:
    """`signed` / `own_signed`: the highest cumulative amount signed on each channel."""
    return fm_set(signed, channel_id, max(fm_get(signed, channel_id, 0), amount))


def note_served(served: FrozenMap, channel_id: str, charged: int) -> FrozenMap:
    """`served_value`: the sum of the prices charged on each channel."""
    return fm_set(served, channel_id, fm_get(served, channel_id, 0) + charged)
