"""A crashed server: the client's error says what and where, and nothing is lost."""
from __future__ import annotations

import os
import threading

import httpx
import pytest

from adapters.reference.bench import _InProcess
from adapters.reference.client import ServerUnreachable, SessionClient
from adapters.reference.server import SessionServer, serve

from .test_reference_support import PATH, PRICE, config, memory_chain, new_key


class _DropAfterApply(httpx.BaseTransport):
    """Forwards to a live server, then loses every answer to a paid request: the server
    applied the voucher and crashed before the response left."""

    def __init__(self, url: str):
        self.inner = httpx.HTTPTransport()
        self.url = url
        self.crashed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = httpx.URL(self.url).join(request.url.path)
        resp = self.inner.handle_request(request)
        if "authorization" in request.headers and self.crashed:
            resp.read()
            raise httpx.ReadError("connection reset by peer", request=request)
        return resp


def test_unreachable_server_error_names_the_url():
    chain = memory_chain()
    client = SessionClient("http://127.0.0.1:9", new_key(chain), chain, max_price=PRICE)
    with pytest.raises(ServerUnreachable, match=r"GET http://127\.0\.0\.1:9/paid/resource: no answer"):
        client.request("GET", PATH)


def test_crash_after_apply_loses_nothing(tmp_path):
    chain = memory_chain()
    key = new_key(chain)
    cfg = config(chain, tmp_path, hinted=True)
    rs = serve(SessionServer(cfg))
    transport = _DropAfterApply(rs.url)
    client = SessionClient(transport, key, chain, hinted=True, persist_path=str(tmp_path / "client.json"), max_price=PRICE)
    try:
        assert client.request("GET", PATH).status_code == 200
        transport.crashed = True
        with pytest.raises(ServerUnreachable, match=r"voucher credential \(cumulative 2000\) may or may not"):
            client.request("GET", PATH)
        cid = client.channel_id
        assert client.view().signed_max == 2 * PRICE  # recorded before sending
    finally:
        rs.stop()
    # The server restarts on the same database: the voucher it applied and its charge are there.
    server = SessionServer(cfg)
    rec = server.get_record(cid)
    assert (rec.accepted_cumulative, rec.spent) == (2 * PRICE, 2 * PRICE)
    with serve(server) as rs2:
        transport.url, transport.crashed = rs2.url, False
        client.restart()  # even with volatile state gone, the persisted entry and the hints reconcile
        assert client.request("GET", PATH).status_code == 200
        assert server.get_record(cid).spent == 3 * PRICE
        assert client.view().signed_max == 3 * PRICE


@pytest.mark.parametrize("header,why", [
    ('Payment id="x", realm="r", method="tempo", intent="session", request="!!"', "request: expected base64url"),
    ('Payment id="x" realm=', "WWW-Authenticate header: id"),
    ('Bearer realm="x"', "no WWW-Authenticate: Payment challenge"),
])
def test_malformed_challenge_is_a_clear_refusal(header, why):
    from adapters.reference.client import ChallengeRejected

    chain = memory_chain()
    transport = httpx.MockTransport(lambda req: httpx.Response(402, headers={"WWW-Authenticate": header}))
    client = SessionClient(transport, new_key(chain), chain, max_price=PRICE)
    with pytest.raises(ChallengeRejected, match=why):
        client.request("GET", PATH)
    assert client.view() is None  # nothing signed, nothing opened


class _HeldFsync:
    """An fsync that blocks until released, telling when a sync has begun."""

    def __init__(self) -> None:
        self.begun, self.release = threading.Event(), threading.Event()
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.begun.set()
        assert self.release.wait(60), "fsync never released"
        os.fdatasync(fd)


def test_a_response_leaves_only_after_its_charge_is_on_disk(tmp_path):
    """Group commit (store._GroupSync): the commit of a charge is followed by an fsync of the WAL
    before the transaction returns, so no response is built while the charge is only in the OS cache."""
    chain = memory_chain()
    key = new_key(chain)
    server = SessionServer(config(chain, tmp_path))
    client = SessionClient(_InProcess(server), key, chain, max_price=PRICE)
    assert client.request("GET", PATH).status_code == 200
    held = _HeldFsync()
    server.store.sync.fsync = held
    answers: list[int] = []
    t = threading.Thread(target=lambda: answers.append(client.request("GET", PATH).status_code))
    t.start()
    assert held.begun.wait(60)
    # the voucher and its charge are committed (visible to a new connection) but not yet synced: no answer
    assert SessionServer(config(chain, tmp_path)).get_record(client.channel_id).spent == 2 * PRICE
    assert t.is_alive() and answers == []
    held.release.set()
    t.join(60)
    assert answers == [200] and held.calls == 1
    server.close()


def test_group_commit_shares_one_fsync_between_waiting_commits(tmp_path):
    from adapters.reference.store import _GroupSync

    wal = tmp_path / "x-wal"
    wal.write_bytes(b"frames")
    sync = _GroupSync(str(wal))
    held = _HeldFsync()
    sync.fsync = held
    first = threading.Thread(target=lambda: sync.wait(sync.committed()))
    first.start()
    assert held.begun.wait(60)  # the first commit's fsync is running (held)
    later = [threading.Thread(target=lambda: sync.wait(sync.committed())) for _ in range(8)]
    for t in later:
        t.start()
    while sync._committed < 9:  # every later commit is in (they wait: the running fsync began before them)
        threading.Event().wait(0.01)
    held.release.set()
    for t in [first, *later]:
        t.join(60)
        assert not t.is_alive()
    assert held.calls == 2  # nine commits, two fsyncs: the held one and one for the eight behind it

