"""The reference client against a hostile server (issue 10, items 1, 2 and 10): a price
raised mid-session, 410s for channels the chain still holds, and vouchers kept while the
server answers 402. Each bound raises a typed PaymentRefused that says what and why."""
from __future__ import annotations

import json

import attrs
import httpx
import pytest

from adapters.reference import SessionClient, SessionServer
from adapters.chain import ChainError
from adapters.reference.client import EscrowBudgetExceeded, ExposureExceeded, PriceTooHigh, ServerUnreachable
from wire import parse_authorization

from .test_reference_support import PATH, PRICE, config, memory_chain, new_key


class Hostile:
    """An in-process transport in front of a real reference server that lies after the fact.

    mode "take-and-402": a paid request is applied (the voucher is kept), then answered with a fresh 402;
    mode "take-and-410": a paid request is applied, then answered 410 channel-not-found, and challenges
    carry no hints (the server no longer points at the channel it refused)."""

    def __init__(self, server: SessionServer) -> None:
        self.server = server
        self.mode: str | None = None
        self.paid = 0  # paid requests the server received

    def __call__(self, request: httpx.Request) -> httpx.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if self.mode == "take-and-410" and "authorization" not in headers:
            headers.pop("payment-payer", None)
        reply = self.server.handle(request.method, request.url.path, headers)
        if "authorization" in headers:
            self.paid += 1
            if self.mode == "take-and-402":
                unpaid = {k: v for k, v in headers.items() if k != "authorization"}
                reply = self.server.handle(request.method, request.url.path, unpaid)
            elif self.mode == "take-and-410":
                body = {"type": "https://paymentauth.org/problems/session/channel-not-found", "title": "gone",
                        "status": 410, "detail": "no such channel"}
                return httpx.Response(410, json=body, headers={"content-type": "application/problem+json"})
        return httpx.Response(reply.status, headers=list(reply.headers), content=reply.body)


def _setup(tmp_path, **kw):
    chain = memory_chain()
    key = new_key(chain)
    server = SessionServer(config(chain, tmp_path, **kw))
    return chain, key, server, Hostile(server)


def _client(hostile, key, chain, **kw) -> SessionClient:
    kw.setdefault("max_price", PRICE)
    return SessionClient(httpx.MockTransport(hostile), key, chain, max_deposit=10**6, **kw)


def test_max_price_is_required():
    chain = memory_chain()
    with pytest.raises(TypeError, match="max_price"):
        SessionClient("http://127.0.0.1:9", new_key(chain), chain)  # no silent "pay any price"


def test_price_raised_mid_session_is_refused(tmp_path):
    """Measured: served twice at 1,000, then asked 900,000 with consistent hints, the default
    client topped up and signed 902,000. It now refuses, naming the field and the value."""
    chain, key, server, hostile = _setup(tmp_path)
    client = _client(hostile, key, chain)
    for _ in range(2):
        assert client.request("GET", PATH).status_code == 200
    cid = client.channel_id
    deposit = chain.get_channel(cid).deposit
    server.config = attrs.evolve(server.config, price=900_000)
    with pytest.raises(PriceTooHigh, match=r"`amount` asks 900000 per request, above this client's max_price 1000"):
        client.request("GET", PATH)
    assert client.view().signed_max == 2 * PRICE
    assert chain.get_channel(cid).deposit == deposit  # no topUp either


def test_lying_410_keeps_funded_channels_and_bounds_escrow(tmp_path):
    """Measured: a 410 on every paid request made the client forget each channel and open new
    ones, five calls: twelve channels escrowed and forgotten. Now the chain is asked, funded
    channels stay persisted (marked), and opens stop at max_escrow."""
    chain, key, server, hostile = _setup(tmp_path)
    persist = tmp_path / "client.json"
    client = _client(hostile, key, chain, persist_path=str(persist), deposit=300_000, max_escrow=700_000,
                     max_unserved=10**9)
    assert client.request("GET", PATH).status_code == 200
    first = client.channel_id
    hostile.mode = "take-and-410"
    errors = []
    for _ in range(5):
        try:
            client.request("GET", PATH)
        except (EscrowBudgetExceeded, ExposureExceeded) as exc:
            errors.append(exc)
    assert any(isinstance(e, EscrowBudgetExceeded) for e in errors)
    budget = next(e for e in errors if isinstance(e, EscrowBudgetExceeded))
    assert "max_escrow 700000" in str(budget) and "refused by the server" in str(budget)
    held = client.escrow_holdings()
    assert len(held) == 2 and sum(h.locked for h in held) == 600_000  # two channels, not twelve
    persisted = json.loads(persist.read_text())["channels"]
    assert first in persisted
    for h in held:  # every channel the chain holds escrow for is still in the file, marked
        assert h.server_refused and persisted[h.channel_id]["server_refused"] is True
    assert json.loads(persist.read_text())["current"] is None


