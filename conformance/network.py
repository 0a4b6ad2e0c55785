"""The harness's network: an httpx transport in front of the server under test.

Every exchange is decoded (wire/headers.py) and logged as a `Wire` record, so
properties are computed from what actually crossed the wire. Faults:

* hold_request:  the request never reaches the server now (held; the harness may
                 deliver it later with `deliver_held`), the client sees a ConnectError;
* hold_response: the server applies the request, the client sees a ReadError;
* redeliver:     the harness sends a copy of a client's last paid request again;
* crash_after_broadcast, crash_after_commit: the server crashes inside the request at a crash point (conformance/crash.py),
                 is restarted on its durable store (`on_crash`), and the client sees a ReadError.

A fault is armed for one client and strikes the first request carrying a
voucher (open, voucher, close), like the model's faults (model/system.py).

Thread-safe: requests may come from several threads at once (conformance/concurrency.py). The log and
the fault bookkeeping are guarded by one lock; `server.handle` is called outside it, so requests really
interleave inside the server. Each exchange gets an invocation and a completion number (`t0`, `t1`) from
one counter: the real-time order a linearizability check must respect. While `concurrent` is set the
per-exchange charge (read from the server's record before and after) means nothing, since another
thread may commit in between: it is left 0 and the concurrency check fills it from its linearization.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional

import attrs
import httpx

import wire
from wire.profiles import hints_from_request

from .interface import PAYER_HEADER, IDEMPOTENCY_HEADER, ServerCrash
from .wire_form import wire_form


@attrs.define
class Wire:
    """One decoded HTTP exchange."""

    step: int
    client: int  # -1: harness/adversary
    origin: str  # client | duplicate | late | adversary
    method: str
    action: Optional[str] = None  # None: no credential
    channel_id: Optional[str] = None
    amount: Optional[int] = None  # voucher cumulative
    deposit: Optional[int] = None  # open/topUp amount (from the payload)
    key: Optional[str] = None
    status: Optional[int] = None  # None: lost
    fate: str = "delivered"  # delivered | request-lost | response-dropped | held-expired | server-crashed
    problem: Optional[str] = None
    receipt: Optional[tuple] = None  # (channel, accepted, spent, closed)
    hints: Optional[dict] = None
    charged: int = 0
    spent_before: int = 0
    note: str = ""
    t0: int = 0  # invocation and completion order (one counter for the whole run)
    t1: int = 0
    echoed: Optional[tuple] = None  # (escrowContract, chainId) of the challenge the credential echoes
    form: list = attrs.Factory(list)  # wire-form deviations of the response (conformance/wire_form.py, strict)

    def to_json(self) -> dict:
        return attrs.asdict(self)


def decode_credential(request: httpx.Request):
    auth = request.headers.get("authorization")
    if not auth:
        return None
    for value in (auth, auth.rstrip(" \t").rstrip("=")):  # a padded token (either:padded) says the same, for the log
        try:
            return wire.parse_authorization(value)
        except wire.WireError:
            pass
    return "malformed"


def _hints(resp: httpx.Response) -> Optional[dict]:
    value = resp.headers.get("www-authenticate")
    if not value:
        return None
    try:
        chs = wire.parse_www_authenticate(value)
        req = chs[0].decoded_request()
        h = hints_from_request(req, lambda c, a, s: None)
    except Exception:
        return {"error": "undecodable challenge"}
    if h is None:
        return {}
    return {k: v for k, v in (("channel", h.channel_id), ("accepted", h.accepted), ("spent", h.spent),
                               ("required", h.required), ("deposit", h.deposit), ("settled", h.settled),
                               ("proof", h.proof.amount if h.proof else None)) if v is not None}


def _problem(resp: httpx.Response) -> Optional[str]:
    if 200 <= resp.status_code < 300:
        return None
    try:
        return wire.parse_problem(resp.content).type.rsplit("/", 1)[-1]
    except wire.WireError:
        return f"http-{resp.status_code}"


def _receipt(resp: httpx.Response) -> Optional[tuple]:
    value = resp.headers.get("payment-receipt")
    if not value:
        return None
    try:
        r = wire.parse_receipt(value)
    except wire.WireError:
        return ("undecodable", 0, 0, False)
    return (r.channel_id, r.accepted_cumulative, r.spent, r.tx_hash is not None)


LIE_HEADER = "x-conformance-lie"
"""Set by the harness's lying server (conformance/adversary.py Liar) on every response it rewrote."""


