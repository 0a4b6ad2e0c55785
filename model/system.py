"""The whole deployment: one chain, one server, several clients, and the network.

`System` is the state the checker explores; `actions` lists what can happen
next; `step` applies one action and returns the new state and a `StepInfo`
saying what happened (outcome, round trips, what was signed, what was charged)
for the transition properties of `model.properties`.

`transition` is the rules. The checker's work is not here: its ghost variables (what the properties need to
know about the history, `model.ghosts`) are advanced from StepInfo; `model.check.step` adds the symmetry
reduction (`model.symmetry`); and property B1's second evaluation of every delivery (the same request against
the other hint mode) is a `shadow` the checker passes in (`model.properties.b1_other_mode`).
"""
from __future__ import annotations

from typing import Iterator, Literal

import attrs

from . import chain as escrow
from . import client as cl
from . import server as sv
from .base import FrozenMap, Rejected, fm_get, fm_set
from .chain import Chain
from .messages import Challenge, Credential, Request, Response

Fleet = Literal["hinted", "legacy", "mixed"]
Fault = Literal["none", "hold_request", "hold_response", "crash_after_broadcast"]
"""crash_after_broadcast: the server crashes inside the request, after an open's transaction is on chain and before
its record is committed (issue 9 item 3; conformance/crash.py): the chain effect stays, the record does not, the
response is lost; the server restarts on its durable store. Only an open the server broadcasts reaches that point:
any other request goes on as if no fault were armed. A crash after the commit and before the response is
`hold_response` (the record stays, the response is lost and never delivered)."""
MAX_ROUND_TRIPS = 6  # a logical request gives up after this many round trips


@attrs.frozen
class Net:
    """Per client: the last request sent (for duplicates and retries), a request the
    network holds back (delivered later or never), a response it holds back."""

    last: Request | None = None
    held_request: Request | None = None
    held_response: Response | None = None


@attrs.frozen
class Config:
    server: sv.ServerConfig
    clients: tuple[cl.ClientConfig, ...]
    fleet: Fleet = "hinted"
    faults: tuple[Fault, ...] = ("none",)
    restarts: bool = False  # client restarts
    server_restarts: bool = False
    settle: bool = False
    forced_close: bool = False
    top_up: bool = False
    close: bool = False
    head: bool = False
    duplicates: bool = False
    late_responses: bool = False
    lying_server: bool = False  # adversarial challenges (inflated hints)
    attacker: bool = False  # a third party: sees what is public, holds no payer key (ATTACKER)
    wallet: int = 6  # tokens each payer starts with
    deployment: Literal["v1", "v2"] = "v1"  # the escrow's protocol: its amount bound (model/chain.py MAX_AMOUNT)

    @property
    def payers(self) -> tuple[str, ...]:
        return tuple(sorted({c.payer for c in self.clients}))


@attrs.frozen(cache_hash=True)
class System:
    chain: Chain
    server: sv.Server
    clients: tuple[cl.ClientState, ...]
    net: tuple[Net, ...]
    # the third party's knowledge (not a ghost: it acts on it): channel -> the highest voucher it holds
    loot: FrozenMap = ()


ATTACKER = "0xe7e"
"""The third party (Config.attacker): it sees everything public (every challenge the server gives
anyone, with its hints; receipts; the chain, including the vouchers that settle and close transactions
publish) and holds no payer key. Its actions: `attack_peek` (an unpaid request naming a payer, as the
`Payment-Payer` header lets anyone), `attack_replay` (a content request with the best voucher it holds,
naming the victim so that a refusal shows it the victim's hints) and `attack_close` (a close with it)."""


def initial(cfg: Config) -> System:
    chain = Chain(max_amount=escrow.MAX_AMOUNT[cfg.deployment])
    for p in cfg.payers:
        chain = escrow.mint(chain, p, cfg.wallet)
    n = len(cfg.clients)
    return System(chain, sv.Server(), tuple(cl.ClientState() for _ in range(n)), tuple(Net() for _ in range(n)))


