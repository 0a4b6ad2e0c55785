"""The reference session client (httpx): pays 402 challenges with session credentials.

Rules (the project's settled client rules; see SPEC_NOTES):

* Channel choice. A HINTED client uses a challenge's hinted channel only if the
  chain says its payer is this client and it is neither finalized nor closing;
  with hint values it hydrates its view from them (by max), with a bare
  channelId it recovers from the chain (local = max(settled, what it signed)).
  Otherwise it uses its own live entry, else a persisted one, else opens a new
  channel with deposit min(max_deposit, suggestedDeposit or max_deposit). A
  LEGACY client ignores hint values: its own entry, else a bare channelId of its
  own (recovered from the chain), else its persisted entry, else a new channel.
* Amount. C = max(target, signed_max), target = requiredCumulative (hinted, for
  this channel) else max(view.accepted, signed_max) + price.
* Trust bound. C <= F + price + max_unproven_hint, F = max(signed_max, chain
  settled, the snapshot's highestVoucher amount when it carries this client's valid
  signature on this channel); otherwise HintBoundExceeded and nothing is signed.
* Deposit. C above the chain deposit -> topUp (sent with HEAD) when C <=
  max_deposit, else DepositExhausted.
* Persistence. signed_max (and the channel id and salt) is written to the JSON
  file atomically BEFORE a voucher is sent.
* Receipts (hinted only). view.accepted/spent rise to the receipt's values for
  this channel, never fall; other channels' receipts are ignored.
* Challenge reuse (option `reuse_challenge`). A request first pays with the challenge of the
  last served request and the client's own view (C = max(accepted, signed_max) + price, the
  held challenge's hints ignored as stale); a 402 answer is the fallback's fresh challenge
  (that paid attempt counts as one of the three).
* Transport errors after sending a paid request: one retry with the same
  Authorization and Idempotency-Key.
* 410 is the server's opinion. The client asks the chain: a channel that is absent or
  finalized is forgotten; one the chain still holds escrow for stays in the persisted
  file, marked `server_refused`, so its deposit can still be closed and withdrawn
  (`escrow_holdings()` lists them); either way the client stops using it by default.
* Price (H6). `max_price` is required: the challenge's `amount` above it -> PriceTooHigh.
* Escrow budget. An open or topUp that would lock more than `max_escrow` across the
  client's channels not yet finalized on chain (refused ones included) -> EscrowBudgetExceeded.
* Unserved exposure. Within one request() the client signs at most two prices (plus
  the unproven allowance, spendable once until a response is served) above what was
  already authorized on each channel when the request began; across requests the sum
  signed without a served response is at most `max_unserved` -> ExposureExceeded.
  The exposure is what can really be collected, asked of the chain at each request: opens
  not (yet) on chain that consume one sender nonce exclude each other and count once; an open
  the payer's nonce moved past without it can never apply and is forgotten (exposure and file);
  on a finalized channel, at most its final settled amount above the mark.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import tempfile
import threading
import time
import uuid
from typing import Any, Callable

import attrs
import httpx

from adapters.chain.base import ZERO_ADDRESS, Chain, ChainError, ChannelDescriptor, ChannelState
from adapters.chain.deployment import deployment_of
from wire.crypto import address_of, keccak, sign_voucher
from wire.profiles import hints_from_request, recoverer
from model.records import Hints
from wire import (
    Challenge,
    ClosePayload,
    Credential,
    Descriptor,
    OpenPayload,
    Receipt,
    SessionRequest,
    TopUpPayload,
    VoucherPayload,
    WireError,
    encode_authorization,
    parse_problem,
    parse_receipt,
    parse_www_authenticate,
)

__all__ = [
    "SessionClient",
    "ChannelView",
    "PaymentRefused",
    "ServerUnreachable",
    "PriceTooHigh",
    "HintBoundExceeded",
    "DepositExhausted",
    "ChallengeRejected",
    "EscrowBudgetExceeded",
    "ExposureExceeded",
    "EscrowHolding",
]

MAX_PAID_ATTEMPTS = 3
PRICES_PER_REQUEST = MAX_PAID_ATTEMPTS  # the most one request() signs unserved: one price per paid attempt (plus the unproven allowance)
PAYER_HEADER = "Payment-Payer"
REUSE_MARGIN = 5.0  # seconds: a held challenge this close to its expiry is not reused


class PaymentRefused(Exception):
    """The client declined to pay a challenge (nothing was signed for it)."""


class HintBoundExceeded(PaymentRefused):
    """A challenge's hints asked for more than the client can prove it already authorized."""


class DepositExhausted(PaymentRefused):
    """Paying would need more escrow than `max_deposit` allows."""


class ChallengeRejected(PaymentRefused):
    """The challenge is not one this client can pay (other escrow, chain, token, method)."""


class PriceTooHigh(PaymentRefused):
    """The challenge's price is above the client's `max_price`."""


class EscrowBudgetExceeded(PaymentRefused):
    """An open or topUp would lock more escrow than `max_escrow` across the client's
    channels not yet finalized on chain (channels a server refused included)."""


class ExposureExceeded(PaymentRefused):
    """Signing would leave more value with the server, unserved, than the client allows
    (two prices + the unproven allowance per request; `max_unserved` across requests)."""


class ServerUnreachable(httpx.TransportError):
    """The server did not answer (refused, reset, timed out). Says where, and whether a
    signed voucher may have reached it: the voucher's amount is already in `signed_max`
    (persisted first), so nothing is lost and the next request reconciles."""

    def __init__(self, method: str, url: str, cause: Exception, sent: str | None = None) -> None:
        what = f"{method} {url}: no answer from the server ({type(cause).__name__}: {cause or 'no detail'})"
        if sent:
            what += f"; {sent} may or may not have been applied (retried once)"
        super().__init__(what)


