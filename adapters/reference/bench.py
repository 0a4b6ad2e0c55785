"""Benchmarks, reported as ratios measured in one run (machines here are shared and noisy).

    python -m adapters.reference.bench [--seconds S]

- voucher verifications/s (model.crypto.recover_voucher_signer: digest + canonical checks +
  recovery + address) against raw coincurve recoveries/s of the same signature;
- paid requests/s of the reference server on loopback (memory chain), one hinted client;
- paid requests/s through the in-process ASGI transport (no sockets), for the ratio of
  HTTP overhead to payment logic.
Never run by the tests: timings are not asserted anywhere.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import coincurve
import httpx

from adapters.chain import make_chain
from model.crypto import VoucherDomain, parse_signature, recover_voucher_signer, sign_voucher, voucher_digest

from .client import SessionClient
from .server import ServerConfig, SessionServer, serve

KEY = bytes.fromhex("0123456789012345678901234567890123456789012345678901234567890123")


def _rate(fn, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            fn()
        n += 200
    return n / (time.perf_counter() - start)


def bench_crypto(seconds: float) -> tuple[float, float]:
    dom = VoucherDomain("v2", 4217, "0x9d136eea063ede5418a6bc7beaff009bbb6cfa70")
    cid, amt = "0x" + "11" * 32, 250000
    sig = sign_voucher(KEY, dom, cid, amt)
    digest = voucher_digest(dom, cid, amt)
    r, s, rec = parse_signature(sig)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([rec])
    ours = _rate(lambda: recover_voucher_signer(dom, cid, amt, sig), seconds)
    raw_rate = _rate(lambda: coincurve.PublicKey.from_signature_and_message(raw, digest, hasher=None), seconds)
    return ours, raw_rate


def bench_server(seconds: float, over_sockets: bool) -> float:
    chain = make_chain("memory")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ServerConfig(chain=chain, payee_key=bytes.fromhex("a1" * 32), db_path=f"{tmp}/bench.sqlite", price=1)
        server = SessionServer(cfg)
        payer = bytes.fromhex("b2" * 32)
        chain.fund(payer, 10**12)
        if over_sockets:
            running = serve(server)
            client = SessionClient(running.url, payer, chain, hinted=True, max_deposit=10**11, max_price=1)
        else:
            running = None
            client = SessionClient(_InProcess(server), payer, chain, hinted=True, max_deposit=10**11, max_price=1)
        try:
            client.request("GET", "/paid/resource")  # opens the channel
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                resp = client.request("GET", "/paid/resource")
                assert resp.status_code == 200, resp.status_code
                n += 1
            return n / (time.perf_counter() - start)
        finally:
            client.close_http()
            if running is not None:
                running.stop()
            server.close()


class _InProcess(httpx.BaseTransport):
    """A synchronous in-process transport over SessionServer.handle (no sockets)."""

    def __init__(self, server: SessionServer) -> None:
        self.server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        reply = self.server.handle(request.method, request.url.path, dict(request.headers))
        return httpx.Response(reply.status, headers=list(reply.headers), content=reply.body, request=request)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m adapters.reference.bench")
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args(argv)
    ours, raw = bench_crypto(a.seconds)
    print(f"voucher verifications/s: {ours:,.0f}   raw coincurve recoveries/s: {raw:,.0f}   ratio {ours / raw:.2f}")
    loop = bench_server(a.seconds, over_sockets=True)
    inproc = bench_server(a.seconds, over_sockets=False)
    print(f"paid requests/s on loopback (memory chain): {loop:,.0f}   in-process: {inproc:,.0f}   "
          f"ratio {loop / inproc:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
