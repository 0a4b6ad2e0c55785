"""The conformance suite against the real mppx@0.11.0 through the generic machines (conformance/machines.py) on
the harness's memory-v2 chain: its server through `Mppx.create(...)` route handlers, its client through
`Mppx.create(...).fetch`, mppx opening and topping up its own channels there.

Needs Node >= 20 (+ npm for the first install); skipped only when node is missing. The divergences mppx shows
are expected outcomes (conformance/expectations.py, FINDINGS.md): the runs exit 0 and report them.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.bridge.testing import node_adapter_or_skip
from conformance.__main__ import main
from conformance.expectations import MATRIX, MPPX_FINDINGS, expected_findings
from conformance.harness import RunConfig
from conformance.runner import replay, run_pair

ROOT = Path(__file__).resolve().parents[1]
TRACE_DIR = ROOT / "conformance" / "traces" / "mppx"
# Traces kept as the evidence of releases other than the pinned 0.11.0 (FINDINGS.md, "Releases"): F14 is WITHDRAWN
# for 0.8.14 and later (its fetch client tops up first); F3 needs a lie the model's liar does not tell; F25 and F26
# are shown by 0.7.0 - 0.8.12 and 0.7.0 only; F138 by 0.7.0 - 0.8.12 (no highestVoucher in the snapshot).
NOT_ON_PINNED = {"F14-above-deposit", "F3-unproven-snapshot", "F25-accepted-above-highest", "F26-other-escrow",
                 "F138-no-proof-in-snapshot"}
TRACES = sorted(p for p in TRACE_DIR.glob("F*.json") if p.stem not in NOT_ON_PINNED)


@pytest.fixture(scope="module")
def node():
    adapter = node_adapter_or_skip()  # skips (with the reason) only when node/npm are missing
    adapter.close()


def _reports(path: Path) -> dict:
    return {r["machine"]: r for r in json.loads(path.read_text())}


def test_every_committed_trace_is_of_the_one_format():
    for p in TRACE_DIR.glob("*.json"):
        data = json.loads(p.read_text())
        assert data["format"] == "tempo-conformance-trace/1", p.name
        assert data["machine"] in ("pair", "server", "client"), p.name  # the generic machines, nothing else
        assert data["finding"] in MPPX_FINDINGS and p.name.startswith(data["finding"] + "-"), p.name


def test_run_client_mppx_server_model_defaults_to_the_deployment_mppx_speaks(node, tmp_path, capsys):
    report = tmp_path / "r.json"
    code = main(["run", "--client", "mppx", "--server", "model", "--profile", "quick", "--no-shrink",
                 "--trace-dir", str(tmp_path), "--report", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    reps = _reports(report)
    client, pair = reps["client"], reps["pair"]
    for rep in (client, pair):
        assert rep["chain"] == "memory-v2"  # no --chain: the deployment mppx 0.11.0 speaks
        assert rep["skipped"] is None and rep["steps"] > 0 and not rep["unexpected"] and not rep["error"]
        assert set(rep["findings"]) <= expected_findings("mppx", "model", rep["machine"])
        assert rep["properties"]["RM"].startswith("skipped")  # mppx reads no receipts
        for d in rep["findings"].values():
            assert Path(d["trace_file"]).exists()


def test_run_server_mppx_client_model(node, tmp_path, capsys):
    report = tmp_path / "r.json"
    code = main(["run", "--server", "mppx", "--client", "model", "--machine", "server", "--profile", "quick",
                 "--no-shrink", "--trace-dir", str(tmp_path), "--report", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    server = _reports(report)["server"]
    assert server["skipped"] is None and server["steps"] > 0 and not server["unexpected"] and not server["error"]
    assert set(server["findings"]) <= expected_findings("model", "mppx", "server")
    assert server["findings"], "mppx 0.11.0 diverges (F8, F21 at least); a clean run means the machine is blind"
    assert server["properties"]["S1"] == "held"


def test_matrix_includes_mppx_rows(node, tmp_path, capsys):
    assert ("model", "mppx", "server", "must") in MATRIX and ("mppx", "model", "client", "must") in MATRIX
    code = main(["matrix", "--profile", "quick", "--include", "mppx", "--no-shrink", "--trace-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "matrix: every pair as expected" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["server"], ["client"], ["pair"])]
    assert {(r[0], r[1], r[2]) for r in rows} >= {("server", "model", "mppx"), ("client", "mppx", "model"),
                                                 ("pair", "mppx", "reference")}
    for r in rows:  # every mppx row runs on the deployment its release speaks, none SKIPPED
        assert r[4] != "SKIPPED", r
        assert r[-2] == ("memory" if "mppx-v1" in r[1:3] else "memory-v2"), r


@pytest.mark.parametrize("path", TRACES, ids=[p.stem for p in TRACES])
def test_saved_mppx_trace_reproduces(node, path):
    data = json.loads(path.read_text())
    ok, text = replay(str(path))
    assert not ok
    assert f"finding {data['finding']}: reproduces" in text, text
    assert text.splitlines()[0].startswith("1. ")


def test_withdrawn_f14_does_not_reproduce_through_mppx_fetch(node):
    # mppx 0.11.0's fetch (the application entry point) tops up before a voucher above the deposit: no voucher
    # above the on-chain deposit (H5 holds), unlike the createCredential-only path F14 was found on.
    ok, text = replay(str(TRACE_DIR / "F14-above-deposit.json"))
    assert "finding F14: did NOT reproduce" in text, text
    assert "topUp" in text and "amount-exceeds-deposit" not in text, text


def test_f3_needs_a_lie_the_liar_does_not_tell(node):
    # the model's inflate lie hints spent = deposit: mppx's empty store signs max(accepted, required, spent + amount)
    # = deposit + price, above the deposit, and refuses instead (FINDINGS.md F3)
    ok, text = replay(str(TRACE_DIR / "F3-unproven-snapshot.json"))
    assert "finding F3: did NOT reproduce" in text, text
    assert "(lie: inflate) -> refused:deposit-exhausted" in text, text


def test_replay_cli_on_a_saved_mppx_trace(node):
    path = TRACE_DIR / "F1-high-s.json"
    proc = subprocess.run([sys.executable, "-m", "conformance", "replay", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "finding F1: reproduces" in proc.stdout and "the failure reproduces" in proc.stdout


def test_missing_node_is_reported_skipped_never_passed(monkeypatch):
    from conformance import mppx_impl

    def missing(*_args):
        raise mppx_impl.MppxUnavailable("node is not on PATH: the mppx adapter needs Node >= 20")

    monkeypatch.setattr(mppx_impl, "get_adapter", missing)
    r = run_pair(RunConfig(client="model", server="mppx", chain="memory-v2"), "quick", "server")
    assert r.skipped and "node" in r.skipped
    assert r.steps == 0 and not r.findings


def test_mppx_on_a_deployment_it_does_not_speak_is_skipped_with_the_reason(node):
    r = run_pair(RunConfig(client="mppx", server="reference", chain="memory"), "quick", "pair")
    assert r.skipped and "v2" in r.skipped and "memory-v2" in r.skipped and r.steps == 0
