"""The matrix: which pairs run, with which strength, and what each is expected to show.

Properties the model itself breaks on the same trace are reported by the harness as
"known limit" and never fail a pair (model/scenarios.py K1-K4 are of that kind). The
entries of KNOWN are violations a pair MAY show, each with its reason; a pair is as
expected when every violated property is listed for it. Remove an entry once fixed.
"""
from __future__ import annotations

BUNDLED = ("reference", "legacy", "model")

MATRIX = [(c, s, "pair", "must") for c in BUNDLED for s in BUNDLED] + [
    ("model", "model", "pair", "strict"),
    ("reference", "reference", "pair", "strict"),
    ("model", "reference", "server", "must"),
    ("model", "legacy", "server", "must"),
    ("reference", "model", "client", "must"),
    ("legacy", "model", "client", "must"),
]

_CLOSE = ("EQ", "divergence (reported): the reference SessionClient.close() follows the hinted channel of its "
                "payer even when this client has no current channel; the model's close_credential "
                "(model/client.py) closes only the client's own current entry")
_OPEN_UNFUNDED = ("R2", "bug (reported): the reference client opens a channel its payer cannot fund (no balance "
                        "check before open), so the request ends failed:verification-failed instead of "
                        "refused:deposit-exhausted (model/client.py next_credential checks the balance)")

# (client, server, machine, strength) -> ((property, reason), ...)
KNOWN: dict = {
}


def expected_for(client: str, server: str, machine: str, strength: str = "must") -> tuple:
    return KNOWN.get((client, server, machine, strength), ())
