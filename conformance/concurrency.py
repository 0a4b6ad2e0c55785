"""Concurrent requests, and the check that every concurrent history is linearizable (property LZ).

A `concurrent` step (a plain dict, so traces stay JSON and replay) runs two operations at once on
threads, through the harness network, against the server under test:

devices        two devices of one payer (RunConfig.shared) each make a request on their one channel;
retry          one keyed paid request delivered twice at once: a retry racing its original;
topup_voucher  a topUp of the channel racing a voucher (which may need the added deposit, or not);
close_charge   a cooperative close racing a charge on the same channel.

`devices` drives the real clients (client-level); the other three are sent by the harness, which holds
the payer's key (like the adversary), so the interleavings are exactly the ones that matter.

Scheduling (`Scheduler`): a server may call `Env.checkpoint(point)` at the points named in
conformance/interface.py (CHECKPOINTS). Only one scheduled thread runs at a time; at each checkpoint the
running thread pauses and the scheduler resumes the thread the step's `schedule` (drawn by Hypothesis)
names next, so the interleaving replays. A thread that does not reach a checkpoint within a short grace is
blocked (on a lock of the server: correct behaviour) and another paused thread runs. A server without
the hook gets plain thread concurrency and the same check.

Linearizability (`linearize`, the check Knossos and Porcupine do, at the level of the shared object: the
server): the step's paid HTTP exchanges are the operations, with their invocation and completion order
from the network. The checker searches the orders that respect real time (an exchange that completed
before another began comes first) for one in which `model.server.handle`, applied one at a time from the
projection of the real state before the step, gives every exchange the verdict it got (served or not;
when a content request is served, its receipt's acceptedCumulative and spent) and ends in the observed server records
(acceptedCumulative, spent) and on-chain channels (deposit, settled, finalized). None: a violation LZ.
The twin continues from the model's state after the order found (the first one in invocation order).
"""
from __future__ import annotations

import threading
from typing import Callable, Optional, Sequence

import attrs
import httpx

from model import ghosts as mghosts
from model import server as msv
from model.messages import Request as MRequest
from wire.crypto import sign_voucher
from model.records import Voucher
from model.properties import b1_other_mode
from model.system import Act, Exchange, StepInfo, StepRun
from model.check import step as model_step
import wire

from .interface import BASE_URL, IDEMPOTENCY_HEADER, PAID_PATH, PAYER_HEADER
from .model_impl import challenge_from_response, escrow_channel, model_credential, wire_descriptor
from .network import copy_request, decode_credential

KINDS = ("devices", "retry", "topup_voucher", "close_charge")
RAW_KINDS = ("retry", "topup_voucher", "close_charge")
GRACE = 0.05  # seconds a resumed thread may take to reach its next checkpoint before it counts as blocked


# ---------------------------------------------------------------------------- scheduling


