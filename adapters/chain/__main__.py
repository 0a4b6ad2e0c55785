"""Command line of the chain backends.

    python -m adapters.chain serve [--port 8545] [--backend evm]

`serve` runs the chain as its own process: the escrow and test token on the evm
backend, served as standard Ethereum JSON-RPC on 127.0.0.1 (service.py says
which methods, and the test-only ones). It prints one line
"tempo chain service: http://127.0.0.1:PORT chainId=... escrow=... token=..."
once it accepts connections (--port 0: a free port) and runs until SIGINT/SIGTERM.
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m adapters.chain")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve a chain over JSON-RPC on 127.0.0.1")
    s.add_argument("--port", type=int, default=8545, help="TCP port on 127.0.0.1 (0: any free port)")
    s.add_argument("--backend", choices=("evm",), default="evm",
                   help="the chain behind the JSON-RPC (only evm speaks Ethereum transactions)")
    args = ap.parse_args(argv)
    if not 0 <= args.port <= 65535:
        ap.error(f"--port {args.port} is not a TCP port")
    from .service import run

    run(port=args.port, backend=args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
