"""The reference server against a hostile network (issue 10): what a hostile tester
measured, each pinned by a test. Most drive `SessionServer.handle` in process (the
same code path uvicorn runs in a worker thread); the serving limits use raw sockets."""
from __future__ import annotations

import gc
import json
from typing import Any

import attrs
import httpx
import pytest

from adapters.reference import SessionClient
from adapters.reference.client import ServerUnreachable
from adapters.reference.server import SessionServer
from wire import parse_www_authenticate

from .test_reference_support import (
    PATH,
    PRICE,
    assert_problem,
    authorization,
    b64,
    config,
    echo,
    memory_chain,
    new_key,
    payer_of,
    problem_slug,
    sign,
    voucher_payload,
)


class InProcess(httpx.BaseTransport):
    """httpx -> `server.handle`, as uvicorn would call it; `server` may be swapped (a restart)."""

    def __init__(self, server: SessionServer) -> None:
        self.server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        reply = self.server.handle(request.method, request.url.path, headers)
        return httpx.Response(reply.status, headers=list(reply.headers), content=reply.body)


def send(server: SessionServer, method: str = "GET", path: str = PATH, **headers: str) -> httpx.Response:
    hdrs = {k.replace("_", "-").lower(): v for k, v in headers.items()}
    reply = server.handle(method, path, hdrs)
    return httpx.Response(reply.status, headers=list(reply.headers), content=reply.body)


def challenge(server: SessionServer, payer: str | None = None, method: str = "GET"):
    resp = send(server, method, **({"payment_payer": payer} if payer else {}))
    assert resp.status_code == 402
    return parse_www_authenticate(resp.headers["www-authenticate"])[0]


def snapshot_of(resp: httpx.Response):
    ch = parse_www_authenticate(resp.headers["www-authenticate"])[0]
    return ch.decoded_request().method_details.session_snapshot


@pytest.fixture
def opened(tmp_path):
    """A server (in process) and a client that opened a channel and paid for one request."""
    chain = memory_chain()
    key = new_key(chain)
    server = SessionServer(config(chain, tmp_path, hinted=True, proof_disclosure="authentic"))
    client = SessionClient(InProcess(server), key, chain, max_deposit=10**6, max_price=server.config.price)
    assert client.request("GET", PATH).status_code == 200
    yield chain, key, server, client
    server.close()


def voucher_auth(server, chain, key, cid, amount, *, signer_key=None, payer=None) -> str:
    ch = challenge(server, payer)
    return authorization(echo(ch), voucher_payload(cid, amount, sign(chain, signer_key or key, cid, amount)))


# ---------------------------------------------------------------------- item 3: crash in the open window


class _Killed(Exception):
    """The server process dies here (nothing after this point of the handler runs)."""


class _DiesAfterBroadcast:
    """A chain whose next broadcast lands on chain, and then the server dies."""

    def __init__(self, chain):
        self._chain = chain
        self.armed = True

    def __getattr__(self, name):
        return getattr(self._chain, name)

    def broadcast(self, raw):
        tx_hash = self._chain.broadcast(raw)
        if self.armed:
            self.armed = False
            raise _Killed("killed between the open's broadcast and the record's commit")
        return tx_hash


class _DropOnKill(InProcess):
    """The connection of the killed request is reset; the dead server answers nothing until
    a new one is put in place (`revive`)."""

    dead = False

    def handle_request(self, request):
        if self.dead:
            raise httpx.ConnectError("connection refused (server down)", request=request)
        try:
            return super().handle_request(request)
        except _Killed as exc:
            self.dead = True
            raise httpx.ReadError(str(exc), request=request) from None

    def revive(self, server: SessionServer) -> None:
        self.server, self.dead = server, False


