"""Property B1 on implementations (the seed's promise "legacy vouchers stay valid"; issue 9 item 7).

The server under test runs in its configuration (hinted or legacy) as always; a *shadow* of the same
implementation, built in the other configuration (the optional adapter method `in_mode(hinted)`), runs on a
second chain backend of the same kind, funded the same way. The harness network feeds the shadow every request
the server under test handled, in the same order (client requests, duplicates, late deliveries, the
adversary's), and mirrors every harness action that changes the chain or the server (a top-up or forced close the
payer sends itself, the grace period passing, settlement, restarts, crashes at the same crash point). Since both
worlds start equal and receive the same inputs, a correct implementation keeps them equal; after every exchange the
check compares the answers as the model's B1 does (model/properties.py b1_same_verdict: status, problem type and
receipt; or crashed at the same point) and the resulting (acceptedCumulative, spent) of the credential's channel. The first difference is a B1 violation, and the shadow
is retired (the two worlds have diverged: later differences would only echo it).

A `concurrent` step (conformance/concurrency.py) also retires the shadow: its requests interleave in an order
the shadow cannot follow; B1 was checked on every step before it. An adapter without `in_mode` (a bridge, mppx:
no legacy mode) keeps B1 SKIPPED, never passed.
"""
from __future__ import annotations

import os
from typing import Optional

import attrs
import httpx

from .interface import ServerCrash
from .network import copy_request


def capable(server) -> bool:
    return callable(getattr(server, "in_mode", None))


def _shadow_chain(name: str):
    """A second backend of the kind the session uses (one per process and name, reset per session)."""
    from .harness import fresh_chain

    return fresh_chain(name, slot="b1-shadow")


def _ok(status: Optional[int]) -> bool:
    return status is not None and 200 <= status < 300


class Shadow:
    """The server under test in the other hint configuration, fed the same inputs."""

    def __init__(self, session) -> None:
        from adapters.chain.deployment import deployment_of

        self.session = session
        rc = session.rc
        self.chain = chain = _shadow_chain(rc.chain)
        if hasattr(chain, "tx_format") and hasattr(session.chain, "tx_format"):
            chain.tx_format = session.chain.tx_format
        chain.fund(session.payee_key, 0)  # the same funding, in the same order, as Session.__init__
        for k in dict.fromkeys(session.keys):
            chain.fund(k, rc.wallet)
        self.hinted = not session.server_hinted
        self.server = session.server.in_mode(self.hinted)
        workdir = os.path.join(session.workdir, "b1-shadow")
        os.makedirs(workdir, exist_ok=True)
        self.deployment = deployment_of(chain)
        self.server.reset(attrs.evolve(session.env, chain=chain, hinted=self.hinted, workdir=workdir,
                                       checkpoint=self._checkpoint, deployment=self.deployment))
        self.crashing: Optional[str] = None
        self.retired: Optional[str] = None  # why the shadow stopped (diverged, or a concurrent step)
        self.pending: list = []
        self.compared = 0  # exchanges compared (a run that compared none claims nothing)

    def _checkpoint(self, point: str) -> None:
        if self.crashing is not None and self.crashing == point:
            self.crashing = None
            raise ServerCrash(point)

    def take(self) -> list:
        out, self.pending = self.pending, []
        return out

    def retire(self, why: str) -> None:
        if self.retired is None:
            self.retired = why

    # -- the inputs

    def exchange(self, request: httpx.Request, w, crashed: Optional[str]) -> None:
        """The server under test handled `request` (wire `w`; `crashed`: the crash point it died at, or None)."""
        if self.retired is not None:
            return
        self.crashing = crashed
        try:
            resp = self.server.handle(copy_request(request))
            resp.read()
            status, died = resp.status_code, None
        except ServerCrash as exc:
            self.server.restart()
            status, died = None, str(exc.args[0]) if exc.args else "?"
        self.crashing = None
        if w.channel_id is None or w.action in (None, "malformed"):
            return  # an unpaid request: the two configurations answer it differently by design (hints)
        self.compared += 1
        mode = "hinted" if self.hinted else "legacy"
        main = "legacy" if self.hinted else "hinted"
        real_status = w.status if crashed is None else None
        said = (real_status, w.problem, w.receipt) if crashed is None else None
        other = (status, _problem(resp), _receipt(resp)) if died is None else None
        if said != other or crashed != died:  # as model/properties.py b1_same_verdict: status, problem, receipt
            self._diverged(f"{w.action} on {w.channel_id[:10]} (amount {w.amount}): the {main} server answered "
                           f"{_said(real_status, w.problem, crashed)}, the same implementation in its {mode} "
                           f"configuration {_said(status, _problem(resp) if died is None else None, died)}")
            return
        a, b = self.session.server.record(w.channel_id), self.server.record(w.channel_id)
        ra = None if a is None else (a.accepted, a.spent)
        rb = None if b is None else (b.accepted, b.spent)
        if ra != rb:
            self._diverged(f"{w.action} on {w.channel_id[:10]} (amount {w.amount}): after it the {main} server "
                           f"holds (acceptedCumulative, spent) = {ra}, the {mode} configuration {rb}")

    def _diverged(self, what: str) -> None:
        self.pending.append(("B1", f"B1 on the implementation: {what}"))
        self.retire("diverged")

    def settle(self, channel_id: str) -> None:
        if self.retired is None:
            self.server.settle(channel_id)

    def restart(self) -> None:
        if self.retired is None:
            self.server.restart()

    def chain_call(self, fn) -> None:
        """A harness chain action (the payer's own top-up or forced close, time passing) on the shadow's chain."""
        if self.retired is not None:
            return
        from adapters.chain.base import ChainError

        try:
            fn(self.chain, self.deployment)
        except ChainError:
            self.retire("a chain action the server under test's chain took failed on the shadow's")

    def close(self) -> None:
        fn = getattr(self.server, "close_resources", None)
        if fn is not None:
            try:
                fn()
            except Exception:
                pass


def _receipt(resp) -> Optional[tuple]:
    from .network import _receipt as receipt

    return receipt(resp)


def _problem(resp) -> Optional[str]:
    from .network import _problem as problem

    return problem(resp)


def _said(status, problem, crashed) -> str:
    if crashed is not None:
        return f"nothing (it crashed at {crashed})"
    return f"{status}" + (f" {problem}" if problem else "")
