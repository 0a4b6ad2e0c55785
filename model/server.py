"""The server's channel records and the rules it applies to each request.

One place per rule (read `transition` first: it dispatches each request to one `process_*`):
- `transition` (and `handle`, the same without effects): one request, end to end, atomically (the draft's
  "linearizable per channel"): an unpaid request gets a challenge, a paid one goes to `process_open`
  (O1-O2), `process_voucher` (V1-V7 via `accept_voucher`, O3, UA2), `process_top_up` (T1-T2) or
  `process_close` (X1-X3, UA2), then to `process_request` (charging C1-C3, receipt S-R1, idempotency I1;
  `idempotent_replay` answers a replay). It returns the effects on the chain (`Effect`: broadcast an
  open or a topUp, submit a close) that the adapters carry out.
- `verify_voucher` / `within_deposit`: the signature and deposit checks every voucher-carrying action
  shares (O2, V2, V4, X1, and I1/UA1 through `signed_by_channel_signer`).
- `charge`: what a request costs and when it is served (C1-C3; `request_cost`).
- `author_challenge` / `required_cumulative`: the hint rule, server side (S-H1..S-H3).
- `make_receipt`: the receipt rule, server side (S-R1).
- `proves_holder` / `public_voucher`: rule UA, who may see a channel's proof and who may consume its
  unspent authorization (UA1 disclosure, UA2 public vouchers buy and close nothing).
- `settle_highest`: settlement (X4).
"""
from __future__ import annotations

from typing import Callable, Literal

import attrs

from . import chain as escrow
from .base import FrozenMap, Rejected, fm_get, fm_set, fm_values
from .chain import Chain
from .messages import Challenge, Credential, Receipt, Request, Response
from .records import HintEncoding, Hints, Voucher


@attrs.frozen
class ServerChannel:
    """The server's durable record of one channel (draft, "Accounting State")."""

    channel_id: str
    payer: str
    accepted: int  # acceptedCumulative: highest voucher accepted
    highest: Voucher  # the voucher that proves `accepted`
    spent: int = 0
    units: int = 0
    deposit: int = 0  # mirrors of the chain, refreshed on every request
    settled: int = 0
    close_requested_at: int = 0
    finalized: bool = False
    seq: int = 0  # order of opening, to resolve "the payer's reusable channel"

    @property
    def available(self) -> int:
        return self.accepted - self.spent


def required_cumulative(rec: ServerChannel, cost: int) -> int:
    """Rule S-H2: requiredCumulative = max(acceptedCumulative, spent + cost).

    Why the max: when the server already holds unspent authorization
    (accepted >= spent + cost) the request is payable with the voucher it has,
    and any voucher below `accepted` would be refused by rule V5; `spent + cost`
    alone would tell a client to sign an amount the server must reject.
    """
    return max(rec.accepted, rec.spent + cost)


def above_public(required: int, rec: "ServerChannel", cost: int, min_delta: int) -> int:
    """Rule UA2 on the hint: a content request is never payable with a voucher at or below
    `settled` (it is public), so when requiredCumulative would be one (acceptedCumulative ==
    settled covers the request), the target is the smallest advance above settled."""
    if cost and required <= rec.settled:
        return rec.settled + max(1, min_delta)
    return required


@attrs.frozen
class Server:
    channels: FrozenMap = ()  # channel_id -> ServerChannel
    idempotency: FrozenMap = ()  # (channel_id, key) -> Response
    opened: int = 0

    def record(self, channel_id: str) -> ServerChannel | None:
        return fm_get(self.channels, channel_id)

    def put(self, rec: ServerChannel) -> "Server":
        return attrs.evolve(self, channels=fm_set(self.channels, rec.channel_id, rec))


def refresh(rec: ServerChannel, chain: Chain) -> ServerChannel:
    """Mirror the chain's deposit, settled, closeRequestedAt and finalized (draft:
    "Servers MUST derive the expected signer from on-chain channel state")."""
    ch = chain.channel(rec.channel_id)
    if ch is None:
        return rec
    return attrs.evolve(rec, deposit=ch.deposit, settled=ch.settled,
                        close_requested_at=ch.close_requested_at,
                        finalized=rec.finalized or ch.finalized)


