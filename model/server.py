"""The server's channel records and the rules it applies to each request.

One place per rule:
- `accept_voucher`: the voucher rule (V1-V7).
- `charge`: what a request costs and when it is served (C1-C3).
- `author_challenge` / `required_cumulative`: the hint rule, server side (S-H1..S-H3).
- `make_receipt`: the receipt rule, server side (S-R1).
- `proves_holder` / `public_voucher`: rule UA, who may see a channel's proof and who may consume its
  unspent authorization (UA1 disclosure, UA2 public vouchers buy and close nothing).
- `handle`: one request, end to end, atomically (the draft's "linearizable per channel").
"""
from __future__ import annotations

from typing import Callable

import attrs

from . import chain as escrow
from .base import FrozenMap, Rejected, fm_get, fm_set, fm_values
from .chain import Chain
from .messages import Challenge, Credential, Receipt, Request, Response
from .records import HintProfile, Hints, Voucher


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
class ServerConfig:
    payee: str
    price: int
    hinted: bool = True
    profile: HintProfile = "v2"
    min_voucher_delta: int = 0
    suggested_deposit: int | None = None
    # Swappable rules, so that tests can plant the first draft's bugs:
    required: Callable[[ServerChannel, int], int] = required_cumulative
    hint_closing_channels: bool = False
    # Rule UA1: "authentic" gives the proof (highestVoucher) only in the answer to a credential that
    # proves its sender holds the channel (`proves_holder`); "any" gives it to every requester (the
    # draft's reading, and the bug the third party of the checker exploits).
    proof_disclosure: str = "authentic"
    # Rule UA2 off (a planted bug): a voucher at or below settled (public on chain) still buys content
    # with an equal-voucher retry (V6) and still closes the channel.
    public_vouchers_spend: bool = False


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


def _reusable(rec: ServerChannel, chain: Chain) -> bool:
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
    it when its voucher is signed by the channel's signer (from chain state) and is not public
    (above settled): the only vouchers a third party can hold are the public ones and the ones
    a server disclosed, and a server discloses only to a request that proved it already."""
    if cred is None or cred.voucher is None:
        return None
    v, ch = cred.voucher, chain.channel(cred.channel_id)
    if ch is None or v.signer is None or v.signer != ch.signer or v.channel_id != cred.channel_id:
        return None
    return None if v.amount <= ch.settled else cred.channel_id


def author_challenge(cfg: ServerConfig, server: Server, chain: Chain, payer: str, content: bool,
                     hinted: bool | None = None, proven: str | None = None) -> Challenge:
    """Rules S-H1..S-H3 (seed, "Server Control Flow"): a hinted server adds
    channelId, acceptedCumulative, spent, deposit, settled and requiredCumulative
    when the payer's latest channel is reusable; a legacy server gives only the
    channelId. v2 also attaches the highest voucher as proof (`highestVoucher`), under
    rule UA1 only when `proven` (the channel the request proved to hold) is that channel."""
    hinted = cfg.hinted if hinted is None else hinted
    mine = [r for r in fm_values(server.channels) if r.payer == payer]
    hints = None
    if mine:
        rec = refresh(max(mine, key=lambda r: r.seq), chain)
        if _reusable(rec, chain) or (cfg.hint_closing_channels and not rec.finalized):
            if hinted:
                cost = cfg.price if content else 0
                required = above_public(cfg.required(rec, cost), rec, cost, cfg.min_voucher_delta)
                disclose = cfg.proof_disclosure == "any" or proven == rec.channel_id
                hints = Hints(
                    channel_id=rec.channel_id, accepted=rec.accepted, spent=rec.spent,
                    deposit=rec.deposit, required=required, settled=rec.settled,
                    proof=rec.highest if cfg.profile == "v2" and disclose else None)
            else:
                hints = Hints(channel_id=rec.channel_id)
    suggested = cfg.suggested_deposit if hints is None else None
    return Challenge(price=cfg.price, hints=hints, suggested_deposit=suggested)


def accept_voucher(cfg: ServerConfig, rec: ServerChannel | None, chain: Chain,
                   voucher: Voucher) -> ServerChannel | Rejected:
    """The voucher rule (draft, "Voucher Verification" and "Idempotency").

    V1 the channel is known (410 channel-not-found) and not finalized (410 channel-finalized);
    V2 the signature verifies (402 invalid-signature) and the signer is the channel's
       authorized signer from chain state (402 signer-mismatch);
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
    if voucher.signer is None:
        return Rejected("invalid-signature", "V2")
    if voucher.signer != ch.signer or voucher.channel_id != rec.channel_id:
        return Rejected("signer-mismatch", "V2")
    if ch.close_requested_at:
        return Rejected("channel-finalized", "V3", "a forced close is pending")
    if voucher.amount > ch.deposit:
        return Rejected("amount-exceeds-deposit", "V4")
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


