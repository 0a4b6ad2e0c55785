"""Command line of the reference implementations.

    python -m adapters.reference demo [--hints|--legacy] [--server hinted|legacy] [--chain memory|evm|memory-v2|evm-v2]
                                      [--chain-url URL] [--requests N] [--restart-client] [--hint-encoding flat|snapshot]
    python -m adapters.reference serve [--port P] [--chain memory|evm|memory-v2|evm-v2] [--chain-url URL] [--hints|--legacy] [--db PATH]
                                     [--hint-encoding flat|snapshot]

`--chain-url` pays through a chain in another process (any JSON-RPC node, e.g.
`python -m adapters.chain serve`): clients in other processes can pay the same
server, and a restarted server finds its channels still there.

`demo` starts a server on 127.0.0.1 (a free port), runs a client through N paid
requests and prints every exchange the way the seed's sequence diagrams read;
it exits 0 iff every request was served. `serve` runs a standalone server.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

from adapters.chain import ChainError, make_chain
from wire.profiles import HINT_ENCODINGS, encoding_of_profile

from .client import PaymentRefused, SessionClient
from .server import PAID_PREFIX, ServerConfig, SessionServer, serve
from .serving import ServingLimits, uvicorn_config

PAYEE_KEY = bytes.fromhex("a1" * 32)
PAYER_KEY = bytes.fromhex("b2" * 32)


def _short(value: Any) -> str:
    text = str(value)
    return text[:10] + "…" + text[-4:] if text.startswith("0x") and len(text) > 18 else text


def _hints_text(request: dict[str, Any] | None) -> str:
    if not request:
        return "(no decodable request)"
    md = request.get("methodDetails", {})
    parts = [f"price {request.get('amount')}"]
    snap = md.get("sessionSnapshot")
    if snap:
        hv = snap.get("highestVoucher")
        parts.append(
            "hints[snapshot: sessionSnapshot]: channelId={} acceptedCumulative={} spent={} deposit={} settled={} "
            "requiredCumulative={}{}".format(
                _short(snap["channelId"]), snap["acceptedCumulative"], snap["spent"], snap["deposit"],
                snap["settled"], snap["requiredCumulative"],
                f" highestVoucher={hv['cumulativeAmount']}" if hv else "",
            )
        )
    elif "acceptedCumulative" in md or "requiredCumulative" in md:
        parts.append(
            "hints[flat]: channelId={} acceptedCumulative={} spent={} deposit={} requiredCumulative={}".format(
                _short(md.get("channelId")), md.get("acceptedCumulative"), md.get("spent"), md.get("deposit"),
                md.get("requiredCumulative"),
            )
        )
    elif "channelId" in md:
        parts.append(f"hint: channelId={_short(md['channelId'])} only (legacy server)")
    else:
        parts.append("no hints")
    if "suggestedDeposit" in request:
        parts.append(f"suggestedDeposit {request['suggestedDeposit']}")
    return ", ".join(parts)


class _Printer:
    def __init__(self, out=sys.stdout) -> None:
        self.out = out

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        p = lambda s: print(s, file=self.out)  # noqa: E731
        if kind == "challenge":
            p(f"  Client -> Server : {data['method']} {data['path']}")
            p(f"  Server -> Client : 402 {data.get('problem')}; {_hints_text(data.get('request'))}")
        elif kind == "credential":
            what = f"action={data['action']} channelId={_short(data['channelId'])}"
            if data.get("cumulativeAmount") is not None:
                what += f" cumulativeAmount={data['cumulativeAmount']}"
            if data.get("additionalDeposit") is not None:
                what += f" additionalDeposit={data['additionalDeposit']}"
            p(f"  Client -> Server : {data['method']} {data['path']} + Authorization: Payment {what}")
        elif kind == "response":
            if data.get("receipt"):
                r = data["receipt"]
                extra = f" txHash={_short(r['txHash'])}" if r.get("txHash") else ""
                p(
                    f"  Server -> Client : {data['status']} + Payment-Receipt: channelId={_short(r['channelId'])} "
                    f"acceptedCumulative={r['acceptedCumulative']} spent={r['spent']}"
                    + (f" units={r['units']}" if r.get("units") is not None else "")
                    + extra
                )
            else:
                p(f"  Server -> Client : {data['status']} {data.get('problem', '')} {data.get('detail', '') or ''}".rstrip())


def _chain(args: argparse.Namespace):
    """The chain named on the command line: --chain-url (an RpcChain) or an in-process --chain."""
    if args.chain_url:
        try:
            return make_chain("rpc", url=args.chain_url)
        except ChainError as exc:
            raise SystemExit(f"--chain-url {args.chain_url}: {exc}") from None
    return make_chain(args.chain)


def _demo(args: argparse.Namespace) -> int:
    chain = _chain(args)
    payee = chain.fund(PAYEE_KEY, 10**12)
    payer = chain.fund(PAYER_KEY, 10**12)
    hinted_client = not args.legacy
    hinted_server = args.server == "hinted"
    with tempfile.TemporaryDirectory(prefix="tempo-demo-") as tmp:
        cfg = ServerConfig(
            chain=chain, payee_key=PAYEE_KEY, db_path=os.path.join(tmp, "server.sqlite"), price=args.price,
            hinted=hinted_server, hint_encoding=args.hint_encoding, suggested_deposit=args.deposit,
        )
        print(
            f"chain {chain.name} (id {chain.chain_id}), escrow {chain.escrow}, token {chain.token}\n"
            f"server: {'hinted' if hinted_server else 'legacy'}, {args.hint_encoding} hints, price {args.price}, payee {payee}\n"
            f"client: {'hinted' if hinted_client else 'legacy'}, payer {payer}, max_deposit {args.max_deposit}"
        )
        served = 0
        with serve(cfg) as running:
            print(f"server listening on {running.url}\n")
            client = SessionClient(
                running.url, PAYER_KEY, chain, hinted=hinted_client, max_deposit=args.max_deposit,
                max_unproven_hint=args.max_unproven_hint, max_price=args.price, observer=_Printer(),
            )
            restart_at = args.requests // 2 if args.restart_client else -1
            started = time.monotonic()
            for i in range(args.requests):
                if i == restart_at:
                    client.restart()
                    print("-- client restarted: volatile state dropped, no persisted file --\n")
                print(f"request {i + 1}: GET {PAID_PREFIX}resource")
                try:
                    resp = client.request("GET", PAID_PREFIX + "resource")
                except PaymentRefused as exc:
                    print(f"  client refused to pay: {type(exc).__name__}: {exc}\n")
                    continue
                ok = resp.status_code == 200
                served += ok
                print(f"  => {'served' if ok else 'NOT served'} ({resp.status_code})\n")
            elapsed = time.monotonic() - started
            client.close_http()
            for rec in running.server.records():
                print(
                    f"server record {rec.channel_id}: deposit {rec.deposit} acceptedCumulative "
                    f"{rec.accepted_cumulative} spent {rec.spent} units {rec.units} settled {rec.settled}"
                )
        print(f"\n{served}/{args.requests} requests served in {elapsed:.2f}s")
    return 0 if served == args.requests else 1


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    chain = _chain(args)
    payee = chain.fund(PAYEE_KEY, 10**12)
    db = args.db or os.path.join(tempfile.mkdtemp(prefix="tempo-serve-"), "server.sqlite")
    server = SessionServer(ServerConfig(
        chain=chain, payee_key=PAYEE_KEY, db_path=db, price=args.price, hinted=not args.legacy,
        hint_encoding=args.hint_encoding,
    ))
    print(
        f"reference session server: http://{args.host}:{args.port}{PAID_PREFIX}* (content costs {args.price})\n"
        f"chain {chain.name} id {chain.chain_id} escrow {chain.escrow} token {chain.token}\n"
        f"payee {payee}; db {db}; {'legacy' if args.legacy else 'hinted'} ({args.hint_encoding} hints)",
        flush=True,
    )
    # header-read timeout, connection limit, rate-limited logging (adapters/reference/serving.py)
    uvicorn.Server(uvicorn_config(server.app, args.host, args.port, ServingLimits())).run()
    return 0


def _hint_encoding_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hint-encoding", choices=HINT_ENCODINGS, default="snapshot",
                   help="how challenges carry hints: flat methodDetails fields, or sessionSnapshot with highestVoucher")
    p.add_argument("--profile", dest="hint_encoding", type=encoding_of_profile, metavar="v1|v2",
                   help="deprecated alias of --hint-encoding: v1 = flat, v2 = snapshot")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m adapters.reference")
    sub = ap.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo", help="server + client through N paid requests, printed")
    mode = d.add_mutually_exclusive_group()
    mode.add_argument("--hints", action="store_true", help="hinted client (default)")
    mode.add_argument("--legacy", action="store_true", help="legacy client")
    d.add_argument("--server", choices=("hinted", "legacy"), default="hinted")
    d.add_argument("--chain", choices=("memory", "evm", "memory-v2", "evm-v2"), default="memory")
    d.add_argument("--chain-url", default=None, help="a JSON-RPC chain in another process (overrides --chain)")
    d.add_argument("--requests", type=int, default=5)
    d.add_argument("--restart-client", action="store_true", help="restart the client (no persisted file) midway")
    _hint_encoding_options(d)
    d.add_argument("--price", type=int, default=1_000)
    d.add_argument("--deposit", type=int, default=100_000, help="the server's suggestedDeposit")
    d.add_argument("--max-deposit", type=int, default=1_000_000)
    d.add_argument("--max-unproven-hint", type=int, default=0)

    s = sub.add_parser("serve", help="run a standalone reference server")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--hints", action="store_true", help="hinted server (default)")
    mode.add_argument("--legacy", action="store_true", help="legacy server (channelId hint only)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8402)
    s.add_argument("--chain", choices=("memory", "evm", "memory-v2", "evm-v2"), default="memory")
    s.add_argument("--chain-url", default=None, help="a JSON-RPC chain in another process (overrides --chain)")
    s.add_argument("--db", default=None)
    _hint_encoding_options(s)
    s.add_argument("--price", type=int, default=1_000)

    args = ap.parse_args(argv)
    if args.cmd == "demo":
        if args.requests < 0:
            ap.error("--requests must be >= 0")
        return _demo(args)
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
