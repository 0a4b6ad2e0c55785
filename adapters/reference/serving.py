"""Running the reference server's ASGI app on a hostile network: uvicorn with limits.

uvicorn alone keeps a connection open for as long as its client takes to send the request
headers (its keep-alive timeout only runs between requests), accepts connections until
the process runs out of file descriptors, and logs every failure with a traceback. Here:

* a header-read timeout: a connection whose request headers are not complete
  `header_timeout` seconds after it started waiting for them (on connect, and again after
  each response) is closed;
* a connection limit: beyond `max_connections` open connections a new one is closed at
  once (before anything is read), so the process never nears its descriptor limit;
* `limit_concurrency` (503 beyond it), `timeout_keep_alive`, and a bound on the size of an
  incomplete request head (`h11_max_incomplete_event_size`);
* rate-limited logging: at most `log_per_second` records per second from uvicorn's loggers,
  the rest counted and summarized in the next record that passes.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any

import attrs
import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ServingLimits", "serve_app", "uvicorn_config", "limited_protocol"]


@attrs.frozen
class ServingLimits:
    header_timeout: float = 10.0  # seconds for a request's headers to arrive
    max_connections: int = 512  # well below the usual 1,024 descriptors
    keep_alive: float = 5.0  # idle seconds between requests on one connection
    max_head_bytes: int = 16 * 1024  # an incomplete request head larger than this is a 400
    log_per_second: float = 5.0


def limited_protocol(limits: ServingLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the header-read timeout and the connection limit."""

    class LimitedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= limits.max_connections:
                # Refused before it costs anything more than the accept; the peer sees a reset.
                self.transport = transport
                transport.abort()
                _refused.note()
                return
            super().connection_made(transport)
            self._arm_header_timer()

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(limits.header_timeout, self._header_timeout)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()  # the headers never came: nothing to answer

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._cancel_header_timer()  # a request head arrived

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm_header_timer()  # waiting for the next request's headers

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            if self.conn is not None and self in self.connections:
                super().connection_lost(exc)

    return LimitedH11Protocol


class _Refused:
    """Counts connections refused by the limit (logged through the rate-limited logger)."""

    def __init__(self) -> None:
        self.count = 0
        self._guard = threading.Lock()

    def note(self) -> None:
        with self._guard:
            self.count += 1
        logging.getLogger("uvicorn.error").warning("connection refused: connection limit reached")


_refused = _Refused()


class RateLimitedLogFilter(logging.Filter):
    """Lets at most `per_second` records through per second; counts the dropped ones and
    appends their number to the next record that passes."""

    def __init__(self, per_second: float, clock=time.monotonic) -> None:
        super().__init__()
        self.per_second = per_second
        self.clock = clock
        self._window = 0.0
        self._passed = 0
        self.dropped = 0
        self._unreported = 0
        self._guard = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        with self._guard:
            if now - self._window >= 1.0:
                self._window, self._passed = now, 0
            if self._passed >= self.per_second:
                self.dropped += 1
                self._unreported += 1
                return False
            self._passed += 1
            if self._unreported:
                record.msg = f"{record.getMessage()} ({self._unreported} similar records suppressed)"
                record.args = ()
                self._unreported = 0
            record.exc_info = record.exc_info if self._passed <= 1 else None  # one traceback a second at most
            return True


def _install_log_filter(limits: ServingLimits) -> RateLimitedLogFilter:
    for name in ("uvicorn.error", "uvicorn", "uvicorn.access"):
        logger = logging.getLogger(name)
        for f in logger.filters:
            if isinstance(f, RateLimitedLogFilter):
                return f
    filt = RateLimitedLogFilter(limits.log_per_second)
    for name in ("uvicorn.error", "uvicorn", "uvicorn.access"):
        logging.getLogger(name).addFilter(filt)
    return filt


def uvicorn_config(app: Any, host: str, port: int, limits: ServingLimits, **kw: Any):
    import uvicorn

    _install_log_filter(limits)
    return uvicorn.Config(
        app, host=host, port=port, log_level=kw.pop("log_level", "warning"), lifespan="off", access_log=False,
        ws="none", http=limited_protocol(limits), timeout_keep_alive=limits.keep_alive,
        limit_concurrency=limits.max_connections, h11_max_incomplete_event_size=limits.max_head_bytes,
        backlog=kw.pop("backlog", 128), **kw,
    )


def listening_socket(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only then
    # (without it every response waits ~40 ms for a delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def serve_app(app: Any, host: str, port: int, limits: ServingLimits) -> tuple[Any, threading.Thread, int]:
    """Start uvicorn with `limits` in a background thread; returns (uvicorn server, thread, port)."""
    import uvicorn

    sock = listening_socket(host, port)
    bound_port = sock.getsockname()[1]
    userver = uvicorn.Server(uvicorn_config(app, host, bound_port, limits))
    thread = threading.Thread(target=userver.run, kwargs={"sockets": [sock]}, daemon=True, name=f"uvicorn:{bound_port}")
    thread.start()
    deadline = time.monotonic() + 10
    while not userver.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    return userver, thread, bound_port