def reusable(rec: ServerChannel, chain: Chain) -> bool:
    """Rule S-H1: a channel is reusable when it is not finalized and no close is pending."""
    ch = chain.channel(rec.channel_id)
    return ch is not None and not ch.finalized and not rec.finalized and ch.close_requested_at == 0


def public_voucher(chain: Chain, voucher: Voucher) -> bool:
    """Rule UA2: a voucher at or below the channel's on-chain settled amount is public: the payee's
    settle (or close) transaction published it, so anyone may hold it."""
    ch = chain.channel(voucher.channel_id)
    return ch is not None and voucher.amount <= ch.settled


def proves_holder(chain: Chain, cred: Credential | None) -> str | None:
    """Rule UA1: the channel whose holder sent this credential, else None. A credential proves
    it when its voucher is signed by the channel's signer (from chain state, `verify_voucher`) and is
    not public (above settled): the only vouchers a third party can hold are the public ones and the
    ones a server disclosed, and a server discloses only to a request that proved it already."""
    if not signed_by_channel_signer(chain, cred):
        return None
    return None if public_voucher(chain, cred.voucher) else cred.channel_id


def signed_by_channel_signer(chain: Chain, cred: Credential | None) -> bool:
    """Rules I1, UA1: the credential carries a voucher that the channel's signer (chain state) signed."""
    if cred is None:
        return False
    ch = chain.channel(cred.channel_id)
    return ch is not None and verify_voucher(cred.voucher, ch.channel_id, ch.signer, "UA1") is None


def discloses_proof(proven: str | None, rec: ServerChannel) -> bool:
    """Rule UA1: the proof (highestVoucher) of a channel goes only to a request that proved it holds
    that channel (`proves_holder`)."""
    return proven == rec.channel_id


@attrs.frozen
class ServerRules:
    """The server rules an implementation can get wrong, as swappable functions: by default the spec's
    own (above). `model/first_draft.py` and `model/deviations.py` hold the wrong ones the checker plants
    (`ServerRules(discloses=deviations.discloses_to_anyone)`); the spec's code calls them through
    `cfg.rules` and has no switch of its own."""

    required: Callable[[ServerChannel, int], int] = required_cumulative  # S-H2
    hintable: Callable[[ServerChannel, Chain], bool] = reusable  # S-H1
    discloses: Callable[[str | None, ServerChannel], bool] = discloses_proof  # UA1
    buys_nothing: Callable[[Chain, Voucher], bool] = public_voucher  # UA2


@attrs.frozen
class ServerConfig:
    payee: str
    price: int
    hinted: bool = True
    hint_encoding: HintEncoding = "snapshot"
    min_voucher_delta: int = 0
    suggested_deposit: int | None = None
    rules: ServerRules = ServerRules()


def author_challenge(cfg: ServerConfig, server: Server, chain: Chain, payer: str, content: bool,
                     hinted: bool | None = None, proven: str | None = None) -> Challenge:
    """Rules S-H1..S-H3 (seed, "Server Control Flow"): a hinted server adds
    channelId, acceptedCumulative, spent, deposit, settled and requiredCumulative
    when the payer's latest channel is reusable; a legacy server gives only the
    channelId. Snapshot hints also attach the highest voucher as proof (`highestVoucher`), under
    rule UA1 only when `proven` (the channel the request proved to hold) is that channel."""
    hinted = cfg.hinted if hinted is None else hinted
    mine = [r for r in fm_values(server.channels) if r.payer == payer]
    hints = None
    if mine:
        rec = refresh(max(mine, key=lambda r: r.seq), chain)
        if cfg.rules.hintable(rec, chain):
            if hinted:
                cost = cfg.price if content else 0
                required = above_public(cfg.rules.required(rec, cost), rec, cost, cfg.min_voucher_delta)
                disclose = cfg.rules.discloses(proven, rec)
                hints = Hints(
                    channel_id=rec.channel_id, accepted=rec.accepted, spent=rec.spent,
                    deposit=rec.deposit, required=required, settled=rec.settled,
                    proof=rec.highest if cfg.hint_encoding == "snapshot" and disclose else None)
            else:
                hints = Hints(channel_id=rec.channel_id)
    suggested = cfg.suggested_deposit if hints is None else None
    return Challenge(price=cfg.price, hints=hints, suggested_deposit=suggested)


