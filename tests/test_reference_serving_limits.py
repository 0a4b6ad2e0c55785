"""The reference server's uvicorn limits (issue 10, item 8), with raw sockets on 127.0.0.1:
connections whose headers never finish are closed, the number of open connections is
bounded, and logging is rate-limited. Counts are bounded; no test asserts a duration."""
from __future__ import annotations

import logging
import socket

import httpx

from adapters.reference.server import SessionServer, serve
from adapters.reference.serving import RateLimitedLogFilter, ServingLimits

from .test_reference_support import config, memory_chain

PARTIAL_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # never finished
WAIT = 20.0  # a safety net for a broken server, not a measured duration


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=WAIT)
    return s


def _closed_by_server(s: socket.socket) -> bool:
    """True when the server closes the connection (EOF or reset) before the safety net."""
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_unfinished_headers_are_closed(tmp_path):
    chain = memory_chain()
    with serve(SessionServer(config(chain, tmp_path)), limits=ServingLimits(header_timeout=0.3)) as rs:
        s = _connect(rs.url)
        s.sendall(PARTIAL_HEAD)
        assert _closed_by_server(s)
        s.close()
        # the next request's headers on a kept-alive connection are timed too
        s = _connect(rs.url)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.sendall(PARTIAL_HEAD)
        assert _closed_by_server(s)
        s.close()
        assert httpx.get(rs.url + "/health").status_code == 200


def test_open_connections_are_bounded_and_freed(tmp_path):
    chain = memory_chain()
    limits = ServingLimits(header_timeout=1.0, max_connections=20)
    with serve(SessionServer(config(chain, tmp_path)), limits=limits) as rs:
        slow = []
        for _ in range(60):
            try:
                s = _connect(rs.url)
                s.sendall(PARTIAL_HEAD)
            except OSError:
                continue
            slow.append(s)
        state = rs._uvicorn.server_state
        assert len(state.connections) <= limits.max_connections
        assert all(_closed_by_server(s) for s in slow)  # refused at once, or timed out
        for s in slow:
            s.close()
        assert httpx.get(rs.url + "/health").status_code == 200  # real requests are served again


class _Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_log_records_are_rate_limited():
    clock = _Clock()
    filt = RateLimitedLogFilter(5, clock=clock)
    logger = logging.getLogger("test.reference.serving")
    records = [logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "Invalid HTTP request %d", (i,), None)
               for i in range(1_000)]
    passed = [r for r in records if filt.filter(r)]
    assert len(passed) == 5 and filt.dropped == 995
    clock.now += 1.0
    nxt = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "Invalid HTTP request", (), None)
    assert filt.filter(nxt) and "995 similar records suppressed" in nxt.getMessage()
