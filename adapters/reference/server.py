"""The reference session server: a Starlette ASGI app with SQLite accounting.

Protected resource: every path under `/paid/` (any HTTP method). Content
requests (every method but HEAD) cost `price`; HEAD and management actions
(topUp, close) cost nothing. `GET /health` is free.

Per request (draft-tempo-session-00, "Per-Request Processing"):

* no `Authorization: Payment` -> 402 with a fresh challenge (and hints for the
  payer named by the `Payment-Payer` request header, see `_challenge_header`);
* a credential -> parse, verify the echoed challenge (HMAC binding, expiry,
  that it is one of ours), then the action (open / topUp / voucher / close),
  then for content requests the charge; the accepted voucher and the charge
  are committed in one SQLite transaction before the response is sent.

The channel logic here is written on its own, against the draft and the
project's settled rules, not with the model's code (so that the conformance
suite can catch its bugs). It uses the shared wire codecs, voucher crypto,
hint encodings and chain backends only.
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import re
import secrets
import threading
import time
from typing import Any, Callable, Literal

import anyio
import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.chain.base import ZERO_ADDRESS, Chain, ChainError, ChannelDescriptor, ChannelState
from adapters.chain.deployment import deployment_of
from wire.crypto import CryptoError, address_of, recover_voucher_signer
from wire.crypto import keccak
from wire.profiles import method_details_with_hints
from model.records import Hints, Voucher
from wire import (
    PROBLEM_BASE,
    PROBLEMS,
    Challenge,
    ClosePayload,
    Credential,
    Descriptor,
    MethodDetails,
    OpenPayload,
    ProblemDetails,
    ProblemType,
    Receipt,
    SessionRequest,
    TopUpPayload,
    VoucherPayload,
    WireError,
    check_credential_protocol,
    decode_request,
    encode_problem,
    encode_receipt,
    format_www_authenticate,
    parse_authorization,
    verify_challenge_id,
)

from .ratelimit import RateLimiter
from .serving import ServingLimits, serve_app
from .store import StoredChannel, Store, StoredResponse, Tx

__all__ = ["ServerConfig", "SessionServer", "RunningServer", "serve", "PAID_PREFIX", "now_rfc3339"]

PAID_PREFIX = "/paid/"
PAYER_HEADER = "payment-payer"
IDEMPOTENCY_HEADER = "idempotency-key"
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_CONTENT_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

# Problem types of this server that are not payment failures (so not in wire.problems'
# registry of the drafts' types): both answer without a challenge.
_SERVER_PROBLEMS = {
    # draft "Request Idempotency": a stored response is given only to the request it answered
    "idempotency-key-reused": ProblemType(
        "idempotency-key-reused", PROBLEM_BASE + "session/idempotency-key-reused", "Idempotency Key Reused", 422),
    # draft "Denial of Service": voucher submissions are rate-limited per session
    "rate-limited": ProblemType("rate-limited", PROBLEM_BASE + "session/rate-limited", "Too Many Requests", 429),
}


def now_rfc3339(ts: float | None = None) -> str:
    t = time.time() if ts is None else ts
    return _dt.datetime.fromtimestamp(int(t), _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_rfc3339(value: str) -> float:
    text = value.strip()
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    return _dt.datetime.fromisoformat(text.replace("t", "T")).timestamp()


@attrs.define
class ServerConfig:
    """Everything a reference server needs. `secret` keys the challenge HMAC."""

    chain: Chain
    payee_key: bytes
    db_path: str
    realm: str = "reference.tempo.local"
    secret: bytes = attrs.field(factory=lambda: secrets.token_bytes(32))
    price: int = 1_000
    hinted: bool = True
    hint_encoding: Literal["flat", "snapshot"] = "snapshot"  # challenge hints: flat fields or sessionSnapshot
    min_voucher_delta: int = 0
    suggested_deposit: int | None = 100_000
    challenge_ttl: int = 300  # seconds
    unit_type: str = "request"
    clock: Callable[[], float] = time.time  # wall clock for challenge expiry and receipts
    # Credentials per second per channel (draft "Denial of Service": SHOULD 10 per session);
    # None: no limit (the conformance harness, whose clock does not advance). Authentic
    # credentials and unproven ones (junk naming the channel) have separate budgets.
    # Rule UA1: "authentic" (default) discloses the highest voucher's signature only to a request whose
    # credential carries a voucher the channel's signer signed above the settled amount (not public);
    # "any" to every requester (the draft's snapshot; what lets a third party close or spend a channel).
    proof_disclosure: str = "authentic"
    voucher_rate: float | None = 10.0
    voucher_burst: float | None = None  # bucket size; None: voucher_rate
    rate_clock: Callable[[], float] = time.monotonic
    # Scheduling hook (conformance/interface.py CHECKPOINTS): called with "read" once a request has read its
    # channel's record and "commit" just before it writes (store transaction, broadcast, close). A no-op in
    # production; the conformance harness pauses threads there to force the interleavings that matter.
    # Also "broadcast" (an open on chain, its record not committed) and "respond" (committed, reply not sent):
    # the harness's crash points (CRASH_POINTS); a hook may raise there, and nothing here catches it.
    checkpoint: Callable[[str], None] = lambda point: None


class _Reject(Exception):
    """A verification failure: becomes a problem+json response (402 with a fresh challenge, or 410)."""

    def __init__(self, slug: str, detail: str, *, channel_id: str | None = None, **extensions: Any) -> None:
        super().__init__(f"{slug}: {detail}")
        self.slug = slug
        self.detail = detail
        self.channel_id = channel_id
        self.extensions = extensions


@attrs.frozen
class _Reply:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


@attrs.frozen
class _Outcome:
    """A successful action, before the receipt is written."""

    record: StoredChannel
    tx_hash: str | None = None


class SessionServer:
    """One server instance over one SQLite file; `app` is the ASGI application.

    A new instance on the same `db_path` sees every channel, accepted voucher,
    charge and stored idempotent response of the previous one.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.chain = config.chain
        self.payee = address_of(config.payee_key)
        # The deployment (adapters/chain/deployment.py): v1 escrow or v2 precompile, its voucher domain,
        # amount bound and channel-id operations. On v2 every credential carries the channel descriptor.
        self.deployment = deployment_of(self.chain)
        self.v2 = self.deployment.is_v2
        self.domain = self.deployment.domain
        self.store = Store(config.db_path)
        self.limiter = (
            RateLimiter(config.voucher_rate, config.voucher_burst, clock=config.rate_clock)
            if config.voucher_rate is not None else None
        )
        self.app = Starlette(
            routes=[
                Route("/health", self._health, methods=["GET"]),
                Route(PAID_PREFIX + "{rest:path}", self._endpoint, methods=_CONTENT_METHODS + ["HEAD"]),
            ]
        )

    # ------------------------------------------------------------------ public API

    def get_record(self, channel_id: str) -> StoredChannel | None:
        return self.store.get(channel_id)

    def records(self) -> list[StoredChannel]:
        return self.store.all()

    def dump(self) -> str:
        """All stored rows as SQL text (for byte-for-byte comparisons in tests)."""
        return self.store.dump()

    def settle(self, channel_id: str) -> str | None:
        """Settle the highest accepted voucher on chain; returns the tx hash (None: nothing to settle)."""
        cid = channel_id.lower()
        with self.store.locks.get(cid):
            rec = self.store.get(cid)
            if rec is None:
                raise KeyError(cid)
            st = self.chain.get_channel(cid)
            if rec.accepted_cumulative <= st.settled or not rec.highest_signature:
                return None
            tx_hash = self.deployment.settle(
                self.config.payee_key, cid, rec.accepted_cumulative, bytes.fromhex(rec.highest_signature[2:])
            )
            st = self.chain.get_channel(cid)
            with self.store.transaction() as tx:
                cur = tx.get(cid)
                tx.update(_mirror(cur, st))
            return tx_hash

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ HTTP

    async def _health(self, request: Request) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    async def _endpoint(self, request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        reply = await anyio.to_thread.run_sync(self.handle, request.method, request.url.path, headers)
        return Response(content=reply.body, status_code=reply.status, headers=dict(reply.headers))

    def handle(self, method: str, path: str, headers: dict[str, str]) -> _Reply:
        """One request to the protected resource (synchronous; runs in a worker thread)."""
        method = method.upper()
        content = method != "HEAD"
        auth = headers.get("authorization")
        payer = headers.get(PAYER_HEADER, "").strip()
        payer = payer.lower() if _ADDRESS_RE.fullmatch(payer) else None
        if auth is None or auth.strip().split(" ", 1)[0].lower() != "payment":
            # No Payment credential (another scheme is not ours to judge): a fresh challenge.
            return self._problem_reply(
                "payment-required", "this resource requires a Payment credential", content, payer=payer
            )
        try:
            cred = check_credential_protocol(parse_authorization(auth), self.deployment.protocol)
        except WireError as exc:
            return self._problem_reply(
                "malformed-credential", f"{exc.where}: {exc.field}: {exc.what}", content, payer=payer,
                extra={"field": exc.field},
            )
        channel_hint = getattr(cred.payload, "channel_id", None)
        proven = self._proven_channel(cred)
        if self.limiter is not None and channel_hint is not None:
            wait = self.limiter.take(("authentic" if proven else "unproven", channel_hint))
            if wait is not None:
                return self._rate_limited(channel_hint, wait)
        try:
            request = self._verify_challenge(cred.challenge)
            key = headers.get(IDEMPOTENCY_HEADER)
            reply = self._dispatch(method, path, content, cred, request, key)
        except _Reject as rej:
            reply = self._problem_reply(
                rej.slug, rej.detail, content, payer=payer, channel_id=rej.channel_id or channel_hint,
                extra=rej.extensions, proven_channel=proven,
            )
        self.config.checkpoint("respond")  # crash point: committed, the response has not left
        return reply

    def _proven_channel(self, cred: Credential) -> str | None:
        """The channel whose holder sent the credential (rule UA1), else None.

        Rule UA (SPEC_NOTES 4b): a voucher is a bearer instrument, so the unspent authorization
        of a channel (acceptedCumulative - spent) belongs to whoever holds its highest voucher.
        The server therefore never discloses a voucher signature (the `highestVoucher` of a
        session snapshot) except in the answer to a request whose credential carries a voucher
        authentically signed by that channel's signer (recovered signer == the channel's
        authorized signer, low-s, our EIP-712 domain) for more than the on-chain settled amount:
        a voucher at or below settled is public (its settle transaction published it) and proves
        nothing (UA2). A challenge answering only `Payment-Payer`, an unpaid request, a forged or
        a public credential carries the hint values without the signature: knowing a payer's
        address, or its settled voucher, lets nobody close its channel or be served on it.
        """
        p = cred.payload
        amount = getattr(p, "cumulative_amount", None)
        signature = getattr(p, "signature", None)
        if amount is None or signature is None:
            return None
        st = self.chain.get_channel(p.channel_id)
        if not st.exists or st.payee != self.payee or self._public(amount, st):
            return None
        try:
            signer = self._recover(p.channel_id, amount, signature)
        except _Reject:
            return None
        return p.channel_id if signer == st.expected_signer else None

    @staticmethod
    def _public(amount: int, st: ChannelState) -> bool:
        """Rule UA2: a voucher at or below the on-chain settled amount is public (the settle
        transaction carries it): it proves no one, buys no content and closes nothing."""
        return amount <= st.settled

    def _discloses_proof(self, rec: StoredChannel | None, proven_channel: str | None) -> bool:
        """Rule UA1: the highest voucher goes only to a proven holder of that channel (the default,
        `proof_disclosure="authentic"`); a client that needs it authenticates first (rule UA3)."""
        if self.config.proof_disclosure == "any":
            return True
        return rec is not None and rec.channel_id == proven_channel

    def _rate_limited(self, channel_id: str, wait: float) -> _Reply:
        retry_after = max(1, math.ceil(wait))
        kind = _SERVER_PROBLEMS["rate-limited"]
        body = ProblemDetails(
            type=kind.uri, title=kind.title, status=kind.status, channel_id=channel_id,
            detail=f"more than {self.config.voucher_rate:g} credentials per second for channel {channel_id}; "
                   f"retry after {retry_after} s",
        )
        headers = (("content-type", "application/problem+json"), ("cache-control", "no-store"),
                   ("retry-after", str(retry_after)))
        return _Reply(kind.status, headers, encode_problem(body))

    # ------------------------------------------------------------------ challenge

    def _verify_challenge(self, ch: Challenge) -> SessionRequest:
        """The echoed challenge must be one this server issued, unexpired (httpauth "Challenge Binding")."""
        cfg = self.config
        try:
            bound = verify_challenge_id(cfg.secret, ch)
        except UnicodeEncodeError as exc:  # a lone surrogate (JSON "\ud800") has no UTF-8 form
            raise _Reject("challenge-not-found", f"challenge parameters are not UTF-8 text ({exc.reason} "
                          f"at position {exc.start}), so not a challenge this server issued") from None
        if not bound:
            raise _Reject("challenge-not-found", "challenge id does not match its parameters (unknown or tampered challenge)")
        if ch.realm != cfg.realm or ch.method != "tempo" or ch.intent != "session":
            raise _Reject("challenge-not-found", f"challenge is not a tempo session challenge of realm {cfg.realm!r}")
        if ch.expires is None:
            raise _Reject("challenge-not-found", "challenge without expires was not issued by this server")
        try:
            expires = _parse_rfc3339(ch.expires)
        except ValueError:
            raise _Reject("challenge-not-found", f"unparseable expires {ch.expires!r}") from None
        if cfg.clock() >= expires:
            raise _Reject("payment-expired", f"challenge expired at {ch.expires}")
        try:
            req = decode_request(ch.request)
        except WireError as exc:
            raise _Reject("challenge-not-found", f"echoed request does not decode: {exc.field}: {exc.what}") from None
        md = req.method_details
        mismatches = []
        if md.escrow_contract != self.chain.escrow:
            mismatches.append(f"methodDetails.escrowContract {md.escrow_contract} (ours {self.chain.escrow})")
        if md.chain_id is not None and md.chain_id != self.chain.chain_id:
            mismatches.append(f"methodDetails.chainId {md.chain_id} (ours {self.chain.chain_id})")
        if req.currency != self.chain.token:
            mismatches.append(f"currency {req.currency} (ours {self.chain.token})")
        if req.recipient != self.payee:
            mismatches.append(f"recipient {req.recipient} (ours {self.payee})")
        if req.amount != cfg.price:
            mismatches.append(f"amount {req.amount} (ours {cfg.price})")
        if mismatches:
            raise _Reject("challenge-not-found", "echoed challenge was not issued by this server: " + "; ".join(mismatches))
        return req

    def _hints_for(self, rec: StoredChannel | None, content: bool) -> tuple[Hints | None, str | None]:
        """Hints for `rec` if it is reusable: not finalized, no close pending (re-read on chain).
        The signature returned is disclosed only under rule UA (see `_proven_channel`)."""
        if rec is None or rec.finalized:
            return None, None
        st = self.chain.get_channel(rec.channel_id)
        if not st.exists or st.finalized or st.close_requested_at != 0:
            return None, None
        if not self.config.hinted:
            return Hints(channel_id=rec.channel_id), None
        cost = self.config.price if content else 0
        required = max(rec.accepted_cumulative, rec.spent + cost)
        if cost and self._public(required, st):
            # Rule UA2: the equal voucher is public, so it cannot pay; the smallest advance above settled can.
            required = st.settled + max(1, self.config.min_voucher_delta)
        proof = None
        if self.config.hint_encoding == "snapshot":
            proof = Voucher(channel_id=rec.channel_id, amount=rec.accepted_cumulative, signer=rec.expected_signer)
        hints = Hints(
            channel_id=rec.channel_id,
            accepted=rec.accepted_cumulative,
            spent=rec.spent,
            deposit=st.deposit,
            required=required,
            settled=st.settled,
            proof=proof,
        )
        sig = (rec.highest_signature or None) if self.config.hint_encoding == "snapshot" else None
        return hints, sig

    def _challenge_header(
        self, content: bool, payer: str | None, channel_id: str | None, proven_channel: str | None = None
    ) -> str:
        """A fresh WWW-Authenticate value. Hint resolution (application-defined, like mppx's
        resolveChannelId): the newest stored channel of the payer named in the `Payment-Payer`
        request header; without that header, the channel of the rejected credential."""
        cfg = self.config
        rec = self.store.newest_for_payer(payer, self.payee) if payer else None
        if rec is None and channel_id and not payer:
            rec = self.store.get(channel_id)
        hints, sig = self._hints_for(rec, content)
        if not self._discloses_proof(rec, proven_channel):
            sig = None
        base = MethodDetails(
            escrow_contract=self.chain.escrow,
            chain_id=self.chain.chain_id,
            min_voucher_delta=cfg.min_voucher_delta or None,
            session_protocol="v2" if self.v2 else None,
        )
        descriptor = None
        if self.v2 and hints is not None:
            descriptor = Descriptor.of(self.chain.get_channel(hints.channel_id).descriptor)
        md = method_details_with_hints(
            base, hints, cfg.hint_encoding, chain_id=self.chain.chain_id, escrow=self.chain.escrow,
            highest_voucher_signature=sig, descriptor=descriptor,
        )
        req = SessionRequest(
            amount=cfg.price,
            unit_type=cfg.unit_type,
            suggested_deposit=cfg.suggested_deposit if hints is None else None,
            currency=self.chain.token,
            recipient=self.payee,
            method_details=md,
        )
        challenge = Challenge.issue(
            cfg.secret, realm=cfg.realm, request=req, expires=now_rfc3339(cfg.clock() + cfg.challenge_ttl)
        )
        return format_www_authenticate(challenge)

    def _problem_reply(
        self,
        slug: str,
        detail: str,
        content: bool,
        *,
        payer: str | None = None,
        channel_id: str | None = None,
        extra: dict[str, Any] | None = None,
        proven_channel: str | None = None,
    ) -> _Reply:
        kind = _SERVER_PROBLEMS.get(slug) or PROBLEMS[slug]
        ext = dict(extra or {})
        if channel_id is not None:
            ext.setdefault("channel_id", channel_id)
        body = encode_problem(ProblemDetails(type=kind.uri, title=kind.title, status=kind.status, detail=detail, **ext))
        headers = [("content-type", "application/problem+json"), ("cache-control", "no-store")]
        if kind.status == 402:
            headers.append(("www-authenticate", self._challenge_header(content, payer, channel_id, proven_channel)))
        return _Reply(kind.status, tuple(headers), body)

    # ------------------------------------------------------------------ actions

    def _dispatch(
        self, method: str, path: str, content: bool, cred: Credential, request: SessionRequest, key: str | None
    ) -> _Reply:
        p = cred.payload
        cid = p.channel_id
        if self.v2:
            self._verify_descriptor(p)
        with self.store.locks.get(cid):
            if isinstance(p, OpenPayload):
                return self._open(method, path, content, cred, p, key)
            if isinstance(p, VoucherPayload):
                return self._voucher(method, path, content, cred, p, key)
            if isinstance(p, TopUpPayload):
                return self._topup(cred, p)
            if isinstance(p, ClosePayload):
                return self._close(cred, p)
        raise _Reject("malformed-credential", f"unsupported action {getattr(p, 'action', None)!r}")  # pragma: no cover

    def _verify_descriptor(self, p: Any) -> None:
        """v2 (draft, "Channel Descriptor"): the payload's descriptor must name its channelId (recomputed
        with our escrow and chain id), pay our recipient in our currency, and name no operator (this server
        advertises none). Because the id is a hash of every descriptor field, a descriptor that matches the
        id also matches the stored channel's (draft, "Close Payload")."""
        d = p.descriptor
        problems = []
        computed = self.chain.compute_channel_id(_chain_descriptor(d))
        if computed != p.channel_id:
            problems.append(f"descriptor names channel {computed}, payload.channelId is {p.channel_id}")
        if d.payee != self.payee:
            problems.append(f"descriptor.payee {d.payee} is not the recipient {self.payee}")
        if d.token != self.chain.token:
            problems.append(f"descriptor.token {d.token} is not the currency {self.chain.token}")
        if d.operator != ZERO_ADDRESS:
            problems.append(f"descriptor.operator {d.operator}: this server advertises no operator")
        if problems:
            raise _Reject("verification-failed", "; ".join(problems), channel_id=p.channel_id)

    def _recover(self, channel_id: str, amount: int, signature: str) -> str:
        try:
            return _recover_signer(self.domain, channel_id, amount, signature)
        except CryptoError as exc:
            raise _Reject("invalid-signature", f"voucher signature: {exc.what}", channel_id=channel_id) from None

    def _live_state(self, rec: StoredChannel | None, cid: str) -> ChannelState:
        """Rule V1: known to us and on chain, not finalized."""
        if rec is None:
            raise _Reject("channel-not-found", f"no channel {cid} is known to this server", channel_id=cid)
        st = self.chain.get_channel(cid)
        if not st.exists:
            raise _Reject("channel-not-found", f"channel {cid} does not exist on chain", channel_id=cid)
        if rec.finalized or st.finalized:
            raise _Reject("channel-finalized", f"channel {cid} is finalized", channel_id=cid)
        return st

    def _check_signer(self, st: ChannelState, cid: str, amount: int, signature: str) -> None:
        signer = self._recover(cid, amount, signature)
        if signer != st.expected_signer:
            raise _Reject(
                "signer-mismatch", f"voucher signed by {signer}, channel signer is {st.expected_signer}", channel_id=cid
            )

    def _replay(self, cid: str, key: str | None, content: bool) -> _Reply | None:
        if key is None or not content:
            return None
        stored = self.store.get_response(cid, key)
        if stored is None:
            return None
        return _Reply(stored.status, stored.headers, stored.body.encode("utf-8"))

    def _accept(self, tx: Tx, rec: StoredChannel, st: ChannelState, amount: int, signature: str) -> StoredChannel:
        """Voucher rules after the signature (draft "Voucher Verification" 5-9; "Idempotency")."""
        cid = rec.channel_id
        if st.close_requested_at != 0:
            raise _Reject("channel-finalized", f"close pending on channel {cid} (requested at {st.close_requested_at})",
                          channel_id=cid)
        if amount > st.deposit:
            raise _Reject("amount-exceeds-deposit", f"cumulativeAmount {amount} exceeds deposit {st.deposit}",
                          channel_id=cid)
        if amount < rec.accepted_cumulative:
            raise _Reject(
                "verification-failed",
                f"cumulativeAmount {amount} is below acceptedCumulative {rec.accepted_cumulative}",
                channel_id=cid, accepted_cumulative=rec.accepted_cumulative,
            )
        rec = _mirror(rec, st)
        if amount == rec.accepted_cumulative:
            return rec  # idempotent retry: voucher state unchanged
        if amount - rec.accepted_cumulative < self.config.min_voucher_delta:
            raise _Reject(
                "delta-too-small",
                f"increase {amount - rec.accepted_cumulative} is below minVoucherDelta {self.config.min_voucher_delta}",
                channel_id=cid,
            )
        return attrs.evolve(rec, accepted_cumulative=amount, highest_signature=signature)

    def _serve(
        self, tx: Tx, rec: StoredChannel, method: str, path: str, content: bool, cred: Credential,
        key: str | None, tx_hash: str | None = None,
    ) -> _Reply:
        """Charge (content only), store, build the receipt; runs inside the transaction."""
        price = self.config.price if content else 0
        if price:
            available = rec.accepted_cumulative - rec.spent
            if available < price:
                # The accepted voucher stands (draft "Per-Request Processing": step 1 before step 2).
                tx.update(rec)
                raise _Reject(
                    "insufficient-balance",
                    f"available {available} (acceptedCumulative {rec.accepted_cumulative} - spent {rec.spent}) "
                    f"is below the price {price}",
                    channel_id=rec.channel_id, required_top_up=price - available,
                    accepted_cumulative=rec.accepted_cumulative,
                    required_cumulative=rec.spent + price,
                )
            rec = attrs.evolve(rec, spent=rec.spent + price, units=rec.units + 1)
        tx.update(rec)
        reply = self._success(rec, cred, method, path, content, tx_hash, units=1 if price else None)
        if key is not None and price:
            tx.put_response(rec.channel_id, key, StoredResponse(
                method, path, reply.status, reply.headers, reply.body.decode("utf-8")))
        return reply

    def _success(
        self, rec: StoredChannel, cred: Credential, method: str, path: str, content: bool,
        tx_hash: str | None, units: int | None,
    ) -> _Reply:
        receipt = Receipt(
            timestamp=now_rfc3339(self.config.clock()),
            reference=rec.channel_id,
            challenge_id=cred.challenge.id,
            channel_id=rec.channel_id,
            accepted_cumulative=rec.accepted_cumulative,
            spent=rec.spent,
            units=units,
            tx_hash=tx_hash,
        )
        headers = [("payment-receipt", encode_receipt(receipt)), ("cache-control", "private")]
        body = b""
        if units:
            headers.append(("content-type", "application/json"))
            body = json.dumps(
                {"resource": path, "method": method, "channelId": rec.channel_id, "unit": rec.units},
                separators=(",", ":"),
            ).encode()
        return _Reply(200, tuple(headers), body)

    # -- open

    def _decode_client_tx(self, raw: str, kind: str, cid: str) -> tuple[Any, list[str]]:
        """Decode a client-signed transaction (draft "Open/TopUp Verification" 1) and list what
        makes it the wrong call: another function, contract or chain."""
        try:
            dtx = self.chain.decode_tx(raw)
        except ChainError as exc:
            raise _Reject("verification-failed", f"payload.transaction: {exc}", channel_id=cid) from None
        problems = []
        if dtx.kind != kind:
            problems.append(f"transaction is a {dtx.kind}, not a{'n' if kind == 'open' else ''} {kind}")
        if dtx.to != self.chain.escrow:
            problems.append(f"transaction calls {dtx.to}, not the escrow {self.chain.escrow}")
        if dtx.chain_id != self.chain.chain_id:
            problems.append(f"transaction is for chain {dtx.chain_id}, not {self.chain.chain_id}")
        return dtx, problems

    def _open(self, method: str, path: str, content: bool, cred: Credential, p: OpenPayload, key: str | None) -> _Reply:
        cid = p.channel_id
        if self.store.get(cid) is not None:
            # A replayed open for a known channel carries a voucher like any other.
            return self._voucher(method, path, content, cred, p, key)
        dtx, problems = self._decode_client_tx(p.transaction, "open", cid)
        # v1: the transaction's arguments; v2: the descriptor the transaction will create (draft, "Open
        # Payload": it must equal the payload's descriptor)
        payee, token, tx_signer = ((dtx.descriptor.payee, dtx.descriptor.token, dtx.descriptor.authorized_signer)
                                   if self.v2 else (dtx.payee, dtx.token, dtx.authorized_signer))
        if payee != self.payee:
            problems.append(f"channel payee {payee} is not the recipient {self.payee}")
        if token != self.chain.token:
            problems.append(f"channel token {token} is not the currency {self.chain.token}")
        if dtx.channel_id != cid:
            problems.append(f"transaction opens {dtx.channel_id}, payload.channelId is {cid}")
        if self.v2 and _chain_descriptor(p.descriptor) != dtx.descriptor:
            problems.append("payload.descriptor differs from the descriptor the open transaction creates")
        if p.authorized_signer is not None and p.authorized_signer != tx_signer:
            problems.append(f"payload.authorizedSigner {p.authorized_signer} differs from the transaction's")
        if problems:
            raise _Reject("verification-failed", "; ".join(problems), channel_id=cid)
        expected = dtx.sender if tx_signer == ZERO_ADDRESS else tx_signer
        # The initial voucher is checked before anything is broadcast: a bad one changes nothing.
        signer = self._recover(cid, p.cumulative_amount, p.signature)
        if signer != expected:
            raise _Reject("signer-mismatch", f"voucher signed by {signer}, channel signer is {expected}", channel_id=cid)
        st = self.chain.get_channel(cid)
        tx_hash = None
        if not st.exists:
            if p.cumulative_amount > dtx.amount:
                raise _Reject("amount-exceeds-deposit",
                              f"cumulativeAmount {p.cumulative_amount} exceeds deposit {dtx.amount}", channel_id=cid)
            try:
                tx_hash = self.chain.broadcast(p.transaction)
            except ChainError as exc:
                st = self.chain.get_channel(cid)
                if not st.exists:
                    raise _Reject("verification-failed", f"open transaction failed: {exc}", channel_id=cid) from None
                # Another server process broadcast this open first: verify the channel as below.
            else:
                st = self.chain.get_channel(cid)
                self.config.checkpoint("broadcast")  # crash point: the open is on chain, its record not committed
        # Query the escrow (draft "Open Verification" step 2).
        problems = []
        if not st.exists:
            problems.append("channel does not exist on chain after the open")
        else:
            if st.payer != dtx.sender:
                problems.append(f"on-chain payer {st.payer} is not the transaction sender {dtx.sender}")
            if st.payee != self.payee:
                problems.append(f"on-chain payee {st.payee} is not {self.payee}")
            if st.token != self.chain.token:
                problems.append(f"on-chain token {st.token} is not {self.chain.token}")
            if st.authorized_signer != tx_signer:
                problems.append("on-chain authorizedSigner differs from the transaction's")
        if problems:
            raise _Reject("verification-failed", "; ".join(problems), channel_id=cid)
        if st.finalized:
            raise _Reject("channel-finalized", f"channel {cid} is finalized", channel_id=cid)
        if st.close_requested_at != 0:
            raise _Reject("channel-finalized", f"close pending on channel {cid}", channel_id=cid)
        if p.cumulative_amount > st.deposit:
            raise _Reject("amount-exceeds-deposit",
                          f"cumulativeAmount {p.cumulative_amount} exceeds deposit {st.deposit}", channel_id=cid)
        if p.cumulative_amount < st.settled:
            raise _Reject("verification-failed",
                          f"cumulativeAmount {p.cumulative_amount} is below settled {st.settled}", channel_id=cid)
        rec = StoredChannel(
            channel_id=cid, payer=st.payer, payee=st.payee, token=st.token, authorized_signer=st.authorized_signer,
            deposit=st.deposit, settled=st.settled, close_requested_at=st.close_requested_at, finalized=False,
            accepted_cumulative=p.cumulative_amount, highest_signature=p.signature, spent=0, units=0, created_seq=0,
        )
        return self._commit_new(rec, method, path, content, cred, key, tx_hash)

    def _commit_new(self, rec, method, path, content, cred, key, tx_hash) -> _Reply:
        # The record must exist even when the charge fails (the channel is open on chain),
        # so insert and charge are separate steps of one transaction; on insufficient
        # balance the insert is committed and the 402 raised afterwards.
        # The lookup in `_open` ran outside this transaction: another process on the same file
        # may have recorded the channel since. Looked up again here, under the write lock.
        pending: _Reject | None = None
        with self.store.transaction() as tx:
            recorded = tx.get(rec.channel_id) is not None
            if not recorded:
                rec = tx.insert(rec)
                try:
                    reply = self._serve(tx, rec, method, path, content, cred, key, tx_hash)
                except _Reject as rej:
                    pending = rej
        if recorded:
            return self._voucher(method, path, content, cred, cred.payload, key)  # a replayed open
        if pending is not None:
            raise pending
        return reply

    # -- voucher

    def _voucher(self, method: str, path: str, content: bool, cred: Credential, p, key: str | None) -> _Reply:
        cid = p.channel_id
        rec = self.store.get(cid) or self._adopt(cid, p.cumulative_amount, p.signature)
        self.config.checkpoint("read")
        if rec is not None and key is not None and content:
            # Request idempotency: a replay of a served request returns the stored response,
            # once the voucher proves the channel's signer sent it. Any other credential goes
            # through the voucher checks in their settled order (SPEC_NOTES), finalized first.
            if self._signed_by(rec.expected_signer, cid, p.cumulative_amount, p.signature):
                self._check_key_scope(self.store.get_response(cid, key), key, method, path, cid)
                cached = self._replay(cid, key, content)
                if cached is not None:
                    return cached
        st = self._live_state(rec, cid)
        self._check_signer(st, cid, p.cumulative_amount, p.signature)
        pending: _Reject | None = None
        self.config.checkpoint("commit")
        with self.store.transaction() as tx:
            cur = tx.get(cid)
            if cur is None:  # pragma: no cover - records are never deleted
                raise _Reject("channel-not-found", f"no channel {cid}", channel_id=cid)
            if key is not None and content:
                # Checked again under the channel's write lock: a concurrent request with the
                # same key may have been served since the check above (draft "Concurrent Request
                # Handling": at most one delivery and one charge).
                stored = tx.get_response(cid, key)
                self._check_key_scope(stored, key, method, path, cid)
                if stored is not None:
                    return _Reply(stored.status, stored.headers, stored.body.encode("utf-8"))
            new = self._accept(tx, cur, st, p.cumulative_amount, p.signature)
            if (content and self.config.price and new.accepted_cumulative == cur.accepted_cumulative
                    and self._public(p.cumulative_amount, st)):
                raise _Reject(
                    "verification-failed",
                    f"cumulativeAmount {p.cumulative_amount} is at or below the settled amount {st.settled}: a "
                    f"settled voucher is public and buys nothing; sign above it (rule UA2)",
                    channel_id=cid, accepted_cumulative=cur.accepted_cumulative,
                )
            try:
                reply = self._serve(tx, new, method, path, content, cred, key)
            except _Reject as rej:
                if rej.slug != "insufficient-balance":
                    raise
                pending = rej  # the voucher advance commits; nothing was charged
        if pending is not None:
            raise pending
        return reply

    def _signed_by(self, signer: str, cid: str, amount: int, signature: str) -> bool:
        try:
            return self._recover(cid, amount, signature) == signer
        except _Reject:
            return False

    @staticmethod
    def _check_key_scope(stored: StoredResponse | None, key: str, method: str, path: str, cid: str) -> None:
        """An Idempotency-Key names one request: (channel, key, method, path). A key reused for
        another request is refused, not answered with the other request's stored response."""
        if stored is not None and (stored.method, stored.path) != (method, path):
            raise _Reject(
                "idempotency-key-reused",
                f"Idempotency-Key {key!r} was used for {stored.method} {stored.path} on this channel; "
                f"this request is {method} {path}: use a fresh key", channel_id=cid,
            )

    def _adopt(self, cid: str, amount: int, signature: str) -> StoredChannel | None:
        """Record an on-chain channel of ours that the store does not know, when a credential's
        voucher is signed by its signer: the crash window between an open's broadcast and its
        record's commit orphans no deposit. The record is built from the chain (deposit,
        settled, payer, signer) with acceptedCumulative = spent = settled: nothing is assumed
        served or authorized beyond what the chain shows; the credential's own voucher, checked
        as any other, then proves more. None: not a live channel of ours (then the caller
        answers as for any unknown channel)."""
        st = self.chain.get_channel(cid)
        if not st.exists or st.payee != self.payee or st.token != self.chain.token or st.finalized:
            return None
        self._check_signer(st, cid, amount, signature)
        rec = StoredChannel(
            channel_id=cid, payer=st.payer, payee=st.payee, token=st.token, authorized_signer=st.authorized_signer,
            deposit=st.deposit, settled=st.settled, close_requested_at=st.close_requested_at, finalized=False,
            accepted_cumulative=st.settled, highest_signature="", spent=st.settled, units=0, created_seq=0,
        )
        with self.store.transaction() as tx:
            return tx.get(cid) or tx.insert(rec)


    # -- topUp

    def _topup(self, cred: Credential, p: TopUpPayload) -> _Reply:
        cid = p.channel_id
        rec = self.store.get(cid)
        if rec is None:
            raise _Reject("channel-not-found", f"no channel {cid} is known to this server", channel_id=cid)
        self.config.checkpoint("read")
        raw_id = "0x" + keccak(p.transaction.encode()).hex()
        done = self.store.topup_hash(raw_id)
        if done is not None:
            # The same signed transaction again: it applied once; answer as then.
            return self._success(rec, cred, "HEAD", "", False, done, units=None)
        dtx, problems = self._decode_client_tx(p.transaction, "topUp", cid)
        if dtx.channel_id != cid:
            problems.append(f"transaction tops up {dtx.channel_id}, payload.channelId is {cid}")
        if dtx.amount != p.additional_deposit:
            problems.append(f"transaction adds {dtx.amount}, payload.additionalDeposit is {p.additional_deposit}")
        if problems:
            raise _Reject("verification-failed", "; ".join(problems), channel_id=cid)
        before = self.chain.get_channel(cid)
        if rec.finalized or before.finalized:
            raise _Reject("channel-finalized", f"channel {cid} is finalized", channel_id=cid)
        try:
            tx_hash = self.chain.broadcast(p.transaction)
        except ChainError as exc:
            slug = "channel-finalized" if exc.reason == "ChannelFinalized" else "verification-failed"
            raise _Reject(slug, f"topUp transaction failed: {exc}", channel_id=cid) from None
        st = self.chain.get_channel(cid)
        if st.deposit < before.deposit + dtx.amount:  # pragma: no cover - the escrow guarantees it
            raise _Reject("verification-failed", "deposit did not increase by additionalDeposit", channel_id=cid)
        self.config.checkpoint("commit")
        with self.store.transaction() as tx:
            cur = _mirror(tx.get(cid), st)
            tx.update(cur)
            self.store.put_topup(tx, raw_id, cid, tx_hash)
        return self._success(cur, cred, "HEAD", "", False, tx_hash, units=None)

    # -- close

    def _close(self, cred: Credential, p: ClosePayload) -> _Reply:
        cid = p.channel_id
        rec = self.store.get(cid) or self._adopt(cid, p.cumulative_amount, p.signature)
        self.config.checkpoint("read")
        st = self._live_state(rec, cid)
        self._check_signer(st, cid, p.cumulative_amount, p.signature)
        amount = p.cumulative_amount
        if amount > st.deposit:
            raise _Reject("amount-exceeds-deposit", f"cumulativeAmount {amount} exceeds deposit {st.deposit}",
                          channel_id=cid)
        capture = max(rec.spent, st.settled)
        if amount < capture:
            raise _Reject(
                "verification-failed",
                f"close cumulativeAmount {amount} is below max(spent {rec.spent}, settled {st.settled})",
                channel_id=cid,
            )
        if self._public(amount, st):
            raise _Reject(
                "verification-failed",
                f"close cumulativeAmount {amount} is at or below the settled amount {st.settled}: a settled "
                f"voucher is public and closes nothing; sign above it (rule UA2)", channel_id=cid,
            )
        self.config.checkpoint("commit")
        try:
            tx_hash = self.deployment.close(
                self.config.payee_key, cid, amount, capture, bytes.fromhex(p.signature[2:])
            )
        except ChainError as exc:
            raise _Reject("verification-failed", f"close transaction failed: {exc}", channel_id=cid) from None
        st = self.chain.get_channel(cid)
        with self.store.transaction() as tx:
            cur = _mirror(tx.get(cid), st)
            if amount > cur.accepted_cumulative:
                cur = attrs.evolve(cur, accepted_cumulative=amount, highest_signature=p.signature)
            cur = attrs.evolve(cur, finalized=True)
            tx.update(cur)
        return self._success(cur, cred, "HEAD", "", False, tx_hash, units=None)


@functools.lru_cache(maxsize=4096)
def _recover_signer(domain, channel_id: str, amount: int, signature: str) -> str:
    """recover_voucher_signer, remembered: one request recovers its voucher's signer up to three times
    (rule UA1's proof check, the idempotent-replay check, the signer check); a pure function of its
    arguments (a refused signature raises and is not remembered)."""
    return recover_voucher_signer(domain, channel_id, amount, signature)


def _chain_descriptor(d: Descriptor) -> ChannelDescriptor:
    """A credential's (wire) descriptor as the chain's record."""
    return ChannelDescriptor(d.payer, d.payee, d.operator, d.token, d.salt, d.authorized_signer, d.expiring_nonce_hash)


def _mirror(rec: StoredChannel, st: ChannelState) -> StoredChannel:
    """Refresh the on-chain mirror fields of a record from a chain read."""
    return attrs.evolve(
        rec, deposit=st.deposit, settled=st.settled, close_requested_at=st.close_requested_at,
        finalized=rec.finalized or st.finalized,
    )


# ---------------------------------------------------------------------- serving


@attrs.define
class RunningServer:
    """A server running in a background thread; `stop()` shuts it down."""

    url: str
    server: SessionServer
    _uvicorn: Any
    _thread: threading.Thread

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout=10)
        self.server.close()

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    config: ServerConfig | SessionServer, host: str = "127.0.0.1", port: int = 0, limits: ServingLimits | None = None,
) -> RunningServer:
    """Run a reference server with uvicorn in a background thread (with the header-read timeout,
    connection limit and rate-limited logging of `serving.ServingLimits`); returns its base URL
    and a stop handle."""
    server = config if isinstance(config, SessionServer) else SessionServer(config)
    userver, thread, bound_port = serve_app(server.app, host, port, limits or ServingLimits())
    return RunningServer(f"http://{host}:{bound_port}", server, userver, thread)