def test_crash_between_open_broadcast_and_commit_orphans_nothing(tmp_path):
    chain = memory_chain()
    key = new_key(chain)
    dying = _DiesAfterBroadcast(chain)
    cfg = config(dying, tmp_path, hinted=True)
    server = SessionServer(cfg)
    transport = _DropOnKill(server)
    client = SessionClient(transport, key, chain, persist_path=str(tmp_path / "client.json"), max_price=PRICE)
    with pytest.raises(ServerUnreachable):
        client.request("GET", PATH)
    cid = client.channel_id
    assert chain.get_channel(cid).exists and server.get_record(cid) is None  # the orphan
    server.close()
    # The restarted server (same file) is asked about the channel the chain shows it owns.
    server = SessionServer(attrs.evolve(cfg, chain=chain))
    transport.revive(server)
    client.restart()
    assert client.request("GET", PATH).status_code == 200
    assert client.channel_id == cid  # the deposit is used, not abandoned for a new channel
    rec = server.get_record(cid)
    st = chain.get_channel(cid)
    assert (rec.deposit, rec.payer, rec.expected_signer) == (st.deposit, payer_of(key), payer_of(key))
    assert rec.spent == PRICE and rec.accepted_cumulative >= PRICE
    assert len(server.records()) == 1
    server.close()


def test_no_adoption_of_a_channel_for_an_unauthentic_voucher(tmp_path):
    chain = memory_chain()
    key = new_key(chain)
    dying = _DiesAfterBroadcast(chain)
    cfg = config(dying, tmp_path, hinted=True)
    server = SessionServer(cfg)
    client = SessionClient(_DropOnKill(server), key, chain, persist_path=str(tmp_path / "client.json"), max_price=PRICE)
    with pytest.raises(ServerUnreachable):
        client.request("GET", PATH)
    cid = client.channel_id
    server.close()
    server = SessionServer(attrs.evolve(cfg, chain=chain))
    attacker = new_key(chain)
    resp = send(server, authorization=voucher_auth(server, chain, key, cid, PRICE, signer_key=attacker))
    assert_problem(resp, 402, "signer-mismatch")
    assert server.get_record(cid) is None and server.records() == []
    server.close()


# ---------------------------------------------------------------------- item 4: rule UA


def test_payer_header_challenge_carries_no_voucher_signature(opened):
    chain, key, server, client = opened
    cid = client.channel_id
    # The victim pre-pays five requests.
    assert send(server, authorization=voucher_auth(server, chain, key, cid, 6 * PRICE)).status_code == 200
    snap = snapshot_of(send(server, payment_payer=payer_of(key)))
    assert snap.channel_id == cid and snap.accepted_cumulative == 6 * PRICE  # the hint values stay
    assert snap.highest_voucher is None  # ... but not the bearer instrument


def test_rejected_junk_credential_gets_no_voucher_signature(opened):
    chain, key, server, client = opened
    cid = client.channel_id
    attacker = new_key(chain)
    resp = send(server, authorization=voucher_auth(server, chain, key, cid, 9 * PRICE, signer_key=attacker))
    assert_problem(resp, 402, "signer-mismatch")
    assert snapshot_of(resp).highest_voucher is None
    garbage = "0x" + "11" * 65
    resp = send(server, authorization=authorization(echo(challenge(server)), voucher_payload(cid, 9 * PRICE, garbage)))
    assert resp.status_code == 402 and snapshot_of(resp).highest_voucher is None


def test_authentic_credential_gets_the_proof(opened):
    chain, key, server, client = opened
    cid = client.channel_id
    # An authentic voucher that cannot pay (below acceptedCumulative) but is above settled: its 402
    # carries the proof (rule UA1; the client's authentication voucher of rule UA3).
    resp = send(server, authorization=voucher_auth(server, chain, key, cid, 1))
    assert resp.status_code == 402
    proof = snapshot_of(resp).highest_voucher
    assert proof is not None and proof.cumulative_amount == PRICE
    # A voucher at or below settled (0 here) is public (rule UA2): it proves nobody.
    resp = send(server, authorization=voucher_auth(server, chain, key, cid, 0))
    assert resp.status_code == 402 and snapshot_of(resp).highest_voucher is None


