"""The first implementation's rules, kept so the checker can show what they break.

Each function is a drop-in replacement for one rule of `model.client` or
`model.server` (see the swappable fields of `ClientConfig` and `ServerConfig`).
"""
from __future__ import annotations

import attrs

from .client import Entry
from .messages import Receipt
from .server import ServerChannel


def sign_exactly_required(target: int, signed_max: int) -> int:
    """First draft: "sign exact server target", even below what the client already signed."""
    return target


def overwrite_from_receipt(entry: Entry, receipt: Receipt) -> Entry:
    """First draft: "overwrite runtime snapshot from receipt": the baseline the next
    voucher builds on is replaced by the receipt's values, stale or not."""
    return attrs.evolve(entry, accepted=receipt.accepted, spent=receipt.spent, signed_max=receipt.accepted)


def required_spent_plus_price(rec: ServerChannel, cost: int) -> int:
    """Landed mppx server: requiredCumulative = spent + amount, with no max against accepted."""
    return rec.spent + cost
