"""Benchmarks, reported as ratios measured in one run (machines here are shared and noisy).

    python -m adapters.reference.bench [--seconds S]

- voucher verifications/s (wire.crypto.recover_voucher_signer: digest + canonical checks +
  recovery + address) against raw coincurve recoveries/s of the same signature;
- paid requests/s of the reference server on loopback (memory chain), one hinted client;
- paid requests/s through the in-process ASGI transport (no sockets), for the ratio of
  HTTP overhead to payment logic;
- the model checker's states/s (model.fastcheck, what `make check` runs) against the plain
  explorer's (model.check.explore) on the same scenario and depth, interleaved;
- the conformance suite's steps/s per chain (memory, evm): reference client x reference
  server, machine `pair`, profile quick;
- when Node and adapters/mppx/node_modules are present: the suite's `server` machine against
  mppx's server beside the same machine against the reference server. mppx is driven over
  the bridge's JSON lines, so this ratio includes the bridge's process hop (an in-process
  Node driver would need adapters/mppx/adapter.mjs to export its server set-up).
Never run by the tests: timings are not asserted anywhere.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import coincurve
import httpx

from adapters.chain import make_chain
from wire.crypto import VoucherDomain, parse_signature, recover_voucher_signer, sign_voucher, voucher_digest

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


CHECKER_SCENARIO, CHECKER_DEPTH = "rollout mix p=1", 4


def bench_checker(rounds: int = 2) -> tuple[float, float, int]:
    """(fast states/s, plain states/s, states per run): the same exploration, alternated
    so that both explorers see the same machine load."""
    from model import check, fastcheck
    from model.scenarios import default_scenarios

    cfg = next(s for s in default_scenarios() if s.name == CHECKER_SCENARIO).config
    spent = {"fast": 0.0, "plain": 0.0}
    states = 0
    for _ in range(rounds):
        for name, explore in (("plain", check.explore), ("fast", fastcheck.explore)):
            res = explore(cfg, CHECKER_DEPTH)
            spent[name] += res.seconds
            states = res.states
    return states * rounds / spent["fast"], states * rounds / spent["plain"], states


_STEPS = re.compile(r"\((\d+) examples, (\d+) steps, ([\d.]+)s, (\d+) steps/s\)")


def bench_suite(chain: str, server: str = "reference", machine: str = "pair") -> float | None:
    """Steps/s of `python -m conformance run` (reference client, profile quick)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-m", "conformance", "run", "--client", "reference", "--server", server,
             "--machine", machine, "--profile", "quick", "--chain", chain, "--trace-dir", tmp],
            capture_output=True, text=True, timeout=900).stdout
    m = _STEPS.search(out)
    if m is None:
        return None
    steps, seconds = int(m.group(2)), float(m.group(3))
    return steps / seconds if seconds else None


def mppx_unavailable() -> str | None:
    if shutil.which("node") is None:
        return "no node on PATH"
    if not (Path(__file__).resolve().parents[1] / "mppx" / "node_modules").is_dir():
        return "adapters/mppx/node_modules missing (run `make mppx`)"
    return None


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
    fast, plain, states = bench_checker()
    print(f"checker states/s ({CHECKER_SCENARIO}, depth {CHECKER_DEPTH}, {states} states): model.fastcheck "
          f"{fast:,.0f}   plain model.check.explore {plain:,.0f}   ratio {fast / plain:.2f}")
    mem, evm = bench_suite("memory"), bench_suite("evm")
    if mem and evm:
        print(f"suite steps/s (reference x reference, pair, quick): memory chain {mem:,.0f}   evm chain {evm:,.0f}   "
              f"ratio evm/memory {evm / mem:.2f}")
    else:
        print(f"suite steps/s: memory {mem}   evm {evm} (a run printed no steps/s)")
    why = mppx_unavailable()
    if why:
        print(f"mppx server: skipped ({why})")
    else:
        ours, theirs = bench_suite("memory", machine="server"), bench_suite("memory", "mppx", machine="server")
        if theirs and ours:
            print(f"suite steps/s (machine server, quick, memory chain): reference server {ours:,.0f}   "
                  f"mppx server (over the bridge) {theirs:,.0f}   ratio reference/mppx {ours / theirs:.2f}")
        else:
            print(f"mppx server: the suite run printed no steps/s ({theirs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