def verify_voucher(voucher: Voucher | None, channel_id: str, signer: str, rule: str) -> Rejected | None:
    """The signature check every voucher-carrying action shares (draft, "Voucher Verification" step 2;
    rules O2, V2, X1, I1, UA1): the voucher's signature verifies (402 invalid-signature) and it is
    `signer`'s, for `channel_id` (402 signer-mismatch). `signer` is the channel's authorized signer from
    chain state, or for an open the sender of the open transaction. None: the voucher verifies."""
    if voucher is None or voucher.signer is None:
        return Rejected("invalid-signature", rule)
    if voucher.signer != signer or voucher.channel_id != channel_id:
        return Rejected("signer-mismatch", rule)
    return None


def within_deposit(voucher: Voucher, deposit: int, rule: str) -> Rejected | None:
    """Rules O2, V4, X1: a voucher never authorizes more than the deposit (402 amount-exceeds-deposit)."""
    return Rejected("amount-exceeds-deposit", rule) if voucher.amount > deposit else None


def accept_voucher(cfg: ServerConfig, rec: ServerChannel | None, chain: Chain,
                   voucher: Voucher) -> ServerChannel | Rejected:
    """The voucher rule (draft, "Voucher Verification" and "Idempotency").

    V1 the channel is known (410 channel-not-found) and not finalized (410 channel-finalized);
    V2 the signature verifies (402 invalid-signature) and the signer is the channel's authorized signer
       from chain state (402 signer-mismatch): `verify_voucher`;
    V3 no forced close is pending (410 channel-finalized: service could not be settled);
    V4 the amount is not above the deposit (402 amount-exceeds-deposit);
    V5 the amount is not below acceptedCumulative (402 verification-failed);
    V6 an equal amount is an idempotent retry: nothing changes;
    V7 an advance is at least minVoucherDelta (402 delta-too-small).
    """
    if rec is None:
        return Rejected("channel-not-found", "V1")
    ch = chain.channel(rec.channel_id)
    if ch is None:
        return Rejected("channel-not-found", "V1")
    if rec.finalized or ch.finalized:
        return Rejected("channel-finalized", "V1")
    bad = verify_voucher(voucher, rec.channel_id, ch.signer, "V2")
    if bad is not None:
        return bad
    if ch.close_requested_at:
        return Rejected("channel-finalized", "V3", "a forced close is pending")
    bad = within_deposit(voucher, ch.deposit, "V4")
    if bad is not None:
        return bad
    if voucher.amount < rec.accepted:
        return Rejected("verification-failed", "V5", "below acceptedCumulative")
    if voucher.amount == rec.accepted:
        return rec  # V6
    if voucher.amount - rec.accepted < cfg.min_voucher_delta:
        return Rejected("delta-too-small", "V7")
    return attrs.evolve(rec, accepted=voucher.amount, highest=voucher)


def charge(rec: ServerChannel, cost: int) -> ServerChannel | Rejected:
    """Rules C1-C3 (draft, "Per-Request Processing"): a content request costs the
    price and is served only if available = accepted - spent covers it (else 402
    insufficient-balance, nothing charged); HEAD and management requests cost 0."""
    if rec.available < cost:
        return Rejected("insufficient-balance", "C2")
    return attrs.evolve(rec, spent=rec.spent + cost, units=rec.units + (1 if cost else 0))


def make_receipt(rec: ServerChannel, capture: int | None = None) -> Receipt:
    """Rule S-R1 (seed; draft "Receipt Generation"): receipts carry the channel's
    acceptedCumulative and spent after the request was applied."""
    return Receipt(channel_id=rec.channel_id, accepted=rec.accepted, spent=rec.spent, capture=capture)


@attrs.frozen
class Effect:
    """What an accepted operation asks of the chain; the system and the adapters carry it out, so no one has
    to compare chain states to learn what happened. `open` / `top_up`: broadcast the client's signed
    transaction (rules O1, T1); `close`: submit the close voucher, capturing `capture` (rule X3)."""

    kind: Literal["open", "top_up", "close"]
    channel_id: str
    capture: int | None = None


@attrs.frozen
class Applied:
    """What an accepted operation did: the new server and chain, the channel's record after it, and on
    a cooperative close what the payee captured; `effects` what it asks of the chain."""

    server: Server
    chain: Chain
    rec: ServerChannel
    capture: int | None = None
    effects: tuple[Effect, ...] = ()


