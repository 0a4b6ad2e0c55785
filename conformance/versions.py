"""Every mppx release with sessions, each driven by the same adapter (adapters/mppx/adapter.mjs).

`python -m conformance versions mppx [--versions X,Y]` installs each pinned release into its own cached folder
(`~/.cache/tempo-conformance/mppx/<version>/`: `npm install --legacy-peer-deps mppx@<v> viem@2.57.20`, the npm
registry only), links the adapter into it (run with `node --preserve-symlinks-main`, so its bare imports and
`./node_modules` are that release's), writes a manifest named `mppx` (so mppx's expected findings apply), and runs
per release the checks that exist for the deployment it speaks:

* start: the adapter starts against the release (hello answers);
* hello: the capabilities it lists for that release (v1-only releases list no v2 ops);
* vectors v1 / v2: sign and verify the voucher test vectors of mppx-0.11-notes.md (v2 SKIPPED on v1-only releases);
* machines (v2 releases): the generic machines (conformance/machines.py) on the harness's memory-v2 chain with the
  release as the side under test: `run server` (model clients + adversary x its route handler), `run client` (its
  fetch client x the model server + liar), `run pair memory-v2` (the release x itself; mppx opens and tops up its
  channels there itself, conformance/chain_rpc.py);
* `run pair memory` (v1-only releases, <= 0.6.x): the same generic pair machine on our v1 escrow (memory);
* Fn (v2 releases: every committed trace; v1-only: F16, F17): the committed traces of conformance/traces/mppx/
  replayed with the release as their bridge side(s) ("shows" or "absent").

`--all` runs every release with sessions that npm lists (`npm view mppx versions --json`): the full sweep. The table
is its own command; CI (`make test`) runs the newest release (adapters/mppx, 0.11.0) and one v1-era release
(adapters/mppx-v1, 0.6.31) through the generic machines.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import attrs

from adapters.bridge import AdapterError, AdapterProcess, Unsupported
from adapters.bridge.process import load_manifest

REPO = Path(__file__).resolve().parents[1]
ADAPTER = REPO / "adapters" / "mppx" / "adapter.mjs"
BUNDLED_MANIFEST = REPO / "adapters" / "mppx" / "manifest.json"
TRACES = REPO / "conformance" / "traces" / "mppx"
VIEM = "2.57.20"
# One release per API row of /work/shared/reference/mppx-releases-notes.md (and the newest of each minor).
PINNED = ("0.6.31", "0.7.0", "0.8.6", "0.8.12", "0.8.14", "0.8.19", "0.9.3", "0.10.1", "0.11.0")
# The committed finding traces (conformance/traces/mppx/, the generic machines' one format), replayed per release:
# client findings (the release's fetch client against the model server and its liar), server findings (the
# release's route handler against the model client and the adversary), the generic pair's (the release against
# itself). v1-only releases replay the pair's only (the harness's own sides meet no v1 release).
CLIENT_FINDING_TRACES = {"F3": "F3-unproven-snapshot.json", "F14": "F14-above-deposit.json",
                         "F15": "F15-stored-channel-ignores-snapshot.json", "F22": "F22-pays-any-price.json",
                         "F23": "F23-lost-store-no-top-up.json", "F26": "F26-other-escrow.json"}
SERVER_FINDING_TRACES = {"F1": "F1-high-s.json", "F2": "F2-settled-resubmission.json", "F5": "F5-compact.json",
                         "F6": "F6-units.json", "F7": "F7-signer-mismatch.json", "F8": "F8-idempotency-key.json",
                         "F9": "F9-required-top-up.json", "F10": "F10-lowercase-hex.json",
                         "F11": "F11-required-cumulative.json", "F12": "F12-check-order.json",
                         "F13": "F13-pending-close-hinted.json", "F20": "F20-open-on-head.json",
                         "F21": "F21-source-bound.json", "F25": "F25-accepted-above-highest.json",
                         "F137": "F137-close-with-settled-voucher.json", "F138": "F138-no-proof-in-snapshot.json"}
PAIR_FINDING_TRACES = {"F16": "F16-lost-open-response.json", "F17": "F17-forced-close.json"}

# Test vectors computed by mppx@0.11.0 (mppx-0.11-notes.md).
VECTOR_KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
VECTOR_SIGNER = "0x14791697260E4c9A71f18484C9f997B308e59325"
VECTOR_COMMON = {"chainId": 4217, "verifyingContract": "0x9d136eEa063eDE5418A6BC7bEafF009bBb6CFa70",
                 "channelId": "0x" + "11" * 32, "cumulativeAmount": "250000"}
VECTOR_SIGNATURES = {
    "v1": "0x6b65a3892165630c668b505671f726fa3240347ebeee085c6ef4d616ffe58a1c4f1a1bd49005b95b25a3e7d8d3581f86ac3c2"
          "74abeefe214b933004f10dfd2e71c",
    "v2": "0x04b8824694846349b02eab98213e5fb86910195f1f9dcf9f8eb1dd66b9c584d36f98ca69e126f1195320efd02fac3a213d86e"
          "082dee83aa70a53e1d61cbf5e4e1c",
}


def cache_root() -> Path:
    base = os.environ.get("TEMPO_CONFORMANCE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                        "tempo-conformance")
    return Path(base) / "mppx"


def version_key(version: str) -> tuple:
    return tuple(int(p) for p in version.split("."))


def speaks_v2(version: str) -> bool:
    """v2 (TIP-1034) sessions from 0.7.0; up to 0.6.x v1 only."""
    return version_key(version) >= (0, 7, 0)


@attrs.frozen
class Verdict:
    """One cell of the table: PASS / FAIL / SKIPPED / shows / absent, and what it saw."""

    verdict: str
    detail: str = ""


class ReleaseUnavailable(RuntimeError):
    """npm or node missing, or the release does not install: its row is SKIPPED with this reason."""


def install_release(version: str, root: Optional[Path] = None) -> Path:
    """The release's folder with mppx@version installed and the adapter linked in; its manifest path."""
    folder = (root or cache_root()) / version
    installed = folder / "node_modules" / "mppx" / "package.json"
    ok = installed.exists() and json.loads(installed.read_text()).get("version") == version
    if not ok:
        if shutil.which("npm") is None:
            raise ReleaseUnavailable("npm is not on PATH")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text(json.dumps(
            {"name": f"mppx-release-{version}", "private": True, "type": "module"}) + "\n")
        proc = subprocess.run(["npm", "install", "--legacy-peer-deps", "--no-audit", "--no-fund",
                               f"mppx@{version}", f"viem@{VIEM}"], cwd=folder, capture_output=True, text=True,
                              timeout=900)
        if proc.returncode != 0:
            raise ReleaseUnavailable(f"npm install mppx@{version} failed: {proc.stderr[-500:]}")
    link = folder / "adapter.mjs"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(ADAPTER)
    bundled = json.loads(BUNDLED_MANIFEST.read_text())
    manifest = {
        "name": "mppx",  # mppx's expected findings apply (expectations are keyed by name)
        "version": version,
        "description": f"mppx@{version} (installed by conformance/versions.py), driven by adapters/mppx/adapter.mjs",
        # --preserve-symlinks-main: the adapter resolves `mppx`, `viem` and ./node_modules in this folder
        "command": ["node", "--preserve-symlinks", "--preserve-symlinks-main", "adapter.mjs"],
        "timeout": bundled.get("timeout", 30),
        "startup_timeout": bundled.get("startup_timeout", 60),
        "capabilities": bundled["capabilities"],
    }
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


