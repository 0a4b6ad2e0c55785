"""Crash points inside a request (issue 9 item 3): the server dies after an open's broadcast and before the commit of
its record (point `broadcast`), or after the commit and before the response leaves (point `respond`).

A crash is a network fault of a `request` step (`fault: crash_after_broadcast | crash_after_commit`, conformance/steps.py), armed like the others
for the first request of the logical request that carries a voucher. The harness network (conformance/network.py)
sets the armed point while the server handles that request; the harness's `Env.checkpoint` raises
`ServerCrash` when the server reaches it (a bridge adapter is asked through `crashAt`); the network then restarts
the server on its durable store (`restart()`), and the client sees the connection reset (an httpx.ReadError),
as after a dropped response. A request that never reaches the armed point (a voucher on a known channel makes no
broadcast) goes on normally, in the real run and in the twin alike.

The twin gets the event that says what survives (model/system.py Fault): `crash_after_broadcast` (the chain
effect, no record, no response) or `hold_response` (the record, no response). Then the properties: S1 (no record,
no accepted voucher and no charge is lost across the restart), S6 and D3 (nothing is charged twice, a retry
included), and CR below. Adapters without `crash_points` get the crash rules SKIPPED, never passed.
"""
from __future__ import annotations

from typing import Optional

from .interface import CHECKPOINTS, CRASH_POINTS, ServerCrash

FAULT_POINTS = {"crash_after_broadcast": "broadcast", "crash_after_commit": "respond"}
"""The request faults that crash the server, and the crash point each arms."""
SIGNATURE_PROBLEMS = ("invalid-signature", "signer-mismatch", "malformed-credential")



def crash_points(server) -> tuple:
    """The crash points a server adapter offers (empty: the crash rules are SKIPPED)."""
    return tuple(p for p in getattr(server, "crash_points", ()) if p in CRASH_POINTS)


def skip_reason(server) -> Optional[str]:
    if crash_points(server):
        return None
    return f"the server adapter {getattr(server, 'name', '?')} offers no crash points (crash_points)"


def checkpoint_hook(session):
    """The Env.checkpoint of a session: crash at the armed point, else the concurrency scheduler's hook."""

    def checkpoint(point: str) -> None:
        net = getattr(session, "net", None)
        if net is not None and net.crashing is not None and net.crashing == point:
            net.crashing = None
            raise ServerCrash(point)
        if point in CHECKPOINTS:
            session.sched.checkpoint(point)

    return checkpoint


class CrashWatch:
    """The ghosts of property CR: channels orphaned by a crash in window (a), and whether each got its record."""

    def __init__(self) -> None:
        self.orphans: dict[str, int] = {}  # real channel id -> the step it was orphaned at
        self.crashes: dict[str, int] = {"broadcast": 0, "respond": 0}  # crashes that struck, per point

    def check(self, session, wires) -> list:
        out = []
        for w in wires:
            point = w.note[6:] if w.note.startswith("crash:") else None
            if point is not None:
                self.crashes[point] = self.crashes.get(point, 0) + 1
            cid = w.channel_id
            if point == "broadcast" and w.action == "open" and cid and session.server.record(cid) is None \
                    and session.chain.get_channel(cid).exists:
                self.orphans[cid] = w.step
                continue
            if cid not in self.orphans or w.status is None or w.amount is None or w.problem in SIGNATURE_PROBLEMS:
                continue
            if w.action not in ("open", "voucher", "close"):
                continue
            ch = session.chain.get_channel(cid)
            if session.server.record(cid) is None and ch.exists and not ch.finalized and not ch.close_requested_at:
                # (a channel whose forced close is pending is the payer's to withdraw: its deposit is not orphaned)
                out.append(("CR", f"channel {cid[:10]} (deposit {ch.deposit}) was opened on chain before the server "
                                  f"crashed at step {self.orphans[cid]}; a {w.action} credential naming it got "
                                  f"{w.status} {w.problem or ''} and the server still has no record of it: an "
                                  f"orphaned deposit"))
            elif session.server.record(cid) is not None:
                del self.orphans[cid]
        return out