@attrs.frozen
class Transition:
    """One request's transition: the new server and chain, the response, and the effects on the chain."""

    server: Server
    chain: Chain
    response: Response
    effects: tuple[Effect, ...] = ()


def process_open(cfg: ServerConfig, server: Server, chain: Chain, cred: Credential) -> Applied | Rejected:
    """Rules O1-O2 (draft, "Open Verification"): the initial voucher is checked against the decoded
    transaction before it is broadcast, so a bad credential moves nothing. O2: it is signed by the
    transaction's sender for this channel (`verify_voucher`) and within the deposit it escrows;
    O1: the escrow accepts the open."""
    v = cred.voucher
    bad = verify_voucher(v, cred.channel_id, cred.payer, "O2") or within_deposit(v, cred.amount, "O2")
    if bad is not None:
        return bad
    opened = escrow.open_channel(chain, cred.payer, cred.channel_id, cfg.payee, cred.amount)
    if isinstance(opened, Rejected):
        return Rejected("verification-failed", "O1", opened.code)
    ch = opened.channel(cred.channel_id)
    rec = ServerChannel(cred.channel_id, ch.payer, v.amount, v, deposit=ch.deposit, seq=server.opened + 1)
    return Applied(attrs.evolve(server, opened=server.opened + 1), opened, rec,
                   effects=(Effect("open", cred.channel_id),))


def process_voucher(cfg: ServerConfig, server: Server, chain: Chain, cred: Credential,
                    rec: ServerChannel | None, cost: int) -> Applied | Rejected:
    """The voucher rule V1-V7 (`accept_voucher`), for a voucher and for a replayed open of a known
    channel (rule O3), then rule UA2: an equal voucher that is public (at or below settled) consumes no
    unspent authorization, since anyone may hold it; nothing changes (V6 stands for cost-free requests)."""
    new = accept_voucher(cfg, rec, chain, cred.voucher)
    if isinstance(new, Rejected):
        return new
    if cost and new.accepted == rec.accepted and cfg.rules.buys_nothing(chain, cred.voucher):
        return Rejected("verification-failed", "UA2", "a voucher at or below settled is public: it buys nothing")
    return Applied(server, chain, new)


def process_top_up(cfg: ServerConfig, server: Server, chain: Chain, cred: Credential,
                   rec: ServerChannel | None) -> Applied | Rejected:
    """Rules T1-T2 (draft, "Top-Up"): T1 the channel is known and the escrow accepts the deposit
    (410 channel-finalized when it refuses a finalized channel, else 402 verification-failed);
    T2 a replayed signed transaction does nothing more."""
    if rec is None:
        return Rejected("channel-not-found", "T1")
    if (cred.channel_id, cred.tx_nonce) in chain.used_txs:
        return Applied(server, chain, refresh(rec, chain))
    topped = escrow.top_up(chain, cred.payer, cred.channel_id, cred.amount)
    if isinstance(topped, Rejected):
        code = "channel-finalized" if topped.code == "ChannelFinalized" else "verification-failed"
        return Rejected(code, "T1", topped.code)
    chain = attrs.evolve(topped, used_txs=topped.used_txs | {(cred.channel_id, cred.tx_nonce)})
    return Applied(server, chain, refresh(rec, chain), effects=(Effect("top_up", cred.channel_id),))