def test_knowing_the_payer_does_not_let_anyone_close_or_spend(opened):
    chain, key, server, client = opened
    cid = client.channel_id
    assert send(server, authorization=voucher_auth(server, chain, key, cid, 6 * PRICE)).status_code == 200
    before = server.get_record(cid)
    snap = snapshot_of(send(server, payment_payer=payer_of(key)))
    assert snap.highest_voucher is None  # nothing to replay as `close` or as a voucher
    # The best an attacker can do is sign itself: refused, nothing changes, the channel stays open.
    attacker = new_key(chain)
    forged = voucher_payload(cid, 6 * PRICE, sign(chain, attacker, cid, 6 * PRICE), action="close")
    resp = send(server, authorization=authorization(echo(challenge(server)), forged))
    assert_problem(resp, 402, "signer-mismatch")
    assert server.get_record(cid) == before and not chain.get_channel(cid).finalized


def test_proof_disclosure_defaults_to_authentic(tmp_path):
    chain = memory_chain()
    server = SessionServer(config(chain, tmp_path))
    assert server.config.proof_disclosure == "authentic"
    server.close()


def _settle_highest(server, chain, cid):
    rec = server.get_record(cid)
    chain.settle(server.config.payee_key, cid, rec.accepted_cumulative, bytes.fromhex(rec.highest_signature[2:]))
    return rec.accepted_cumulative


def test_a_settled_voucher_neither_buys_nor_closes(opened):
    """Rule UA2: the victim pre-paid five requests and the server settled its highest voucher, which the
    settle transaction publishes: anyone holds it now. Replayed by a third party (as the payer, or naming
    nobody) it buys nothing and closes nothing; the channel keeps its unspent authorization for the payer."""
    chain, key, server, client = opened
    cid = client.channel_id
    assert send(server, authorization=voucher_auth(server, chain, key, cid, 6 * PRICE)).status_code == 200
    settled = _settle_highest(server, chain, cid)
    public = sign(chain, key, cid, settled)  # what the chain shows
    before = server.get_record(cid)
    for payer in (None, payer_of(key)):
        resp = send(server, authorization=authorization(echo(challenge(server, payer)),
                                                         voucher_payload(cid, settled, public)))
        assert_problem(resp, 402, "verification-failed")
        assert "public" in resp.json()["detail"]
        assert snapshot_of(resp).highest_voucher is None  # a public voucher proves nobody (UA1)
        closing = voucher_payload(cid, settled, public, action="close")
        resp = send(server, "HEAD", authorization=authorization(echo(challenge(server, payer, "HEAD")), closing))
        assert_problem(resp, 402, "verification-failed")
    after = server.get_record(cid)
    assert (after.accepted_cumulative, after.spent, after.finalized) == (
        before.accepted_cumulative, before.spent, False)
    assert not chain.get_channel(cid).finalized
    # The hint asks for the smallest advance above settled, and the payer's own client is served on it.
    snap = snapshot_of(send(server, payment_payer=payer_of(key)))
    assert snap.required_cumulative == settled + 1
    assert client.request("GET", PATH).status_code == 200
    assert server.get_record(cid).spent == before.spent + PRICE


def test_client_without_memory_recovers_by_authenticating_first(opened, tmp_path):
    """Rule UA3: a second instance of the payer's client (no persisted state) cannot prove the hinted
    acceptedCumulative (no proof for an unpaid request): it sends a voucher at settled + price, gets the proof
    in the 402, and is served on the next attempt: one extra round trip, nothing charged twice."""
    chain, key, server, client = opened
    cid = client.channel_id
    for _ in range(3):
        assert client.request("GET", PATH).status_code == 200
    seen: list = []
    fresh = SessionClient(InProcess(server), key, chain, max_deposit=10**6, max_price=PRICE,
                          observer=lambda kind, data: seen.append((kind, data)))
    before = server.get_record(cid)
    assert fresh.request("GET", PATH).status_code == 200
    sent = [d["cumulativeAmount"] for k, d in seen if k == "credential"]
    assert sent == [PRICE, before.accepted_cumulative + PRICE]
    statuses = [d["status"] for k, d in seen if k in ("challenge", "response")]
    assert statuses == [402, 402, 200]
    assert server.get_record(cid).spent == before.spent + PRICE and fresh.channel_id == cid


