"""What the conformance harness calls, and what it observes.

Two small Protocols. An implementation under test is wrapped in an adapter
that satisfies one of them; the harness never reaches past them.

* The harness owns the network: a server is driven through `handle`, a plain
  synchronous HTTP function (httpx.Request -> httpx.Response). The harness puts
  its own `Network` transport (conformance/network.py) in front of it, so it can
  drop a response after the server applied the request, lose a request, deliver
  one twice, and log every exchange for traces.
* The harness owns the chain: it creates one backend (adapters.chain.make_chain)
  per run, funds the payers, and hands it to both sides in `reset`, together with
  its deployment (`Env.deployment`, an adapters.chain.deployment.Deployment):
  which session protocol the escrow speaks ("v1": TempoStreamChannel, voucher
  domain "Tempo Stream Channel", uint128, channel ids assigned by the escrow's
  open; "v2": the TIP-20 channel escrow precompile, domain "TIP20 Channel
  Reserve", uint96, channel ids derived from the channel descriptor, which every
  v2 credential payload carries), the voucher domain, the amount bound, and every
  chain operation by channel id (open_tx, topup_tx, settle, close with its
  capture, request_close, withdraw, descriptor, model_channel, now,
  advance_time). An adapter asks the deployment; it never assumes v1. The hint
  encoding (`Env.hint_encoding`) is a different thing: how challenges carry
  hints ("flat" fields or "snapshot", a sessionSnapshot), independent of the
  deployment.
* Everything is deterministic: keys, salts and secrets derive from the run's
  seed; adapters must not use randomness of their own (they get `seed`).

Observables: the server's per-channel accounting record (`AccountingRecord`), the
client's view of its channel (`ClientView`) and each logical request's
`Outcome`. The harness reads the wire itself (conformance/network.py), so
what a client signed and what a server answered are never taken on trust.
"""
from __future__ import annotations

from typing import Any, Callable, Literal, Optional, Protocol, runtime_checkable

import attrs
import httpx

from wire.profiles import LEGACY_HINT_PROFILES, profile_of_encoding

PAID_PATH = "/paid/resource"
"""Every protected path is under /paid/ (reference server convention)."""
PAYER_HEADER = "Payment-Payer"
"""Request header naming the payer the client declares (only used to resolve hints)."""
IDEMPOTENCY_HEADER = "Idempotency-Key"
BASE_URL = "http://server.test"

CHECKPOINTS = ("read", "commit")
"""The named points a server may pass to `Env.checkpoint` (optional; a server that never calls it still gets
plain thread concurrency, and every concurrent history is still checked for linearizability):

read    a request of one channel has read that channel's record (before any write of it);
commit  a request is about to write: begin its store transaction, or broadcast / close on chain.

The harness (conformance/concurrency.py) pauses a thread at a checkpoint and lets another run, following the
schedule Hypothesis drew, so the interleavings that expose lost updates happen on purpose and replay. A server
must call it outside any lock it does not want to be held while paused (a paused thread that holds a lock
only makes the other thread wait: still correct, the schedule is then best effort)."""


CRASH_POINTS = ("broadcast", "respond")
"""Crash points inside one request (issue 9 item 3), a capability: a server adapter that offers them sets the class
attribute `crash_points` to the ones it reaches, and calls `Env.checkpoint(point)` there (in process; for bridges the
optional capability `server.crash` of adapters/bridge/PROTOCOL.md is specified, not yet driven):

broadcast  an open's transaction is on chain (broadcast and confirmed) and the channel's record is not yet committed;
respond    the request is committed (record, charge, stored response) and its response has not left.

The harness arms one point for one request (conformance/crash.py): the hook then raises `ServerCrash`, which the
server must let through (it is a BaseException, like the process dying); the harness restarts the server on its
durable store and the client sees the connection reset. Adapters without `crash_points` get the crash rules
SKIPPED, never passed."""


class ServerCrash(BaseException):
    """Raised by the harness's `Env.checkpoint` at an armed crash point: the server process dies here."""


def no_checkpoint(point: str) -> None:
    """The default `Env.checkpoint`: nothing to schedule."""


def _hint_encoding(value: str) -> str:
    """Env.hint_encoding, also from its former names ("v1" = flat, "v2" = snapshot: adapters and tests written
    before the rename pass them, often positionally)."""
    return LEGACY_HINT_PROFILES.get(value, value)


@attrs.frozen
class Env:
    """One run's deployment, handed to both sides by `reset`.

    `chain` is an adapters.chain backend (already funded); `deployment` its
    adapters.chain.deployment.Deployment (protocol v1/v2, voucher domain, amount
    bound, channel-id operations; derived from `chain` when not given); `payee_key` the
    server's key; `price` the per-request price; `hinted` whether the server
    authors hint values (legacy servers give at most channelId); `hint_encoding`
    how its challenges carry them ("flat": the seed's methodDetails fields; "snapshot": the draft's
    sessionSnapshot with highestVoucher); `seed` the run's seed
    (derive any salt or secret from it); `workdir` a fresh directory for files; `checkpoint` the
    harness's scheduling hook (see CHECKPOINTS; call it, or ignore it).
    """

    chain: Any
    payee_key: bytes
    price: int
    hinted: bool = True
    hint_encoding: Literal["flat", "snapshot"] = attrs.field(default="snapshot", converter=_hint_encoding)
    seed: int = 0
    workdir: str = ""
    suggested_deposit: Optional[int] = None  # suggestedDeposit a server puts in challenges without hints
    checkpoint: Callable[[str], None] = no_checkpoint  # scheduling hook: checkpoint(point), point in CHECKPOINTS
    deployment: Any = attrs.field(default=attrs.Factory(lambda self: _deployment_of(self.chain), takes_self=True))

    @property
    def protocol(self) -> Literal["v1", "v2"]:
        """The deployment's session protocol (not the hint encoding)."""
        return self.deployment.protocol

    @property
    def profile(self) -> Literal["v1", "v2"]:
        """Deprecated: the hint encoding by its former name, "v1" (flat) or "v2" (snapshot), for adapters
        written before `hint_encoding`. Read `hint_encoding`; this is not the deployment's protocol (`protocol`)."""
        return profile_of_encoding(self.hint_encoding)


