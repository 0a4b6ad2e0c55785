"""Linearizable per-channel accounting under concurrent requests, request idempotency,
and the client's one retry after a transport error."""
from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from adapters.reference import SessionClient

from adapters.reference.client import ExposureExceeded

from .test_reference_support import (
    PATH,
    PRICE,
    authorization,
    config,
    echo,
    get_challenge,
    memory_chain,
    new_key,
    payer_of,
    problem_slug,
    receipt,
    running,
    sign,
    voucher_payload,
)


@contextlib.contextmanager
def _opened(chain, tmp_path, **cfg):
    """A running server and a client that has opened a channel on it (one paid request)."""
    key = new_key(chain)
    with running(config(chain, tmp_path, **cfg)) as rs:
        client = SessionClient(rs.url, key, chain, max_deposit=10**6, max_price=PRICE)
        try:
            assert client.request("GET", PATH).status_code == 200
            yield rs, key, client
        finally:
            client.close_http()


def _race(url: str, headers: dict | list[dict], n: int = 30) -> list[httpx.Response]:
    """Requests sent at once (threads released together by a barrier): n copies of one
    header set, or one request per header set in a list."""
    each = headers if isinstance(headers, list) else [headers] * n
    barrier = threading.Barrier(len(each))

    def one(h_):
        with httpx.Client(base_url=url) as h:
            barrier.wait()
            return h.get(PATH, headers=h_)

    with ThreadPoolExecutor(len(each)) as pool:
        return list(pool.map(one, each))


def test_one_voucher_many_concurrent_requests(tmp_path):
    """A voucher covering 10 requests, sent 30 times at once: exactly 10 are served."""
    chain = memory_chain()
    with _opened(chain, tmp_path) as (rs, key, client):
        cid = client.channel_id
        _, ch = get_challenge(rs.url, payer_of(key))
        amount = 11 * PRICE
        auth = authorization(echo(ch), voucher_payload(cid, amount, sign(chain, key, cid, amount)))
        results = _race(rs.url, {"Authorization": auth})
        served = [r for r in results if r.status_code == 200]
        refused = [r for r in results if r.status_code != 200]
        assert len(served) == 10
        assert all(r.status_code == 402 and problem_slug(r) == "insufficient-balance" for r in refused)
        spents = sorted(receipt(r).spent for r in served)
        assert spents == [PRICE * (i + 2) for i in range(10)]  # each charge seen exactly once
        rec = rs.server.get_record(cid)
        assert rec.spent == 11 * PRICE == rec.accepted_cumulative and rec.units == 11