@attrs.frozen
class Act:
    """One action; `str(act)` is how a trace step reads."""

    kind: str
    client: int = -1
    fault: Fault = "none"
    hinted: bool | None = None  # for a mixed fleet: does this challenge carry hints?
    lie: str | None = None  # lying_request: which lie (LIES); None is "inflate"
    target: str = ""  # attack_replay / attack_close: the channel whose voucher the third party uses
    stale: Challenge | None = None  # lie stale_402: the challenge replayed (one from before the last payment)

    def describe(self, cfg: Config) -> str:
        who = cfg.clients[self.client].name if self.client >= 0 else "server"
        if self.kind.startswith("attack_"):
            who = "third party" + (f" (victim {cfg.clients[self.client].name})" if self.client >= 0 else "")
        extra = []
        if self.target:
            extra.append(f"voucher of {self.target}")
        if self.lie is not None:
            extra.append(f"lie: {self.lie}")
        if self.fault != "none":
            extra.append(self.fault.replace("_", " "))
        if self.hinted is not None:
            extra.append("hinted challenge" if self.hinted else "unhinted challenge")
        return f"{who}: {self.kind}" + (f" ({', '.join(extra)})" if extra else "")


@attrs.frozen
class Exchange:
    """One HTTP round trip, for traces."""

    request: Request
    response: Response | None  # None: lost or held


@attrs.frozen
class StepInfo:
    act: Act
    exchanges: tuple[Exchange, ...] = ()
    outcome: str = ""  # served | refused:<reason> | failed:<problem> | unknown | done | noop
    round_trips: int = 0
    signatures: tuple[tuple[int, str, int], ...] = ()  # (client, channel, amount) signed in this step
    charged: tuple[tuple[str, int], ...] = ()  # (channel, amount) added to spent
    keyed_charges: tuple[tuple[str, str], ...] = ()  # (channel, Idempotency-Key) of each charge that carried one
    held_requests: int = 0  # requests the network held back in this step
    forgot: tuple[int, ...] = ()  # clients that lost their memory (a restart without persistence)
    closes: tuple[tuple[str, int, int, int], ...] = ()  # (channel, capture, spent, settled before)
    fresh_receipt: bool = False  # the client got the response to a request just applied
    server_answers: tuple[tuple[Request, Response, Response], ...] = ()  # (req, hinted answer, legacy answer)


def actions(cfg: Config, s: System) -> Iterator[Act]:
    hint_choices = (True, False) if cfg.fleet == "mixed" else (None,)
    for i, c in enumerate(cfg.clients):
        for f in cfg.faults:
            for h in hint_choices:
                yield Act("request", i, f, h)
        if cfg.head:
            yield Act("head", i)
        if cfg.lying_server:
            yield Act("lying_request", i)  # inflated hints, no valid proof
            yield Act("lying_price_request", i)  # a price far above the real one
        st, net = s.clients[i], s.net[i]
        if cfg.top_up and st.entry is not None:
            yield Act("top_up", i)
        if cfg.close:
            yield Act("close", i)
        if cfg.duplicates and net.last is not None:
            yield Act("duplicate", i)
        if net.held_request is not None:
            yield Act("deliver_held_request", i)
        if cfg.late_responses and net.held_response is not None:
            yield Act("deliver_held_response", i)
        if cfg.restarts:
            yield Act("restart_client", i)
        if cfg.forced_close and st.entry is not None:
            ch = s.chain.channel(st.entry.channel_id)
            if ch is not None and not ch.finalized:
                if not ch.close_requested_at:
                    yield Act("request_close", i)
                elif s.chain.time >= ch.close_requested_at + escrow.CLOSE_GRACE_PERIOD:
                    yield Act("withdraw", i)
    if cfg.settle:
        yield Act("settle")
    if cfg.forced_close:
        if any(c.close_requested_at and not c.finalized for _, c in s.chain.channels):
            yield Act("advance_time")
    if cfg.server_restarts:
        yield Act("restart_server")
    if cfg.attacker:
        seen = set()
        for i, c in enumerate(cfg.clients):
            if c.payer not in seen:
                seen.add(c.payer)
                yield Act("attack_peek", i)
        for cid, v in s.loot:
            ch = s.chain.channel(cid)
            if ch is not None and not ch.finalized:
                yield Act("attack_replay", target=cid)
                yield Act("attack_close", target=cid)