def _deployment_of(chain: Any) -> Any:
    """The deployment of a make_chain backend; None for an Env without a chain (an adapter's own world)."""
    if chain is None:
        return None
    from adapters.chain.deployment import deployment_of

    return deployment_of(chain)


@attrs.frozen
class ClientParams:
    """How a client is configured by the harness (mapped by each adapter to its own knobs).

    `deposit`: what it escrows when it opens; `top_up`: what it adds when a
    voucher would exceed the deposit; `max_unproven`: rule H4's allowance (how
    far above its proven floor a hint may take it); `persist`: keeps
    (channel, highest signed) across restarts.
    """

    name: str
    key: bytes
    hinted: bool = True
    deposit: int = 4
    top_up: int = 2
    max_unproven: int = 0
    persist: bool = False


@attrs.frozen
class AccountingRecord:
    """A server's durable accounting of one channel (draft, "Accounting State").

    `highest_signature` is the signature of the voucher proving `accepted`
    (None when the adapter cannot expose it: property S4 is then SKIPPED).
    """

    channel_id: str
    accepted: int
    spent: int
    deposit: int
    settled: int
    finalized: bool
    payer: str = ""
    highest_signature: Optional[str] = None


@attrs.frozen
class ClientView:
    """A client's view of its current channel (None fields: no channel)."""

    channel_id: Optional[str]
    accepted: int = 0
    spent: int = 0
    signed_max: int = 0


@attrs.frozen
class Outcome:
    """How one logical request ended at the client.

    kind: "served" | "refused:<reason>" (the client declined to sign, e.g.
    hint-bound-exceeded, deposit-exhausted) | "failed:<problem>" (the server
    refused, e.g. failed:insufficient-balance) | "unknown" (the network lost the
    request or its response).
    """

    kind: str
    status: Optional[int] = None

    @property
    def served(self) -> bool:
        return self.kind == "served"


@runtime_checkable
class ServerUnderTest(Protocol):
    """A session server, as the harness drives it.

    reset(env)          -- forget everything (fresh store), serve `env`.
    handle(request)     -- one HTTP exchange, synchronously, fully applied before it returns
                           (the harness may then drop the response: the server must not notice).
    record(channel_id)  -- the durable accounting of a channel, or None if unknown.
    settle(channel_id)  -- settle the highest voucher on chain (no-op if nothing to settle).
    restart()           -- stop and start again on the same durable store.

    `handle` may be called from several threads at once (conformance/concurrency.py): each channel's
    history must be linearizable. An adapter that cannot take concurrent requests (a bridge over one pipe)
    sets the class attribute `concurrent = False`: the concurrency rules are then SKIPPED, never passed.

    Optional attribute `crash_points` (a subset of CRASH_POINTS): the points inside a request where the harness may
    crash this server (see CRASH_POINTS); without it the crash rules are SKIPPED, never passed.
    """

    name: str

    def reset(self, env: Env) -> None: ...

    def handle(self, request: httpx.Request) -> httpx.Response: ...

    def record(self, channel_id: str) -> Optional[AccountingRecord]: ...

    def settle(self, channel_id: str) -> None: ...

    def restart(self) -> None: ...


@runtime_checkable
class ClientUnderTest(Protocol):
    """A session client (payer side), as the harness drives it.

    reset(env, params, transport) -- forget everything; send every HTTP request through
                                     `transport` (an httpx.BaseTransport) to BASE_URL.
    request(method, path, idempotency_key) -- one logical request, all its 402 round trips
                                     included; returns how it ended (never raises for
                                     protocol outcomes; a lost response is Outcome("unknown")).
    restart(keep_persisted)       -- a process restart: volatile memory is lost; what it
                                     persisted survives iff keep_persisted.
    view()                        -- its view of its channel.

    Optional: close() -> Outcome (cooperative close of its channel). An adapter without
    it makes the close rule SKIPPED. Optional attribute `max_paid_attempts` (int): the client's
    retry budget, voucher-carrying attempts per logical request; the model twin then gives up
    when the client does, so strict mode does not count a smaller budget as a divergence.
    Optional attribute `hinted` (bool, default True): whether it follows hints.
    """

    name: str

    def reset(self, env: Env, params: ClientParams, transport: httpx.BaseTransport) -> None: ...

    def request(self, method: str, path: str, idempotency_key: Optional[str] = None) -> Outcome: ...

    def restart(self, keep_persisted: bool) -> None: ...

    def view(self) -> ClientView: ...
