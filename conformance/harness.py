"""One conformance run: real implementations in lock-step with the model (the "twin").

A `Session` applies protocol steps (plain dicts, so a trace is a JSON file) to
the real client(s) and server through the harness network, and the same step
to a `model.system.System` twin. After every step it

* projects what it observed of the real run (wire log, server records, chain,
  client views) into a `model.system.System` and checks every applicable
  numbered property of model/properties.py on it;
* checks the same properties on the twin: a property the model itself breaks on
  this step is a known limit of the protocol, reported as expected, not failed;
* in `strict` strength, compares the real observables with the twin's.
"""
from __future__ import annotations

import hashlib
import tempfile
from typing import Optional

import attrs

from adapters.chain import make_chain
from adapters.chain.base import ChainError
from model import chain as escrow
from model import client as mcl
from model import server as msv
from model.base import Rejected, fm_set
from wire.crypto import address_of
from model import ghosts as mghosts
from model.ghosts import Ghosts
from wire.profiles import encoding_of_profile
from model.properties import PROPERTIES, b1_other_mode, check_state, check_step
from model.records import Voucher
from model.system import MAX_ROUND_TRIPS, PRICES_PER_REQUEST, Act, Config, Exchange, StepInfo, System, StepRun, initial
from model.check import step as model_step
from model.scenarios import ALL_FAULTS

from . import b1, crash, registry
from .interface import PAID_PATH, ClientParams, Env
from adapters.chain.deployment import deployment_of

from .model_impl import escrow_channel, recover_or_none
from .network import Network
from .steps import HARNESS_OPS, MODEL_OPS, TWIN_FAULT, canonical_step
from .wire_form import WF_PROPERTIES

NAMES = ("alice", "alice2", "alice3")


@attrs.frozen
class RunConfig:
    client: str
    server: str
    chain: str = "memory"
    seed: int = 0
    price: int = 1
    hint_encoding: str = "snapshot"  # how the server's challenges carry hints: "flat" | "snapshot"
    strength: str = "must"  # must | strict
    n_clients: int = 2
    shared: bool = True  # both clients are devices of one payer
    persist: bool = True
    deposit: int = 4
    top_up: int = 2
    wallet: int = 6
    max_unproven: int = 0
    faults: bool = True  # network faults (lost requests, dropped responses)

    def to_json(self) -> dict:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "RunConfig":
        """The inverse of to_json; also reads trace files written before `hint_encoding` (key "profile", v1/v2)."""
        data = dict(data)
        if "profile" in data:
            data.setdefault("hint_encoding", encoding_of_profile(data.pop("profile")))
        return cls(**data)


def machine_config(rc: RunConfig, machine: str) -> RunConfig:
    """The configuration a machine really runs: `pair` drives both named adapters; `server` drives the
    named server against model clients (legacy ones when the named client is legacy) and an adversary;
    `client` drives the named client against the model server behind a liar. Strict runs of a real client
    have no network faults."""
    if rc.strength == "strict" and machine in ("pair", "client"):
        # strict compares a real client's choices with the model's; after a lost request or response a
        # conforming client may retry at the transport level or not, so strict runs without network faults
        rc = attrs.evolve(rc, faults=False)
    if machine == "server":
        return attrs.evolve(rc, client="model" if hinted_of(rc.client, "client") else "model-legacy")
    if machine == "client":
        return attrs.evolve(rc, server="model")
    return rc


def drives(rc: RunConfig, machine: str) -> str:
    """What a machine drives, for reports: which named adapter is under test, and what stands in for the other."""
    if machine == "server":
        return f"server {rc.server} under test; clients: {machine_config(rc, machine).client} + adversary"
    if machine == "client":
        return f"client {rc.client} under test; server: model + liar (--server {rc.server} not used)"
    return f"client {rc.client} and server {rc.server} under test"


def outcome_class(outcome: str) -> str:
    """served | refused | failed | unknown | done | noop | skipped: what strict mode compares. The reason after
    the colon is the implementation's own word (an exception name, its last problem type, or the model's
    "gave-up" for its round-trip bound), so two conforming implementations may word it differently."""
    return outcome.split(":", 1)[0]


def _key(tag: str, seed: int) -> bytes:
    return hashlib.sha256(f"conformance:{tag}:{seed}".encode()).digest()


_CHAINS: dict = {}


def _scratch() -> Optional[str]:
    """A RAM-backed directory when there is one: the reference server fsyncs every commit."""
    import os

    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def fresh_chain(name: str, slot: str = "session"):
    """One backend per process, name and slot, reset for every session (evm deployment is slow). A second
    slot gives a second chain of the same kind (B1's shadow server, conformance/b1.py)."""
    ch = _CHAINS.get((name, slot))
    if ch is None:
        ch = _CHAINS[(name, slot)] = make_chain(name)
    else:
        ch.reset()
    return ch


def hinted_of(spec: str, kind: str) -> bool:
    if spec.startswith("mutant:"):
        from .mutants import MUTANTS

        return MUTANTS[spec[7:]].hinted
    return registry.is_hinted(spec)


@attrs.define
class StepResult:
    n: int
    step: dict
    outcome: str
    twin_outcome: str
    violations: list  # (property, message)
    expected: list  # (property, message): the model breaks it too (known limit)
    mismatches: list  # strict: (what, real, model)
    wires: list


