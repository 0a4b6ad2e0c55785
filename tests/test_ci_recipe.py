"""The reusable GitHub Actions workflow: what the README tells an SDK repository to write calls it correctly,
and its run step, executed here as the runner would, leaves the JUnit and HTML reports it uploads."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "conformance.yml"


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _trigger(doc: dict) -> dict:
    return doc.get("on", doc.get(True))  # YAML 1.1 reads the key `on` as true


def _steps() -> list[dict]:
    return _workflow()["jobs"]["conformance"]["steps"]


def test_the_readme_caller_matches_the_workflow_inputs():
    text = (ROOT / "README.md").read_text()
    section = text.split("### CI recipe", 1)[1]
    snippet = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    assert len(snippet.strip().splitlines()) == 5
    caller = yaml.safe_load(snippet)
    job = caller["jobs"]["conformance"]
    assert job["uses"].split("@")[0].endswith("/tempo-session-conformance/.github/workflows/conformance.yml")
    inputs = _trigger(_workflow())["workflow_call"]["inputs"]
    given = set(job["with"])
    assert given <= set(inputs)
    assert {name for name, spec in inputs.items() if spec.get("required")} <= given


def test_the_workflow_sets_up_python_and_node_and_uploads_both_reports():
    uses = [s.get("uses", "") for s in _steps()]
    assert any(u.startswith("actions/setup-python@") for u in uses)
    assert any(u.startswith("actions/setup-node@") for u in uses)
    upload = next(s for s in _steps() if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()"  # a failing run still uploads what it found
    run = next(s for s in _steps() if s.get("name") == "Run the suite")["run"]
    assert "--junit" in run and "--html" in run


def test_the_run_step_leaves_junit_and_html_for_the_mppx_adapter(tmp_path):
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm are not on PATH: the mppx adapter cannot run here")
    step = next(s for s in _steps() if s.get("name") == "Run the suite")
    env = dict(os.environ, GITHUB_WORKSPACE=str(tmp_path), MANIFEST=str(ROOT / "adapters/mppx/manifest.json"),
               SIDE="server", PROFILE="quick", CHAIN="memory-v2", STRENGTH="must",
               PATH=f"{Path(os.sys.executable).parent}:{os.environ['PATH']}")  # `python` = this interpreter
    proc = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    out = tmp_path / "conformance-results"
    # mppx's known divergences are expected outcomes (FINDINGS.md): the run passes as expected
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cases = ET.parse(out / "server.xml").getroot().findall("testcase")
    assert cases and all("bridge:" in c.get("name") for c in cases)
    assert "<table class=\"matrix\">" in (out / "server.html").read_text()
    assert not (out / "client.xml").exists()  # SIDE=server runs only the server side