FIRST_WITH_SESSIONS = "0.1.1"  # mppx-releases-notes.md: npm serves 0.1.1 ... ; every one of them has sessions


def session_releases(listed: list) -> list:
    """The plain releases (no pre-release tags) with sessions, oldest first."""
    plain = [v for v in listed if all(p.isdigit() for p in v.split("."))]
    return sorted((v for v in plain if version_key(v) >= version_key(FIRST_WITH_SESSIONS)), key=version_key)


def npm_releases() -> list:
    """Every release of mppx with sessions that npm lists (`npm view mppx versions --json`)."""
    if shutil.which("npm") is None:
        raise ReleaseUnavailable("npm is not on PATH")
    proc = subprocess.run(["npm", "view", "mppx", "versions", "--json"], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise ReleaseUnavailable(f"npm view mppx versions failed: {proc.stderr[-300:]}")
    listed = json.loads(proc.stdout)
    return session_releases(listed if isinstance(listed, list) else [listed])


def check_vectors(adapter: AdapterProcess, version: str) -> dict:
    out = {}
    for v, expected in VECTOR_SIGNATURES.items():
        try:
            sig = adapter.call("voucher.sign", version=v, privateKey=VECTOR_KEY, **VECTOR_COMMON)["signature"]
            valid = adapter.call("voucher.verify", version=v, signature=expected, signer=VECTOR_SIGNER,
                                 **VECTOR_COMMON)["valid"]
        except Unsupported as exc:
            out[f"vectors {v}"] = Verdict("SKIPPED", exc.message)
            continue
        except AdapterError as exc:
            out[f"vectors {v}"] = Verdict("FAIL", str(exc)[:200])
            continue
        good = sig.lower() == expected and valid is True
        out[f"vectors {v}"] = Verdict("PASS" if good else "FAIL",
                                      "" if good else f"signature {sig[:18]}..., verify {valid}")
    return out


def check_machines(spec: str, chain: str, seed: int = 1) -> dict:
    """The generic machines (conformance/machines.py) with the release as the side under test, on the harness's
    `chain` (the deployment it speaks): server (model clients + adversary x the release's route handler), client
    (the release's fetch client x the model server + liar), pair (the release x itself); quick, unshrunk."""
    out = {}
    for client, server, machine in (("model", spec, "server"), (spec, "model", "client")):
        out[f"run {machine}"] = _generic(client, server, machine, chain, seed)
    out[f"run pair {chain}"] = _generic(spec, spec, "pair", chain, seed)
    return out


def _generic(client: str, server: str, machine: str, chain: str, seed: int = 1) -> Verdict:
    """One generic machine run on the harness's `chain`: PASS when every violation is one of the pair's known
    findings (named), FAIL on anything unexpected or an adapter error."""
    from .harness import RunConfig
    from .runner import run_pair

    r = run_pair(RunConfig(client=client, server=server, seed=seed, chain=chain), profile="quick", machine=machine,
                 trace_dir=str(cache_root() / "traces"), shrink=False)
    if r.skipped:
        return Verdict("SKIPPED", r.skipped[:120])
    findings = ",".join(sorted(r.findings, key=lambda f: int(f[1:]))) or "-"
    unexpected = "; ".join(r.unexpected)[:160] or (r.error or "")[:160]
    return Verdict("FAIL" if unexpected else "PASS",
                   f"{r.steps} steps; findings {findings}" + (f"; unexpected {unexpected}" if unexpected else ""))


def check_trace_findings(spec: str, version: str, names: dict) -> dict:
    """Replay each committed finding trace with this release as the trace's bridge side(s), on the deployment it
    speaks: "shows" (the finding's pattern reproduces, runner._which_finding) or "absent"."""
    from .bridge_spec import is_bridge
    from .runner import replay as replay_generic

    out = {}
    chain = "memory-v2" if speaks_v2(version) else "memory"
    for fid, name in names.items():
        data = json.loads((TRACES / name).read_text())
        cfg = data["config"]
        data["config"] = dict(cfg, chain=chain, **{side: spec for side in ("client", "server") if is_bridge(cfg[side])})
        tmp = cache_root() / "traces" / f"{version}-{name}"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data))
        try:
            _ok, text = replay_generic(str(tmp))
        except AdapterError as exc:
            out[fid] = Verdict("FAIL", str(exc)[:200])
            continue
        shows = f"finding {fid}: reproduces" in text
        out[fid] = Verdict("shows" if shows else "absent", _last_outcome(text))
    return out