def process_close(cfg: ServerConfig, server: Server, chain: Chain, cred: Credential,
                  rec: ServerChannel | None) -> Applied | Rejected:
    """Rules X1-X3 (draft, "Cooperative Close"): X1 the close voucher verifies (`verify_voucher`,
    within the deposit) on a known, live channel; X2 it covers max(spent, settled), and (rule UA2,
    mppx GHSA-mv9j-8jvg-j8mr) it is above settled: a settled voucher is public, and closing with it
    would let anyone finalize the channel; X3 the escrow accepts the close, and the payee captures
    exactly max(spent, settled)."""
    voucher = cred.voucher
    if voucher is None:
        return Rejected("verification-failed", "X1")
    if rec is None:
        return Rejected("channel-not-found", "X1")
    ch = chain.channel(rec.channel_id)
    if ch is None or ch.finalized or rec.finalized:
        return Rejected("channel-finalized", "X1")
    bad = verify_voucher(voucher, rec.channel_id, ch.signer, "X1") or within_deposit(voucher, ch.deposit, "X1")
    if bad is not None:
        return bad
    capture = max(rec.spent, ch.settled)
    if voucher.amount < capture:
        return Rejected("verification-failed", "X2", "close voucher below max(spent, settled)")
    if cfg.rules.buys_nothing(chain, voucher):
        return Rejected("verification-failed", "UA2", "close voucher at or below settled is public")
    closed = escrow.close(chain, cfg.payee, voucher, capture)
    if isinstance(closed, Rejected):
        return Rejected("verification-failed", "X3", closed.code)
    accepted, highest = (voucher.amount, voucher) if voucher.amount > rec.accepted else (rec.accepted, rec.highest)
    return Applied(server, closed, attrs.evolve(refresh(rec, closed), accepted=accepted, highest=highest), capture,
                   effects=(Effect("close", rec.channel_id, capture),))


def request_cost(cfg: ServerConfig, req: Request) -> int:
    """Rule C1: a content request paid with an open or a voucher costs the price; HEAD, management
    (topUp, close) and unpaid requests cost nothing."""
    cred = req.credential
    return cfg.price if req.content and cred is not None and cred.action in ("open", "voucher") else 0


def idempotent_replay(server: Server, chain: Chain, req: Request, cost: int) -> Response | None:
    """Rule I1 (draft, "Request Idempotency"): a charged request whose Idempotency-Key the channel has
    seen gets the stored response, not charged again; only for a credential the channel's signer signed
    (a key alone buys nothing). None: the request is processed."""
    cred = req.credential
    if req.key is None or not cost:
        return None
    cached = fm_get(server.idempotency, (cred.channel_id, req.key))
    return cached if cached is not None and signed_by_channel_signer(chain, cred) else None


def process_request(cfg: ServerConfig, done: Applied, req: Request, cost: int,
                    hinted: bool | None) -> Transition:
    """Rules C1-C3, S-R1 and I1 after an accepted operation: charge the request's cost (on
    insufficient-balance the accepted voucher stands, draft step 1 before step 2, and the 402 says the
    top-up it needs), answer with the receipt, and store a charged answer under its Idempotency-Key."""
    server, chain, rec = done.server, done.chain, done.rec
    if cost:
        charged = charge(rec, cost)
        if isinstance(charged, Rejected):
            server = server.put(rec)
            return Transition(server, chain, _reject(cfg, server, chain, req, charged, hinted,
                                                     required_top_up=cost - rec.available), done.effects)
        rec = charged
    server = server.put(rec)
    resp = Response(status=200, receipt=make_receipt(rec, done.capture))
    if req.key is not None and cost:
        server = attrs.evolve(server, idempotency=fm_set(server.idempotency, (rec.channel_id, req.key), resp))
    return Transition(server, chain, resp, done.effects)


_STATUS = {"channel-not-found": 410, "channel-finalized": 410}


def _reject(cfg, server, chain, req, rej: Rejected, hinted, required_top_up=None) -> Response:
    """A refusal's response: 410 for a channel that is gone, else 402 with a fresh challenge."""
    status = _STATUS.get(rej.code, 402)
    challenge = (author_challenge(cfg, server, chain, req.payer, req.content, hinted, proves_holder(chain, req.credential))
                 if status == 402 else None)
    return Response(status=status, problem=rej.code, challenge=challenge, required_top_up=required_top_up)