class Scheduler:
    """Runs a few functions on threads, one at a time between checkpoints, in the order of a schedule."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._local = threading.local()
        self._active = False
        self._state: list = []
        self._at: list = []
        self.trace: list = []  # (thread, the point it was resumed from), in order

    def checkpoint(self, point: str) -> None:
        """Env.checkpoint: pause the calling scheduled thread here until the scheduler resumes it."""
        me = getattr(self._local, "index", None)
        if me is None or not self._active:
            return
        with self._cv:
            self._state[me], self._at[me] = "paused", point
            self._cv.notify_all()
            while self._state[me] != "go":
                self._cv.wait(1.0)
            self._state[me] = "running"

    def run(self, fns: Sequence[Callable[[], object]], schedule: Sequence[int]) -> list:
        """Results of fns (an exception is returned, not raised), run as `schedule` says: at every
        decision the thread it names next if that thread is paused, else (and once the schedule is used up)
        the next paused thread after the last one resumed, round robin."""
        n = len(fns)
        results: list = [None] * n
        self._state, self._at, self.trace = ["paused"] * n, ["start"] * n, []

        def body(i):
            self._local.index = i
            with self._cv:
                while self._state[i] != "go":
                    self._cv.wait(1.0)
                self._state[i] = "running"
            try:
                results[i] = fns[i]()
            except BaseException as exc:  # reported by the caller
                results[i] = exc
            finally:
                self._local.index = None
                with self._cv:
                    self._state[i] = "done"
                    self._cv.notify_all()

        threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
        self._active = True
        for t in threads:
            t.start()
        plan, last = list(schedule), -1
        try:
            with self._cv:
                while True:
                    paused = [i for i in range(n) if self._state[i] == "paused"]
                    if not paused:
                        if all(s == "done" for s in self._state):
                            break
                        self._cv.wait(1.0)  # the others are running (or blocked on a lock of the server)
                        continue
                    # past the schedule: round robin (the next paused thread after the last one resumed)
                    rr = min(paused, key=lambda k: (k <= last, k))
                    want = plan.pop(0) if plan else rr
                    i = want if want in paused else rr
                    last = i
                    self.trace.append((i, self._at[i]))
                    self._state[i] = "go"
                    self._cv.notify_all()
                    while self._state[i] == "go":  # not yet running
                        self._cv.wait(0.01)
                    # until it pauses again or ends; past the grace it is blocked, and another may run
                    self._cv.wait_for(lambda: self._state[i] in ("paused", "done"), timeout=GRACE)
        finally:
            self._active = False
            with self._cv:
                for i in range(n):
                    if self._state[i] == "paused":
                        self._state[i] = "go"
                self._cv.notify_all()
        for t in threads:
            t.join(timeout=120)
        return results


# ---------------------------------------------------------------------------- linearizability


@attrs.frozen
class Op:
    """One operation of a concurrent history: an exchange with the server, as the model reads it."""

    label: str  # for messages: who sent what
    request: MRequest
    t0: int  # invocation order
    t1: int  # completion order
    status: Optional[int]  # None: no response (the server raised)
    receipt: Optional[tuple] = None  # (accepted, spent) of a 200's receipt


@attrs.frozen
class Linearization:
    order: tuple  # indices into the ops
    server: msv.Server
    chain: object
    steps: tuple  # per op in `order`: (spent before, spent after) of its channel in the model


def _agrees(op: Op, resp) -> bool:
    if op.status is None:
        return False
    if (op.status == 200) != (resp.status == 200):
        return False
    if op.status == 200 and op.request.content and op.receipt is not None and resp.receipt is not None:
        # a charge's receipt shows the accounting right after that charge; a topUp's or a close's receipt
        # (no charge) may show a later state in a server that commits them in two steps: not compared
        return op.receipt == (resp.receipt.accepted, resp.receipt.spent)
    return True


def _chain_refused(op: Op) -> bool:
    c = op.request.credential
    return c is not None and c.action in ("open", "topUp") and op.status is not None and op.status != 200


def _describe(op: Op) -> str:
    if op.status is None:
        return f"{op.label} -> the server raised"
    got = f"{op.status}" + (f" receipt accepted={op.receipt[0]} spent={op.receipt[1]}" if op.receipt else "")
    return f"{op.label} -> {got}"


def _final_mismatch(server, chain, records: dict, channels: dict) -> Optional[str]:
    for cid, real in records.items():
        rec = server.record(cid)
        model = None if rec is None else (rec.accepted, rec.spent)
        if model != real:
            return f"server record {cid[:10]} (accepted, spent): observed {real}, model {model}"
    for cid, real in channels.items():
        ch = chain.channel(cid)
        model = None if ch is None else (ch.deposit, ch.settled, ch.finalized)
        if model != real:
            return f"channel {cid[:10]} on chain (deposit, settled, finalized): observed {real}, model {model}"
    return None


def linearize(cfg: msv.ServerConfig, hinted: bool, server: msv.Server, chain, ops: Sequence[Op],
              records: dict, channels: dict) -> tuple[Optional[Linearization], str]:
    """(a linearization, "") or (None, why not): a sequential order of `ops`, respecting real time, in which
    model.server.handle from (server, chain) gives each op its observed verdict and ends in the observed
    `records` (cid -> (accepted, spent) or None) and `channels` (cid -> (deposit, settled, finalized))."""
    n = len(ops)
    before = [{j for j in range(n) if ops[j].t1 < ops[i].t0} for i in range(n)]
    best: dict = {"depth": -1, "why": ""}

    def go(done: tuple, srv, ch, steps):
        if len(done) == n:
            why = _final_mismatch(srv, ch, records, channels)
            if why is None:
                return Linearization(done, srv, ch, tuple(steps))
            if best["depth"] < n:
                best.update(depth=n, why=f"order {_order(done)} explains every answer, but {why}")
            return None
        for i in sorted(set(range(n)) - set(done), key=lambda k: ops[k].t0):
            if not before[i] <= set(done):
                continue
            op = ops[i]
            cid = op.request.credential.channel_id if op.request.credential else None
            r0 = srv.record(cid) if cid else None
            s2, c2, resp = msv.handle(cfg, srv, ch, op.request, hinted)
            if not _agrees(op, resp) and _chain_refused(op):
                # Two devices of one payer sign their transactions with one account nonce; the second to reach
                # the chain fails there (the model's chain has no nonces). A refused open or topUp that changed
                # nothing is explained by that; had it changed something, the final state would differ.
                s2, c2, resp = srv, ch, attrs.evolve(resp, status=op.status, receipt=None)
            if not _agrees(op, resp):
                if len(done) > best["depth"]:
                    model = f"{resp.status} {resp.problem or ''}".strip()
                    if resp.receipt is not None:
                        model += f" receipt accepted={resp.receipt.accepted} spent={resp.receipt.spent}"
                    best.update(depth=len(done), why=f"after {_order(done) or 'nothing'}, {_describe(op)} where "
                                                     f"the model answers {model}")
                continue
            r1 = s2.record(cid) if cid else None
            found = go(done + (i,), s2, c2, steps + [(r0.spent if r0 else 0, r1.spent if r1 else 0)])
            if found is not None:
                return found
        return None

    found = go((), server, chain, [])
    if found is not None:
        return found, ""
    lines = [f"  {k}. {_describe(op)}" for k, op in enumerate(ops)]
    return None, ("no sequential order of the concurrent requests explains what was observed:\n" + "\n".join(lines)
                  + f"\n  closest: {best['why']}")


def _order(done) -> str:
    return " ".join(str(k) for k in done)


# ---------------------------------------------------------------------------- the step


def wire_to_model_request(session, request: httpx.Request) -> Optional[MRequest]:
    """The model's reading of one exchange (None: no credential, or one the model cannot read)."""
    cred = decode_credential(request)
    if cred is None or cred == "malformed":
        return None
    p = cred.payload
    tx = None
    raw = getattr(p, "transaction", None)
    if raw is not None:
        try:
            tx = session.chain.decode_tx(raw)
        except Exception:
            return None
    mcred, _ = model_credential(session.domain, p, tx)
    payer = request.headers.get(PAYER_HEADER, "").strip().lower()
    if not payer:
        rec = session.server.record(p.channel_id)
        payer = rec.payer if rec is not None else (tx.sender if tx is not None else "")
    content = request.method.upper() != "HEAD"
    key = request.headers.get(IDEMPOTENCY_HEADER) if content and mcred.action in ("open", "voucher") else None
    return MRequest(payer, content, mcred, key)