# --- helpers -----------------------------------------------------------------

def _hinted_for(cfg: Config, act: Act) -> bool:
    if cfg.fleet == "mixed":
        return bool(act.hinted)
    return cfg.fleet == "hinted"


LIES = ("inflate", "stale", "other_channel", "backwards_receipt", "gone", "take_402", "price", "other_escrow",
        "same_challenge", "stale_402")
"""What the lying server of a `lying_request` does (`lying_price_request` asks a price of the whole wallet):

inflate            the first challenge's hints say the whole deposit is accepted, spent and required, no proof
stale              the first challenge's hints go back to the chain's settled amount, no proof
other_channel      the first challenge's hints name a channel that is not the payer's, no proof
backwards_receipt  every receipt of the request says accepted = spent = 0
gone               the first voucher on an existing channel is answered 410 channel-not-found without being
                   applied (the channel is live on chain), and the request's later challenges carry no hints
take_402           every paid request is applied as if it carried no Idempotency-Key (the voucher accepted, the
                   price charged) and answered 402 with a fresh honest challenge instead of the content
price              every challenge of the request asks LIE_PRICE_FACTOR x the agreed price (the server keeps what
                   it is given: the credential is applied as if the challenge were honest)
other_escrow       the first challenge names another escrow contract (another chainId would do the same)
same_challenge     the first paid request is not applied and answered 402 with the very challenge it echoed
stale_402          the first challenge is the one the payer was sent before its last payment, replayed late
                   (Act.stale; no earlier challenge: the honest one)
"""
LIE_PRICE_FACTOR = 4  # the price lie: one more than a logical request's exposure bound (PRICES_PER_REQUEST)
PRICES_PER_REQUEST = 3  # property XP: the most one logical request signs above what was authorized, in prices
PAID_LIES = ("gone", "take_402", "same_challenge")  # lies about the answer to a paid request
OTHER_CHANNEL = "0x" + "ab" * 32  # the channel a lying other_channel hint names (no payer has it)


def _lie(cfg: Config, s: System, i: int, ch: Challenge, act: Act) -> Challenge:
    """The lying server's first challenge of a logical request (see LIES)."""
    if act.kind == "lying_price_request":
        return attrs.evolve(ch, price=max(cfg.wallet, ch.price + 1))
    lie = act.lie or "inflate"
    if lie == "price":
        return _lie_price(ch)
    if lie == "other_escrow":
        return attrs.evolve(ch, foreign=True)
    if lie == "stale_402":
        return act.stale if act.stale is not None else ch
    if ch.hints is None or lie in ("backwards_receipt",) + PAID_LIES:
        return ch
    c = s.chain.channel(ch.hints.channel_id)
    if lie == "inflate":
        top = c.deposit if c else 0
        hints = attrs.evolve(ch.hints, accepted=top, required=top, spent=top, deposit=top, proof=None)
    elif lie == "stale":
        low = c.settled if c else 0
        hints = attrs.evolve(ch.hints, accepted=low, required=low, spent=low, proof=None)
    else:
        hints = attrs.evolve(ch.hints, channel_id=OTHER_CHANNEL, proof=None)
    return attrs.evolve(ch, hints=hints)


def _lie_price(ch: Challenge) -> Challenge:
    """The price lie: LIE_PRICE_FACTOR x the price, and the target it implies (spent + that price), no proof."""
    price = ch.price * LIE_PRICE_FACTOR
    hints = ch.hints
    if hints is not None:
        hints = attrs.evolve(hints, required=max(hints.accepted or 0, (hints.spent or 0) + price), proof=None)
    return attrs.evolve(ch, price=price, hints=hints)


