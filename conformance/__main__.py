"""The conformance CLI.

    python -m conformance run --client X --server Y [--chain memory|evm|memory-v2|evm-v2] [--profile quick|ci|deep]
                              [--seed N] [--strength must|strict] [--machine pair|server|client]
                              [--hint-encoding flat|snapshot]
                              [--report out.json] [--junit out.xml] [--html out.html]
    python -m conformance matrix [--chain memory|evm] [--deployments v1,v2] [--profile ...]
                                                                 every bundled client x server pair on each deployment
    python -m conformance mutants [--profile quick]              every known-bad implementation must be killed
    python -m conformance replay FILE                            run a saved steps file again

X, Y: a bundled name (reference, legacy, model, model-legacy, mppx), `mutant:<name>`, package.module:factory, or
`bridge:PATH/TO/manifest.json`: any adapter speaking adapters/bridge/PROTOCOL.md (mppx = bridge:adapters/mppx/
manifest.json), driven through the v2 machines; a missing path or an invalid manifest exits 2.
Exit status 0 only when every claimed property held or every violation is an expected divergence listed in
conformance/expectations.py (mppx: FINDINGS.md); a pair that cannot run here is reported SKIPPED with the reason
(matrix: every pair as expected; mutants: all killed).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import attrs

from .harness import RunConfig
from .progress import ProgressLine
from .runner import PairReport, junit, replay, run_pair
from wire.profiles import HINT_ENCODINGS, encoding_of_profile


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def as_expected(r: PairReport) -> bool:
    """Every violated property is an expected divergence of the pair (conformance/expectations.py), no error,
    no unexpected violation. A skipped pair is not a failure (and is never reported as passed)."""
    from .expectations import expected_for

    if r.skipped:
        return True
    if r.error or r.unexpected:
        return False
    allowed = {pid for pid, _ in expected_for(r.client, r.server, r.machine, r.strength)}
    violated = {k for k, v in r.properties.items() if v.startswith("VIOLATED")}
    return violated <= allowed and (r.ok or bool(violated))


def _print_report(r: PairReport, verbose: bool = True) -> None:
    if r.skipped:
        print(f"SKIPPED  {r.machine:6} client={r.client} server={r.server} strength={r.strength}: {r.skipped}")
        return
    head = "PASS" if r.ok else ("AS EXPECTED" if as_expected(r) else "FAIL")
    print(f"{head}  {r.machine:6} client={r.client} server={r.server} strength={r.strength} "
          f"({r.examples} examples, {r.steps} steps, {r.seconds:.1f}s, {r.steps_per_second:.0f} steps/s)")
    if r.drives:
        print(f"    drives: {r.drives}")
    if verbose:
        for pid, status in r.properties.items():
            print(f"    {pid:3} {status}")
    if r.findings:
        from .expectations import MPPX_FINDINGS

        print("  known divergences seen (FINDINGS.md), each with its minimal trace:")
        for fid, d in sorted(r.findings.items(), key=lambda kv: int(kv[0][1:])):
            cls, title, _ = MPPX_FINDINGS.get(fid, ("?", "?", "?"))
            print(f"  {fid} [{cls}] {title}")
            print(f"     {d['property']}: {d['message']}")
            if verbose:
                print("\n".join("       " + line for line in d["steps"].splitlines()))
            print(f"     replay: python -m conformance replay {d['trace_file']}")
    if r.unexpected:
        print("  UNEXPECTED: " + "; ".join(r.unexpected))
    if not r.ok and (r.error or r.unexpected or not r.findings):
        if r.error:
            print(f"  error: {r.error}")
        print("  minimal failing trace:")
        print("\n".join("    " + line for line in (r.failure or "").splitlines()))
        if r.mermaid:
            print("\n  mermaid:\n" + "\n".join("    " + line for line in r.mermaid.splitlines()))
        if r.trace_file:
            print(f"\n  replay: python -m conformance replay {r.trace_file}")


def _chain(args, client: str, server: str) -> str:
    """--chain, or by default: the deployment a bridge adapter's release speaks (mppx 0.7+: memory-v2; a v1-only
    release: memory), else the v1 memory escrow."""
    from .bridge_spec import is_bridge
    from .runner import spoken_chain

    if args.chain:
        return args.chain
    bridge = next((s for s in (server, client) if is_bridge(s)), None)
    return spoken_chain(bridge) if bridge else "memory"


def _rc(args, client: str, server: str, strength: str | None = None) -> RunConfig:
    return RunConfig(client=client, server=server, chain=_chain(args, client, server), seed=args.seed,
                     hint_encoding=getattr(args, "hint_encoding", "snapshot"),
                     strength=strength or getattr(args, "strength", "must"),
                     faults=not getattr(args, "no_faults", False))


def _check_bridge(*specs: str) -> int | None:
    """2 (after printing the message) when a bridge: spec names a missing path or an invalid manifest."""
    from .bridge_spec import BridgeSpecError, check_specs

    try:
        check_specs(*specs)
    except BridgeSpecError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return None


def _whole_run_skipped(client: str, server: str) -> str | None:
    """Why no machine can test the adapter (it lacks an essential op, per its hello), or None."""
    from .bridge_spec import is_bridge

    if is_bridge(client) == is_bridge(server):
        return None
    from .runner import essential_missing

    spec, side = (server, "server") if is_bridge(server) else (client, "client")
    return essential_missing(spec, side)


def cmd_run(args) -> int:
    code = _check_bridge(args.client, args.server)
    if code is not None:
        return code
    reports = []
    machines = ["pair", "server", "client"] if args.machine == "all" else [args.machine]
    try:
        whole = _whole_run_skipped(args.client, args.server)
    except Exception:  # a built adapter that does not start: a failure, reported by each machine
        whole = None
    if whole is not None:
        print(f"SKIPPED  the whole run: client={args.client} server={args.server}: {whole}")
    with ProgressLine(len(machines)) as line:  # a live line on a terminal, nothing otherwise
        for m in machines:
            rc = _rc(args, args.client, args.server)
            _progress(f"running {m} machine: client={rc.client} server={rc.server} profile={args.profile}")
            line.start(f"{m}: {rc.client} x {rc.server}")
            r = run_pair(rc, args.profile, m, line, args.trace_dir, shrink=not args.no_shrink)
            line.finish(r)
            reports.append(r)
            _print_report(r)
    _write(args, reports)
    return 0 if all(as_expected(r) for r in reports) else 1


def _write(args, reports) -> None:
    if getattr(args, "report", None):
        with open(args.report, "w") as f:
            json.dump([r.to_json() for r in reports], f, indent=1)
    if getattr(args, "junit", None):
        junit(reports, args.junit)
    if getattr(args, "html", None):
        from .html_report import write_html

        write_html(reports, args.html, "python -m conformance " + " ".join(args.argv))


def cmd_matrix(args) -> int:
    from .expectations import MATRIX, expected_for

    code = _check_bridge(*{x for row in MATRIX for x in row[:2]})
    if code is not None:
        return code
    reports, rows, all_ok = [], [], True
    skip_notes: dict = {}
    runs = _matrix_runs(args, MATRIX)
    line = ProgressLine(len(runs)).__enter__()
    for chain, (client, server, machine, strength) in runs:
        rc = attrs.evolve(_rc(args, client, server, strength), chain=chain)
        _progress(f"{machine}: {client} x {server} ({strength}) on {chain}")
        line.start(f"{machine}: {client} x {server} ({strength}) on {chain}")
        r = run_pair(rc, args.profile, machine, line, args.trace_dir, shrink=not args.no_shrink)
        line.finish(r)
        reports.append(r)
        exp = expected_for(client, server, machine, strength)
        violated = [k for k, v in r.properties.items() if v.startswith("VIOLATED")]
        ok_row = as_expected(r)
        all_ok &= ok_row
        if r.skipped:
            shown = "SKIPPED"
            skip_notes.setdefault(r.skipped, f"(s{len(skip_notes) + 1})")
        elif r.ok:
            shown = "pass"
        else:
            shown = ("diverges " if ok_row and r.findings else "FAIL ") + (",".join(violated) or "error")
            if r.findings:
                shown += " (" + ",".join(sorted(r.findings, key=lambda f: int(f[1:]))) + ")"
        expect = "pass" if not exp else "pass, or " + "; ".join(f"{p} ({why})" for p, why in exp)
        limits = ",".join(k for k, v in r.properties.items() if v.startswith("known"))
        skipped = ",".join(k for k, v in r.properties.items() if v.startswith("skipped"))
        if r.skipped:
            skipped = "pair " + skip_notes[r.skipped]
        rows.append((machine, client, server, strength, shown, expect,
                     ("skipped" if r.skipped else "yes") if ok_row else "NO",
                     r.steps, f"{r.seconds:.1f}", limits, skipped,
                     f"{chain} ({deployment_of_backend(chain)})"))
        if not ok_row:
            _print_report(r, verbose=False)
    line.__exit__(None, None, None)
    hdr = ("machine", "client", "server", "strength", "result", "expected", "ok", "steps", "sec", "model limits seen",
           "skipped", "chain (deployment)")
    notes = {}
    for row in rows:  # long reasons go below the table, numbered
        if row[5] != "pass":
            notes.setdefault(row[5], f"[{len(notes) + 1}]")
    rows = [r[:5] + ("pass or " + notes[r[5]] if r[5] != "pass" else "pass",) + r[6:] for r in rows]
    widths = [max(len(str(x[i])) for x in rows + [hdr]) for i in range(len(hdr))]
    for row in [hdr] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    for text, mark in notes.items():
        print(f"{mark} {text[len('pass, or '):]}")
    for text, mark in skip_notes.items():
        print(f"{mark} SKIPPED (never counted as passed): {text}")
    _write(args, reports)
    print("matrix: every pair as expected" if all_ok else "matrix: some pairs NOT as expected")
    return 0 if all_ok else 1


def deployment_of_backend(chain: str) -> str:
    from adapters.chain.deployment import PROTOCOL_OF_BACKEND

    return PROTOCOL_OF_BACKEND.get(chain, "?")


V2_OF = {"memory": "memory-v2", "evm": "evm-v2", "memory-v2": "memory-v2", "evm-v2": "evm-v2"}
V1_OF = {"memory": "memory", "evm": "evm", "memory-v2": "memory", "evm-v2": "evm"}


def deployment_chains(chain: str, deployments: str) -> list[str]:
    """The chain backends of `--deployments v1,v2` for the backend family of `--chain` (memory or evm):
    v1 -> memory/evm (TempoStreamChannel), v2 -> memory-v2/evm-v2 (the TIP-20 channel escrow precompile)."""
    out = []
    for d in (x.strip() for x in deployments.split(",") if x.strip()):
        if d not in ("v1", "v2"):
            raise SystemExit(f"--deployments: unknown deployment {d!r}; choose from v1, v2")
        out.append((V1_OF if d == "v1" else V2_OF)[chain])
    return list(dict.fromkeys(out))


def _matrix_runs(args, matrix) -> list:
    """(chain, matrix row) for every deployment: each bundled pair on every deployment; the mppx rows (whose
    adapter picks its own deployment, conformance/mppx_impl.py) once, on the first."""
    from .bridge_spec import is_bridge
    from .runner import spoken_chain

    family = args.chain or "memory"
    chains = deployment_chains(family, getattr(args, "deployments", "v1"))
    runs = []
    for n, chain in enumerate(chains):
        for row in matrix:
            client, server = row[:2]
            if args.include and args.include not in (client, server):
                continue
            bridge = next((x for x in (server, client) if is_bridge(x)), None)
            if bridge is not None:  # once, on the deployment its release speaks in the backend family
                if n == 0:
                    runs.append((spoken_chain(bridge, V1_OF[family]), row))
                continue
            runs.append((chain, row))
    return runs


def _violates(r: PairReport, pid: str) -> bool:
    return r.properties.get(pid, "").startswith("VIOLATED")


def cmd_mutants(args) -> int:
    from .mutants import MUTANTS

    survived, errors = [], []
    print(f"{'mutant':34} {'breaks':8} {'verdict':9} {'killed by':12} {'time':>6}  machine")
    for name, m in MUTANTS.items():
        if args.only and name not in args.only:
            continue
        spec = f"mutant:{name}"
        client, server = (spec, m.partner) if m.side == "client" else (m.partner, spec)
        rc = _rc(args, client, server, m.strength)
        t0 = time.monotonic()
        killed_by, machine_used = None, None
        for machine in m.machines:
            # A mutant run stops at its first kill, so it can afford more examples than a pair run.
            prof = {"quick": "mutants", "ci": "mutants-ci"}.get(args.profile, args.profile)
            r = run_pair(rc, prof, machine, None, args.trace_dir, shrink=args.shrink)
            bad = [k for k, v in r.properties.items() if v.startswith("VIOLATED")]
            if not r.ok and bad:
                killed_by, machine_used = ",".join(bad), machine
                break
            if not r.ok:  # a crash is not a kill: the suite must name the property the bug breaks
                errors.append(f"{name} ({machine}): {r.error or 'failed without a violated property'}")
        dt = time.monotonic() - t0
        verdict = "killed" if killed_by else "SURVIVED"
        if not killed_by:
            survived.append(name)
        print(f"{name:34} {m.breaks:8} {verdict:9} {killed_by or '-':12} {dt:5.1f}s  {machine_used or '-'}",
              flush=True)
    for e in errors:
        print(f"error: {e}")
    print(f"{len(survived)} survived" + (f": {', '.join(survived)}" if survived else ""))
    return 1 if survived else 0


def cmd_replay(args) -> int:
    ok, text = replay(args.file)
    print(text)
    print("replay: every property held" if ok else "replay: the failure reproduces")
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--chain", default=None, choices=["memory", "evm", "memory-v2", "evm-v2"],
                       help="the deployment: v1 escrow (memory, evm) or v2 precompile (memory-v2, evm-v2); default "
                            "memory, or for a bridge adapter (mppx) the memory deployment its release speaks")
        p.add_argument("--profile", default="ci", choices=["quick", "ci", "deep"])
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--hint-encoding", default="snapshot", choices=HINT_ENCODINGS,
                       help="how the server's challenges carry hints: flat methodDetails fields, or a sessionSnapshot "
                            "with highestVoucher (default snapshot; not the deployment, see --chain)")
        p.add_argument("--hint-profile", dest="hint_encoding", type=encoding_of_profile, metavar="v1|v2",
                       help="deprecated alias of --hint-encoding: v1 = flat, v2 = snapshot")
        p.add_argument("--report")
        p.add_argument("--junit")
        p.add_argument("--trace-dir", default=".conformance")

    p = sub.add_parser("run")
    p.add_argument("--client", required=True)
    p.add_argument("--server", required=True)
    p.add_argument("--strength", default="must", choices=["must", "strict"])
    p.add_argument("--machine", default="all", choices=["pair", "server", "client", "all"])
    p.add_argument("--no-faults", action="store_true")
    p.add_argument("--no-shrink", action="store_true", help="report failures unshrunk")
    common(p)
    p.add_argument("--html", help="write one self-contained HTML page: matrix, diagrams, replay commands")
    p = sub.add_parser("matrix")
    p.add_argument("--no-shrink", action="store_true", help="report failures unshrunk")
    p.add_argument("--html", help="write one self-contained HTML page: matrix, diagrams, replay commands")
    p.add_argument("--include", help="only the rows whose client or server is this adapter (e.g. mppx)")
    p.add_argument("--deployments", default="v1,v2",
                   help="comma-separated session-protocol deployments to run every bundled pair on: v1 (the "
                        "TempoStreamChannel escrow: --chain memory/evm) and v2 (the TIP-20 channel escrow "
                        "precompile: memory-v2/evm-v2); default v1,v2")
    common(p)
    p = sub.add_parser("mutants")
    p.add_argument("--only", nargs="*")
    p.add_argument("--shrink", action="store_true", help="shrink each kill to a minimal trace (slower)")
    common(p)
    p.set_defaults(profile="quick")
    p = sub.add_parser("replay")
    p.add_argument("file")
    p = sub.add_parser("versions", add_help=False, help="every mppx release with sessions: release x check table")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p = sub.add_parser("vectors", help="export stateful test vectors from the model (vectors/README.md)")
    p.add_argument("action", choices=["export"])
    p.add_argument("dir")
    args = ap.parse_args(argv)
    if args.cmd == "versions":
        from .versions import main as versions_main

        return versions_main(args.rest)
    if args.cmd == "vectors":
        from .vectors import cmd_vectors

        return cmd_vectors(args)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line the HTML report shows
    return {"run": cmd_run, "matrix": cmd_matrix, "mutants": cmd_mutants, "replay": cmd_replay}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
