"""The conformance matrix of the bundled implementations passes (known limits as expected)."""
from __future__ import annotations

from conformance.__main__ import main


def test_matrix_ci_profile_is_as_expected(capsys, tmp_path):
    code = main(["matrix", "--profile", "ci", "--trace-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "matrix: every pair as expected" in out, out
    assert code == 0


def test_run_model_pair_reports_every_property(tmp_path, capsys):
    report = tmp_path / "r.json"
    junit = tmp_path / "j.xml"
    code = main(["run", "--client", "model", "--server", "model", "--machine", "pair", "--profile", "quick",
                 "--report", str(report), "--junit", str(junit), "--trace-dir", str(tmp_path)])
    assert code == 0
    import json

    rep = json.loads(report.read_text())[0]
    assert rep["ok"] and rep["steps"] > 0
    assert rep["properties"]["S1"] == "held"
    assert rep["properties"]["B1"].startswith("skipped")  # skipped is reported, never passed
    xml = junit.read_text()
    assert "<skipped" in xml and "<failure" not in xml