def _lie_receipt(act: Act, resp: Response) -> Response:
    """The lying server's receipts (backwards_receipt: accepted = spent = 0)."""
    if act.kind != "lying_request" or act.lie != "backwards_receipt" or resp.receipt is None:
        return resp
    return attrs.evolve(resp, receipt=attrs.evolve(resp.receipt, accepted=0, spent=0))


class StepRun:
    """Mutable scratch for one step; the result is frozen into System and StepInfo."""

    def __init__(self, cfg: Config, s: System, act: Act, handle=None, shadow=None):
        self.cfg, self.act = cfg, act
        self.handle = sv.handle if handle is None else handle  # the checker passes a memoized sv.handle
        self.shadow = shadow  # the checker's B1 observer of each delivery (model.properties.b1_other_mode)
        self.chain, self.server = s.chain, s.server
        self.clients, self.net = list(s.clients), list(s.net)
        self.loot = s.loot
        self.exchanges: list[Exchange] = []
        self.signatures: list = []
        self.charged: list = []
        self.keyed_charges: list = []
        self.held_requests = 0
        self.forgot: list = []
        self.closes: list = []
        self.answers: list = []
        self.info: dict = {}

    def freeze(self) -> System:
        return System(self.chain, self.server, tuple(self.clients), tuple(self.net), self.loot)

    def publish(self, voucher) -> None:
        """A voucher became public (a settle or close transaction carries it): the third party holds it."""
        if not self.cfg.attacker or voucher is None or voucher.signer is None:
            return
        old = fm_get(self.loot, voucher.channel_id)
        if old is None or voucher.amount > old.amount:
            self.loot = fm_set(self.loot, voucher.channel_id, voucher)

    def overhear(self, challenge) -> None:
        """The third party reads a challenge given to it: any proof it carries is now its own."""
        if challenge is not None and challenge.hints is not None:
            self.publish(challenge.hints.proof)

    def note_signature(self, i: int, cred) -> None:
        v = cred.voucher
        if v is None:
            return
        self.signatures.append((i, v.channel_id, v.amount))

    def deliver(self, req: Request, hinted: bool) -> Response:
        """The server handles a request; the step records what it charged."""
        before = self.server.record(req.credential.channel_id) if req.credential else None
        settled_before = None
        if req.credential is not None and req.credential.action == "close":
            ch = self.chain.channel(req.credential.channel_id)
            settled_before = ch.settled if ch else 0
        old_server, old_chain = self.server, self.chain
        self.server, self.chain, resp = self.handle(self.cfg.server, self.server, self.chain, req, hinted)
        if self.shadow is not None:  # the checker's: (req, hinted answer, legacy answer) for property B1
            self.answers.append(self.shadow(self.handle, self.cfg.server, old_server, old_chain, req, hinted, resp))
        if req.credential is not None:
            after = self.server.record(req.credential.channel_id)
            d = (after.spent if after else 0) - (before.spent if before else 0)
            if d:
                cid = req.credential.channel_id
                if req.key is not None:
                    self.keyed_charges.append((cid, req.key))
                self.charged.append((cid, d))
            if resp.receipt is not None and resp.receipt.capture is not None:
                self.closes.append((req.credential.channel_id, resp.receipt.capture,
                                    before.spent if before else 0, settled_before or 0))
                self.publish(req.credential.voucher)  # the close transaction carries the voucher
        return resp

    def receive(self, i: int, resp: Response) -> None:
        c, st = self.cfg.clients[i], self.clients[i]
        if resp.status == 200 and resp.receipt is not None:
            self.clients[i] = cl.on_response_receipt(c, st, resp.receipt)
        elif resp.status == 410 and self.net[i].last is not None and self.net[i].last.credential is not None:
            self.clients[i] = cl.on_gone(c, st, self.chain, self.net[i].last.credential.channel_id)