def test_410_for_a_channel_the_chain_finalized_is_forgotten(tmp_path):
    chain, key, server, hostile = _setup(tmp_path)
    persist = tmp_path / "client.json"
    client = _client(hostile, key, chain, persist_path=str(persist))
    assert client.request("GET", PATH).status_code == 200
    cid = client.channel_id
    assert client.close().status_code == 200
    assert chain.get_channel(cid).finalized
    client._server_refused(cid)  # what a 410 for it does
    assert cid not in json.loads(persist.read_text())["channels"] and client.escrow_holdings() == []


def test_voucher_kept_and_402_is_bounded_per_request_and_in_total(tmp_path):
    """Measured: a server that keeps each voucher and answers 402 collected three prices per
    request() and the client raised nothing. Now: at most one price per paid attempt in a request
    (PRICES_PER_REQUEST) and 2 x price in total across unserved requests (max_unserved), which stops it first."""
    chain, key, server, hostile = _setup(tmp_path)
    client = _client(hostile, key, chain)
    assert client.request("GET", PATH).status_code == 200
    hostile.mode = "take-and-402"
    with pytest.raises(ExposureExceeded, match=r"bound"):
        client.request("GET", PATH)
    assert client.view().signed_max == 3 * PRICE and hostile.paid == 3
    for _ in range(4):
        with pytest.raises(ExposureExceeded, match=r"2000 of it in earlier requests; bound max_unserved 2000"):
            client.request("GET", PATH)
    # 2 prices unserved in 5 calls (was 15); re-sending an amount already signed adds nothing
    assert client.view().signed_max == 3 * PRICE
    # after restart() (the operator's decision) an honest server serves it again
    hostile.mode = None
    client.restart()
    assert client.request("GET", PATH).status_code == 200



class LosesOpens:
    """In front of a real server: the first `lose` open credentials never reach it (a server killed
    between its 402 and the open: the client's one retry of the same credential fails too)."""

    def __init__(self, server: SessionServer, lose: int) -> None:
        self.server, self.lose, self.lost = server, lose, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        auth = headers.get("authorization")
        if auth and parse_authorization(auth).payload.action == "open":
            if auth in self.lost or len(self.lost) < self.lose:
                if auth not in self.lost:
                    self.lost.append(auth)
                raise httpx.ConnectError("server down", request=request)
        reply = self.server.handle(request.method, request.url.path, headers)
        return httpx.Response(reply.status, headers=list(reply.headers), content=reply.body)


def _lost_open_ids(lossy: LosesOpens) -> list[str]:
    return [parse_authorization(a).payload.channel_id for a in lossy.lost]


def test_opens_that_never_applied_do_not_count_as_exposure(tmp_path):
    """The kill -9 soak's defect: opens lost while the server was down (never broadcast) kept counting
    against max_unserved, so the client refused every later request (ExposureExceeded) and gave up.
    Opens sent with one sender nonce exclude each other (the chain applies at most one), so they count
    once; an open the chain moved past can never apply and is forgotten, in memory and in the file."""
    chain, key, server, _ = _setup(tmp_path)
    lossy = LosesOpens(server, lose=3)
    persist = tmp_path / "client.json"
    client = SessionClient(httpx.MockTransport(lossy), key, chain, max_deposit=10**6, max_price=PRICE,
                           persist_path=str(persist))
    for _ in range(3):
        with pytest.raises(ServerUnreachable, match="open credential"):
            client.request("GET", PATH)
    lost = _lost_open_ids(lossy)
    assert len(set(lost)) == 3 and not any(chain.get_channel(c).exists for c in lost)
    # before the fix: ExposureExceeded (3 prices "signed unserved" > max_unserved 2 x price), for ever
    resp = client.request("GET", PATH)
    assert resp.status_code == 200
    live = client.channel_id
    assert live not in lost and chain.get_channel(live).exists
    # the nonce moved past the lost opens: they can never apply, and the client no longer keeps them
    assert set(json.loads(persist.read_text())["channels"]) >= {live}
    client.request("GET", PATH)
    assert set(json.loads(persist.read_text())["channels"]) == {live}
    for cid in lost:
        assert client.view(cid) is None


