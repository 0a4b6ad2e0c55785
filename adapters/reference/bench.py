"""Benchmarks, reported as ratios measured in one run (machines here are shared and noisy).

    python -m adapters.reference.bench [--seconds S]

- voucher verifications/s (wire.crypto.recover_voucher_signer: digest + canonical checks +
  recovery + address) against raw coincurve recoveries/s of the same signature;
- paid requests/s of the reference server on loopback (memory chain), one hinted client, in one
  round trip (challenge reuse) beside the 402 flow (two round trips); the same in process (no
  sockets), for the ratio of HTTP overhead to payment logic; `--clients` clients in parallel
  (one thread, payer and channel each), with the store's commits per WAL sync (group commit);
- when Node and adapters/mppx/node_modules are present: the reference server in process on a v2
  deployment (memory-v2) beside mppx's session server in one Node process on the same workload
  (adapters/mppx/bench-server.mjs: one payer, a v2 voucher per request signed in the loop, one
  challenge reused), as a ratio;
- the model checker's states/s (model.fastcheck, what `make check` runs) against the plain
  explorer's (model.check.explore) on the same scenarios and depth, interleaved (their state and
  transition counts must agree); with --checker-depth D, also the wall time of every scenario at D;
- the conformance suite's steps/s per chain (memory, evm): reference client x reference
  server, machine `pair`, profile ci;
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
from wire.crypto import VoucherDomain, keccak, parse_signature, recover_voucher_signer, sign_voucher, voucher_digest

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


def bench_server(seconds: float, over_sockets: bool, reuse: bool = True, clients: int = 1,
                 chain_name: str = "memory") -> float:
    """Paid requests/s of `clients` hinted clients (one thread, payer and channel each) against one
    reference server on the memory chain, over loopback or in process; `reuse`: one round trip per
    request (challenge reuse), else the 402 flow (an unpaid request, then the paid one)."""
    import threading

    chain = make_chain(chain_name)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ServerConfig(chain=chain, payee_key=bytes.fromhex("a1" * 32), db_path=f"{tmp}/bench.sqlite", price=1,
                           voucher_rate=None)  # one client at full speed on one channel: no per-channel limit
        server = SessionServer(cfg)
        running = serve(server) if over_sockets else None
        payers = [keccak(b"bench-payer-%d" % i) for i in range(clients)]
        for payer in payers:
            chain.fund(payer, 10**12)
        target = (lambda: running.url) if running is not None else (lambda: _InProcess(server))
        pool = [SessionClient(target(), payer, chain, hinted=True, max_deposit=10**11, max_price=1,
                              reuse_challenge=reuse) for payer in payers]
        counts = [0] * clients
        try:
            for c in pool:
                assert c.request("GET", "/paid/resource").status_code == 200  # opens the channel
            start = time.perf_counter()

            def pay(i: int) -> None:
                while time.perf_counter() - start < seconds:
                    resp = pool[i].request("GET", "/paid/resource")
                    assert resp.status_code == 200, resp.status_code
                    counts[i] += 1

            threads = [threading.Thread(target=pay, args=(i,)) for i in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rate = sum(counts) / (time.perf_counter() - start)
            _SYNCS.update(commits=server.store.sync._committed, syncs=server.store.sync.syncs)
            return rate
        finally:
            for c in pool:
                c.close_http()
            if running is not None:
                running.stop()
            else:
                server.close()


class _InProcess(httpx.BaseTransport):
    """A synchronous in-process transport over SessionServer.handle (no sockets)."""

    def __init__(self, server: SessionServer) -> None:
        self.server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        reply = self.server.handle(request.method, request.url.path, dict(request.headers))
        return httpx.Response(reply.status, headers=list(reply.headers), content=reply.body, request=request)


CHECKER_SCENARIOS, CHECKER_DEPTH = ("rollout mix p=1", "snapshot hints, faults p=1", "third party, faults p=1"), 5


def bench_checker(rounds: int = 1) -> tuple[float, float, int]:
    """(fast states/s, plain states/s, states per round): the same explorations (CHECKER_SCENARIOS at
    CHECKER_DEPTH) by model.fastcheck and by the plain model.check.explore, alternated scenario by
    scenario so that both explorers see the same machine load; the counts must agree."""
    from model import check, fastcheck
    from model.scenarios import default_scenarios

    by_name = {s.name: s for s in default_scenarios()}
    spent = {"fast": 0.0, "plain": 0.0}
    states = 0
    for _ in range(rounds):
        for name in CHECKER_SCENARIOS:
            got = {}
            for which, explore in (("plain", check.explore), ("fast", fastcheck.explore)):
                res = explore(by_name[name].config, CHECKER_DEPTH)
                spent[which] += res.seconds
                got[which] = (res.states, res.transitions)
            assert got["fast"] == got["plain"], (name, got)
            states += got["fast"][0]
    return states / spent["fast"], states / spent["plain"], states // rounds


def bench_checker_wall(depth: int, jobs: int = 2) -> tuple[float, int]:
    """(wall seconds, states) of `python -m model.check --depth D --jobs J --quiet` over every scenario."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "model.check", "--depth", str(depth), "--jobs", str(jobs),
                          "--quiet"], capture_output=True, text=True, timeout=3600).stdout
    wall = time.perf_counter() - start
    m = re.search(r"summary: (\d+) states", out)
    return wall, int(m.group(1)) if m else -1


_STEPS = re.compile(r"\((\d+) examples, (\d+) steps, ([\d.]+)s, (\d+) steps/s\)")
SUITE_PROFILE = "ci"