# ---------------------------------------------------------------------- item 5: idempotency scope


def test_idempotency_key_is_scoped_to_method_and_path(opened):
    chain, key, server, client = opened
    cid = client.channel_id
    first = send(server, "POST", "/paid/article-A", idempotency_key="k-1",
                 authorization=voucher_auth(server, chain, key, cid, 2 * PRICE))
    assert first.status_code == 200 and json.loads(first.content)["resource"] == "/paid/article-A"
    before = server.get_record(cid)
    other = send(server, "POST", "/paid/article-B", idempotency_key="k-1",
                 authorization=voucher_auth(server, chain, key, cid, 3 * PRICE))
    assert_problem(other, 422, "idempotency-key-reused")
    assert "POST /paid/article-A" in other.json()["detail"]
    assert server.get_record(cid) == before  # not served, not charged, voucher not taken
    same_path_other_method = send(server, "PUT", "/paid/article-A", idempotency_key="k-1",
                                  authorization=voucher_auth(server, chain, key, cid, 3 * PRICE))
    assert_problem(same_path_other_method, 422, "idempotency-key-reused")
    again = send(server, "POST", "/paid/article-A", idempotency_key="k-1",
                 authorization=voucher_auth(server, chain, key, cid, 2 * PRICE))
    assert again.status_code == 200 and again.content == first.content
    assert server.get_record(cid) == before


# ---------------------------------------------------------------------- item 6: surrogates


@pytest.mark.parametrize("field", ["realm", "digest", "opaque", "expires", "id"])
def test_lone_surrogate_in_echoed_challenge_is_a_4xx(opened, field):
    chain, key, server, client = opened
    cid = client.channel_id
    echoed = echo(challenge(server))
    echoed[field] = "x\ud800y"
    raw = json.dumps({"challenge": echoed, "payload": voucher_payload(cid, 2 * PRICE, sign(chain, key, cid, 2 * PRICE))})
    before = server.dump()
    resp = send(server, authorization="Payment " + b64(raw.encode()))
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert server.dump() == before


# ---------------------------------------------------------------------- item 7: duplicate open, two stores


class _OtherProcessOpensFirst:
    """Server A's chain: right after A broadcasts the open (before A records it), server B
    (another store connection on the same file, as another process has) handles the same
    open completely: B finds the channel on chain and records it first."""

    def __init__(self, chain):
        self._chain = chain
        self.other_handles = None
        self.other_reply = None

    def __getattr__(self, name):
        return getattr(self._chain, name)

    def broadcast(self, raw):
        tx_hash = self._chain.broadcast(raw)
        if self.other_reply is None and self.other_handles is not None:
            self.other_reply = self.other_handles()
        return tx_hash


def test_duplicate_open_from_two_processes_is_answered_once_and_idempotently(tmp_path):
    chain = memory_chain()
    key = new_key(chain)
    held = _OtherProcessOpensFirst(chain)
    server_a = SessionServer(config(held, tmp_path, hinted=True))
    server_b = SessionServer(config(chain, tmp_path, hinted=True))  # same file, its own connection and locks

    class ToA(httpx.BaseTransport):
        def handle_request(self, request):
            headers = {k.lower(): v for k, v in request.headers.items()}
            if "authorization" in headers:
                held.other_handles = lambda: server_b.handle(request.method, request.url.path, headers)
            reply = server_a.handle(request.method, request.url.path, headers)
            return httpx.Response(reply.status, headers=list(reply.headers), content=reply.body)

    client = SessionClient(ToA(), key, chain, max_deposit=10**6, max_price=PRICE)
    resp_a = client.request("GET", PATH, idempotency_key="open-1")
    reply_b = held.other_reply
    assert reply_b is not None and reply_b.status == 200  # B answered the open first
    assert resp_a.status_code == 200, resp_a.text  # A: the same answer, not a 500
    assert resp_a.headers["payment-receipt"] == dict(reply_b.headers)["payment-receipt"]
    cid = client.channel_id
    assert server_a.get_record(cid).spent == PRICE  # charged once
    assert len(server_b.records()) == 1
    server_a.close()
    server_b.close()