def transition(cfg: Config, s: System, act: Act, handle=None, shadow=None) -> tuple[System, StepInfo]:
    """One action applied to the whole deployment (the rules), before any symmetry reduction.
    `handle` replaces `model.server.handle` (the checker passes a memoized one; same answers); `shadow`, when
    given, observes each delivery for StepInfo.server_answers (the checker's B1; the rules never read it)."""
    r = StepRun(cfg, s, act, handle, shadow)
    k = act.kind
    if k in ("request", "head", "lying_request", "lying_price_request"):
        _logical_request(r, act.client, content=(k != "head"), lying=k.startswith("lying"))
    elif k == "top_up" or k == "close":
        _management(r, act.client, k)
    elif k in ("duplicate", "deliver_held_request"):
        # The network delivers the client's last request again, or a request it held back;
        # the response reaches the client like any late response.
        net = r.net[act.client]
        req = net.last if k == "duplicate" else net.held_request
        if k == "deliver_held_request":
            r.net[act.client] = attrs.evolve(net, held_request=None)
        resp = r.deliver(req, _hinted_for(cfg, act))
        r.exchanges.append(Exchange(req, resp))
        r.receive(act.client, resp)
        r.info["outcome"] = "done"
    elif k == "deliver_held_response":
        resp = r.net[act.client].held_response
        r.net[act.client] = attrs.evolve(r.net[act.client], held_response=None)
        r.receive(act.client, resp)
        r.info["outcome"] = "done"
    elif k == "restart_client":
        i = act.client
        r.clients[i] = cl.restart(cfg.clients[i], r.clients[i])
        if not cfg.clients[i].persist:
            r.forgot.append(i)  # it no longer knows what it signed
        r.info["outcome"] = "done"
    elif k == "restart_server":
        r.info["outcome"] = "done"  # every server field is durable (draft, "Crash Safety")
    elif k == "settle":
        for cid, rec in r.server.channels:
            done = sv.settle_highest(cfg.server, r.server, r.chain, cid)
            if not isinstance(done, Rejected):
                r.server, r.chain = done
                r.publish(rec.highest)  # the settle transaction carries the voucher
        r.info["outcome"] = "done"
    elif k.startswith("attack_"):
        _attack(r, act)
    elif k in ("request_close", "withdraw"):
        # The payer's own forced-close calls on chain (draft "Forced Close").
        call = escrow.request_close if k == "request_close" else escrow.withdraw
        done = call(r.chain, cfg.clients[act.client].payer, r.clients[act.client].entry.channel_id)
        if not isinstance(done, Rejected):
            r.chain = done
        r.info["outcome"] = "done"
    elif k == "advance_time":
        r.chain = escrow.advance_time(r.chain, escrow.CLOSE_GRACE_PERIOD)
        r.info["outcome"] = "done"
    else:
        raise ValueError(f"unknown action {k}")
    info = StepInfo(act=act, exchanges=tuple(r.exchanges), outcome=r.info.get("outcome", ""),
                    round_trips=r.info.get("round_trips", 0), signatures=tuple(r.signatures),
                    charged=tuple(r.charged), keyed_charges=tuple(r.keyed_charges),
                    held_requests=r.held_requests, forgot=tuple(r.forgot), closes=tuple(r.closes), fresh_receipt=r.info.get("fresh", False),
                    server_answers=tuple(r.answers))
    return r.freeze(), info


def _attack(r: StepRun, act: Act) -> None:
    """The third party's step (see ATTACKER). It names the victim payer (or the payer of the voucher's
    channel), never sends an Idempotency-Key (keys are the client's secrets), and reads every answer."""
    if act.kind == "attack_peek":
        victim = r.cfg.clients[act.client].payer
        ch = sv.author_challenge(r.cfg.server, r.server, r.chain, victim, True, _hinted_for(r.cfg, act))
        r.exchanges.append(Exchange(Request(victim, True), Response(402, problem="payment-required", challenge=ch)))
        r.overhear(ch)
        r.info["outcome"] = "done"
        return
    v = fm_get(r.loot, act.target)
    ch = r.chain.channel(act.target)
    victim = ch.payer if ch is not None else ATTACKER
    content = act.kind == "attack_replay"
    req = Request(victim, content, Credential("voucher" if content else "close", act.target, v))
    resp = r.deliver(req, _hinted_for(r.cfg, act))
    r.exchanges.append(Exchange(req, resp))
    r.overhear(resp.challenge)
    r.info["outcome"] = "served" if resp.status == 200 else f"failed:{resp.problem}"