def keyed_charges(wires) -> tuple[tuple[str, str], ...]:
    """StepInfo.keyed_charges of the real run: (channel, Idempotency-Key) of each charged wire that carried a key."""
    return tuple((w.channel_id, w.key) for w in wires if w.charged and w.key)


class Session:
    b1_shadow = False  # run the server's other configuration side by side (B1; the server machine sets it)

    def __init__(self, rc: RunConfig, workdir: Optional[str] = None):
        self.rc = rc
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="conformance-", dir=_scratch())
        self.chain = chain = fresh_chain(rc.chain)
        if hasattr(chain, "tx_format"):
            # a bridge adapter's server (mppx) takes only Tempo 0x76 opens/topUps: the harness's own clients sign
            # those on a backend that can (memory-v2, evm-v2); the backend decodes both encodings either way
            from .bridge_spec import is_bridge

            chain.tx_format = "tempo" if is_bridge(rc.server) or is_bridge(rc.client) else type(chain).tx_format
        self.payee_key = _key("payee", rc.seed)
        chain.fund(self.payee_key, 0)
        self.keys = [_key("payer-" + str(0 if rc.shared else i), rc.seed) for i in range(rc.n_clients)]
        self.addrs = [address_of(k) for k in self.keys]
        for k in dict.fromkeys(self.keys):
            chain.fund(k, rc.wallet)
        self.server_hinted = hinted_of(rc.server, "server")
        self.client_hinted = hinted_of(rc.client, "client")
        from .concurrency import Scheduler

        self.sched = Scheduler()  # concurrent steps (conformance/concurrency.py); Env.checkpoint is its hook
        self.deployment = dep = deployment_of(chain)
        self.env = Env(chain, self.payee_key, rc.price, self.server_hinted, rc.hint_encoding, rc.seed, self.workdir,
                       suggested_deposit=rc.deposit, deployment=dep, checkpoint=crash.checkpoint_hook(self))
        self.server = registry.load_server(rc.server)
        if hasattr(self.server, "resolve_by_payer"):  # a bridge server facing the harness's own clients
            from .bridge_spec import is_bridge

            self.server.resolve_by_payer = not is_bridge(rc.client)
        self.server.reset(self.env)
        self.net = Network(self.server, self.server.record, getattr(chain, "nonce_of", lambda a: 0))
        self.net.on_crash = self.server.restart  # a crash inside a request: restart on the durable store
        self.net.check_form, self.net.price = rc.strength == "strict", rc.price  # WF1-WF3 (conformance/wire_form.py)
        self.clients = []
        names = NAMES if rc.shared else ("alice", "bob", "carol")
        self.params = []
        for i in range(rc.n_clients):
            c = registry.load_client(rc.client)
            p = ClientParams(names[i], self.keys[i], self.client_hinted, rc.deposit, rc.top_up, rc.max_unproven,
                             rc.persist)
            c.reset(self.env, p, self.net.for_client(i))
            self.clients.append(c)
            self.params.append(p)
        payee = address_of(self.payee_key)
        self.cfg = Config(
            msv.ServerConfig(payee=payee, price=rc.price, hinted=self.server_hinted, hint_encoding=rc.hint_encoding,
                             suggested_deposit=rc.deposit),
            tuple(mcl.ClientConfig(name=p.name, payer=address_of(p.key), hinted=self.client_hinted,
                                   deposit=rc.deposit, top_up=rc.top_up, max_unproven=rc.max_unproven,
                                   persist=rc.persist, max_price=rc.price,
                                   max_paid_attempts=getattr(c, "max_paid_attempts", None))
                  for p, c in zip(self.params, self.clients)),
            fleet="hinted" if self.server_hinted else "legacy",
            faults=ALL_FAULTS if rc.faults else ("none",), restarts=True, server_restarts=True, settle=True,
            forced_close=True, top_up=True, close=True, head=True, duplicates=True, wallet=rc.wallet,
            deployment=dep.protocol)
        self.twin: System = initial(self.cfg)
        self.twin_ghosts: Ghosts = mghosts.initial(len(self.clients))  # the checker's ghosts of the twin
        self.domain = dep.domain
        # ghosts of the real run (model/ghosts.py names; `ghosts()` freezes them)
        self.signed: dict = {}
        self.own = [dict() for _ in self.clients]
        self.served: dict = {}
        self.served_keys: set = set()
        self.charged_keys: set = set()
        self.map: dict = {}  # twin channel id -> real channel id
        self.steps: list = []
        self.results: list[StepResult] = []
        self.skipped = {"B1": "a model-level claim (one server, hinted vs legacy answers); implementations: SV of the server machine"}
        # A client that keeps no view of the server's accounting (it reads no receipts: mppx) cannot be held to
        # the properties about that view; its (channel, signed_max) is still compared.
        self.blind = [not getattr(c, "sees_receipts", True) for c in self.clients]
        if any(self.blind):
            for pid in ("RV", "RM"):
                self.skipped[pid] = f"client {rc.client} keeps no view of the server's accounting (reads no receipts)"
        self.request_no = 0
        if getattr(self.server, "can_restart", True) is False:
            self.skipped["op server.restart"] = ("the adapter lacks server.restart: durability of its store across a "
                                                 "server restart is not checked (restart_server steps are skipped)")
        self.views: list = [dict() for _ in self.clients]  # RM: highest view seen per channel
        from .concurrency import supported

        if supported(self) is not None:  # a bridge over one pipe: the concurrency rules are SKIPPED, never passed
            self.skipped["LZ"] = supported(self)
        self.wire_signed: list = [dict() for _ in self.clients]  # WM: highest voucher each client sent per channel
        self.public_vouchers: dict = {}  # real channel -> (amount, signature) a settle transaction published
        self.opened: list = [dict() for _ in self.clients]  # ST: channels each client opened (wire), in its memory
        self.lied_to: set = set()  # LL: clients lied to since their last honest request
        self.top_ups_judged = 0  # TU: accepted topUps followed by a voucher (TU is claimed only once one was)
        self.crash_watch = crash.CrashWatch()  # CR: channels orphaned by a crash after an open's broadcast
        self.b1 = None  # B1 on the implementation: its other configuration, fed the same inputs (conformance/b1.py)
        if self.b1_shadow and b1.capable(self.server):
            self.b1 = b1.Shadow(self)
            self.net.mirror = self.b1.exchange
            del self.skipped["B1"]
        if crash.skip_reason(self.server):
            self.skipped["CR"] = crash.skip_reason(self.server)

    # ------------------------------------------------------------- projection

    def known_channels(self) -> list[str]:
        seen = dict.fromkeys(w.channel_id for w in self.net.log if w.channel_id)
        return [c for c in seen if isinstance(c, str) and c.startswith("0x") and len(c) == 66]

    def project(self) -> System:
        chans, recs = (), ()
        for cid in self.known_channels():
            ch = escrow_channel(self.chain, cid)
            if ch is not None:
                chans = fm_set(chans, cid, ch)
            r = self.server.record(cid)
            if r is not None:
                if r.highest_signature:
                    signer = recover_or_none(self.domain, cid, r.accepted, r.highest_signature)
                else:
                    signer = ch.signer if ch else None
                    self.skipped["S4"] = "the server adapter does not expose its highest voucher's signature"
                recs = fm_set(recs, cid, msv.ServerChannel(
                    cid, r.payer, r.accepted, Voucher(cid, r.accepted, signer), spent=r.spent, deposit=r.deposit,
                    settled=r.settled, finalized=r.finalized))
        bals = ()
        for a in dict.fromkeys(self.addrs + [address_of(self.payee_key)]):
            bals = fm_set(bals, a, self.chain.balance_of(a))
        chain = escrow.Chain(channels=chans, balances=bals, time=self.chain.now())
        clients = []
        for c in self.clients:
            v = c.view()
            e = None if v.channel_id is None else mcl.Entry(v.channel_id, 0, v.accepted, v.spent, v.signed_max)
            clients.append(mcl.ClientState(entry=e))
        return System(chain, msv.Server(channels=recs), tuple(clients), tuple(self.twin.net))

    def ghosts(self) -> Ghosts:
        """The real run's ghosts now, as the properties read them (model/ghosts.py)."""
        return Ghosts(signed=tuple(sorted(self.signed.items())),
                      own_signed=tuple(tuple(sorted(o.items())) for o in self.own),
                      served_value=tuple(sorted(self.served.items())), lost_requests=self.net.lost,
                      charged_keys=frozenset(self.charged_keys))

    # ------------------------------------------------------------- steps

    def do(self, step: dict) -> StepResult:
        step = canonical_step(step)  # a step of an older trace reads in today's names (conformance/steps.py)
        n = len(self.steps) + 1
        self.steps.append(step)
        self.net.step = n
        start = len(self.net.log)
        prev_real, prev_twin = self.project(), self.twin
        prev_g, prev_tg = self.ghosts(), self.twin_ghosts
        synced = not self._state_mismatches() and not self._chain_mismatches()
        signed_before = dict(self.signed)
        act = self._act(step)
        lz = []
        if step["op"] == "concurrent" and self.b1 is not None:
            self.b1.retire("a concurrent step (its interleaving cannot be mirrored)")
        if step["op"] == "concurrent":
            from .concurrency import run_step

            outcome, lz, twin_info = run_step(self, step, prev_real)
        else:
            outcome = self._real(step)
            self.net.disarm()
            twin_info = self._twin(step, act)
        wires = self.net.log[start:]
        closes = self._ghosts(wires, prev_real)
        if lz:
            closes = []  # a concurrent history with no linearization has no "spent before the close" (LZ says so)
        nxt = self.project()
        i = step.get("client", 0)
        mine = [w for w in wires if w.client == i and w.origin == "client"]
        info = StepInfo(
            act=act, outcome=outcome, round_trips=len(mine),
            signatures=tuple((w.client, w.channel_id, w.amount) for w in wires
                             if w.origin == "client" and w.amount is not None),
            charged=tuple((w.channel_id, w.charged) for w in wires if w.charged),
            keyed_charges=keyed_charges(wires), closes=tuple(closes), fresh_receipt=(outcome == "served"))
        real_v = self._check(prev_real, prev_g, info, nxt, self.ghosts())
        twin_v = self._check(prev_twin, prev_tg, twin_info, self.twin, self.twin_ghosts)
        twin_ids = {p for p, _ in twin_v}
        violations = ([(p, m) for p, m in real_v if p not in twin_ids] + self._client_checks_wires(wires)
                      + self._wire_checks(step, wires, prev_real) + self._close_checks(closes)
                      + self._liveness(step, synced, outcome, twin_info.outcome)
                      + self._exposure(step, wires, signed_before, prev_real) + self._domain(wires)
                      + self._after_lie(step, synced, outcome, twin_info.outcome, len(mine)) + self._stranded(wires)
                      + self._top_up_short(step, wires, prev_real)
                      + lz + self.crash_watch.check(self, wires) + self.b1_take()
                      + wire_form_violations(wires))
        expected = [(p, m) for p, m in real_v if p in twin_ids]
        self._map_channels(wires, twin_info)
        mismatches = self._compare(step, outcome, twin_info.outcome) if self.rc.strength == "strict" else []
        res = StepResult(n, step, outcome, twin_info.outcome, violations, expected, mismatches, wires)
        self.results.append(res)
        return res

    def b1_take(self) -> list:
        """The B1 violations the shadow found in this step's exchanges (conformance/b1.py)."""
        return self.b1.take() if self.b1 is not None else []

    def _check(self, prev, prev_g, info, nxt, nxt_g):
        """The properties of one step: `prev_g` / `nxt_g` are the ghosts before and after it."""
        props = [p for p in PROPERTIES if p.id not in self.skipped and p.id != "HB"]
        out = check_step(self.cfg, prev, prev_g, info, nxt, props) + check_state(self.cfg, nxt, nxt_g, props)
        if "HB" not in self.skipped:
            out += self._h1_sequential(prev, prev_g, info, nxt)
        return out

    def _h1_sequential(self, prev, prev_g, info, nxt):
        """HB with the floor raised by the signatures made earlier in the same step (a logical
        request may sign more than once: what the payer signed a moment ago is authorized)."""
        from model.properties import h1_hint_bound

        signed = dict(prev_g.signed)
        for sig in info.signatures:
            g = attrs.evolve(prev_g, signed=tuple(sorted(signed.items())))
            v = h1_hint_bound(self.cfg, prev, g, attrs.evolve(info, signatures=(sig,)), nxt)
            if v:
                return [("HB", v)]
            _, cid, amount = sig
            signed[cid] = max(signed.get(cid, 0), amount)
        return []

    def _act(self, step: dict) -> Act:
        op, i = step["op"], step.get("client", -1)
        if op == "concurrent":
            return Act("concurrent", i)
        if op == "request":
            return Act("request", i, TWIN_FAULT[step.get("fault", "none")])
        if op not in MODEL_OPS:
            raise ValueError(f"unknown step {step}: ops are {MODEL_OPS + HARNESS_OPS} (conformance/steps.py)")
        return Act(op, i)  # the one vocabulary: a model op is named as the model's action

    def _real(self, step: dict) -> str:
        op, i = step["op"], step.get("client", 0)
        c = self.clients[i] if 0 <= i < len(self.clients) else None
        if op in ("request", "head"):
            self.request_no += 1
            if op == "request":
                self.net.arm(i, step.get("fault", "none"))
                key = f"k{self.request_no}" if step.get("key", True) else None
                return c.request("GET", PAID_PATH, key).kind
            return c.request("HEAD", PAID_PATH, None).kind
        if op == "duplicate":
            self.net.redeliver(i)
            return "done"
        if op == "deliver_held_request":
            self.net.deliver_held(i)
            return "done"
        if op == "restart_client":
            keep = bool(step.get("keep", True)) and getattr(c, "persists", True)  # no store option: a fresh install
            c.restart(keep)
            if not (self.rc.persist and keep):
                self.own[i] = {}
                self.opened[i] = {}  # it lost its memory: what it opened before is the payer's to recover
            self.views[i] = {}
            return "done"
        if op == "restart_server":
            if getattr(self.server, "can_restart", True) is False:
                return "skipped"  # a bridge adapter without server.restart (reported: "op server.restart")
            self.server.restart()
            if self.b1 is not None:
                self.b1.restart()
            return "done"
        if op == "settle":
            for cid in self.known_channels():
                rec = self.server.record(cid)
                if rec is not None:
                    self.server.settle(cid)
                    if self.b1 is not None:
                        self.b1.settle(cid)
                    if rec.highest_signature and self.chain.get_channel(cid).settled == rec.accepted:
                        # the settle transaction publishes the voucher: the third party (adversary.py) holds it
                        self.public_vouchers[cid] = (rec.accepted, rec.highest_signature)
            return "done"
        if op in ("top_up", "request_close"):
            cid = c.view().channel_id
            if cid is None:
                return "noop"
            try:
                if op == "top_up":
                    raw = self.deployment.topup_tx(self.keys[i], cid, self.rc.top_up)
                    self.chain.broadcast(raw)
                    mirror = lambda ch, dep: ch.broadcast(raw)  # noqa: E731
                else:
                    self.deployment.request_close(self.keys[i], cid)
                    mirror = lambda ch, dep: dep.request_close(self.keys[i], cid)  # noqa: E731
            except ChainError:
                return "noop"
            if self.b1 is not None:
                self.b1.chain_call(mirror)
            return "done"
        if op == "advance_time":
            self.chain.advance_time(escrow.CLOSE_GRACE_PERIOD)
            if self.b1 is not None:
                self.b1.chain_call(lambda ch, dep: ch.advance_time(escrow.CLOSE_GRACE_PERIOD))
            return "done"
        if op == "close":
            if not hasattr(c, "close"):
                self.skipped.setdefault("close", "the client adapter has no close()")
                return "skipped"
            return c.close().kind
        raise ValueError(f"unknown step {step}")

    # -- the twin

    def _twin(self, step: dict, act: Act) -> StepInfo:
        op, i = step["op"], step.get("client", 0)
        cfg, s = self.cfg, self.twin
        if op == "request" and not step.get("key", True):
            cl = list(cfg.clients)
            cl[i] = attrs.evolve(cl[i], use_keys=False)
            cfg = attrs.evolve(cfg, clients=tuple(cl))
        if op in ("request", "head", "settle", "advance_time", "close"):
            self.twin, self.twin_ghosts, info = model_step(cfg, s, self.twin_ghosts, act)
            return info
        if op == "restart_server":
            return StepInfo(act=act, outcome="done")
        r = StepRun(cfg, s, act, shadow=b1_other_mode)
        outcome = "done"
        if op in ("duplicate", "deliver_held_request"):
            if op == "duplicate":
                req = s.net[i].last
                if not any(w.origin == "duplicate" for w in self.net.log if w.step == len(self.steps)):
                    req = None  # it expired in the network (Network.redeliver)
            else:
                req = s.net[i].held_request
                r.net[i] = attrs.evolve(r.net[i], held_request=None)
                delivered = any(w.origin == "late" for w in self.net.log if w.step == len(self.steps))
                if not delivered:
                    req = None
            if req is not None:
                resp = r.deliver(req, cfg.fleet == "hinted")
                r.exchanges.append(Exchange(req, resp))
        elif op == "restart_client":
            keep = bool(step.get("keep", True)) and getattr(self.clients[i], "persists", True)
            c = cfg.clients[i] if keep else attrs.evolve(cfg.clients[i], persist=False)
            r.clients[i] = mcl.restart(c, r.clients[i])
            if not c.persist:
                r.forgot.append(i)
        elif op in ("top_up", "request_close"):
            e = r.clients[i].entry
            outcome = "noop"
            if e is not None:
                f = escrow.top_up if op == "top_up" else escrow.request_close
                args = (r.chain, cfg.clients[i].payer, e.channel_id) + ((cfg.clients[i].top_up,) if op == "top_up" else ())
                done = f(*args)
                if not isinstance(done, Rejected):
                    r.chain, outcome = done, "done"
        self.twin = r.freeze()
        self.twin_ghosts = mghosts.observe(self.twin_ghosts, r)
        return StepInfo(act=act, exchanges=tuple(r.exchanges), outcome=outcome,
                        charged=tuple(r.charged), keyed_charges=tuple(r.keyed_charges),
                        closes=tuple(r.closes), server_answers=tuple(r.answers))

    # -- ghosts of the real run

    def _ghosts(self, wires, prev_real: System) -> list:
        """Advances the real run's ghosts over the step's wires; returns its closes (as StepInfo.closes)."""
        closes = []
        for w in wires:
            cid = w.channel_id
            if w.origin == "client" and w.amount is not None and w.action in ("open", "voucher", "close"):
                self.signed[cid] = max(self.signed.get(cid, 0), w.amount)
                self.own[w.client][cid] = max(self.own[w.client].get(cid, 0), w.amount)
            if w.charged and w.key:
                self.charged_keys.add((cid, w.key))
            if w.status == 200 and w.method != "HEAD" and w.action in ("open", "voucher"):
                if w.key and (cid, w.key) in self.served_keys:
                    pass  # an idempotent replay: the same content again, not new content
                else:
                    self.served[cid] = self.served.get(cid, 0) + self.rc.price
                    if w.key:
                        self.served_keys.add((cid, w.key))
            if w.status is not None and 200 <= w.status < 300 and w.action == "close":  # 200, or mppx's 204
                before = prev_real.chain.channel(cid)
                after = self.chain.get_channel(cid)
                closes.append((cid, after.settled, w.spent_before, before.settled if before else 0))
        return closes

    def _map_channels(self, wires, twin_info: StepInfo) -> None:
        real = [w.channel_id for w in wires if w.action == "open" and w.origin == "client"]
        twin = [ex.request.credential.channel_id for ex in twin_info.exchanges
                if ex.request.credential is not None and ex.request.credential.action == "open"]
        for t, r in zip(twin, real):
            self.map[t] = r  # the model names a channel by count: the latest open wins

    def _compare(self, step, outcome, twin_outcome) -> list:
        out = []
        if step["op"] in ("request", "head", "close") and outcome != "skipped" \
                and outcome_class(outcome) != outcome_class(twin_outcome):
            out.append(("outcome", outcome, twin_outcome))
        return out + self._state_mismatches()

    def _chain_mismatches(self) -> list:
        """The mapped channels whose chain state (deposit, close pending, finalized) differs between the real run
        and the twin (a top-up or forced close the one applied and the other could not), and the payers' wallets
        (a channel only one of them opened): LV and LL compare outcomes only from the same state."""
        out = []
        for t, r in self.map.items():
            tch, rch = self.twin.chain.channel(t), escrow_channel(self.chain, r)
            a = None if tch is None else (tch.deposit, bool(tch.close_requested_at), tch.finalized)
            b = None if rch is None else (rch.deposit, bool(rch.close_requested_at), rch.finalized)
            if a != b:
                out.append((f"chain channel {r[:10]}", b, a))
        for a in dict.fromkeys(self.addrs):  # what each payer can still escrow (a channel only one run opened)
            if self.twin.chain.balance(a) != self.chain.balance_of(a):
                out.append((f"wallet {a[:10]}", self.chain.balance_of(a), self.twin.chain.balance(a)))
        return out

    def _state_mismatches(self) -> list:
        """(what, real, model) where the real run's records and views differ from the twin's."""
        out = []
        for t, r in self.map.items():
            tr = self.twin.server.record(t)
            rr = self.server.record(r)
            if tr is not None:
                tr = msv.refresh(tr, self.twin.chain)
            # deposit/settled/finalized are mirrors of the chain, refreshed when a request comes: not compared
            a = None if tr is None else (tr.accepted, tr.spent)
            b = None if rr is None else (rr.accepted, rr.spent)
            if a != b:
                out.append((f"server record {r[:10]} (accepted, spent)", b, a))
        for i, c in enumerate(self.clients):
            v = c.view()
            e = self.twin.clients[i].entry
            a = None if e is None else (self.map.get(e.channel_id, e.channel_id), e.signed_max)
            b = None if v.channel_id is None else (v.channel_id, v.signed_max)
            if self.client_hinted and not self.blind[i]:
                a = a and a + (e.accepted, e.spent)
                b = b and b + (v.accepted, v.spent)
            if a != b:
                out.append((f"client {i} view (channel, signed_max[, accepted, spent])", b, a))
        return out

    def _liveness(self, step: dict, synced: bool, outcome: str, twin_outcome: str) -> list:
        """LV: a request (or HEAD) the model completes, from the same state, with no fault and no lie in the
        step, the implementation completes too. `refused:*` and `failed:*` while the model is served are
        violations (a client that refuses everything, a HEAD that never completes, a false deposit-exhausted)."""
        if not synced or step["op"] not in ("request", "head") or step.get("lie") \
                or step.get("fault", "none") != "none":
            return []
        if outcome_class(twin_outcome) == "served" and outcome_class(outcome) != "served":
            return [("LV", f"{step['op']} by client {step.get('client', 0)} ended {outcome!r}; from the same state "
                           f"the model is served")]
        return []

    def _exposure(self, step: dict, wires, signed_before: dict, prev: System) -> list:
        """XP: one logical request signs, over all channels, at most PRICES_PER_REQUEST agreed prices (plus the
        unproven allowance) above what the payer had authorized when it began (read from the wire: the highest
        voucher any device of the payer had sent, and the chain's settled amount). A client that pays a lied
        price, or keeps paying a server that takes vouchers and answers 402, breaks it."""
        if step["op"] not in ("request", "head"):
            return []
        i = step.get("client", 0)
        top: dict = {}
        for w in wires:
            if w.client == i and w.origin == "client" and w.amount is not None and w.action in ("open", "voucher", "close"):
                top[w.channel_id] = max(top.get(w.channel_id, 0), w.amount)
        rise = 0
        for cid, amount in top.items():
            ch = prev.chain.channel(cid)
            rise += max(0, amount - max(signed_before.get(cid, 0), ch.settled if ch else 0))
        bound = PRICES_PER_REQUEST * self.rc.price + self.rc.max_unproven
        if rise > bound:
            return [("XP", f"client {i}'s {step['op']} signed {rise} above what the payer had authorized when it "
                           f"began ({', '.join(f'{c[:10]} up to {a}' for c, a in top.items())}); bound "
                           f"{PRICES_PER_REQUEST} x agreed price {self.rc.price} + allowance {self.rc.max_unproven}")]
        return []

    def _domain(self, wires) -> list:
        """DM: a client never answers a challenge naming another escrow contract or chainId (wire)."""
        escrow, chain_id = self.chain.escrow.lower(), self.chain.chain_id
        out = []
        for w in wires:
            if w.origin == "client" and w.echoed is not None and (
                    w.echoed[0] != escrow or (w.echoed[1] is not None and w.echoed[1] != chain_id)):
                out.append(("DM", f"client {w.client} sent a {w.action} credential echoing a challenge for escrow "
                                  f"{w.echoed[0]} chainId {w.echoed[1]} (this deployment: {escrow} {chain_id})"))
        return out

    def _after_lie(self, step: dict, synced: bool, outcome: str, twin_outcome: str, trips: int) -> list:
        """LL: after a lie ends, the client's next honest request (no fault) is served within MAX_ROUND_TRIPS
        round trips whenever the twin, lied to the same way and in the same state (records and views equal),
        is served: a lie costs at most the request it was told in, and a client that stops paying an honest
        server after being lied to fails."""
        i = step.get("client", 0)
        if step.get("lie"):
            self.lied_to.add(i)
            return []
        if step["op"] != "request" or i not in self.lied_to or step.get("fault", "none") != "none":
            return []
        self.lied_to.discard(i)
        if synced and outcome_class(twin_outcome) == "served" and (outcome_class(outcome) != "served" or trips > MAX_ROUND_TRIPS):
            return [("LL", f"client {i}'s first honest request after a lie ended {outcome!r} in {trips} round "
                           f"trips; the model, lied to the same way, is served")]
        return []

    def _stranded(self, wires) -> list:
        """ST: every channel a client opened (read from the wire) that the chain still holds escrow for (not
        finalized) stays known to it while it keeps its memory: it pays on it, or can still close or withdraw
        from it (the adapter's `holdings()`). A client that forgets a live channel on a 410 strands its deposit."""
        for w in wires:
            if w.action == "open" and w.client >= 0 and w.origin == "client" and w.channel_id:  # what it sent
                self.opened[w.client][w.channel_id] = True
        out = []
        for i, c in enumerate(self.clients):
            held = getattr(c, "holdings", None)
            if held is None:
                self.skipped.setdefault("ST", "the client adapter does not list the channels it holds (holdings())")
                continue
            live = [cid for cid in self.opened[i] if self._escrowed(cid)]
            if not live:
                continue
            known = {h.lower() for h in held()}
            for cid in live:
                if cid.lower() not in known:
                    ch = self.chain.get_channel(cid)
                    out.append(("ST", f"client {i} opened {cid[:10]} (deposit {ch.deposit}, settled {ch.settled}, "
                                      f"not finalized on chain) and no longer knows it: a stranded deposit"))
        return out

    def _top_up_short(self, step: dict, wires, prev: System) -> list:
        """TU (rule H5b): a client's accepted topUp covers the charge it was made for: the first voucher the client
        sends on the channel after it, in the same logical request, is at most the deposit right after that topUp
        (the chain's deposit before the step plus the step's accepted topUps up to it; a replayed topUp counted
        twice only makes the check weaker). A client that tops up only its configured amount when the shortfall
        is larger fails it, whether it then tops up again or pays on a short deposit.
        Not judged: a concurrent step (another device may pay between the topUp and the voucher), a lied step
        (a stale first challenge may ask less than the honest one after it), and a channel after any topUp of
        the step that was not answered 2xx (lost, dropped or refused: the chain may hold more than the wire shows)."""
        if step["op"] not in ("request", "head") or step.get("lie"):
            return []
        deposit: dict = {}  # channel -> its deposit while the step's topUps are all known to have applied
        blind: set = set()  # channels with a topUp of unknown effect in this step
        after: dict = {}  # (client, channel) -> deposit right after its first topUp not yet followed by a voucher
        out = []
        for w in wires:
            cid = w.channel_id
            if not cid or cid in blind:
                continue
            if w.action == "topUp":
                if w.status is None or not 200 <= w.status < 300 or w.fate != "delivered" or w.deposit is None:
                    blind.add(cid)
                    continue
                if cid not in deposit:
                    ch = prev.chain.channel(cid)
                    deposit[cid] = ch.deposit if ch is not None else 0
                deposit[cid] += w.deposit
                if w.origin == "client":
                    after.setdefault((w.client, cid), deposit[cid])
            elif w.action == "voucher" and w.origin == "client" and w.amount is not None \
                    and (w.client, cid) in after:
                d = after.pop((w.client, cid))
                self.top_ups_judged += 1
                if w.amount > d:
                    out.append(("TU", f"client {w.client} topped up {cid[:10]} to a deposit of {d}, short of the "
                                      f"voucher of {w.amount} it then sent for the same request (rule H5b: a top-up "
                                      f"adds at least the shortfall)"))
        return out

    def _escrowed(self, cid: str) -> bool:
        ch = self.chain.get_channel(cid)
        return ch.exists and not ch.finalized

    def _wire_checks(self, step: dict, wires, prev: System) -> list:
        """WM and HF, read from what each client put on the wire (not from its own report)."""
        out = []
        if step["op"] == "restart_client" and not (self.rc.persist and step.get("keep", True)
                                                    and getattr(self.clients[step.get("client", 0)], "persists", True)):
            self.wire_signed[step.get("client", 0)] = {}  # it lost its memory: a lower voucher is CM's business
        last_hint: dict = {}
        for w in wires:
            if w.origin != "client":
                continue
            i, cid = w.client, w.channel_id
            if w.note.startswith("lie:"):  # HF is a rule about honest hints: a lied answer ends the last one
                last_hint.pop(i, None)
            if w.status == 402 and w.hints and "required" in w.hints and not w.note.startswith("lie:"):
                last_hint[i] = w.hints
            if w.amount is None or w.action not in ("open", "voucher", "close") or not cid:
                continue
            mine = self.wire_signed[i]
            before = mine.get(cid)
            if before is not None and w.amount < before:
                out.append(("WM", f"client {i} sent a voucher of {w.amount} on {cid[:10]} after sending {before}"))
            h = last_hint.get(i)
            if h is not None and h.get("channel") == cid and w.action == "voucher" and self.client_hinted:
                ch = prev.chain.channel(cid)
                floor = max(before or 0, ch.settled if ch else 0, h.get("proof") or 0)
                bound = max(h["required"], floor) + self.rc.max_unproven
                if w.amount > bound:
                    out.append(("HF", f"client {i} signed {w.amount} on {cid[:10]} after an honest hint "
                                      f"requiredCumulative={h['required']} (its proven floor {floor}, allowance "
                                      f"{self.rc.max_unproven})"))
            mine[cid] = max(before or 0, w.amount)
        return out

    def _close_checks(self, closes) -> list:
        """CX: a cooperative close captures exactly max(spent, settled): never more (S7), and never less, which
        would give back to the payer what it was served (a close while authorization is unspent)."""
        out = []
        for cid, capture, spent, settled in closes:
            if capture != max(spent, settled):
                out.append(("CX", f"close of {cid[:10]} captured {capture}; spent was {spent}, settled {settled}"))
        return out

    def _client_checks_wires(self, wires) -> list:
        out = []
        if not self.client_hinted or not (self.server_hinted or self.cfg.lying_server):
            return out
        # HT: a voucher after a 402 hinting its channel is at least the hinted requiredCumulative, except the
        # authentication voucher of rule UA3 (the hint carries no proof; the voucher is at the client's own
        # highest or at settled + price, and asks for the proof rather than for content)
        last_hint: dict = {}
        sent = [dict(m) for m in self.wire_signed]
        for w in wires:
            if w.origin != "client":
                continue
            if w.note.startswith("lie:"):  # HT is a claim about honest hints (a lie is bounded by HB)
                last_hint.pop(w.client, None)
                continue
            if w.status == 402 and w.hints and "required" in w.hints:
                last_hint[w.client] = w.hints
            elif w.action == "voucher" and w.client in last_hint:
                h = last_hint[w.client]
                own = sent[w.client].get(w.channel_id, 0)
                sent[w.client][w.channel_id] = max(own, w.amount or 0)
                above = min(h.get("settled", 0) + self.rc.price, h.get("deposit", 0))  # model/client.py above_settled
                # ... which the client computes from the chain, not from the hint: a server whose hinted deposit or
                # settled is stale (SH's concern, SPEC_NOTES "stale hints") must not make HT blame the client
                ch = self.chain.get_channel(w.channel_id) if w.channel_id else None
                chained = min(ch.settled + self.rc.price, ch.deposit) if ch is not None and ch.exists else above
                authentication = "proof" not in h and w.amount in (own, above, chained)
                if h.get("channel") == w.channel_id and w.amount < h["required"] and not authentication:
                    out.append(("HT", f"client {w.client} signed {w.amount} on {w.channel_id[:10]} after a hint "
                                      f"requiredCumulative={h['required']}"))
        # RM: views never decrease
        for i, c in enumerate(self.clients):
            v = c.view()
            if v.channel_id is None or self.blind[i]:
                continue
            old = self.views[i].get(v.channel_id)
            if old is not None and (v.accepted < old[0] or v.spent < old[1]):
                out.append(("RM", f"client {i}'s view of {v.channel_id[:10]} went from accepted={old[0]}, "
                                  f"spent={old[1]} to accepted={v.accepted}, spent={v.spent}"))
            self.views[i][v.channel_id] = (max(v.accepted, old[0] if old else 0), max(v.spent, old[1] if old else 0))
        return out

    # -- summary

    def close(self) -> None:
        """Release the adapters' resources and the scratch directory (results stay readable)."""
        import shutil

        if self.b1 is not None:
            self.b1.close()
        for obj in [self.server] + list(self.clients):
            fn = getattr(obj, "close_resources", None)
            if fn is not None:
                try:
                    fn()
                except Exception:
                    pass
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def extra_claims(self) -> dict:
        """Harness-level properties (conformance/adversary.py EXTRA_PROPERTIES) -> claimed here?"""
        hinted = self.client_hinted and (self.server_hinted or self.cfg.lying_server)
        return {"HT": hinted, "RM": hinted, "WM": True, "HF": hinted, "CX": True, "LV": True, "XP": True, "DM": True,
                "LL": self.cfg.lying_server, "ST": "ST" not in self.skipped,
                "TU": self.top_ups_judged > 0,
                "CR": "CR" not in self.skipped and self.crash_watch.crashes.get("broadcast", 0) > 0,
                "LZ": any(r.step["op"] == "concurrent" and r.outcome not in ("noop", "skipped") for r in self.results),
                **dict.fromkeys(WF_PROPERTIES, self.rc.strength == "strict"),
                **{k: False for k in self.skipped if k.startswith("op ")}}

    def failures(self) -> list:
        out = []
        for r in self.results:
            out += [(r.n, p, m) for p, m in r.violations]
            out += [(r.n, "EQ", f"{what}: implementation {real} != model {model}") for what, real, model in r.mismatches]
        return out


def wire_form_violations(wires) -> list:
    """WF1-WF3 (strict; conformance/wire_form.py): the wire-form deviations the network read off each response."""
    return [v for w in wires for v in w.form]


def property_table(sessions_results: list, rc: RunConfig, cfg: Config, skipped: dict, extra: dict = {}) -> dict:
    """property id -> status: held | violated | known-limit | skipped: why | not claimed here."""
    table = {}
    for p in PROPERTIES:
        if p.id in skipped:
            table[p.id] = f"skipped: {skipped[p.id]}"
        elif not p.applies(cfg):
            table[p.id] = "not claimed for this deployment"
        else:
            table[p.id] = "held"
    for pid, claimed in extra.items():
        table[pid] = (f"skipped: {skipped[pid]}" if pid in skipped
                      else "held" if claimed else "not claimed for this deployment")
    for r in sessions_results:
        for p, _ in r.expected:
            if table.get(p) == "held":
                table[p] = "known limit (the model breaks it too)"
        for p, _ in r.violations:
            table[p] = "VIOLATED"
    if rc.strength == "strict":
        table["EQ"] = "VIOLATED" if any(r.mismatches for r in sessions_results) else "held"
    return table
