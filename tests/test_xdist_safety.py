"""What `pytest -n auto` (pytest-xdist) needs: workers that share one checkout must not race each other."""
from __future__ import annotations

import json
import multiprocessing
import sys

from adapters.bridge.process import build_adapter, load_manifest

# A build that counts its runs and refuses to run while another one is running (as two `npm ci` in one
# node_modules corrupt each other); it sleeps so that two unserialized builds overlap.
_BUILD = """
import os, pathlib, sys, time
root = pathlib.Path('.')
try:
    os.mkdir('building')
except FileExistsError:
    sys.exit('another build is running in this directory')
time.sleep(1.5)
with open('runs.log', 'a') as f:
    f.write('run\\n')
pathlib.Path('out').mkdir(exist_ok=True)
pathlib.Path('out/built').write_text('yes')
os.rmdir('building')
"""


def _build(path: str, barrier, errors) -> None:
    barrier.wait()
    try:
        build_adapter(load_manifest(path))
    except Exception as exc:  # reported to the parent: the assertion names it
        errors.put(str(exc))


def test_concurrent_builds_of_one_adapter_run_the_build_once(tmp_path):
    (tmp_path / "build.py").write_text(_BUILD)
    (tmp_path / "lock.txt").write_text("v1")
    (tmp_path / "manifest.json").write_text(json.dumps({
        "name": "racy", "command": [sys.executable, "x.py"], "build": [sys.executable, "build.py"],
        "built_marker": "out/built", "build_inputs": ["lock.txt"], "build_stamp": "out/stamp"}))
    ctx = multiprocessing.get_context("spawn")  # separate processes, as xdist workers are
    barrier, errors = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_build, args=(str(tmp_path / "manifest.json"), barrier, errors)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    failures = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert failures == []
    assert (tmp_path / "runs.log").read_text().count("run") == 1  # the second worker found it built
    assert load_manifest(tmp_path / "manifest.json").is_built


def test_plugin_under_xdist_runs_each_machine_once(tmp_path):
    """Two workers share one run per machine (no repeated work, no two writers of one trace file): every item
    of a machine records the same worker in the JUnit report, and the failure's trace file replays."""
    import os
    import re
    import subprocess
    import xml.etree.ElementTree as ET
    from pathlib import Path

    import importlib.metadata

    root = Path(__file__).resolve().parents[1]
    installed = any(e.name == "tempo_session" for e in importlib.metadata.entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "conformance.pytest_plugin"]
    (tmp_path / "conftest.py").write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *plugin, "-q", "-n", "2", "--rootdir",
         str(tmp_path), "-p", "no:cacheprovider", f"--junitxml={tmp_path / 'junit.xml'}",
         "--session-server=conformance.mutants.servers:accepts_above_deposit_server", "--session-profile=quick",
         f"--session-trace-dir={tmp_path / 'traces'}"],
        cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(root)), timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # the mutant breaks S2
    ran_in: dict = {}
    for case in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase"):
        machine = re.match(r"conformance\[(\w+)-", case.get("name")).group(1)
        for prop in case.iter("property"):
            if prop.get("name") == "ran_in":
                ran_in.setdefault(machine, set()).add(prop.get("value"))
    assert set(ran_in) == {"pair", "server"}, out
    assert all(len(workers) == 1 for workers in ran_in.values()), ran_in
    trace = re.search(r"replay: python -m conformance replay (\S+)", out).group(1)
    from conformance.runner import replay

    ok, _ = replay(trace)
    assert not ok  # the saved failure reproduces
