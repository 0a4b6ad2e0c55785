"""Records shared by the model and the wire boundary.

The model never does cryptography: a voucher reaches it as the amount it
authorizes and the signer that the wire boundary recovered from its EIP-712
signature (`None` when the signature does not verify, is malformed or high-s).
"""
from __future__ import annotations

from typing import Literal

import attrs

HintEncoding = Literal["flat", "snapshot"]
"""How a challenge carries hints: "flat", the seed's `methodDetails` hint fields; "snapshot", the draft's
`methodDetails.sessionSnapshot` (Session Snapshot). Independent of the deployment's session protocol (v1/v2)."""


@attrs.frozen
class Voucher:
    """A cumulative voucher as the model sees it (draft, "Voucher Signing Format")."""

    channel_id: str
    amount: int
    signer: str | None  # the recovered signer; None: the signature did not verify


@attrs.frozen
class Hints:
    """Server hints carried by a 402 challenge (seed; draft "Session Snapshot").

    Both hint encodings map to this one record. Any field may be absent (None):
    a legacy server sends at most `channel_id`. `proof` is the server's highest
    voucher for the channel, as recovered at the wire boundary; only the
    snapshot encoding carries it (`highestVoucher`), and it is what lets a client trust
    `accepted` without having signed it itself (SPEC_NOTES, rule H3).
    """

    channel_id: str
    accepted: int | None = None
    spent: int | None = None
    deposit: int | None = None
    required: int | None = None
    settled: int | None = None
    close_requested_at: int | None = None
    proof: Voucher | None = None

    @property
    def has_values(self) -> bool:
        """True when the challenge carries more than a bare channelId (seed: "server hints present")."""
        return any(v is not None for v in (self.accepted, self.spent, self.deposit, self.required))