def test_held_opens_still_count_once_for_a_lying_server(tmp_path):
    """The bound still holds against a server that keeps the opens it was sent and answers nothing:
    it can broadcast at most one of them (one nonce), so one price is at stake, and the unserved bound
    (max_unserved) still stops a client whose requests are never served."""
    chain, key, server, _ = _setup(tmp_path)
    lossy = LosesOpens(server, lose=10**6)  # never lets an open through
    client = SessionClient(httpx.MockTransport(lossy), key, chain, max_deposit=10**6, max_price=PRICE,
                           max_unserved=PRICE)
    for _ in range(4):
        with pytest.raises(ServerUnreachable):
            client.request("GET", PATH)
    lost = _lost_open_ids(lossy)
    assert len(set(lost)) == 4
    # the holder broadcasts the first; every other open with that nonce is now dead
    chain.broadcast(parse_authorization(lossy.lost[0]).payload.transaction)
    for a in lossy.lost[1:]:
        with pytest.raises(ChainError, match="InvalidNonce"):
            chain.broadcast(parse_authorization(a).payload.transaction)
    # the applied open's voucher is real exposure: a price, counted; another unserved price is refused
    with pytest.raises(ExposureExceeded, match="bound max_unserved 1000"):
        client.request("GET", PATH)


class Counting:
    """In front of a real server: counts the requests, and can refuse every challenge it issued
    before `rotate()` (a new HMAC secret, as after a restart with a fresh secret)."""

    def __init__(self, server: SessionServer) -> None:
        self.server, self.sent = server, 0

    def rotate(self) -> None:
        self.server.config = attrs.evolve(self.server.config, secret=b"another secret")

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        headers = {k.lower(): v for k, v in request.headers.items()}
        reply = self.server.handle(request.method, request.url.path, headers)
        return httpx.Response(reply.status, headers=list(reply.headers), content=reply.body)


def test_reused_challenge_pays_in_one_round_trip_and_falls_back_when_refused(tmp_path):
    chain, key, server, _ = _setup(tmp_path)
    net = Counting(server)
    client = SessionClient(httpx.MockTransport(net), key, chain, max_deposit=10**6, max_price=PRICE,
                           reuse_challenge=True)
    assert client.request("GET", PATH).status_code == 200  # opens: unpaid 402, then the open
    assert net.sent == 2
    for i in range(5):
        before = net.sent
        resp = client.request("GET", PATH)
        assert resp.status_code == 200 and net.sent - before == 1  # one round trip per paid request
    rec = server.get_record(client.channel_id)
    assert (rec.spent, rec.accepted_cumulative) == (6 * PRICE, 6 * PRICE)  # each charged once, nothing extra signed
    net.rotate()  # the held challenge is no longer one of the server's: refused with a fresh one
    before = net.sent
    assert client.request("GET", PATH).status_code == 200
    assert net.sent - before == 2  # the refused reuse, then the fresh challenge
    rec = server.get_record(client.channel_id)
    assert rec.spent == 7 * PRICE and client.view().signed_max == 7 * PRICE  # the refused voucher was re-sent, not raised
    before = net.sent
    assert client.request("GET", PATH).status_code == 200 and net.sent - before == 1  # reusing the new one


def test_challenge_reuse_is_off_by_default(tmp_path):
    chain, key, server, _ = _setup(tmp_path)
    net = Counting(server)
    client = SessionClient(httpx.MockTransport(net), key, chain, max_deposit=10**6, max_price=PRICE)
    for _ in range(3):
        assert client.request("GET", PATH).status_code == 200
    assert net.sent == 6