_STATUS = {"channel-not-found": 410, "channel-finalized": 410}


def _reject(cfg, server, chain, req, rej: Rejected, hinted, required_top_up=None) -> Response:
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
    """One request, applied atomically (draft, "Per-Request Processing").

    Returns the new server and chain and the response. On any rejection the
    server's records are unchanged (the chain may have applied a client-signed
    transaction, which is the client's own act).
    """
    cred = req.credential
    if cred is None:
        ch = author_challenge(cfg, server, chain, req.payer, req.content, hinted)
        return server, chain, Response(status=402, problem="payment-required", challenge=ch)
    cost = cfg.price if req.content and cred.action in ("open", "voucher") else 0
    if req.key is not None and cost:
        cached = fm_get(server.idempotency, (cred.channel_id, req.key))
        if cached is not None and _authentic(chain, cred):
            # Rule I1 (draft, "Request Idempotency"): the stored response, not charged again.
            # Only for a credential the channel's signer signed: a key alone buys nothing.
            return server, chain, cached
    rec = server.record(cred.channel_id)
    rec = refresh(rec, chain) if rec is not None else None
    capture = None
    if rec is None and cred.action in ("open", "voucher", "close") and chain.channel(cred.channel_id) is not None:
        # Rule A1: an on-chain channel of ours without a record (a crash between an open's broadcast and its
        # record's commit) is adopted from the chain when a credential names it.
        adopted = adopt(cfg, server, chain, cred)
        if isinstance(adopted, Rejected):
            return server, chain, _reject(cfg, server, chain, req, adopted, hinted)
        if adopted is not None:
            server, rec = adopted

    if cred.action == "open" and rec is None:
        # Rules O1-O2 (draft, "Open Verification"): the initial voucher is checked against
        # the decoded transaction before it is broadcast, so a bad credential moves nothing.
        v = cred.voucher
        if v is None or v.signer is None:
            return server, chain, _reject(cfg, server, chain, req, Rejected("invalid-signature", "O2"), hinted)
        if v.signer != cred.payer or v.channel_id != cred.channel_id:
            return server, chain, _reject(cfg, server, chain, req, Rejected("signer-mismatch", "O2"), hinted)
        if v.amount > cred.amount:
            return server, chain, _reject(cfg, server, chain, req, Rejected("amount-exceeds-deposit", "O2"), hinted)
        opened = escrow.open_channel(chain, cred.payer, cred.channel_id, cfg.payee, cred.amount)
        if isinstance(opened, Rejected):
            return server, chain, _reject(cfg, server, chain, req, Rejected("verification-failed", "O1", opened.code), hinted)
        chain = opened
        ch = chain.channel(cred.channel_id)
        rec = ServerChannel(cred.channel_id, ch.payer, v.amount, v, deposit=ch.deposit, seq=server.opened + 1)
        server = attrs.evolve(server, opened=server.opened + 1)
    elif cred.action in ("open", "voucher"):
        # A replayed open for a known channel carries a voucher like any other (rule O3).
        new = accept_voucher(cfg, rec, chain, cred.voucher)
        if isinstance(new, Rejected):
            return server, chain, _reject(cfg, server, chain, req, new, hinted)
        if cost and new.accepted == rec.accepted and public_voucher(chain, cred.voucher) \
                and not cfg.public_vouchers_spend:
            # Rule UA2: an equal voucher that is public (at or below settled) consumes no unspent
            # authorization: anyone may hold it. Nothing changes (V6 stands for cost-free requests).
            return server, chain, _reject(cfg, server, chain, req, Rejected(
                "verification-failed", "UA2", "a voucher at or below settled is public: it buys nothing"), hinted)
        rec = new
    elif cred.action == "topUp":
        if rec is None:
            return server, chain, _reject(cfg, server, chain, req, Rejected("channel-not-found", "T1"), hinted)
        if (cred.channel_id, cred.tx_nonce) in chain.used_txs:
            pass  # a replayed signed transaction does nothing more (rule T2)
        else:
            topped = escrow.top_up(chain, cred.payer, cred.channel_id, cred.amount)
            if isinstance(topped, Rejected):
                code = "channel-finalized" if topped.code == "ChannelFinalized" else "verification-failed"
                return server, chain, _reject(cfg, server, chain, req, Rejected(code, "T1", topped.code), hinted)
            chain = attrs.evolve(topped, used_txs=topped.used_txs | {(cred.channel_id, cred.tx_nonce)})
        rec = refresh(rec, chain)
    elif cred.action == "close":
        new = close_rule(cfg, rec, chain, cred.voucher)
        if isinstance(new, Rejected):
            return server, chain, _reject(cfg, server, chain, req, new, hinted)
        rec, chain, capture = new
    if cost:
        charged = charge(rec, cost)
        if isinstance(charged, Rejected):
            server = server.put(rec)  # the accepted voucher stands (draft step 1 before step 2)
            return server, chain, _reject(cfg, server, chain, req, charged, hinted,
                                          required_top_up=cost - rec.available)
        rec = charged
    server = server.put(rec)
    resp = Response(status=200, receipt=make_receipt(rec, capture))
    if req.key is not None and cost:
        server = attrs.evolve(server, idempotency=fm_set(server.idempotency, (cred.channel_id, req.key), resp))
    return server, chain, resp