def supported(session) -> Optional[str]:
    """None, or why this session's server cannot be driven concurrently (SKIPPED with that reason)."""
    if getattr(session.server, "concurrent", True) is False:
        return f"the server adapter {session.rc.server} takes one request at a time (concurrent = False)"
    if any(getattr(c, "concurrent", True) is False for c in session.clients):
        return f"the client adapter {session.rc.client} takes one request at a time (concurrent = False)"
    return None


def _channel_of(session, i: int):
    """(real channel, record, chain state) of client i's live channel, or None."""
    v = session.clients[i].view()
    if v.channel_id is None:
        return None
    rec = session.server.record(v.channel_id)
    st = session.chain.get_channel(v.channel_id)
    if rec is None or rec.finalized or not st.exists or st.finalized or st.close_requested_at:
        return None
    return v.channel_id, rec, st


def _challenge(session, i: int, method: str):
    unpaid = httpx.Request(method, BASE_URL + PAID_PATH, headers={PAYER_HEADER: session.addrs[i]})
    _, resp = session.net.send_raw(unpaid)
    wc, _ = challenge_from_response(resp, session.domain) if resp is not None else (None, None)
    return wc


def _raw_request(session, i: int, method: str, payload, key: Optional[str]) -> Optional[httpx.Request]:
    wc = _challenge(session, i, method)
    if wc is None:
        return None
    headers = {PAYER_HEADER: session.addrs[i],
               "Authorization": wire.encode_authorization(wire.Credential(challenge=wc, payload=payload))}
    if key:
        headers[IDEMPOTENCY_HEADER] = key
    return httpx.Request(method, BASE_URL + PAID_PATH, headers=headers)