def adopt(cfg: ServerConfig, server: Server, chain: Chain, cred) -> tuple[Server, ServerChannel] | Rejected | None:
    """Rule A1 (draft "Crash Safety": no deposit is orphaned by a crash): a live on-chain channel whose payee is
    this server and which it has no record of (a crash after an open's broadcast, before its record's commit) is
    recorded when a credential names it, provided the credential's voucher is signed by the channel's signer.
    Everything comes from the chain: deposit, settled, payer; acceptedCumulative = spent = settled (nothing is
    assumed authorized or served beyond what the chain shows). A replayed open's own voucher, or any voucher,
    then proves more through the ordinary rules. None: not a live channel of ours (answered as unknown)."""
    ch = chain.channel(cred.channel_id)
    if ch is None or ch.payee != cfg.payee or ch.finalized:
        return None
    v = cred.voucher
    if v is None or v.signer is None:
        return Rejected("invalid-signature", "A1")
    if v.signer != ch.signer or v.channel_id != cred.channel_id:
        return Rejected("signer-mismatch", "A1")
    if cred.action == "open":
        # a replayed open of the orphaned channel: recorded with its own voucher (the open rules O1-O2 held
        # when it was broadcast); the voucher checks below still apply to it
        if ch.close_requested_at:
            return Rejected("channel-finalized", "A1", "a forced close is pending")
        if v.amount > ch.deposit:
            return Rejected("amount-exceeds-deposit", "A1")
        if v.amount < ch.settled:
            return Rejected("verification-failed", "A1", "below settled")
        rec = ServerChannel(cred.channel_id, ch.payer, v.amount, v, deposit=ch.deposit, settled=ch.settled,
                            seq=server.opened + 1)
    else:
        rec = ServerChannel(cred.channel_id, ch.payer, ch.settled, Voucher(cred.channel_id, ch.settled, ch.signer),
                            spent=ch.settled, deposit=ch.deposit, settled=ch.settled,
                            close_requested_at=ch.close_requested_at, seq=server.opened + 1)
    server = attrs.evolve(server, opened=server.opened + 1).put(rec)
    return server, rec


def handle(cfg: ServerConfig, server: Server, chain: Chain, req: Request,
           hinted: bool | None = None) -> tuple[Server, Chain, Response]:
    """One request, applied atomically (draft, "Per-Request Processing"): `transition` without its effects.

    Returns the new server and chain and the response. On any rejection the server's records are
    unchanged (the chain may have applied a client-signed transaction, which is the client's own act).
    """
    t = transition(cfg, server, chain, req, hinted)
    return t.server, t.chain, t.response


def transition(cfg: ServerConfig, server: Server, chain: Chain, req: Request,
               hinted: bool | None = None) -> Transition:
    """One request: an unpaid request gets a challenge; a paid one is an idempotent replay (I1) or goes to
    the `process_*` of its action, then to `process_request` (charging, receipt, idempotency). The effects
    say what the chain must carry out (an adapter broadcasts or submits them; the model's chain already did)."""
    cred = req.credential
    if cred is None:
        ch = author_challenge(cfg, server, chain, req.payer, req.content, hinted)
        return Transition(server, chain, Response(status=402, problem="payment-required", challenge=ch))
    cost = request_cost(cfg, req)
    cached = idempotent_replay(server, chain, req, cost)
    if cached is not None:
        return Transition(server, chain, cached)
    rec = server.record(cred.channel_id)
    rec = refresh(rec, chain) if rec is not None else None
    if rec is None and cred.action in ("open", "voucher", "close") and chain.channel(cred.channel_id) is not None:
        # Rule A1: an on-chain channel of ours without a record (a crash between an open's broadcast and its
        # record's commit) is adopted from the chain when a credential names it.
        adopted = adopt(cfg, server, chain, cred)
        if isinstance(adopted, Rejected):
            return Transition(server, chain, _reject(cfg, server, chain, req, adopted, hinted))
        if adopted is not None:
            server, rec = adopted
    if cred.action == "open" and rec is None:
        done = process_open(cfg, server, chain, cred)
    elif cred.action in ("open", "voucher"):
        done = process_voucher(cfg, server, chain, cred, rec, cost)
    elif cred.action == "topUp":
        done = process_top_up(cfg, server, chain, cred, rec)
    elif cred.action == "close":
        done = process_close(cfg, server, chain, cred, rec)
    else:
        raise ValueError(f"unknown credential action {cred.action!r}")
    if isinstance(done, Rejected):
        return Transition(server, chain, _reject(cfg, server, chain, req, done, hinted))
    return process_request(cfg, done, req, cost, hinted)


def settle_highest(cfg: ServerConfig, server: Server, chain: Chain, channel_id: str) -> tuple[Server, Chain] | Rejected:
    """Rule X4 (draft, "Settlement Timing"): the server settles its highest voucher."""
    rec = server.record(channel_id)
    if rec is None:
        return Rejected("channel-not-found", "X4")
    done = escrow.settle(chain, cfg.payee, rec.highest)
    if isinstance(done, Rejected):
        return done
    return server.put(refresh(rec, done)), done
