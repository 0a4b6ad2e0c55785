"""A kill -9 soak: one reference server process, killed and restarted, paid by clients in other processes.

    python -m adapters.reference.soak [--seed 1] [--duration 90] [--kills 10] [--clients 3] [--close-every 20]
                                      [--workdir DIR]

Processes: a chain service (`python -m adapters.chain serve`), a server
(`python -m adapters.reference serve --chain-url ... --db server.sqlite`) and
`--clients` paying clients (`python -m adapters.reference.soak client ...`),
each with its own key, persisted session file and record of what it was
answered. During `--duration` seconds the server gets SIGKILL `--kills` times,
at moments drawn from `--seed`, and is restarted at once on the same port,
SQLite file and chain. Each client sends GET /paid/resource with an
Idempotency-Key per logical request and retries the same key until it is
served, and closes its channel cooperatively every `--close-every` served
requests (so that opens, closes and their crash windows recur); when the run is
over the clients finish the request at hand.

At the end it reads the chain, the server's SQLite store and the clients' own
records, prints and checks three counts, and exits 1 if any is above 0 (or a client
gave up a request, or did not finish):

* lost vouchers: 200 answers whose receipt's acceptedCumulative the store does
  not reflect (its channel is missing, or its acceptedCumulative is lower);
* double charges: charges beyond one per served Idempotency-Key (a key charged
  on two channels, or charged but never answered 200 to its client), plus
  charges (spent / price) a channel has beyond its stored idempotent responses;
* orphaned deposits: channels the chain shows with a deposit, not finalized,
  paying this server, that neither the store nor any client's session file knows.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from typing import Any

import attrs
import httpx

from adapters.chain import ChainError, make_chain
from adapters.chain._common import address_of_key, keccak

from .__main__ import PAYEE_KEY
from .client import PaymentRefused, ServerUnreachable, SessionClient
from .server import PAID_PREFIX

__all__ = ["ServerProcess", "SoakCounts", "start_client", "count_failures", "main"]

PATH = PAID_PREFIX + "resource"
PRICE = 1_000
CLIENT_FUNDS = 10**12
DRAIN_SECONDS = 60.0  # how long a client may take to finish its last request after the run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@attrs.define
class ServerProcess:
    """`python -m adapters.reference serve` on a fixed port, SQLite file and chain URL; restartable."""

    chain_url: str
    db_path: str
    log_dir: str
    port: int = attrs.field(factory=free_port)
    price: int = PRICE
    process: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        self.starts += 1
        log = open(os.path.join(self.log_dir, f"server-{self.starts}.log"), "wb")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "adapters.reference", "serve", "--port", str(self.port), "--chain-url",
                 self.chain_url, "--db", self.db_path, "--price", str(self.price)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(os.path.join(self.log_dir, f"server-{self.starts}.log"), errors="replace") as f:
                    raise RuntimeError(f"server start {self.starts} failed; its output:\n{f.read()[-2000:]}")
            time.sleep(0.05)

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no flush; whatever was not committed is gone."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()


def client_key(seed: int, index: int) -> bytes:
    return keccak(f"tempo-soak|{seed}|client|{index}".encode())


def start_client(
    index: int, seed: int, server_url: str, chain_url: str, workdir: str, *, requests: int | None = None,
    stop_file: str | None = None, close_every: int = 0,
) -> subprocess.Popen:
    """One paying client in its own process; its files are client-<index>.{json,jsonl,log} in `workdir`."""
    cmd = [
        sys.executable, "-m", "adapters.reference.soak", "client", "--server", server_url, "--chain-url", chain_url,
        "--key", client_key(seed, index).hex(), "--name", f"c{index}", "--seed", str(seed),
        "--persist", os.path.join(workdir, f"client-{index}.json"),
        "--records", os.path.join(workdir, f"client-{index}.jsonl"), "--close-every", str(close_every),
    ]
    if requests is not None:
        cmd += ["--requests", str(requests)]
    if stop_file is not None:
        cmd += ["--stop-file", stop_file]
    log = open(os.path.join(workdir, f"client-{index}.log"), "ab")
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()


# ---------------------------------------------------------------------- the client process


class _Recorder:
    """The client's own record: every credential it sent and every answer it got, one JSON line each."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "a", encoding="utf-8")
        self._sent: dict[str, Any] | None = None
        self.key: str | None = None

    def write(self, **event: Any) -> None:
        self._f.write(json.dumps(event, sort_keys=True) + "\n")
        self._f.flush()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "credential":
            self._sent = {k: data.get(k) for k in ("action", "channelId", "cumulativeAmount", "idempotencyKey")}
            self.write(event="sent", **self._sent)
        elif kind == "response" and self._sent is not None:
            self.write(event="answer", status=data["status"], receipt=data.get("receipt"), problem=data.get("problem"),
                       **self._sent)
            self._sent = None