def _challenge(r: StepRun, i: int, content: bool, lying: bool) -> Challenge:
    cfg = r.cfg
    hinted = _hinted_for(cfg, r.act) or lying
    ch = sv.author_challenge(cfg.server, r.server, r.chain, cfg.clients[i].payer, content, hinted)
    if lying:
        ch = _lie(cfg, r.freeze(), i, ch, r.act)
    elif r.act.kind == "lying_request" and r.act.lie == "price":
        ch = _lie_price(ch)  # the price lie lasts the whole request
    elif r.act.kind == "lying_request" and r.act.lie == "gone" and r.info.get("gone"):
        ch = attrs.evolve(ch, hints=None)  # a server that says the channel is gone hints nothing
    return ch


def _paid_lie(r: StepRun, i: int, req: Request, content: bool) -> Response | None:
    """The lying server's answer to a paid request (PAID_LIES), or None: the request goes to the server."""
    lie = r.act.lie if r.act.kind == "lying_request" else None
    cred = req.credential
    if lie == "gone" and not r.info.get("gone") and cred.action == "voucher":
        r.info["gone"] = True
        return Response(410, problem="channel-not-found")
    if lie == "same_challenge" and not r.info.get("same") and cred.voucher is not None:
        r.info["same"] = True
        return Response(402, problem="payment-required", challenge=r.info["last_challenge"])
    if lie == "take_402" and cred.voucher is not None:  # it takes every voucher: no idempotent replay
        resp = r.deliver(attrs.evolve(req, key=None), _hinted_for(r.cfg, r.act))
        if resp.status != 200:
            return resp
        return Response(402, problem="payment-required", challenge=_challenge(r, i, content, False))
    return None


def _send(r: StepRun, i: int, req: Request, fault: Fault) -> Response | None:
    """One paid round trip, with the network fault of this action applied to it."""
    r.net[i] = attrs.evolve(r.net[i], last=req)
    lied = _paid_lie(r, i, req, req.content) if r.act.kind == "lying_request" else None
    if lied is not None:
        r.exchanges.append(Exchange(req, lied))
        return lied
    if fault == "crash_after_broadcast" and _crash_after_broadcast(r, req):
        r.exchanges.append(Exchange(req, None))
        return None
    if fault == "hold_request":
        r.net[i] = attrs.evolve(r.net[i], held_request=req)
        r.held_requests += 1
        r.exchanges.append(Exchange(req, None))
        return None
    resp = r.deliver(req, _hinted_for(r.cfg, r.act))
    if fault == "hold_response":
        r.net[i] = attrs.evolve(r.net[i], held_response=resp)
        r.exchanges.append(Exchange(req, None))
        return None
    r.exchanges.append(Exchange(req, resp))
    return resp


def _crash_after_broadcast(r: StepRun, req: Request) -> bool:
    """The event `crash_after_broadcast` (see Fault): True when the request is an open that the server broadcasts;
    then only its chain effect survives (no record, nothing charged, no response)."""
    cred = req.credential
    if cred is None or cred.action != "open" or r.server.record(cred.channel_id) is not None \
            or r.chain.channel(cred.channel_id) is not None:
        return False
    _, chain, _ = sv.handle(r.cfg.server, r.server, r.chain, req, _hinted_for(r.cfg, r.act))
    if chain.channel(cred.channel_id) is None:
        return False  # refused before the broadcast: the request goes on normally
    r.chain = chain
    return True


def round_trip_limit(c: cl.ClientConfig) -> int:
    """A logical request gives up after MAX_ROUND_TRIPS round trips, or, for a client that declares a retry
    budget (voucher-carrying attempts), after that budget; top-ups and re-challenges then do not count, and
    3 x MAX_ROUND_TRIPS only guards against a loop."""
    return MAX_ROUND_TRIPS if c.max_paid_attempts is None else 3 * MAX_ROUND_TRIPS