@attrs.frozen
class ChannelView:
    """The client's view of one channel: server-reported accepted/spent, its own signed_max."""

    channel_id: str
    deposit: int
    accepted: int
    spent: int
    signed_max: int


@attrs.define
class _Entry:
    channel_id: str
    salt: str | None = None
    deposit: int = 0
    accepted: int = 0
    spent: int = 0
    signed_max: int = 0
    opened_deposit: int = 0  # what this client escrowed when it opened the channel (0: unknown)

    def view(self) -> ChannelView:
        return ChannelView(self.channel_id, self.deposit, self.accepted, self.spent, self.signed_max)


@attrs.frozen
class EscrowHolding:
    """A channel of this client that the chain still holds escrow for (not finalized)."""

    channel_id: str
    deposit: int
    settled: int
    closing: bool  # a forced close is pending: withdraw after the grace period
    server_refused: bool  # the server answered 410 for it while the chain still held it

    @property
    def locked(self) -> int:
        return self.deposit - self.settled


@attrs.define
class _Exposure:
    """What the client signed that no served response paid for (see the module rules).

    `marks`/`tops`: per channel, what was already authorized when the client first signed on
    it since the last served response, and the highest it signed on it since; they are kept
    across requests until a response is served. `at_begin`: the exposure when this request began.
    `pending`: channels whose open the client sent but the chain has not shown, by the sender
    nonce their open transaction consumes: opens with one nonce exclude each other (at most one
    can ever apply), so each such group counts once, at its largest; `SessionClient._reconcile`
    forgets an open whose nonce the chain has moved past without it (it can never apply)."""

    max_unserved: int
    max_unproven: int
    allowance_used: int = 0
    marks: dict[str, int] = attrs.field(factory=dict)
    tops: dict[str, int] = attrs.field(factory=dict)
    pending: dict[str, int] = attrs.field(factory=dict)
    at_begin: int = 0
    price: int = 0

    @staticmethod
    def _rise(marks: dict[str, int], tops: dict[str, int], pending: dict[str, int]) -> int:
        total, groups = 0, {}
        for c in tops:
            rise = max(0, tops[c] - marks[c])
            if c in pending:
                groups[pending[c]] = max(groups.get(pending[c], 0), rise)
            else:
                total += rise
        return total + sum(groups.values())

    @staticmethod
    def _rebase(marks: dict[str, int], tops: dict[str, int], key: str, before: int) -> None:
        # A proven floor above the highest this client signed on the channel is another
        # instance's voucher (same key): ours below it is worthless to the server, so the
        # exposure on that channel starts again from the floor. (A floor equal to our own
        # voucher proves nothing: a server that keeps it and answers 402 shows exactly that.)
        if key not in marks or before > tops[key]:
            marks[key] = tops[key] = before

    def begin(self) -> None:
        self.at_begin, self.price = self._rise(self.marks, self.tops, self.pending), 0

    def admit(self, channel_id: str | None, before: int, amount: int, cost: int, nonce: int | None = None) -> None:
        """Raise ExposureExceeded unless signing `amount` (on `channel_id`, None: a new channel whose
        open will consume sender nonce `nonce`, None: unknown) is within bounds."""
        price = max(self.price, cost)
        marks, tops, pending = dict(self.marks), dict(self.tops), dict(self.pending)
        key = channel_id if channel_id is not None else "(new channel)"
        self._rebase(marks, tops, key, before)
        tops[key] = max(tops[key], amount)
        if channel_id is None and nonce is not None:
            pending[key] = nonce
        total = self._rise(marks, tops, pending)
        here = max(0, total - self.at_begin)
        allowance = max(0, self.max_unproven - self.allowance_used)
        what = ", ".join(f"{c} {marks[c]}->{tops[c]}" + (f" (open not on chain, nonce {pending[c]})" if c in pending else "")
                         for c in tops if tops[c] > marks[c])
        # Two prices: the voucher and one corrected retry (a device of the same payer may have
        # signed the same amount already: a legacy client cannot tell that from a server keeping it).
        if here > PRICES_PER_REQUEST * price + allowance:
            raise ExposureExceeded(
                f"this request would sign {here} above what was authorized when it began, without being served "
                f"({what}); bound: {PRICES_PER_REQUEST} x price {price} + unproven allowance left {allowance}")
        if total > self.max_unserved:
            raise ExposureExceeded(
                f"signing would leave {total} signed since the last served response ({what}), "
                f"{total - here} of it in earlier requests; bound max_unserved {self.max_unserved} "
                f"(a served response resets it)")

    def record(self, channel_id: str, before: int, amount: int, cost: int, nonce: int | None = None) -> None:
        self.price = max(self.price, cost)
        self._rebase(self.marks, self.tops, channel_id, before)
        self.tops[channel_id] = max(self.tops[channel_id], amount)
        if nonce is not None:
            self.pending[channel_id] = nonce

    def forget(self, channel_id: str) -> None:
        """The chain shows the channel absent or finalized: nothing signed on it can be collected."""
        self.marks.pop(channel_id, None)
        self.tops.pop(channel_id, None)
        self.pending.pop(channel_id, None)

    def end(self, served: bool) -> None:
        if served:
            self.marks, self.tops, self.pending, self.allowance_used = {}, {}, {}, 0
        else:
            here = max(0, self._rise(self.marks, self.tops, self.pending) - self.at_begin)
            self.allowance_used += max(0, here - self.price)


Observer = Callable[[str, dict[str, Any]], None]


def _above_settled(st: ChannelState, price: int) -> int | None:
    """Rules UA2/UA3: the lowest voucher that is not public (above settled): settled + one price, at most
    the deposit; None when nothing is left above settled (model/client.py above_settled)."""
    if st.deposit <= st.settled:
        return None
    return min(st.settled + max(price, 1), st.deposit)