def copy_request(request: httpx.Request) -> httpx.Request:
    return httpx.Request(request.method, request.url, headers=list(request.headers.multi_items()),
                         content=request.content)


class Network(httpx.BaseTransport):
    """Routes every request to `server.handle`, logging and applying faults."""

    def __init__(self, server, record: Callable[[str], object], nonce_of: Callable[[str], int] = lambda a: 0):
        self.server = server
        self.record = record
        self.nonce_of = nonce_of
        self.log: list[Wire] = []
        self.step = 0
        self.client = -1
        self.armed: dict[int, str] = {}
        self.last: dict[int, httpx.Request] = {}
        self.held: dict[int, tuple[httpx.Request, object]] = {}
        self.last_sent: dict[int, tuple[int, bool]] = {}  # per client: (payer's nonce when `last` was sent, lost)
        self.lost = 0
        self.lock = threading.RLock()
        self.clock = 0
        self.concurrent = False
        self.requests: dict[int, httpx.Request] = {}  # while concurrent: id(wire) -> the request (for the check)
        self.crashing: Optional[str] = None  # the crash point armed for the request the server is handling now
        self.on_crash: Callable[[], None] = lambda: None  # restarts the server after a crash
        self.mirror: Optional[Callable] = None  # B1 (conformance/b1.py): mirror(request, wire, crashed point)
        self.check_form, self.price = False, 0  # strict: read each response's wire form (WF1-WF3)

    def _tick(self) -> int:
        with self.lock:
            self.clock += 1
            return self.clock

    def for_client(self, i: int) -> "ClientPort":
        return ClientPort(self, i)

    def arm(self, client: int, fault: str) -> None:
        if fault != "none":
            self.armed[client] = fault

    def disarm(self) -> None:
        self.armed.clear()

    def exchange(self, request: httpx.Request, client: int, origin: str) -> tuple[Wire, Optional[httpx.Response]]:
        request.read()
        cred = decode_credential(request)
        w = Wire(self.step, client, origin, request.method.upper(), key=request.headers.get(IDEMPOTENCY_HEADER))
        if cred == "malformed":
            w.action = "malformed"
        elif cred is not None:
            p = cred.payload
            w.action, w.channel_id = p.action, p.channel_id
            try:
                md = cred.challenge.decoded_request().method_details
                w.echoed = (md.escrow_contract.lower(), None if md.chain_id is None else int(md.chain_id))
            except wire.WireError:
                w.echoed = ("undecodable", None)
            w.amount = getattr(p, "cumulative_amount", None)
            w.deposit = getattr(p, "additional_deposit", None)
            if p.action == "open":
                w.deposit = None
        carries_voucher = w.amount is not None
        with self.lock:
            fault = self.armed.get(client, "none") if (origin == "client" and carries_voucher) else "none"
            if fault != "none":
                del self.armed[client]
            if origin == "client" and cred not in (None, "malformed"):
                self.last[client] = copy_request(request)
                payer = request.headers.get(PAYER_HEADER, "")
                self.last_sent[client] = (self.nonce_of(payer) if payer else 0, fault == "hold_request")
            self.log.append(w)
            if fault == "hold_request":
                payer = request.headers.get(PAYER_HEADER, "")
                self.held[client] = (copy_request(request), self.nonce_of(payer) if payer else 0)
                self.lost += 1
                w.fate = "request-lost"
                return w, None
        concurrent = self.concurrent
        if concurrent:
            with self.lock:
                self.requests[id(w)] = request
        before = self.record(w.channel_id) if w.channel_id and not concurrent else None
        w.spent_before = before.spent if before is not None else 0
        w.t0 = self._tick()
        from .crash import FAULT_POINTS

        point = FAULT_POINTS.get(fault)
        self.crashing = point
        try:
            resp = self.server.handle(request)
        except ServerCrash:
            self.crashing = None
            w.t1 = self._tick()
            self.on_crash()
            after = self.record(w.channel_id) if w.channel_id else None
            w.charged = (after.spent if after is not None else 0) - w.spent_before
            w.fate, w.note = "server-crashed", f"crash:{point}"
            if w.charged > 0:  # it committed a charge (C2: only a served request is charged); the 200 never left
                w.status = 200
            if self.mirror is not None and not concurrent:
                self.mirror(request, w, point)
            return w, None
        self.crashing = None
        resp.read()
        w.t1 = self._tick()
        after = self.record(w.channel_id) if w.channel_id and not concurrent else None
        w.charged = 0 if concurrent else (after.spent if after is not None else 0) - w.spent_before
        w.status = resp.status_code
        w.problem = _problem(resp)
        w.receipt = _receipt(resp)
        if resp.status_code == 402:
            w.hints = _hints(resp)
        if LIE_HEADER in resp.headers:
            w.note = f"lie:{resp.headers[LIE_HEADER]}"
        elif self.check_form:
            w.form = wire_form(resp, w.charged, self.price)
        if self.mirror is not None and not concurrent:
            self.mirror(request, w, None)
        if fault == "hold_response":
            w.fate = "response-dropped"
            return w, None
        return w, resp

    def redeliver(self, client: int) -> Optional[Wire]:
        """A copy of the client's last request, or None when there is none or it can no longer apply: it was
        lost, carries a transaction, and the payer has sent another transaction since (its nonce moved), like
        a held request that expires in `deliver_held` (the model's chain has no nonces)."""
        req = self.last.get(client)
        if req is None:
            return None
        nonce, lost = self.last_sent.get(client, (0, False))
        cred = decode_credential(req)
        payer = req.headers.get(PAYER_HEADER, "")
        if lost and cred not in (None, "malformed") and getattr(cred.payload, "transaction", None) and payer \
                and self.nonce_of(payer) != nonce:
            return None
        w, _ = self.exchange(copy_request(req), client, "duplicate")
        return w

    def deliver_held(self, client: int) -> tuple[Optional[Wire], bool]:
        """(wire, delivered). A held request whose transaction can no longer apply (the payer
        has sent another transaction since: its nonce moved) expires and is discarded."""
        with self.lock:
            held = self.held.pop(client, None)
        if held is None:
            return None, False
        req, nonce = held
        cred = decode_credential(req)
        payer = req.headers.get(PAYER_HEADER, "")
        if cred not in (None, "malformed") and getattr(cred.payload, "transaction", None) and payer \
                and self.nonce_of(payer) != nonce:
            return None, False
        w, _ = self.exchange(req, client, "late")
        if client in self.last_sent and self.last.get(client) is not None \
                and self.last[client].content == req.content and self.last[client].headers == req.headers:
            self.last_sent[client] = (self.last_sent[client][0], False)  # it reached the server after all
        return w, True

    def send_raw(self, request: httpx.Request) -> tuple[Wire, Optional[httpx.Response]]:
        return self.exchange(request, -1, "adversary")


class ClientPort(httpx.BaseTransport):
    """The transport one client is given: every request is tagged with the client's index."""

    def __init__(self, net: Network, i: int):
        self.net, self.i = net, i

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        w, resp = self.net.exchange(request, self.i, "client")
        if resp is None:
            if w.fate == "request-lost":
                raise httpx.ConnectError("request lost by the conformance network", request=request)
            raise httpx.ReadError("response dropped by the conformance network", request=request)
        return httpx.Response(resp.status_code, headers=resp.headers, content=resp.content, request=request)
