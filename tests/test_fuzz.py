"""Campaigns share one Hypothesis example database: a failure one worker found replays in any other process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(tmp_path: Path, db: Path, stats: str, *, replay_only: bool) -> subprocess.CompletedProcess:
    # conformance/fuzz.py loads its settings profile on import: it runs in its own process, never in this one
    env = dict(os.environ, PYTHONPATH=str(ROOT), TEMPO_FUZZ_DB=str(db), TEMPO_FUZZ_STATS=str(tmp_path / stats),
               TEMPO_FUZZ_CLIENT="model", TEMPO_FUZZ_SERVER="mutant:server-accepts-above-deposit",
               TEMPO_FUZZ_REPLAY_ONLY="1" if replay_only else "0")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(ROOT / "conformance" / "fuzz.py") + "::TestServerMachine"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_a_failure_found_once_replays_from_the_shared_database(tmp_path):
    db = tmp_path / "db"
    found = _pytest(tmp_path, db, "first", replay_only=False)
    assert found.returncode == 1, found.stdout + found.stderr  # the mutant breaks S2
    failures = sorted((tmp_path / "first").glob("failure-server-*.json"))
    assert failures and json.loads(failures[0].read_text())["steps"]
    assert any(db.iterdir())

    # another process that generates nothing, only reads the database: it fails the same way
    again = _pytest(tmp_path, db, "second", replay_only=True)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "S2" in again.stdout

    # the control: the same replay-only run on an empty database finds nothing
    empty = _pytest(tmp_path, tmp_path / "empty-db", "third", replay_only=True)
    assert empty.returncode == 0, empty.stdout + empty.stderr


def test_report_sums_the_workers(tmp_path, monkeypatch):
    stats = tmp_path / "stats"
    stats.mkdir()
    for pid, machine, ex, steps, sec in [(1, "pair", 10, 200, 20.0), (1, "server", 5, 100, 20.0),
                                         (2, "pair", 8, 100, 10.0)]:
        (stats / f"{pid}-{machine}.json").write_text(json.dumps(
            {"pid": pid, "machine": machine, "examples": ex, "steps": steps, "failures": 0, "seconds": sec}))
    code = subprocess.run([sys.executable, "-c", "import json, sys, pathlib; from conformance.fuzz import report;"
                           f"print(json.dumps(report(pathlib.Path({str(stats)!r}))))"],
                          env=dict(os.environ, PYTHONPATH=str(ROOT), TEMPO_FUZZ_DB=str(tmp_path / "db")),
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    r = json.loads(code.stdout)
    assert (r["workers"], r["examples"], r["steps"]) == (2, 23, 400)
    assert r["steps_per_second"] == 20.0  # 400 steps over the longest worker's 20 s
    assert r["by_machine"] == {"pair": 18, "server": 5}
