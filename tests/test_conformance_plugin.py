"""The pytest plugin generates one test per machine x property for an implementation given by import path."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(tmp_path, *args):
    installed = any(e.name == "tempo_session" for e in importlib.metadata.entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "conformance.pytest_plugin"]
    (tmp_path / "conftest.py").write_text("")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pytest", *plugin, "-q", "-rs", "--rootdir", str(tmp_path),
                           "-p", "no:cacheprovider", *args], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=600)


def test_plugin_passes_the_model_server(tmp_path):
    proc = _pytest(tmp_path, "--session-server=conformance.model_impl:ModelServer", "--session-profile=quick",
                   f"--session-trace-dir={tmp_path}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "conformance[server-SV]" in out or "passed" in out
    assert "skipped" in out  # not-applicable properties are skipped, not passed


def test_plugin_fails_a_mutant_with_a_trace(tmp_path):
    proc = _pytest(tmp_path, "--session-server=conformance.mutants.servers:accepts_above_deposit_server",
                   "--session-profile=quick", f"--session-trace-dir={tmp_path}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "conformance[server-S2]" in out
    assert "sequenceDiagram" in out