def _client_main(args: argparse.Namespace) -> int:
    key = bytes.fromhex(args.key)
    chain = make_chain("rpc", url=args.chain_url)
    address = address_of_key(key)
    if chain.balance_of(address) == 0:
        chain.fund(key, CLIENT_FUNDS)
    rec = _Recorder(args.records)
    client = SessionClient(
        args.server, key, chain, hinted=True, max_deposit=CLIENT_FUNDS, persist_path=args.persist, max_price=PRICE,
        seed=args.seed * 1000 + sum(args.name.encode()), observer=rec, timeout=15.0,
    )
    started = time.time()
    served = 0
    i = 0
    while True:
        if args.requests is not None and i >= args.requests:
            break
        if args.stop_file and os.path.exists(args.stop_file):
            break
        idem = f"soak-{args.name}-{int(started)}-{i}"
        i += 1
        if _serve_one(client, rec, idem, args.stop_file):
            served += 1
            if args.close_every and served % args.close_every == 0:
                _close(client, rec)
    client.close_http()
    rec.write(event="done", served=served, requests=i)
    return 0


def _serve_one(client: SessionClient, rec: _Recorder, idem: str, stop_file: str | None) -> bool:
    """Retry one logical request (same Idempotency-Key) until it is served, or DRAIN_SECONDS after the stop."""
    stop_seen: float | None = None
    while True:
        why: str
        try:
            resp = client.request("GET", PATH, idempotency_key=idem)
            if resp.status_code == 200:
                rec.write(event="served", key=idem, receipt=_receipt(resp))
                return True
            why = f"status {resp.status_code}"
        except ServerUnreachable as exc:
            why = f"unreachable: {exc}"
        except (PaymentRefused, ChainError, httpx.HTTPError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        rec.write(event="retry", key=idem, why=why[:300])
        if stop_file and os.path.exists(stop_file):
            stop_seen = stop_seen or time.monotonic()
            if time.monotonic() - stop_seen > DRAIN_SECONDS:
                rec.write(event="gave_up", key=idem)
                return False
        time.sleep(0.2)


def _close(client: SessionClient, rec: _Recorder) -> None:
    """A cooperative close of the current channel; a failure is recorded and the client goes on
    (it opens a new channel once the chain shows this one finalized, else keeps paying on it)."""
    try:
        resp = client.close(PATH)
        rec.write(event="closed", status=None if resp is None else resp.status_code)
    except (ServerUnreachable, PaymentRefused, ChainError, httpx.HTTPError) as exc:
        rec.write(event="close_failed", why=f"{type(exc).__name__}: {exc}"[:300])


def _receipt(resp: httpx.Response) -> dict[str, Any] | None:
    from wire import WireError, parse_receipt

    try:
        return parse_receipt(resp.headers["payment-receipt"]).to_wire()
    except (KeyError, WireError):
        return None


# ---------------------------------------------------------------------- the checks


@attrs.frozen
class SoakCounts:
    lost_vouchers: int
    double_charges: int
    orphaned_deposits: int
    served: int
    details: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.lost_vouchers == 0 and self.double_charges == 0 and self.orphaned_deposits == 0


def _read_records(workdir: str) -> list[dict[str, Any]]:
    events = []
    for name in sorted(os.listdir(workdir)):
        if name.startswith("client-") and name.endswith(".jsonl"):
            with open(os.path.join(workdir, name), encoding="utf-8") as f:
                events += [json.loads(line) for line in f if line.strip()]
    return events


def _client_channels(workdir: str) -> set[str]:
    known: set[str] = set()
    for name in os.listdir(workdir):
        if name.startswith("client-") and name.endswith(".json"):
            with open(os.path.join(workdir, name), encoding="utf-8") as f:
                known |= {c.lower() for c in json.load(f).get("channels", {})}
    return known


def count_failures(workdir: str, db_path: str, chain_url: str, price: int = PRICE) -> SoakCounts:
    """The three counts, from the chain, the server's store (read only) and the clients' records."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        stored = {
            cid: (int(acc), int(spent))
            for cid, acc, spent in db.execute("SELECT channel_id, accepted_cumulative, spent FROM channels")
        }
        charged_keys = db.execute("SELECT channel_id, key FROM idempotency").fetchall()
    finally:
        db.close()
    events = _read_records(workdir)
    details: list[str] = []

    # Lost vouchers: what a 200's receipt said was accepted must be in the store.
    lost = 0
    served = [e for e in events if e["event"] == "served"]
    for e in served:
        r = e.get("receipt") or {}
        cid, acc = str(r.get("channelId", "")).lower(), int(r.get("acceptedCumulative", 0))
        have = stored.get(cid)
        if have is None or have[0] < acc:
            lost += 1
            details.append(f"lost voucher: {e['key']} answered 200 with acceptedCumulative {acc} on {cid}; "
                           f"the store has {'nothing' if have is None else have[0]}")

    # Double charges: one charge per served key, and no charge without a stored key.
    served_keys = Counter(e["key"] for e in served)
    charges_per_key = Counter(k for _, k in charged_keys)
    double = 0
    for key, n in charges_per_key.items():
        extra = n - min(1, served_keys.get(key, 0))
        if extra > 0:
            double += extra
            details.append(f"double charge: {key} charged {n}x, served {served_keys.get(key, 0)}x")
    rows_per_channel = Counter(c for c, _ in charged_keys)
    for cid, (_, spent) in stored.items():
        extra = spent // price - rows_per_channel.get(cid, 0)
        if extra > 0:
            double += extra
            details.append(f"double charge: channel {cid} spent {spent} = {spent // price} charges, "
                           f"{rows_per_channel.get(cid, 0)} stored requests")

    # Orphaned deposits: escrowed for this server, known to nobody who could use or close them.
    chain = make_chain("rpc", url=chain_url)
    payee = address_of_key(PAYEE_KEY)
    known = set(stored) | _client_channels(workdir)
    orphaned = 0
    for cid in chain.opened_channel_ids(payee):
        st = chain.get_channel(cid)
        if st.deposit > 0 and not st.finalized and cid not in known:
            orphaned += 1
            details.append(f"orphaned deposit: channel {cid} holds {st.deposit} (payer {st.payer})")
    return SoakCounts(lost, double, orphaned, len(served), tuple(details))


# ---------------------------------------------------------------------- the run


def run_soak(
    seed: int, duration: float, kills: int, clients: int, workdir: str, chain_url: str | None, close_every: int = 20,
) -> int:
    from adapters.chain.service import start_chain_service

    rng = random.Random(seed)
    service = None
    if chain_url is None:
        service = start_chain_service(log_dir=workdir)
        chain_url = service.url
    server = ServerProcess(chain_url, os.path.join(workdir, "server.sqlite"), workdir)
    procs: list[subprocess.Popen] = []
    stop_file = os.path.join(workdir, "stop")
    try:
        server.start()
        procs = [start_client(i, seed, server.url, chain_url, workdir, stop_file=stop_file, close_every=close_every)
                 for i in range(clients)]
        started = time.monotonic()
        # Kills at random moments of the first 80% of the run, so that the end sees a server that stays up.
        moments = sorted(rng.uniform(0.05, 0.8) * duration for _ in range(kills))
        for at in moments:
            time.sleep(max(0.0, started + at - time.monotonic()))
            server.kill9()
            print(f"  t={time.monotonic() - started:5.1f}s kill -9 server (start {server.starts})", flush=True)
            server.start()
        time.sleep(max(0.0, started + duration - time.monotonic()))
        open(stop_file, "w").close()
        stuck = 0
        for p in procs:
            try:
                p.wait(timeout=DRAIN_SECONDS + 60)
            except subprocess.TimeoutExpired:
                stuck += 1
                p.kill()
                p.wait()
        elapsed = time.monotonic() - started
        server.stop()
        counts = count_failures(workdir, server.db_path, chain_url)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        server.stop()
        if service is not None:
            service.stop()
    events = _read_records(workdir)
    retries = Counter(e["why"].split(":")[0] for e in events if e["event"] == "retry")
    gave_up = sum(e["event"] == "gave_up" for e in events)
    opens = sum(e["event"] == "sent" and e["action"] == "open" for e in events)
    closes = Counter(str(e.get("status")) for e in events if e["event"] == "closed")
    close_failed = sum(e["event"] == "close_failed" for e in events)
    print(f"kill -9 soak: seed {seed}, {clients} clients, {kills} kills in {duration:.0f}s "
          f"({server.starts} server starts); {counts.served} requests served in {elapsed:.0f}s "
          f"({counts.served / elapsed:.1f}/s); {opens} open credentials sent; closes {dict(closes)}, "
          f"{close_failed} failed; retries {dict(retries)}; gave up {gave_up}; stuck clients {stuck}")
    for line in counts.details[:20]:
        print("  " + line)
    print(f"lost vouchers: {counts.lost_vouchers}")
    print(f"double charges: {counts.double_charges}")
    print(f"orphaned deposits: {counts.orphaned_deposits}")
    print(f"clients that gave up a request: {gave_up}")
    print(f"(records, logs and the store are in {workdir})")
    return 0 if counts.ok and not stuck and not gave_up else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m adapters.reference.soak")
    sub = ap.add_subparsers(dest="cmd")
    c = sub.add_parser("client", help="(internal) one paying client process")
    c.add_argument("--server", required=True)
    c.add_argument("--chain-url", required=True)
    c.add_argument("--key", required=True, help="the payer's private key, hex")
    c.add_argument("--name", required=True)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--persist", required=True)
    c.add_argument("--records", required=True)
    c.add_argument("--requests", type=int, default=None, help="stop after this many logical requests")
    c.add_argument("--stop-file", default=None, help="stop once this file exists")
    c.add_argument("--close-every", type=int, default=0, help="close the channel after every N served requests")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duration", type=float, default=90.0, help="seconds of paying and killing (default 90)")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--close-every", type=int, default=20, help="each client closes its channel every N served requests")
    ap.add_argument("--workdir", default=None, help="where records, logs and the store go (default: a new temp dir)")
    ap.add_argument("--chain-url", default=None, help="an existing chain service (default: start one)")
    args = ap.parse_args(argv)
    if args.cmd == "client":
        return _client_main(args)
    if args.duration <= 0 or args.kills < 0 or args.clients < 1 or args.close_every < 0:
        ap.error("--duration must be > 0, --kills >= 0, --clients >= 1, --close-every >= 0")
    workdir = args.workdir or tempfile.mkdtemp(prefix="tempo-soak-")
    os.makedirs(workdir, exist_ok=True)
    return run_soak(args.seed, args.duration, args.kills, args.clients, workdir, args.chain_url, args.close_every)


if __name__ == "__main__":
    sys.exit(main())