def test_racing_vouchers_never_double_charge(tmp_path):
    """Threads racing with different vouchers: spent == price x served, spent <= accepted."""
    chain = memory_chain()
    with _opened(chain, tmp_path) as (rs, key, client):
        cid = client.channel_id
        _, ch = get_challenge(rs.url, payer_of(key))
        auths = [authorization(echo(ch), voucher_payload(cid, a, sign(chain, key, cid, a)))
                 for a in [PRICE * (2 + i // 3) for i in range(24)]]  # 3 threads per amount
        results = _race(rs.url, [{"Authorization": a} for a in auths])
        served = sum(r.status_code == 200 for r in results)
        rec = rs.server.get_record(cid)
        assert rec.spent == PRICE * (1 + served) and rec.units == 1 + served
        assert rec.spent <= rec.accepted_cumulative
        assert rec.accepted_cumulative == PRICE * 9
        for r in results:
            if r.status_code != 200:
                assert problem_slug(r) in ("insufficient-balance", "verification-failed")


def test_concurrent_clients_of_one_payer(tmp_path):
    """Several client threads paying on the same channel through the hints: every served request charged once."""
    chain = memory_chain()
    with _opened(chain, tmp_path) as (rs, key, client):
        cid = client.channel_id
        served = []
        lock = threading.Lock()

        def worker(_):
            c = SessionClient(rs.url, key, chain, max_deposit=10**6, max_price=PRICE)
            n = 0
            for _ in range(5):
                try:
                    ok = c.request("GET", PATH).status_code == 200
                except ExposureExceeded:
                    ok = False  # lost races: its vouchers equal the proofs, as a voucher-keeping liar's would
                n += ok
            c.close_http()
            with lock:
                served.append(n)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(worker, range(4)))
        rec = rs.server.get_record(cid)
        assert len(rs.server.records()) == 1
        assert rec.spent == PRICE * (1 + sum(served)) and rec.spent <= rec.accepted_cumulative
        assert sum(served) >= 4  # typically 14-16 of 20; contention may refuse some (never double-charge)


def test_idempotency_key_replay_charges_once(tmp_path):
    chain = memory_chain()
    with _opened(chain, tmp_path) as (rs, key, client):
        cid = client.channel_id
        _, ch = get_challenge(rs.url, payer_of(key))
        auth = authorization(echo(ch), voucher_payload(cid, 2 * PRICE, sign(chain, key, cid, 2 * PRICE)))
        h = {"Authorization": auth, "Idempotency-Key": "req-1"}
        first = httpx.get(rs.url + PATH, headers=h)
        again = httpx.get(rs.url + PATH, headers=h)
        assert first.status_code == again.status_code == 200
        assert first.headers["payment-receipt"] == again.headers["payment-receipt"]
        assert first.content == again.content
        assert rs.server.get_record(cid).spent == 2 * PRICE
        # the same key through the client, twice: the second logical request is the replay
        r1 = client.request("GET", PATH, idempotency_key="req-2")
        r2 = client.request("GET", PATH, idempotency_key="req-2")
        assert r1.status_code == r2.status_code == 200
        assert r1.headers["payment-receipt"] == r2.headers["payment-receipt"]
        assert rs.server.get_record(cid).spent == 3 * PRICE
        # without a key the same credential is a new request (the voucher is idempotent, the charge is not)
        none = httpx.get(rs.url + PATH, headers={"Authorization": auth})
        assert none.status_code == 402 and problem_slug(none) == "verification-failed"
        # keys are per channel and only for content requests: a HEAD with a key is not stored
        same = authorization(echo(ch), voucher_payload(cid, 3 * PRICE, sign(chain, key, cid, 3 * PRICE)))
        head = httpx.head(rs.url + PATH, headers={"Authorization": same, "Idempotency-Key": "req-1"})
        assert head.status_code == 200
        assert rs.server.get_record(cid).spent == 3 * PRICE
        assert client.request("GET", PATH).status_code == 200
        assert rs.server.get_record(cid).spent == 4 * PRICE


class _DropFirstPaidResponse(httpx.HTTPTransport):
    """Forwards every request; the first one carrying Authorization is applied by the
    server but its response is lost (a transport error at the client)."""

    def __init__(self):
        super().__init__()
        self.dropped = 0
        self.sent_auth = []

    def handle_request(self, request):
        resp = super().handle_request(request)
        if "authorization" in request.headers:
            self.sent_auth.append((request.headers["authorization"], request.headers.get("idempotency-key")))
            if self.dropped == 0:
                self.dropped += 1
                resp.read()
                resp.close()
                raise httpx.ReadError("connection reset after the request was applied", request=request)
        return resp


def test_transport_error_retry_is_charged_once(tmp_path):
    chain = memory_chain()
    key = new_key(chain)
    with running(config(chain, tmp_path)) as rs:
        transport = _DropFirstPaidResponse()
        client = SessionClient(transport, key, chain, max_deposit=10**6, max_price=PRICE)
        client._http.base_url = rs.url  # the transport talks to the real server
        for _ in range(3):
            resp = client.request("GET", PATH)
            assert resp.status_code == 200
        assert transport.dropped == 1
        # the retry repeated the same Authorization and Idempotency-Key
        assert transport.sent_auth[0] == transport.sent_auth[1]
        assert transport.sent_auth[0][1] is not None
        rec = rs.server.get_record(client.channel_id)
        assert rec.spent == 3 * PRICE and rec.units == 3
        assert client.view().spent == 3 * PRICE
        client.close_http()


def test_same_idempotency_key_sent_concurrently_is_served_once(tmp_path):
    """30 copies of one keyed request at once, with balance for many: one charge, and every
    copy gets the same receipt (no 500 from a lost race on the stored response)."""
    chain = memory_chain()
    with _opened(chain, tmp_path) as (rs, key, client):
        cid = client.channel_id
        _, ch = get_challenge(rs.url, payer_of(key))
        amount = 11 * PRICE
        auth = authorization(echo(ch), voucher_payload(cid, amount, sign(chain, key, cid, amount)))
        results = _race(rs.url, {"Authorization": auth, "Idempotency-Key": "same-key"})
        assert [r.status_code for r in results] == [200] * 30
        assert {receipt(r).spent for r in results} == {2 * PRICE}
        assert rs.server.get_record(cid).spent == 2 * PRICE