def _authentic(chain: Chain, cred: Credential) -> bool:
    ch = chain.channel(cred.channel_id)
    v = cred.voucher
    return ch is not None and v is not None and v.signer == ch.signer and v.channel_id == ch.channel_id


def close_rule(cfg: ServerConfig, rec: ServerChannel | None, chain: Chain, voucher: Voucher | None):
    """Rules X1-X3 (draft, "Cooperative Close"): the close voucher must verify and
    cover max(spent, settled); the payee captures exactly max(spent, settled)."""
    if voucher is None:
        return Rejected("verification-failed", "X1")
    if rec is None:
        return Rejected("channel-not-found", "X1")
    ch = chain.channel(rec.channel_id)
    if ch is None or ch.finalized or rec.finalized:
        return Rejected("channel-finalized", "X1")
    if voucher.signer is None:
        return Rejected("invalid-signature", "X1")
    if voucher.signer != ch.signer or voucher.channel_id != rec.channel_id:
        return Rejected("signer-mismatch", "X1")
    if voucher.amount > ch.deposit:
        return Rejected("amount-exceeds-deposit", "X1")
    capture = max(rec.spent, ch.settled)
    if voucher.amount < capture:
        return Rejected("verification-failed", "X2", "close voucher below max(spent, settled)")
    if voucher.amount <= ch.settled and not cfg.public_vouchers_spend:
        # Rule UA2 (mppx GHSA-mv9j-8jvg-j8mr): a settled voucher is public; closing with it would let
        # anyone finalize the channel. The payer's close voucher is above settled.
        return Rejected("verification-failed", "UA2", "close voucher at or below settled is public")
    closed = escrow.close(chain, cfg.payee, voucher, capture)
    if isinstance(closed, Rejected):
        return Rejected("verification-failed", "X3", closed.code)
    accepted, highest = (voucher.amount, voucher) if voucher.amount > rec.accepted else (rec.accepted, rec.highest)
    rec = attrs.evolve(refresh(rec, closed), accepted=accepted, highest=highest)
    return rec, closed, capture


def settle_highest(cfg: ServerConfig, server: Server, chain: Chain, channel_id: str) -> tuple[Server, Chain] | Rejected:
    """Rule X4 (draft, "Settlement Timing"): the server settles its highest voucher."""
    rec = server.record(channel_id)
    if rec is None:
        return Rejected("channel-not-found", "X4")
    done = escrow.settle(chain, cfg.payee, rec.highest)
    if isinstance(done, Rejected):
        return done
    return server.put(refresh(rec, done)), done