def raw_requests(session, step: dict) -> Optional[list]:
    """The two requests of a harness-sent scenario (None: its precondition does not hold now)."""
    i, kind = step.get("client", 0), step["kind"]
    live = _channel_of(session, i)
    if live is None:
        return None
    cid, rec, st = live
    price, key_bytes = session.rc.price, session.keys[i]
    amount = rec.accepted + step.get("ahead", 1) * price

    def voucher(amount, key):
        sig = sign_voucher(key_bytes, session.domain, cid, amount)
        return _raw_request(session, i, "GET", wire.VoucherPayload(
            channel_id=cid, cumulative_amount=amount, signature=sig,
            descriptor=wire_descriptor(session.deployment.descriptor(cid))), key)

    session.request_no += 1
    key = f"k{session.request_no}"
    if kind == "retry":
        if amount > st.deposit:
            return None
        req = voucher(amount, key)
        return None if req is None else [req, req]
    if kind == "topup_voucher":
        if session.chain.balance_of(session.addrs[i]) < session.rc.top_up:
            return None
        raw = session.deployment.topup_tx(key_bytes, cid, session.rc.top_up)
        top = _raw_request(session, i, "HEAD", wire.TopUpPayload(
            channel_id=cid, transaction=raw, additional_deposit=session.rc.top_up,
            descriptor=wire_descriptor(session.deployment.descriptor(cid))), None)
        v = voucher(amount, key)
        return None if top is None or v is None else [top, v]
    if kind == "close_charge":
        if amount > st.deposit:
            return None
        v = voucher(amount, key)
        sig = sign_voucher(key_bytes, session.domain, cid, amount)
        close = _raw_request(session, i, "HEAD", wire.ClosePayload(
            channel_id=cid, cumulative_amount=amount, signature=sig,
            descriptor=wire_descriptor(session.deployment.descriptor(cid))), None)
        return None if v is None or close is None else [v, close]
    raise ValueError(f"unknown concurrent kind {kind!r}")


def run_step(session, step: dict, prev_real):
    """Run one `concurrent` step on `session`; returns (outcome, lz violations, twin StepInfo)."""
    kind = step["kind"]
    act = Act("concurrent", step.get("client", -1))
    why = supported(session)
    if why is not None:
        session.skipped.setdefault("LZ", why)
        return "skipped", [], StepInfo(act=act, outcome="skipped")
    net = session.net
    if kind == "devices":
        if len(session.clients) < 2 or any(c.view().channel_id is None for c in session.clients[:2]) \
                or len({c.view().channel_id for c in session.clients[:2]}) != 1:
            return "noop", [], StepInfo(act=act, outcome="noop")
        keys = []
        for _ in range(2):
            session.request_no += 1
            keys.append(f"k{session.request_no}")
        fns = [lambda c=c, k=k: c.request("GET", PAID_PATH, k).kind for c, k in zip(session.clients, keys)]
    else:
        reqs = raw_requests(session, step)
        if reqs is None:
            return "noop", [], StepInfo(act=act, outcome="noop")
        fns = [lambda r=copy_request(r): net.send_raw(r) for r in reqs]
    start = len(net.log)
    net.concurrent, net.requests = True, {}
    try:
        results = session.sched.run(fns, step.get("schedule", ()))
    finally:
        net.concurrent = False
    errors = [r for r in results if isinstance(r, BaseException)]
    outcomes = []
    for r in results:
        if isinstance(r, BaseException):
            outcomes.append(f"error:{type(r).__name__}")
        elif isinstance(r, str):
            outcomes.append(r)
        else:
            w, resp = r
            outcomes.append("served" if w.status == 200 else f"failed:{w.problem}")
    outcome = " | ".join(outcomes)
    violations = [("LZ", f"a concurrent request raised in the harness or the server: {e!r}") for e in errors]
    wires = net.log[start:]
    ops, opw = [], []
    for w in wires:
        if w.action is None:
            continue  # an unpaid request reads; it changes nothing
        req = net.requests.get(id(w))
        mreq = None if req is None or w.fate != "delivered" else wire_to_model_request(session, req)
        if mreq is None:
            session.skipped.setdefault("LZ", "an exchange the model cannot read (undecodable credential)")
            return outcome, violations, _twin_devices(session, act, outcome)
        who = f"client {w.client}" if w.client >= 0 else "harness"
        label = f"[{who}] {w.method} {w.action}" + (f" cumulative={w.amount}" if w.amount is not None else "") \
            + (f" key={w.key}" if w.key else "")
        ops.append(Op(label, mreq, w.t0, w.t1, w.status, w.receipt[1:3] if w.receipt else None))
        opw.append(w)
    cids = sorted({op.request.credential.channel_id for op in ops})
    records = {}
    channels = {}
    for cid in cids:
        r = session.server.record(cid)
        records[cid] = None if r is None else (r.accepted, r.spent)
        ch = escrow_channel(session.chain, cid)
        channels[cid] = None if ch is None else (ch.deposit, ch.settled, ch.finalized)
    hinted = session.cfg.fleet == "hinted"
    found, why = linearize(session.cfg.server, hinted, prev_real.server, prev_real.chain, ops, records, channels)
    if found is None:
        violations.append(("LZ", why))
    else:
        for k, (sb, sa) in zip(found.order, found.steps):
            opw[k].spent_before, opw[k].charged = sb, sa - sb
    for w in wires:  # the harness holds the payer's key: its vouchers are the payer's
        if w.origin == "adversary" and w.amount is not None and w.channel_id:
            session.signed[w.channel_id] = max(session.signed.get(w.channel_id, 0), w.amount)
    if kind == "devices":
        return outcome, violations, _twin_devices(session, act, outcome)
    order = found.order if found is not None else tuple(range(len(ops)))
    return outcome, violations, _twin_raw(session, act, [ops[k].request for k in order], outcome)


