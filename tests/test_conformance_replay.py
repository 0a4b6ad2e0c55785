"""A saved failing trace replays: `python -m conformance replay FILE` reproduces the failure."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conformance.harness import RunConfig
from conformance.runner import replay, run_pair

ROOT = Path(__file__).resolve().parents[1]


def test_minimal_trace_is_rendered_and_replays(tmp_path):
    rc = RunConfig(client="model", server="mutant:server-free-replay")
    r = run_pair(rc, "mutants", "pair", trace_dir=str(tmp_path))
    assert not r.ok
    assert r.properties["S6"] == "VIOLATED"
    assert r.failure.splitlines()[0].startswith("1. ")  # numbered protocol steps
    assert r.mermaid.startswith("sequenceDiagram")
    data = json.loads(Path(r.trace_file).read_text())
    assert data["format"] == "tempo-conformance-trace/1" and data["steps"]
    ok, text = replay(r.trace_file)
    assert not ok and "S6" in text
    proc = subprocess.run([sys.executable, "-m", "conformance", "replay", r.trace_file], cwd=ROOT,
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1, proc.stderr
    assert "the failure reproduces" in proc.stdout


def test_a_passing_trace_replays_clean(tmp_path):
    path = tmp_path / "ok.json"
    rc = RunConfig(client="reference", server="reference")
    steps = [{"op": "request", "client": 0}, {"op": "request", "client": 1}, {"op": "settle"},
             {"op": "restart_client", "client": 0, "keep": True}, {"op": "request", "client": 0}]
    path.write_text(json.dumps({"format": "tempo-conformance-trace/1", "machine": "pair", "config": rc.to_json(),
                                "steps": steps}))
    ok, text = replay(str(path))
    assert ok, text
