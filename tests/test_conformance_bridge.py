"""Any adapter that speaks adapters/bridge/PROTOCOL.md runs through the conformance suite: `bridge:PATH`.

The mppx manifest given by path gets exactly mppx's expected outcomes (expectations are keyed by the manifest's
`name`); the same adapter under another name fails on mppx's divergences; an adapter lacking the server ops is
reported SKIPPED with the missing ops named; a missing path or an invalid manifest exits 2 with a clear message.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.bridge.testing import MPPX_MANIFEST, node_adapter_or_skip
from conformance.__main__ import main
from conformance.bridge_spec import SERVER_ESSENTIAL, impl_name, manifest_path
from conformance.expectations import expected_findings, expected_for

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "adapters" / "bridge" / "fake_manifest.json"


@pytest.fixture(scope="module")
def node():
    adapter = node_adapter_or_skip()  # skips (with the reason) only when node/npm are missing
    adapter.close()


def _run(capsys, tmp_path, *args) -> tuple[int, str, str, dict]:
    report = tmp_path / "r.json"
    code = main(["run", *args, "--profile", "quick", "--no-shrink", "--trace-dir", str(tmp_path),
                 "--report", str(report)])
    out = capsys.readouterr()
    reps = {r["machine"]: r for r in json.loads(report.read_text())} if report.exists() else {}
    return code, out.out, out.err, reps


def _renamed_mppx(tmp_path: Path, name: str) -> Path:
    """A copy of the mppx manifest under another name (absolute command path; the adapter is already built)."""
    data = json.loads(MPPX_MANIFEST.read_text())
    data["name"] = name
    for key in ("build", "built_marker", "build_inputs", "build_stamp"):
        data.pop(key, None)
    data["command"] = ["node", str(MPPX_MANIFEST.parent / "adapter.mjs")]
    path = tmp_path / "other" / "manifest.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    return path


def test_specs_resolve_and_expectations_follow_the_manifest_name(tmp_path):
    spec = "bridge:adapters/mppx/manifest.json"
    assert manifest_path(spec) == manifest_path("mppx") == MPPX_MANIFEST.resolve()
    assert impl_name(spec) == "mppx"
    assert expected_findings("model", spec, "server") == expected_findings("model", "mppx", "server") != set()
    assert expected_for("model", spec, "server") == expected_for("model", "mppx", "server")
    other = _renamed_mppx(tmp_path, "not-mppx")
    assert impl_name(f"bridge:{other}") == "not-mppx"
    assert expected_findings("model", f"bridge:{other}", "server") == set()
    assert expected_for(f"bridge:{other}", "model", "client") == ()


def test_mppx_by_manifest_path_as_server_is_as_expected(node, tmp_path, capsys):
    code, out, err, reps = _run(capsys, tmp_path, "--server", "bridge:adapters/mppx/manifest.json",
                                "--client", "model", "--machine", "server")
    assert code == 0, out + err
    server = reps["server"]
    assert server["skipped"] is None and server["steps"] > 0 and not server["unexpected"] and not server["error"]
    assert server["findings"] and set(server["findings"]) <= expected_findings("model", "mppx", "server")
    assert "AS EXPECTED  server" in out


def test_mppx_under_another_name_fails_on_its_divergences(node, tmp_path, capsys):
    other = _renamed_mppx(tmp_path, "other-sdk")
    code, out, err, reps = _run(capsys, tmp_path, "--server", f"bridge:{other}", "--client", "model",
                                "--machine", "server")
    assert code == 1, out + err
    server = reps["server"]
    assert server["skipped"] is None and not server["error"]
    assert server["unexpected"], "the same adapter under another name has no expected findings"
    assert not server["findings"]
    assert "FAIL  server" in out and "other-sdk" in out
    assert any(v.startswith("VIOLATED") for v in server["properties"].values())


def test_adapter_without_server_ops_is_skipped_naming_them(tmp_path, capsys):
    code, out, err, reps = _run(capsys, tmp_path, "--server", f"bridge:{FAKE.relative_to(ROOT)}",
                                "--client", "model")
    assert code == 0, out + err
    assert "SKIPPED  the whole run" in out
    assert reps and all(r["skipped"] for r in reps.values()) and not any(r["steps"] for r in reps.values())
    for r in reps.values():
        for op in SERVER_ESSENTIAL:
            assert op in r["skipped"]
    assert "PASS" not in out and "AS EXPECTED" not in out


def test_adapter_without_client_ops_is_skipped(tmp_path, capsys):
    code, out, err, reps = _run(capsys, tmp_path, "--client", f"bridge:{FAKE}", "--server", "model")
    assert code == 0, out + err
    assert reps and all(r["skipped"] and "client.next_credential" in r["skipped"] for r in reps.values())


def test_missing_path_exits_2_with_the_message(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "manifest.json"
    code, out, err, _ = _run(capsys, tmp_path, "--server", f"bridge:{missing}", "--client", "model")
    assert code == 2
    assert f"conformance: bridge adapter: {missing}: no such file" in err
    assert "Traceback" not in err + out


@pytest.mark.parametrize("content, what", [
    ("{not json", "not valid JSON"),
    ('["a list"]', "must be a JSON object"),
    ('{"command": ["x"]}', "lacks 'name'"),
    ('{"name": "x", "command": []}', "'command' must be a non-empty list"),
])
def test_invalid_manifest_exits_2(tmp_path, capsys, content, what):
    path = tmp_path / "manifest.json"
    path.write_text(content)
    code, out, err, _ = _run(capsys, tmp_path, "--client", f"bridge:{path}", "--server", "model")
    assert code == 2
    assert err.startswith(f"conformance: bridge adapter: {path}: ") and what in err, err


def test_missing_optional_ops_drop_their_steps_reported_skipped(node, tmp_path, capsys):
    other = _renamed_mppx(tmp_path, "mppx")  # same name: mppx's expectations apply
    data = json.loads(other.read_text())
    data["capabilities"] = [c for c in data["capabilities"] if c != "server.restart"]
    other.write_text(json.dumps(data))
    code, out, err, reps = _run(capsys, tmp_path, "--server", f"bridge:{other}", "--client", "model",
                                "--machine", "server")
    assert code == 0, out + err
    props = reps["server"]["properties"]
    assert props["op server.restart"].startswith("skipped: the adapter lacks server.restart")
    assert reps["server"]["steps"] > 0
