"""Adapters for the reference implementations (adapters/reference): `reference` and `legacy`."""
from __future__ import annotations

import hashlib
import os
from typing import Optional

import httpx

from .interface import AccountingRecord, ClientParams, ClientView, Env, Outcome

FIXED_CLOCK = 1_800_000_000.0  # the wall clock the server sees: challenges never expire mid-run


class ReferenceServer:
    """adapters.reference.SessionServer, driven in process through its synchronous `handle`."""

    server_cls = None  # mutants override with a subclass of SessionServer
    crash_points = ("broadcast", "respond")  # it calls Env.checkpoint there (conformance/interface.py CRASH_POINTS)

    def __init__(self, name: str = "reference", hinted: Optional[bool] = None):
        self.name = name
        self.force_hinted = hinted
        self.srv = None

    def _make(self):
        from adapters.reference.server import SessionServer

        cls = self.server_cls or SessionServer
        return cls(self.config)

    def reset(self, env: Env) -> None:
        from adapters.reference.server import ServerConfig

        if self.srv is not None:
            self.srv.close()
        self.env = env
        hinted = env.hinted if self.force_hinted is None else self.force_hinted
        db = os.path.join(env.workdir, f"{self.name}-{env.seed}.sqlite")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.unlink(db + suffix)
        self.config = ServerConfig(
            chain=env.chain, payee_key=env.payee_key, db_path=db, price=env.price, hinted=hinted,
            hint_encoding=env.hint_encoding, suggested_deposit=env.suggested_deposit,
            secret=hashlib.sha256(b"reference" + str(env.seed).encode()).digest(), clock=lambda: FIXED_CLOCK,
            voucher_rate=None,  # the harness controls time; runs drive many requests at once
            checkpoint=env.checkpoint)
        self.srv = self._make()

    def in_mode(self, hinted: bool) -> "ReferenceServer":
        """The same implementation (mutants included) built hinted or legacy, not yet reset (B1 on implementations,
        conformance/b1.py)."""
        other = type(self)(f"{self.name}-{'hinted' if hinted else 'legacy'}", hinted=hinted)
        other.server_cls = self.server_cls
        return other

    def handle(self, request: httpx.Request) -> httpx.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        reply = self.srv.handle(request.method, request.url.path, headers)
        return httpx.Response(reply.status, headers=list(reply.headers), content=reply.body)

    def record(self, channel_id: str) -> Optional[AccountingRecord]:
        r = self.srv.get_record(channel_id)
        if r is None:
            return None
        return AccountingRecord(r.channel_id, r.accepted_cumulative, r.spent, r.deposit, r.settled, r.finalized,
                             r.payer, r.highest_signature or None)

    def settle(self, channel_id: str) -> None:
        from adapters.chain.base import ChainError

        try:
            self.srv.settle(channel_id)
        except (KeyError, ChainError):
            pass

    def restart(self) -> None:
        self.srv.close()
        self.srv = self._make()

    def close_resources(self) -> None:
        if self.srv is not None:
            self.srv.close()
            self.srv = None


class ReferenceClient:
    """adapters.reference.SessionClient."""

    client_cls = None  # mutants override

    def __init__(self, name: str = "reference", hinted: Optional[bool] = None):
        from adapters.reference.client import MAX_PAID_ATTEMPTS

        self.name = name
        self.force_hinted = hinted
        self.max_paid_attempts = MAX_PAID_ATTEMPTS  # its retry budget (conformance/interface.py)

    def _make(self):
        from adapters.reference.client import SessionClient

        cls = self.client_cls or SessionClient
        p = self.params
        # Like the model client: open with `deposit`, top up by `top_up` while the wallet allows
        # (the wallet, not max_deposit, is what runs out); salts derived from the run's seed.
        # The agreed price is the run's price. The harness loses responses after the server applied
        # them on purpose, and R2 wants the next request to complete: no cap on unserved exposure
        # across requests (the per-request bound stays); escrow is bounded by the wallet, like the model's.
        return cls(self.transport, p.key, self.env.chain, hinted=self.hinted, max_deposit=2**96 - 1,
                   max_unproven_hint=p.max_unproven, persist_path=self.persist_path, top_up=p.top_up,
                   deposit=p.deposit, seed=f"{self.env.seed}-{p.name}", auto_idempotency_keys=False,
                   max_price=self.env.price, max_escrow=2**96 - 1, max_unserved=2**96 - 1)

    def reset(self, env: Env, params: ClientParams, transport: httpx.BaseTransport) -> None:
        self.env, self.params, self.transport = env, params, transport
        self.hinted = params.hinted if self.force_hinted is None else self.force_hinted
        self.persist_path = None
        if params.persist:
            self.persist_path = os.path.join(env.workdir, f"{self.name}-{params.name}-{env.seed}.json")
            if os.path.exists(self.persist_path):
                os.unlink(self.persist_path)
        self.c = self._make()

    def request(self, method: str, path: str, idempotency_key: Optional[str] = None) -> Outcome:
        from adapters.reference.client import DepositExhausted, HintBoundExceeded, PaymentRefused

        try:
            resp = self.c.request(method, path, idempotency_key=idempotency_key)
        except HintBoundExceeded:
            return Outcome("refused:hint-bound-exceeded")
        except DepositExhausted:
            return Outcome("refused:deposit-exhausted")
        except PaymentRefused as exc:
            return Outcome(f"refused:{type(exc).__name__}")
        except httpx.TransportError:
            return Outcome("unknown")
        if 200 <= resp.status_code < 300:
            return Outcome("served", resp.status_code)
        from .model_impl import problem_slug

        return Outcome(f"failed:{problem_slug(resp)}", resp.status_code)

    def close(self) -> Outcome:
        from adapters.reference.client import PaymentRefused

        try:
            resp = self.c.close()
        except PaymentRefused as exc:
            return Outcome("refused:hint-bound-exceeded" if "Hint" in type(exc).__name__ else f"refused:{exc}")
        except httpx.TransportError:
            return Outcome("unknown")
        if resp is None:
            return Outcome("noop")
        from .model_impl import problem_slug

        return Outcome("done" if resp.status_code == 200 else f"failed:{problem_slug(resp)}", resp.status_code)

    def close_resources(self) -> None:
        self.c.close_http()

    def restart(self, keep_persisted: bool) -> None:
        if not keep_persisted and self.persist_path and os.path.exists(self.persist_path):
            os.unlink(self.persist_path)
        self.c.restart()

    def holdings(self) -> list[str]:
        """The channels it still holds escrow in, as it remembers them (property ST)."""
        return [h.channel_id for h in self.c.escrow_holdings()]

    def view(self) -> ClientView:
        v = self.c.view()
        if v is None:
            return ClientView(None)
        return ClientView(v.channel_id, v.accepted, v.spent, v.signed_max)


# Factories by import path (`--server conformance.reference_impl:legacy_server`); the bundled names use them too.
def reference_server() -> ReferenceServer:
    return ReferenceServer("reference")


def legacy_server() -> ReferenceServer:
    return ReferenceServer("legacy", hinted=False)


def reference_client() -> ReferenceClient:
    return ReferenceClient("reference")


def legacy_client() -> ReferenceClient:
    return ReferenceClient("legacy", hinted=False)