def _last_outcome(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if " -> " in ln and ln.strip()[:1].isdigit()]
    return lines[-1][:120] if lines else ""


def check_release(version: str, *, machines: bool = True, root: Optional[Path] = None) -> dict:
    """check -> Verdict for one release (every check SKIPPED with the reason when it cannot be installed)."""
    try:
        path = install_release(version, root)
    except (ReleaseUnavailable, OSError, subprocess.SubprocessError) as exc:
        return {"install": Verdict("SKIPPED", str(exc)[:200])}
    out: dict = {"install": Verdict("PASS", str(path.parent))}
    adapter = AdapterProcess(load_manifest(path))
    try:
        hello = adapter.start()
    except AdapterError as exc:
        out["start"] = Verdict("FAIL", str(exc)[:200])
        return out
    try:
        good = hello.get("version") == version
        out["start"] = Verdict("PASS" if good else "FAIL", f"hello version {hello.get('version')}")
        caps = hello.get("capabilities") or []
        v2_ops = [c for c in caps if c.startswith("snapshot.") or c in ("client.next_credential", "server.seed_channel")]
        expect_v2 = speaks_v2(version)
        sessions = hello.get("sessions") or []
        good = bool(v2_ops) == expect_v2 and sessions == (["v2"] if expect_v2 else ["v1"])
        out["hello"] = Verdict("PASS" if good else "FAIL",
                               f"{len(caps)} ops, sessions {','.join(sessions) or '?'}"
                               + ("" if expect_v2 else " (v1 only: no v2 ops)")
                               + (", client.fetch" if "client.fetch" in caps else ""))
        out.update(check_vectors(adapter, version))
    finally:
        adapter.close()
    spec = f"bridge:{path}"
    chain = "memory-v2" if speaks_v2(version) else "memory"
    if not speaks_v2(version):  # v1 only: the generic pair machine on our v1 escrow (memory), release x itself
        why = f"mppx {version} is v1 only: the harness's own v1 sides do not meet a v1 release (memory backend)"
        for c in ("run server", "run client", *CLIENT_FINDING_TRACES, *SERVER_FINDING_TRACES):
            out[c] = Verdict("SKIPPED", why)
        if machines:
            out[f"run pair {chain}"] = _generic(spec, spec, "pair", chain)
        out.update(check_trace_findings(spec, version, PAIR_FINDING_TRACES))
        return out
    if machines:
        out.update(check_machines(spec, chain))
    for names in (CLIENT_FINDING_TRACES, SERVER_FINDING_TRACES, PAIR_FINDING_TRACES):
        out.update(check_trace_findings(spec, version, names))
    return out


