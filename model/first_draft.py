"""The first implementation's rules, kept so the checker can show what they break.

Each function is a drop-in replacement for one rule of `model.client` or `model.server`, planted
through their rule records (`ClientRules`, `ServerRules`), never through a switch in the spec:

    ClientConfig(..., rules=ClientRules(amount=first_draft.sign_exactly_required))
"""
from __future__ import annotations

import math

import attrs

from .client import ClientConfig, ClientState, Entry
from .messages import Receipt
from .server import ServerChannel


def sign_exactly_required(target: int, signed_max: int) -> int:
    """First draft (replaces rule H3b): "sign exact server target", even below what the client already signed."""
    return target


def overwrite_from_receipt(entry: Entry, receipt: Receipt) -> Entry:
    """First draft (replaces rule R1): "overwrite runtime snapshot from receipt": the baseline the next
    voucher builds on is replaced by the receipt's values, stale or not."""
    return attrs.evolve(entry, accepted=receipt.accepted, spent=receipt.spent, signed_max=receipt.accepted)


def chain_after_restart(st: ClientState) -> bool:
    """First draft (replaces rule H1 after a restart): a restarted client recovers from chain although
    the server hints (`ClientRules.follows_hints`)."""
    return not st.restarted


def no_trust_bound(floor: int, cfg: ClientConfig, cost: int) -> float:
    """First draft (replaces rule H4 on what it pays): no bound, a hint can make the client sign the
    whole deposit (the deposit-drain bug)."""
    return math.inf


def required_spent_plus_price(rec: ServerChannel, cost: int) -> int:
    """Landed mppx server (replaces rule S-H2): requiredCumulative = spent + amount, with no max against accepted."""
    return rec.spent + cost
