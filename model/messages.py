"""What crosses the network, as the model sees it (after the wire boundary).

`wire/schema.py` holds the pydantic models of the real headers; these records
are their meaning: the fields a rule reads, with signatures already recovered.
"""
from __future__ import annotations

from typing import Literal

import attrs

from .records import Hints, Voucher

Action = Literal["open", "topUp", "voucher", "close"]


@attrs.frozen
class Credential:
    """The payload of `Authorization: Payment` (draft, "Payload Actions")."""

    action: Action
    channel_id: str
    voucher: Voucher | None = None  # open, voucher, close
    amount: int = 0  # open: deposit; topUp: additionalDeposit
    payer: str = ""  # open/topUp: the sender of the signed transaction
    tx_nonce: int = 0  # topUp: distinguishes transactions (a signed tx applies once)
    authenticates: bool = False  # rule UA3: a voucher sent to prove the payer (asks for the proof, not content)


@attrs.frozen
class Request:
    """One HTTP request to the protected resource."""

    payer: str  # the payer the client declares (used only to resolve hints)
    content: bool  # True: a content request (charged); False: HEAD / management (never charged)
    credential: Credential | None = None
    key: str | None = None  # Idempotency-Key


@attrs.frozen
class Challenge:
    """A 402 `WWW-Authenticate: Payment` challenge of the session intent."""

    price: int  # request.amount
    hints: Hints | None = None
    suggested_deposit: int | None = None
    foreign: bool = False  # its methodDetails name another escrow contract or chainId than this deployment's


@attrs.frozen
class Receipt:
    """`Payment-Receipt` (draft, "Receipt Generation"; seed: channelId, acceptedCumulative, spent)."""

    channel_id: str
    accepted: int
    spent: int
    capture: int | None = None  # on close: what the payee captured (txHash in the wire)


@attrs.frozen
class Response:
    status: int  # 200, 402 or 410
    receipt: Receipt | None = None
    problem: str | None = None  # problem type short name, e.g. "insufficient-balance"
    challenge: Challenge | None = None  # every 402 carries a fresh challenge
    required_top_up: int | None = None