# ---------------------------------------------------------------------- item 9: rate limiting


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_voucher_submissions_are_rate_limited_per_channel(tmp_path):
    chain = memory_chain()
    key = new_key(chain)
    clock = FakeClock()
    server = SessionServer(config(chain, tmp_path, hinted=True, voucher_rate=10.0, rate_clock=clock))
    client = SessionClient(InProcess(server), key, chain, max_deposit=10**6, max_price=PRICE)
    assert client.request("GET", PATH).status_code == 200  # the open (not yet a proven channel's budget)
    cid = client.channel_id
    amount = 100 * PRICE
    auth = voucher_auth(server, chain, key, cid, amount)
    statuses = [send(server, authorization=auth).status_code for _ in range(12)]
    assert statuses == [200] * 10 + [429] * 2
    limited = send(server, authorization=auth)
    assert_problem(limited, 429, "rate-limited")
    assert int(limited.headers["retry-after"]) >= 1 and cid in limited.json()["detail"]
    assert server.get_record(cid).spent == 11 * PRICE  # a refused submission changes nothing
    clock.now += 1.0  # a second later the budget is back
    assert send(server, authorization=auth).status_code == 200


def test_junk_naming_a_channel_does_not_spend_its_budget(tmp_path):
    chain = memory_chain()
    key = new_key(chain)
    clock = FakeClock()
    server = SessionServer(config(chain, tmp_path, hinted=True, voucher_rate=10.0, rate_clock=clock))
    client = SessionClient(InProcess(server), key, chain, max_deposit=10**6, max_price=PRICE)
    assert client.request("GET", PATH).status_code == 200
    cid = client.channel_id
    clock.now += 1.0  # the open's submission is refilled
    attacker = new_key(chain)
    junk = voucher_auth(server, chain, key, cid, 50 * PRICE, signer_key=attacker)
    statuses = [send(server, authorization=junk).status_code for _ in range(40)]
    assert statuses.count(429) == 30 and statuses[:10] == [402] * 10  # junk has its own budget
    auth = voucher_auth(server, chain, key, cid, 9 * PRICE)
    assert [send(server, authorization=auth).status_code for _ in range(8)] == [200] * 8


# ---------------------------------------------------------------------- item 11: the lock table


def test_lock_table_is_bounded_by_requests_in_flight(opened):
    chain, key, server, client = opened
    ch = echo(challenge(server))
    for i in range(500):
        cid = "0x" + i.to_bytes(32, "big").hex()
        resp = send(server, authorization=authorization(ch, voucher_payload(cid, 1, sign(chain, key, cid, 1))))
        assert_problem(resp, 410, "channel-not-found")
    gc.collect()
    assert len(server.store.locks) <= 1
    # the lock still excludes: one id, one lock object while held
    lock = server.store.locks.get("0xab")
    with lock:
        assert server.store.locks.get("0xAB") is lock


# ---------------------------------------------------------------------- item 6: no 5xx for any input

from adapters.reference.fuzz import fuzz_server  # noqa: E402


def test_fuzzed_requests_never_get_a_5xx_and_change_nothing(opened):
    """The fuzzer of `python -m adapters.reference.fuzz` (its strategies and checks), in process:
    no 5xx, a rejection changes no stored row and carries a problem type with a detail."""
    chain, key, server, client = opened
    cid = client.channel_id
    base_ch = echo(challenge(server))
    base_payload = voucher_payload(cid, PRICE, sign(chain, key, cid, PRICE))  # valid, no advance: a HEAD may pass
    counts = fuzz_server(server, None, base_ch, base_payload, payer_of(key), examples=400)
    assert counts.inputs >= 400
    assert counts.ok, (counts.line(), counts.examples)