def _twin_raw(session, act: Act, mreqs: list, outcome: str) -> StepInfo:
    """The twin applies the linearized requests (channel ids mapped to the twin's names), like the adversary."""
    back = {r: t for t, r in session.map.items()}
    r = StepRun(session.cfg, session.twin, act, shadow=b1_other_mode)
    hinted = session.cfg.fleet == "hinted"
    for m in mreqs:
        c = m.credential
        tcid = back.get(c.channel_id)
        if tcid is None:
            continue
        v = c.voucher and Voucher(tcid, c.voucher.amount, c.voucher.signer)
        m2 = attrs.evolve(m, credential=attrs.evolve(c, channel_id=tcid, voucher=v))
        i = next((k for k, cc in enumerate(session.cfg.clients) if cc.payer == m.payer), -1)
        if i >= 0 and v is not None and v.signer == m.payer:
            r.note_signature(i, m2.credential)
        resp = r.deliver(m2, hinted)
        r.exchanges.append(Exchange(m2, resp))
    session.twin = r.freeze()
    session.twin_ghosts = mghosts.observe(session.twin_ghosts, r)
    return StepInfo(act=act, exchanges=tuple(r.exchanges), outcome=outcome, charged=tuple(r.charged),
                    keyed_charges=tuple(r.keyed_charges), closes=tuple(r.closes),
                    server_answers=tuple(r.answers))


def _twin_devices(session, act: Act, outcome: str) -> StepInfo:
    """The twin runs the two devices' requests one after the other, in the order whose server records match
    the real ones (first: device 0 first). It is the twin's continuation only; LZ is the exchange-level check."""
    best = None
    for order in ((0, 1), (1, 0)):
        s, g, infos = session.twin, session.twin_ghosts, []
        for i in order:
            s, g, info = model_step(session.cfg, s, g, Act("request", i))
            infos.append(info)
        ok = all(session.server.record(rc) is not None and s.server.record(t) is not None
                 and (s.server.record(t).accepted, s.server.record(t).spent)
                 == (session.server.record(rc).accepted, session.server.record(rc).spent)
                 for t, rc in session.map.items() if s.server.record(t) is not None)
        if best is None or ok:
            best = (s, g, infos)
        if ok:
            break
    session.twin, session.twin_ghosts, infos = best
    return StepInfo(act=act, exchanges=sum((i.exchanges for i in infos), ()), outcome=outcome,
                    signatures=sum((i.signatures for i in infos), ()), charged=sum((i.charged for i in infos), ()),
                    keyed_charges=sum((i.keyed_charges for i in infos), ()),
                    closes=sum((i.closes for i in infos), ()), server_answers=sum((i.server_answers for i in infos), ()))