def table(results: dict) -> str:
    """One line per release x check: verdict and what it saw."""
    lines = [f"{'release':8}  {'check':22}  {'verdict':8}  detail"]
    for version, checks in results.items():
        for check, v in checks.items():
            lines.append(f"{version:8}  {check:22}  {v.verdict:8}  {v.detail}")
    return "\n".join(lines)


def main(argv: list) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m conformance versions")
    ap.add_argument("sdk", choices=["mppx"])
    ap.add_argument("--versions", help="comma-separated releases (default: the pinned list)")
    ap.add_argument("--all", action="store_true",
                    help="every release with sessions on npm (`npm view mppx versions --json`; the full sweep)")
    ap.add_argument("--no-machines", action="store_true", help="skip the `run` of the machines (faster)")
    ap.add_argument("--json", help="also write the table as JSON to this file")
    args = ap.parse_args(argv)
    if args.all:
        try:
            versions = npm_releases()
        except ReleaseUnavailable as exc:
            print(f"versions: {exc}")
            return 2
    else:
        versions = [v.strip() for v in args.versions.split(",")] if args.versions else list(PINNED)
    results = {}
    for v in versions:
        results[v] = check_release(v, machines=not args.no_machines)
        print(table({v: results[v]}).split("\n", 1)[1], flush=True)
    print()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({v: {c: attrs.asdict(x) for c, x in r.items()}
                                               for v, r in results.items()}, indent=1))
    return 1 if any(x.verdict == "FAIL" for r in results.values() for x in r.values()) else 0