def _logical_request(r: StepRun, i: int, content: bool, lying: bool) -> None:
    """A content (or HEAD) request: 402, then paid attempts until served, refused or given up.
    The action's fault strikes the first paid attempt that carries a voucher."""
    cfg, c = r.cfg, r.cfg.clients[i]
    st = attrs.evolve(r.clients[i], requests=r.clients[i].requests + 1)
    r.clients[i] = st
    key = f"{c.name}#{st.requests}" if (c.use_keys and content) else None
    unpaid = Request(c.payer, content)
    challenge = _challenge(r, i, content, lying)
    r.exchanges.append(Exchange(unpaid, Response(402, problem="payment-required", challenge=challenge)))
    trips, attempts, fault = 1, 0, r.act.fault
    authed = False  # this request sent its authentication voucher (rule UA3: at most one)
    while True:
        if trips >= round_trip_limit(c) or (c.max_paid_attempts is not None and attempts >= c.max_paid_attempts):
            r.info.update(outcome="failed:gave-up", round_trips=trips)
            return
        r.info["last_challenge"] = challenge
        made = cl.next_credential(c, r.clients[i], challenge, r.chain, content, authed)
        if isinstance(made, cl.Refused):
            r.info.update(outcome=f"refused:{made.reason}", round_trips=trips)
            return
        r.clients[i], cred = made
        attempts += cred.voucher is not None
        authed = authed or cred.authenticates
        r.note_signature(i, cred)
        req = Request(c.payer, content, cred, key if cred.action in ("open", "voucher") else None)
        f = fault if cred.voucher is not None else "none"
        if f != "none":
            fault = "none"
        resp = _send(r, i, req, f)
        trips += 1
        if resp is None:
            r.info.update(outcome="unknown", round_trips=trips)
            return
        if lying:
            resp = _lie_receipt(r.act, resp)
        r.receive(i, resp)
        if resp.status == 200 and cred.action == "topUp":
            challenge = _challenge(r, i, content, False)
            trips += 1
            continue
        if resp.status == 200:
            r.info.update(outcome="served", round_trips=trips, fresh=True)
            return
        if resp.status == 410:
            challenge = _challenge(r, i, content, False)
            trips += 1
            continue
        if resp.challenge is None:
            r.info.update(outcome=f"failed:{resp.problem}", round_trips=trips)
            return
        challenge = _lie_later(r, resp.challenge)


def _lie_later(r: StepRun, ch: Challenge) -> Challenge:
    """The lies that last the whole logical request also rewrite the challenges of its paid answers."""
    if r.act.kind != "lying_request":
        return ch
    if r.act.lie == "price" and ch is not r.info.get("last_challenge"):
        return _lie_price(ch)
    if r.act.lie == "gone" and r.info.get("gone"):
        return attrs.evolve(ch, hints=None)
    return ch


def _management(r: StepRun, i: int, kind: str) -> None:
    """HEAD-carried management: a topUp of the current channel, or a cooperative close."""
    cfg, c, st = r.cfg, r.cfg.clients[i], r.clients[i]
    challenge = _challenge(r, i, False, False)
    r.exchanges.append(Exchange(Request(c.payer, False), Response(402, problem="payment-required", challenge=challenge)))
    if kind == "top_up":
        entry = st.entry
        ch = r.chain.channel(entry.channel_id)
        if ch is None or ch.finalized or r.chain.balance(c.payer) < c.top_up:
            r.info["outcome"] = "noop"
            return
        cred = cl.top_up_credential(c, entry.channel_id, ch.deposit)
    else:
        made = cl.close_credential(c, st, challenge, r.chain)
        if made is None:
            r.info["outcome"] = "noop"
            return
        if isinstance(made, cl.Refused):
            r.info["outcome"] = f"refused:{made.reason}"
            return
        r.clients[i], cred = made
        r.note_signature(i, cred)
    resp = _send(r, i, Request(c.payer, False, cred), "none")
    r.receive(i, resp)
    r.info.update(outcome="done" if resp.status == 200 else f"failed:{resp.problem}", round_trips=2)
