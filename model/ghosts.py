"""The checker's ghost variables: what the properties need to know about the history and no party reads.

They are not part of the deployment's state (`model.system.System`, the rules): the checker explores pairs
(System, Ghosts) and advances the ghosts from what a step reports (`model.system.StepInfo`), with `observe`.
The plain explorer (`model.check`), the optimized one (`model.fastcheck`) and the conformance harness's twin all
advance them with this one function, so a property reads the same ghosts wherever it is checked.
"""
from __future__ import annotations

import attrs

from .base import FrozenMap, fm_get, fm_set


@attrs.frozen(cache_hash=True)
class Ghosts:
    signed: FrozenMap = ()  # channel_id -> highest cumulative any client signed (properties D1, D2, HB)
    own_signed: tuple[FrozenMap, ...] = ()  # per client, in its current memory: channel -> highest (CM)
    served_value: FrozenMap = ()  # channel_id -> sum of the prices charged for content served (S6)
    lost_requests: int = 0  # requests the network held back (D2's allowance)
    charged_keys: frozenset = frozenset()  # (channel, Idempotency-Key) already charged once (D3)


def initial(clients: int) -> Ghosts:
    return Ghosts(own_signed=tuple(() for _ in range(clients)))


def note_signed(signed: FrozenMap, channel_id: str, amount: int) -> FrozenMap:
    """`signed` / `own_signed`: the highest cumulative amount signed on each channel."""
    return fm_set(signed, channel_id, max(fm_get(signed, channel_id, 0), amount))


def note_served(served: FrozenMap, channel_id: str, charged: int) -> FrozenMap:
    """`served_value`: the sum of the prices charged on each channel."""
    return fm_set(served, channel_id, fm_get(served, channel_id, 0) + charged)


def observe(g: Ghosts, info) -> Ghosts:
    """The ghosts after a step that reported `info` (a StepInfo, or the StepRun that builds one: the same
    fields): what it signed (`signatures`, in order; a
    client that forgot its memory in the step (`forgot`) forgets what it signed first), what it charged
    (`charged`, `keyed_charges`) and how many requests the network held back (`held_requests`)."""
    signed, own, served = g.signed, list(g.own_signed), g.served_value
    for i in info.forgot:
        own[i] = ()
    for i, cid, amount in info.signatures:
        signed = note_signed(signed, cid, amount)
        own[i] = note_signed(own[i], cid, amount)
    for cid, d in info.charged:
        served = note_served(served, cid, d)
    keys = g.charged_keys | frozenset(info.keyed_charges) if info.keyed_charges else g.charged_keys
    return Ghosts(signed, tuple(own), served, g.lost_requests + info.held_requests, keys)


def recharged_keys(g: Ghosts, info) -> list[tuple[str, str]]:
    """The (channel, Idempotency-Key) pairs charged in the step of `info` that had been charged before, in an
    earlier step (in `g`, the ghosts before it) or earlier in the same step (property D3)."""
    seen, again = set(g.charged_keys), []
    for ck in info.keyed_charges:
        if ck in seen:
            again.append(ck)
        seen.add(ck)
    return again