class SessionClient:
    """A paying HTTP client for tempo session challenges.

    `max_price` (required, keyword): the price per request the client agreed to pay; a challenge
    whose `amount` is higher raises PriceTooHigh before anything is signed. It is required because
    no default is safe: "any price" lets a server drain the deposit, and any number is a guess.
    `max_escrow` (default 2 x max_deposit): the most escrow (deposit - settled) the client keeps
    locked across its channels not finalized on chain, including channels a server refused with
    410 (they stay persisted); an open or topUp beyond it raises EscrowBudgetExceeded.
    `reuse_challenge` (default False): pay in one round trip, with the challenge of the last served
    request (not within REUSE_MARGIN of its expiry) and the client's own view of its live channel
    instead of an unpaid request for a fresh 402 (the core draft lets a client reuse a challenge
    until it expires); a refusal is a 402 with a fresh challenge, and the usual flow takes over from it.
    `max_unserved` (default 2 x max_price + max_unproven_hint): the most the client signs over
    consecutive requests without a served (2xx) response, beyond which ExposureExceeded (so one
    lost response is tolerated; a served response resets the count, as does `restart()`).

    `target` is a base URL or an httpx transport (then requests go to http://reference.test).
    `deposit`: what to escrow when opening (default: min(max_deposit, suggestedDeposit or
    max_deposit)); `top_up`: what to add when a voucher would exceed the deposit (at least what
    is missing; default: what the channel was opened with, else its current deposit); `seed`: derive channel salts deterministically (else
    random); `auto_idempotency_keys`: send a fresh Idempotency-Key with each logical content
    request when the caller gives none; `observer(kind, data)` sees every exchange.
    """

    def __init__(
        self,
        target: str | httpx.BaseTransport,
        key: bytes,
        chain: Chain,
        hinted: bool = True,
        max_deposit: int = 1_000_000,
        max_unproven_hint: int = 0,
        persist_path: str | None = None,
        *,
        max_price: int,
        max_escrow: int | None = None,
        max_unserved: int | None = None,
        top_up: int | None = None,
        deposit: int | None = None,
        seed: int | None = None,
        auto_idempotency_keys: bool = True,
        reuse_challenge: bool = False,
        timeout: float = 30.0,
        observer: Observer | None = None,
    ) -> None:
        self.key = key
        self.chain = chain
        self.hinted = hinted
        self.max_deposit = max_deposit
        self.max_unproven_hint = max_unproven_hint
        if not isinstance(max_price, int) or max_price < 0:
            raise ValueError(f"max_price must be the agreed price per request (an int >= 0), not {max_price!r}")
        self.max_price = max_price
        self.max_escrow = 2 * max_deposit if max_escrow is None else max_escrow
        self.max_unserved = 2 * max_price + max_unproven_hint if max_unserved is None else max_unserved
        self._exposure = _Exposure(self.max_unserved, max_unproven_hint)
        self.persist_path = persist_path
        self.top_up = top_up
        self.open_deposit = deposit
        self._seed = seed
        self._salts = 0
        self.auto_idempotency_keys = auto_idempotency_keys
        self.reuse_challenge = reuse_challenge
        self._served_challenge: Challenge | None = None
        self.observer = observer
        self.address = address_of(key)
        # The deployment (adapters/chain/deployment.py): v1 escrow or v2 precompile. On v2 the voucher
        # domain is "TIP20 Channel Reserve", amounts are uint96, and every payload carries the descriptor.
        self.deployment = deployment_of(chain)
        self.domain = self.deployment.domain
        self._recover = recoverer(self.domain)
        self._descriptors: dict[str, ChannelDescriptor] = {}  # v2: channel id -> its descriptor
        if isinstance(target, str):
            self._http = httpx.Client(base_url=target, timeout=timeout)
        else:
            self._http = httpx.Client(transport=target, base_url="http://reference.test", timeout=timeout)
        self._lock = threading.RLock()
        self._authenticated = False
        self._entry: _Entry | None = None
        self._known: dict[str, _Entry] = {}  # every channel this run has used
        self._unseen: dict[str, int] = {}  # opens sent, not yet on chain: channel id -> their tx's sender nonce
        self._last_price = 0
        self._persisted: dict[str, Any] = self._load()

    # ------------------------------------------------------------------ public API

    def request(
        self, method: str, path: str, *, idempotency_key: str | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """Send a request, paying 402 challenges (at most 3 paid attempts). Raises PaymentRefused
        (HintBoundExceeded, DepositExhausted, ChallengeRejected) when it will not pay."""
        method = method.upper()
        content = method != "HEAD"
        if idempotency_key is None and content and self.auto_idempotency_keys:
            idempotency_key = "ref-" + uuid.uuid4().hex
        with self._lock:
            held = self._reusable_challenge()
            resp = None if held is not None else self._unpaid(method, path, headers)
            attempts = 0
            self._authenticated = False  # rule UA3: at most one authentication voucher per request
            self._reconcile()
            self._exposure.begin()
            served = False
            try:
                while held is not None or (resp.status_code == 402 and attempts < MAX_PAID_ATTEMPTS):
                    # One round trip (reuse_challenge): pay with the challenge of the last served request,
                    # from this client's own view (its hints are stale); a refusal's 402 is the fallback.
                    challenge = held if held is not None else self._pick_challenge(resp, explain=True)
                    attempts += 1
                    resp, cid = self._pay(method, path, content, challenge, idempotency_key, headers,
                                          reuse=held is not None)
                    held = None
                    if resp.status_code == 410:
                        self._server_refused(cid)
                        resp = self._unpaid(method, path, headers)
                        continue
                    if 200 <= resp.status_code < 300:
                        served = True
                        self._on_success(resp, cid, cost=None if content else 0)
                        self._served_challenge = challenge
            finally:
                self._exposure.end(served)
            return resp

    def _reusable_challenge(self) -> Challenge | None:
        """With `reuse_challenge`: the challenge of the last served request while this client has a
        live channel and the challenge has more than REUSE_MARGIN seconds left; else None."""
        ch = self._served_challenge
        if not self.reuse_challenge or ch is None or self._entry is None or ch.expires is None:
            return None
        try:
            text = ch.expires[:-1] + "+00:00" if ch.expires[-1:] in ("z", "Z") else ch.expires
            left = _dt.datetime.fromisoformat(text.replace("t", "T")).timestamp() - time.time()
        except ValueError:
            return None
        if left <= REUSE_MARGIN:
            self._served_challenge = None
            return None
        return ch

    def close(self, path: str = "/paid/resource") -> httpx.Response | None:
        """Cooperatively close the current channel (close credential sent with HEAD).
        Returns None when there is no live channel to close."""
        with self._lock:
            resp = self._unpaid("HEAD", path, None)
            challenge = self._pick_challenge(resp)
            if challenge is None:
                return resp
            req = self._check_request(challenge)
            hints = self._hints(req)
            entry = self._choose(hints)
            if entry is None:
                return None
            h = hints if hints is not None and hints.channel_id == entry.channel_id else None
            spent_hint = h.spent if (self.hinted and h is not None and h.spent is not None) else 0
            amount = max(entry.accepted, entry.signed_max, spent_hint)
            st = self.chain.get_channel(entry.channel_id)
            extra = 0
            if amount <= st.settled < st.deposit:
                # Rule UA2: a close voucher at or below settled is public and closes nothing; signing
                # above settled costs nothing (the payee captures exactly max(spent, settled)).
                amount = _above_settled(st, req.amount)
                extra = amount - st.settled
            self._check_bound(entry, h, amount, extra)
            entry.signed_max = max(entry.signed_max, amount)
            self._remember(entry)
            sig = sign_voucher(self.key, self.domain, entry.channel_id, amount)
            payload = ClosePayload(channel_id=entry.channel_id, cumulative_amount=amount, signature=sig,
                                   descriptor=self._descriptor(entry.channel_id))
            resp = self._send_paid("HEAD", path, challenge, payload, None, None)
            if 200 <= resp.status_code < 300:
                self._drop(entry.channel_id)
            elif resp.status_code == 410:
                self._server_refused(entry.channel_id)
            return resp

    def view(self, channel_id: str | None = None) -> ChannelView | None:
        """The client's entry for `channel_id` (default: its current channel)."""
        with self._lock:
            if channel_id is None:
                return self._entry.view() if self._entry is not None else None
            e = self._known.get(channel_id.lower())
            if e is not None:
                return e.view()
            p = self._persisted.get("channels", {}).get(channel_id.lower())
            if p is not None:
                return ChannelView(channel_id.lower(), 0, 0, 0, int(p["signed_max"]))
            return None

    def escrow_holdings(self) -> list[EscrowHolding]:
        """This client's channels (as far as it remembers) that the chain still holds escrow for."""
        with self._lock:
            out = []
            for cid, p in self._persisted.get("channels", {}).items():
                st = self.chain.get_channel(cid)
                if st.exists and not st.finalized:
                    out.append(EscrowHolding(cid, st.deposit, st.settled, st.close_requested_at != 0,
                                             bool(p.get("server_refused"))))
            return out

    @property
    def channel_id(self) -> str | None:
        return self._entry.channel_id if self._entry is not None else None

    def restart(self) -> None:
        """Forget all volatile state (as a process restart would); the persisted file survives."""
        with self._lock:
            self._entry = None
            self._known = {}
            self._unseen = {}
            self._served_challenge = None
            self._persisted = self._load()
            self._exposure = _Exposure(self.max_unserved, self.max_unproven_hint)

    def close_http(self) -> None:
        self._http.close()

    def __enter__(self) -> "SessionClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_http()

    # ------------------------------------------------------------------ HTTP

    def _emit(self, kind: str, **data: Any) -> None:
        if self.observer is not None:
            self.observer(kind, data)

    def _unpaid(self, method: str, path: str, headers: dict[str, str] | None) -> httpx.Response:
        h = dict(headers or {})
        h[PAYER_HEADER] = self.address
        try:
            resp = self._http.request(method, path, headers=h)
        except httpx.TransportError as exc:
            raise ServerUnreachable(method, str(self._http.base_url.join(path)), exc) from exc
        if resp.status_code == 402:
            self._emit_challenge(method, path, resp)
        return resp

    def _emit_challenge(self, method: str, path: str, resp: httpx.Response) -> None:
        if self.observer is None:
            return
        info: dict[str, Any] = {"method": method, "path": path, "status": resp.status_code}
        try:
            info["problem"] = parse_problem(resp.content).type.rsplit("/", 1)[-1]
        except WireError:
            info["problem"] = None
        ch = self._pick_challenge(resp)
        if ch is not None:
            try:
                info["request"] = ch.decoded_request().to_wire()
            except WireError:
                info["request"] = None
        self._emit("challenge", **info)

    def _pick_challenge(self, resp: httpx.Response, explain: bool = False) -> Challenge | None:
        """The first tempo session challenge of a 402. With `explain`, a 402 that has none
        raises ChallengeRejected saying what was wrong with each Payment challenge and where."""
        problems: list[str] = []
        for value in resp.headers.get_list("www-authenticate"):
            try:
                found = parse_www_authenticate(value)
            except WireError as exc:
                problems.append(str(exc))
                continue
            for ch in found:
                if ch.method == "tempo" and ch.intent == "session":
                    return ch
                problems.append(f"challenge {ch.id!r} is {ch.method}/{ch.intent}, not tempo/session")
        if explain:
            where = f"{resp.request.method} {resp.request.url}" if resp._request is not None else "402 response"
            why = "; ".join(problems) or "no WWW-Authenticate: Payment challenge at all"
            raise ChallengeRejected(f"{where}: 402 carries no payable tempo session challenge: {why}")
        return None

    def _send_paid(
        self, method: str, path: str, challenge: Challenge, payload: Any, key: str | None,
        headers: dict[str, str] | None,
    ) -> httpx.Response:
        cred = Credential(
            challenge=challenge, source=f"did:pkh:eip155:{self.chain.chain_id}:{self.address}", payload=payload
        )
        h = dict(headers or {})
        h["Authorization"] = encode_authorization(cred)
        if key is not None:
            h["Idempotency-Key"] = key
        if self.observer is not None:
            self._emit(
                "credential", method=method, path=path, action=payload.action, channelId=payload.channel_id,
                cumulativeAmount=getattr(payload, "cumulative_amount", None),
                additionalDeposit=getattr(payload, "additional_deposit", None), idempotencyKey=key,
            )
        try:
            resp = self._http.request(method, path, headers=h)
        except httpx.TransportError:
            # The request may or may not have been applied: retry once with the same
            # Authorization and Idempotency-Key (draft, "Request Idempotency").
            try:
                resp = self._http.request(method, path, headers=h)
            except httpx.TransportError as exc:
                amount = getattr(payload, "cumulative_amount", None)
                sent = f"the {payload.action} credential" + (f" (cumulative {amount})" if amount is not None else "")
                raise ServerUnreachable(method, str(self._http.base_url.join(path)), exc, sent) from exc
        if self.observer is None:
            return resp  # what follows only describes the answer to an observer
        info: dict[str, Any] = {"method": method, "path": path, "status": resp.status_code}
        if "payment-receipt" in resp.headers:
            try:
                info["receipt"] = parse_receipt(resp.headers["payment-receipt"]).to_wire()
            except WireError:
                info["receipt"] = None
        elif resp.status_code >= 400:
            try:
                pd = parse_problem(resp.content)
                info["problem"] = pd.type.rsplit("/", 1)[-1]
                info["detail"] = pd.detail
            except WireError:
                pass
        self._emit("response", **info)
        return resp

    # ------------------------------------------------------------------ paying

    def _check_request(self, challenge: Challenge) -> SessionRequest:
        try:
            req = challenge.decoded_request()
        except WireError as exc:
            raise ChallengeRejected(f"challenge request does not decode: {exc}") from None
        md = req.method_details
        if md.escrow_contract != self.chain.escrow:
            raise ChallengeRejected(f"challenge escrow {md.escrow_contract} is not {self.chain.escrow}")
        if md.chain_id is not None and md.chain_id != self.chain.chain_id:
            raise ChallengeRejected(f"challenge chainId {md.chain_id} is not {self.chain.chain_id}")
        if req.currency != self.chain.token:
            raise ChallengeRejected(f"challenge currency {req.currency} is not {self.chain.token}")
        mine = self.deployment.protocol
        if md.session_protocol not in (None, mine):
            raise ChallengeRejected(f"sessionProtocol {md.session_protocol} is not this deployment's ({mine} escrow)")
        if req.amount > self.deployment.max_amount:
            raise ChallengeRejected(f"challenge amount {req.amount} exceeds the {mine} bound {self.deployment.max_amount}")
        return req

    def _hints(self, req: SessionRequest) -> Hints | None:
        try:
            return hints_from_request(req, self._recover)
        except WireError:
            return None  # a self-contradicting snapshot is no hint at all

    def _ours_and_live(self, channel_id: str) -> bool:
        st = self.chain.get_channel(channel_id)
        return st.exists and st.payer == self.address and not st.finalized and st.close_requested_at == 0

    def _remembered(self, channel_id: str) -> _Entry | None:
        """A working copy of what this client knows of the channel (committed by `_remember`)."""
        if self._entry is not None and self._entry.channel_id == channel_id:
            return attrs.evolve(self._entry)
        if channel_id in self._known:
            return attrs.evolve(self._known[channel_id])
        p = self._persisted.get("channels", {}).get(channel_id)
        if p is not None:
            return _Entry(channel_id, salt=p.get("salt"), signed_max=int(p["signed_max"]),
                          opened_deposit=int(p.get("opened_deposit", 0)))
        return None

    def _recover_from_chain(self, channel_id: str) -> _Entry:
        st = self.chain.get_channel(channel_id)
        known = self._remembered(channel_id) or _Entry(channel_id)
        known.deposit = st.deposit
        known.accepted = max(known.accepted, st.settled)
        return known

    def _choose(self, hints: Hints | None) -> _Entry | None:
        """The channel to pay on, or None: open a new one."""
        hinted_ok = hints is not None and self._ours_and_live(hints.channel_id)
        if self.hinted and hinted_ok:
            known = self._remembered(hints.channel_id) or _Entry(hints.channel_id)
            if hints.has_values:  # hydrate the view from the server's state (never lowering it)
                known.accepted = max(known.accepted, hints.accepted or 0)
                known.spent = max(known.spent, hints.spent or 0)
                known.deposit = max(known.deposit, hints.deposit or 0)
                return known
            if self._entry is not None and self._entry.channel_id == hints.channel_id:
                return attrs.evolve(self._entry)
            return self._recover_from_chain(hints.channel_id)
        if self._entry is not None and self._ours_and_live(self._entry.channel_id):
            return attrs.evolve(self._entry)
        if hinted_ok:  # a legacy client follows a bare channelId of its own
            return self._recover_from_chain(hints.channel_id)
        current = self._persisted.get("current")
        if current and current in self._persisted.get("channels", {}) and self._ours_and_live(current):
            return self._recover_from_chain(current)
        return None

    def _proven_floor(self, entry: _Entry, hints: Hints | None) -> tuple[int, str]:
        st = self.chain.get_channel(entry.channel_id)
        parts = [f"signed_max {entry.signed_max}", f"chain settled {st.settled}"]
        floor = max(entry.signed_max, st.settled)
        if hints is not None and hints.proof is not None:
            p = hints.proof
            if p.channel_id == entry.channel_id and p.signer == self.address:
                floor = max(floor, p.amount)
                parts.append(f"highestVoucher {p.amount} (valid signature)")
            else:
                parts.append(f"highestVoucher {p.amount} (not proven: signer {p.signer})")
        return floor, ", ".join(parts)

    def _check_bound(self, entry: _Entry, hints: Hints | None, amount: int, cost: int) -> None:
        floor, how = self._proven_floor(entry, hints)
        bound = floor + cost + self.max_unproven_hint
        if amount > bound:
            said = ""
            if hints is not None:
                said = (
                    f" (hints: requiredCumulative={hints.required}, acceptedCumulative={hints.accepted}, "
                    f"spent={hints.spent}, deposit={hints.deposit})"
                )
            raise HintBoundExceeded(
                f"asked to sign cumulativeAmount {amount} on channel {entry.channel_id}{said}; "
                f"proven floor {floor} ({how}) + price {cost} + max_unproven_hint {self.max_unproven_hint} "
                f"= {bound}"
            )

    def _pay(
        self, method: str, path: str, content: bool, challenge: Challenge, key: str | None,
        headers: dict[str, str] | None, reuse: bool = False,
    ) -> tuple[httpx.Response, str]:
        """One paid attempt (possibly preceded by a topUp); returns the response and the channel used."""
        req = self._check_request(challenge)
        if req.amount > self.max_price:
            # Rule H6 (core, "Amount Verification"): the client verifies the requested amount.
            raise PriceTooHigh(f"{method} {path}: the challenge's `amount` asks {req.amount} per request, "
                               f"above this client's max_price {self.max_price} (the price it agreed to)")
        cost = req.amount if content else 0
        self._last_price = req.amount
        hints = None if reuse else self._hints(req)
        entry = self._choose(hints)
        if entry is None:
            return self._open(method, path, challenge, req, cost, key, headers)
        h = hints if hints is not None and hints.channel_id == entry.channel_id else None
        if self.hinted and h is not None and h.required is not None:
            target = h.required
        else:
            target = max(entry.accepted, entry.signed_max) + cost
        # Rule H3b: never below what the payer provably authorized already (its own signatures,
        # chain settled, a verified highestVoucher): a lower voucher could only be refused.
        floor, _ = self._proven_floor(entry, h if self.hinted else None)
        amount = max(target, floor)
        auth = self._authentication(entry, h, amount, floor, cost)
        if auth is not None:
            return self._authenticate(method, path, challenge, entry.channel_id, auth, floor, cost, key,
                                      headers), entry.channel_id
        if amount > self.deployment.max_amount:
            # no deposit can cover it: the escrow's amounts stop at the bound (2^96-1 on v2)
            raise DepositExhausted(f"cumulativeAmount {amount} exceeds the {self.deployment.protocol} amount bound "
                                   f"{self.deployment.max_amount} (channel {entry.channel_id})")
        self._check_bound(entry, h, amount, cost)
        self._exposure.admit(entry.channel_id, floor, amount, cost)
        st = self.chain.get_channel(entry.channel_id)
        entry.deposit = st.deposit
        if amount > st.deposit:
            if amount > self.max_deposit:
                raise DepositExhausted(
                    f"cumulativeAmount {amount} needs deposit {amount}, above max_deposit {self.max_deposit} "
                    f"(channel {entry.channel_id} holds {st.deposit})"
                )
            needed = amount - st.deposit
            # What to add: `top_up` when configured, else as much as the channel was opened with
            # (else its current deposit), so that top-ups stay rare, and never less than what this voucher
            # needs (rule H5b: a smaller top-up would leave the channel short of this very charge); never
            # more than max_deposit allows (amount <= max_deposit, so that still covers `needed`).
            refill = self.top_up if self.top_up is not None else (entry.opened_deposit or st.deposit)
            add = min(self.max_deposit - st.deposit, max(needed, refill))
            balance = self.chain.balance_of(self.address)
            if balance < add:
                raise DepositExhausted(f"topUp of {add} needed on channel {entry.channel_id}; wallet holds {balance}")
            self._check_escrow(add, f"a topUp of {add} on channel {entry.channel_id}")
            resp = self._topup(path, challenge, entry, add)
            if resp.status_code == 410:
                return resp, entry.channel_id
            if not 200 <= resp.status_code < 300:
                return resp, entry.channel_id
            entry.deposit = self.chain.get_channel(entry.channel_id).deposit
        entry.signed_max = max(entry.signed_max, amount)
        self._remember(entry)
        self._exposure.record(entry.channel_id, floor, amount, cost)
        sig = sign_voucher(self.key, self.domain, entry.channel_id, amount)
        payload = VoucherPayload(channel_id=entry.channel_id, cumulative_amount=amount, signature=sig,
                                 descriptor=self._descriptor(entry.channel_id))
        return self._send_paid(method, path, challenge, payload, key, headers), entry.channel_id

    def _authentication(self, entry: _Entry, h: Hints | None, amount: int, floor: int, cost: int) -> int | None:
        """Rule UA3: the amount of a voucher that proves this client is the payer, or None.

        A server following rule UA1 gives the proof (highestVoucher) only to a request whose voucher
        the channel's signer signed above settled. A client that cannot prove the hinted amount (a
        restart without persistence, another device of the payer) would refuse it (H4); instead it
        first sends its own highest voucher if that is above settled (already authorized), else
        settled + one price (what a recovering client signs anyway, within H4), once per request. The server
        refuses it as lower or takes it as the payer's own, and its 402 carries the proof."""
        if not self.hinted or self._authenticated or h is None or not h.has_values:
            return None
        if h.proof is not None and h.proof.channel_id == entry.channel_id and h.proof.signer == self.address:
            return None  # a verified proof: authenticating again would bring no more (a forged one is no proof)
        if amount <= floor + cost + self.max_unproven_hint:
            return None
        st = self.chain.get_channel(entry.channel_id)
        auth = entry.signed_max if entry.signed_max > st.settled else _above_settled(st, self._last_price)
        if auth is None or (h.accepted or 0) < auth:
            return None  # nothing above settled to prove, or the hint claims no more than that
        return auth

    def _authenticate(
        self, method: str, path: str, challenge: Challenge, channel_id: str, amount: int, floor: int, cost: int,
        key: str | None, headers: dict[str, str] | None,
    ) -> httpx.Response:
        self._authenticated = True
        # The unproven hint does not enter the view (it may be a lie): only what this client knew.
        entry = self._remembered(channel_id) or _Entry(channel_id, deposit=self.chain.get_channel(channel_id).deposit)
        entry.signed_max = max(entry.signed_max, amount)
        # It authorizes at most one price beyond the proven floor (settled + price), HEAD included.
        self._exposure.admit(channel_id, floor, amount, max(cost, self._last_price))
        self._remember(entry)
        self._exposure.record(channel_id, floor, amount, max(cost, self._last_price))
        sig = sign_voucher(self.key, self.domain, channel_id, amount)
        payload = VoucherPayload(channel_id=channel_id, cumulative_amount=amount, signature=sig,
                                 descriptor=self._descriptor(channel_id))
        return self._send_paid(method, path, challenge, payload, key, headers)

    def _topup(self, path: str, challenge: Challenge, entry: _Entry, add: int) -> httpx.Response:
        raw = self.deployment.topup_tx(self.key, entry.channel_id, add)
        payload = TopUpPayload(channel_id=entry.channel_id, transaction=raw, additional_deposit=add,
                               descriptor=self._descriptor(entry.channel_id))
        self._remember(entry)
        resp = self._send_paid("HEAD", path, challenge, payload, None, None)
        if 200 <= resp.status_code < 300:
            self._on_success(resp, entry.channel_id, cost=0)
        return resp

    def _open(
        self, method: str, path: str, challenge: Challenge, req: SessionRequest, cost: int, key: str | None,
        headers: dict[str, str] | None,
    ) -> tuple[httpx.Response, str]:
        if self.open_deposit is not None:
            deposit = min(self.max_deposit, self.open_deposit)
        else:
            deposit = min(self.max_deposit, req.suggested_deposit or self.max_deposit)
        if cost > deposit:
            if cost > self.max_deposit:
                raise DepositExhausted(f"price {cost} is above max_deposit {self.max_deposit}")
            deposit = cost
        if deposit <= 0:
            raise DepositExhausted(f"max_deposit {self.max_deposit} leaves nothing to escrow")
        balance = self.chain.balance_of(self.address)
        if balance < deposit:
            raise DepositExhausted(f"opening a channel needs a deposit of {deposit}; wallet holds {balance}")
        self._exposure.admit(None, 0, cost, cost, self._sender_nonce())
        self._check_escrow(deposit, f"opening a channel with a deposit of {deposit}")
        salt = self._new_salt()
        opened = self.deployment.open_tx(self.key, req.recipient, deposit, salt, ZERO_ADDRESS)
        raw, cid = opened.raw, opened.channel_id
        nonce = self._tx_nonce(raw)
        if opened.descriptor is not None:
            self._descriptors[cid] = opened.descriptor
        entry = _Entry(cid, salt=salt, deposit=deposit, signed_max=cost, opened_deposit=deposit)
        self._entry = entry
        self._remember(entry)
        self._exposure.record(cid, 0, cost, cost, nonce)
        if nonce is not None:
            self._unseen[cid] = nonce
        sig = sign_voucher(self.key, self.domain, cid, cost)
        payload = OpenPayload(channel_id=cid, transaction=raw, cumulative_amount=cost, signature=sig,
                              descriptor=self._descriptor(cid))
        return self._send_paid(method, path, challenge, payload, key, headers), cid

    def _sender_nonce(self) -> int | None:
        """This payer's nonce on chain (the one its next transaction consumes); None: the chain has none."""
        nonce_of = getattr(self.chain, "nonce_of", None)
        if nonce_of is None or getattr(self.chain, "sequential_nonce", None) is None:
            return None
        return nonce_of(self.address)

    def _tx_nonce(self, raw: str) -> int | None:
        """The sender nonce a signed transaction of ours consumes, where the chain enforces one (else None)."""
        of = getattr(self.chain, "sequential_nonce", None)
        if of is None:
            return None
        try:
            return of(raw)
        except ChainError:
            return None

    def _reconcile(self) -> None:
        """Ask the chain what the unserved exposure can still cost (rule "Unserved exposure").

        An open this client sent that the chain does not show, while the payer's nonce has moved past
        the nonce its transaction consumes, can never apply: nothing signed on that channel can be
        collected and no deposit is in it, so the channel is forgotten (exposure and file). One the
        chain now shows is an ordinary channel. A finalized channel's exposure is at most what the
        payee captured from it (its final settled amount) above the mark: nothing more can leave it."""
        exp = self._exposure
        nonce = self._sender_nonce() if self._unseen else None
        for cid, n in list(self._unseen.items()):
            if self.chain.get_channel(cid).exists:
                del self._unseen[cid]
                exp.pending.pop(cid, None)
            elif nonce is not None and nonce > n:
                del self._unseen[cid]
                exp.forget(cid)
                self._drop(cid)
        for cid in list(exp.tops):
            st = self.chain.get_channel(cid)
            if st.exists and st.finalized:
                exp.tops[cid] = max(exp.marks[cid], min(exp.tops[cid], st.settled))

    def _descriptor(self, channel_id: str) -> Descriptor | None:
        """v2: the channel's descriptor for a payload (draft: "REQUIRED for v2"): the one its open created
        (kept in memory and in the persisted file), else the escrow's record of the id; v1: None."""
        if not self.deployment.is_v2:
            return None
        d = self._descriptors.get(channel_id)
        if d is None:
            saved = self._persisted.get("channels", {}).get(channel_id, {}).get("descriptor")
            if saved is not None:
                d = ChannelDescriptor(**saved)
            else:
                try:
                    d = self.deployment.descriptor(channel_id)
                except ChainError:
                    return None  # not on chain: the server refuses the credential like any unknown channel
            self._descriptors[channel_id] = d
        return Descriptor.of(d)

    def _new_salt(self) -> str:
        if self._seed is None:
            return "0x" + secrets.token_bytes(32).hex()
        self._salts += 1
        return "0x" + keccak(f"reference-client|{self._seed}|{self.address}|{self._salts}".encode()).hex()

    def _on_success(self, resp: httpx.Response, channel_id: str, cost: int | None) -> None:
        """A 2xx: a hinted client reconciles its view from the receipt (never lowering it);
        a legacy client keeps its own counters. `cost` None: the challenge's price was charged."""
        entry = self._known.get(channel_id)
        if entry is None:
            return
        value = resp.headers.get("payment-receipt")
        receipt: Receipt | None = None
        if value is not None:
            try:
                receipt = parse_receipt(value)
            except WireError:
                receipt = None
        if not self.hinted:
            entry.accepted = max(entry.accepted, entry.signed_max)
            if cost is None and receipt is not None and receipt.channel_id == channel_id:
                entry.spent += self._last_price
            return
        if receipt is None or receipt.channel_id != channel_id:
            return  # a receipt for another channel says nothing about ours
        entry.accepted = max(entry.accepted, receipt.accepted_cumulative)
        entry.spent = max(entry.spent, receipt.spent)

    def _check_escrow(self, add: int, what: str) -> None:
        held = self.escrow_holdings()
        locked = sum(h.locked for h in held)
        if locked + add > self.max_escrow:
            listed = ", ".join(f"{h.channel_id} {h.locked}" + (" (refused by the server)" if h.server_refused else "")
                               for h in held)
            raise EscrowBudgetExceeded(
                f"{what} would lock {locked + add} in escrow, above max_escrow {self.max_escrow}; "
                f"already locked {locked} in {len(held)} unfinalized channel(s): {listed or 'none'}")

    def _server_refused(self, channel_id: str) -> None:
        """After a 410: ask the chain before forgetting anything. Absent or finalized: forget it.
        Still holding escrow: stop using it, but keep it persisted (marked) so it can be withdrawn."""
        st = self.chain.get_channel(channel_id)
        if not st.exists or st.finalized:
            self._exposure.forget(channel_id)
            self._drop(channel_id)
            return
        if self._entry is not None and self._entry.channel_id == channel_id:
            self._entry = None
        p = self._persisted.setdefault("channels", {}).get(channel_id)
        if p is not None:
            p["server_refused"] = True
        if self._persisted.get("current") == channel_id:
            self._persisted["current"] = None
        self._save()

    def _drop(self, channel_id: str) -> None:
        if self._entry is not None and self._entry.channel_id == channel_id:
            self._entry = None
        self._known.pop(channel_id, None)
        chans = self._persisted.get("channels", {})
        if channel_id in chans or self._persisted.get("current") == channel_id:
            chans.pop(channel_id, None)
            if self._persisted.get("current") == channel_id:
                self._persisted["current"] = None
            self._save()

    # ------------------------------------------------------------------ persistence

    def _remember(self, entry: _Entry) -> None:
        """Make `entry` current and persist (channel id, salt, signed_max) before anything is sent."""
        self._entry = entry
        self._known[entry.channel_id] = entry
        # kept in memory without a persist_path too: the escrow budget counts every channel
        chans = self._persisted.setdefault("channels", {})
        old = chans.get(entry.channel_id, {})
        signed = max(entry.signed_max, int(old.get("signed_max", 0)))
        chans[entry.channel_id] = {
            "salt": entry.salt or old.get("salt"),
            "signed_max": str(signed),
            "opened_deposit": str(entry.opened_deposit or int(old.get("opened_deposit", 0))),
        }
        d = self._descriptors.get(entry.channel_id)
        if d is not None or "descriptor" in old:
            chans[entry.channel_id]["descriptor"] = attrs.asdict(d) if d is not None else old["descriptor"]
        self._persisted["current"] = entry.channel_id
        self._save()

    def _load(self) -> dict[str, Any]:
        if self.persist_path is None or not os.path.exists(self.persist_path):
            return {"version": 1, "address": self.address, "current": None, "channels": {}}
        with open(self.persist_path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("address") not in (None, self.address):
            raise ValueError(f"{self.persist_path} belongs to {data.get('address')}, not {self.address}")
        data.setdefault("channels", {})
        data.setdefault("current", None)
        return data

    def _save(self) -> None:
        if self.persist_path is None:
            return
        self._persisted["address"] = self.address
        self._persisted["version"] = 1
        directory = os.path.dirname(os.path.abspath(self.persist_path))
        fd, tmp = tempfile.mkstemp(prefix=".session-", suffix=".json", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._persisted, f, sort_keys=True, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.persist_path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