def bench_suite(chain: str, server: str = "reference", machine: str = "pair", client: str = "reference",
                profile: str = SUITE_PROFILE) -> float | None:
    """Steps/s of `python -m conformance run` (the run's own count of steps over its exploring time)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-m", "conformance", "run", "--client", client, "--server", server,
             "--machine", machine, "--profile", profile, "--chain", chain, "--trace-dir", tmp],
            capture_output=True, text=True, timeout=900).stdout
    m = _STEPS.search(out)
    if m is None:
        return None
    steps, seconds = int(m.group(2)), float(m.group(3))
    return steps / seconds if seconds else None


_SYNCS: dict[str, int] = {}  # the last bench_server run: commits and WAL syncs of its store


def _sync_note() -> str:
    commits, syncs = _SYNCS.get("commits", 0), _SYNCS.get("syncs", 0)
    return f"{commits:,} commits in {syncs:,} WAL syncs" + (f", {commits / syncs:.1f} per sync" if syncs else "")


_MPPX_DIR = Path(__file__).resolve().parents[1] / "mppx"
MPPX_LABEL = "?"


def bench_mppx_server(seconds: float, mode: str = "reuse") -> float | str:
    """Paid requests/s of mppx's session server in one Node process on the reference bench's workload
    (adapters/mppx/bench-server.mjs: one payer and channel, one v2 voucher per request, signed in the
    loop; `reuse`: one challenge for every credential); a string says why it did not run."""
    global MPPX_LABEL
    why = mppx_unavailable()
    if why:
        return why
    import json

    MPPX_LABEL = json.loads((_MPPX_DIR / "node_modules" / "mppx" / "package.json").read_text())["version"]
    out = subprocess.run(["node", str(_MPPX_DIR / "bench-server.mjs"), str(seconds), mode], capture_output=True,
                         text=True, timeout=300)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return f"bench-server.mjs failed: {(lines[-1] if lines else out.stderr[-300:])}"
    return float(json.loads(lines[-1])["rate"])


def mppx_unavailable() -> str | None:
    if shutil.which("node") is None:
        return "no node on PATH"
    if not (Path(__file__).resolve().parents[1] / "mppx" / "node_modules").is_dir():
        return "adapters/mppx/node_modules missing (run `make mppx`)"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m adapters.reference.bench")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--clients", type=int, default=4, help="clients in parallel for the second server figure")
    ap.add_argument("--checker-depth", type=int, default=0,
                    help="also time `model.check` over every scenario at this depth (2 jobs; minutes at 8)")
    a = ap.parse_args(argv)
    ours, raw = bench_crypto(a.seconds)
    print(f"voucher verifications/s: {ours:,.0f}   raw coincurve recoveries/s: {raw:,.0f}   ratio {ours / raw:.2f}")
    loop = bench_server(a.seconds, over_sockets=True)
    flow = bench_server(a.seconds, over_sockets=True, reuse=False)
    inproc = bench_server(a.seconds, over_sockets=False)
    many = bench_server(a.seconds, over_sockets=True, clients=a.clients)
    print(f"paid requests/s on loopback (memory chain), one client: one round trip (challenge reuse) {loop:,.0f}   "
          f"402 flow {flow:,.0f}   ratio {loop / flow:.2f};   in-process (no sockets) {inproc:,.0f}   "
          f"ratio loopback/in-process {loop / inproc:.2f}")
    print(f"paid requests/s on loopback, {a.clients} clients in parallel: {many:,.0f}   ratio to one client "
          f"{many / loop:.2f}   (group commit: {_sync_note()})")
    mppx = bench_mppx_server(a.seconds)
    if isinstance(mppx, str):
        print(f"mppx server in-process: skipped ({mppx})")
    else:
        v2 = bench_server(a.seconds, over_sockets=False, chain_name="memory-v2")
        print(f"paid requests/s in process, v2 vouchers, one payer, one voucher per request, client signing "
              f"included, one challenge reused: reference server (memory-v2, SQLite) {v2:,.0f}   mppx {MPPX_LABEL} "
              f"server (Store.memory, fake chain) {mppx:,.0f}   ratio reference/mppx {v2 / mppx:.2f}")
    fast, plain, states = bench_checker()
    print(f"checker states/s ({', '.join(CHECKER_SCENARIOS)}; depth {CHECKER_DEPTH}; {states} states): "
          f"model.fastcheck {fast:,.0f}   plain model.check.explore {plain:,.0f}   ratio {fast / plain:.2f}")
    if a.checker_depth:
        wall, total = bench_checker_wall(a.checker_depth)
        print(f"checker, every scenario at depth {a.checker_depth} with 2 jobs: {total:,} states in {wall:.0f} s wall")
    mem, evm = bench_suite("memory"), bench_suite("evm")
    if mem and evm:
        print(f"suite steps/s (reference x reference, pair, {SUITE_PROFILE}): memory chain {mem:,.0f}   "
              f"evm chain {evm:,.0f}   ratio evm/memory {evm / mem:.2f}")
    else:
        print(f"suite steps/s: memory {mem}   evm {evm} (a run printed no steps/s)")
    why = mppx_unavailable()
    if why:
        print(f"mppx server: skipped ({why})")
    else:
        ours, theirs = bench_suite("memory", machine="server"), bench_suite("memory", "mppx", machine="server")
        if theirs and ours:
            print(f"suite steps/s (machine server, {SUITE_PROFILE}, memory chain): reference server {ours:,.0f}   "
                  f"mppx server (over the bridge) {theirs:,.0f}   ratio reference/mppx {ours / theirs:.2f}")
        else:
            print(f"mppx server: the suite run printed no steps/s ({theirs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
