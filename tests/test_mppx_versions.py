"""conformance/versions.py: one folder per mppx release, the same adapter started against each.

CI never installs a release here (the table is `python -m conformance versions mppx`): these tests reuse the
pinned 0.11.0 install of adapters/mppx through a symlinked node_modules."""
from __future__ import annotations

import json

import pytest

from adapters.bridge import AdapterProcess
from adapters.bridge.process import load_manifest
from adapters.bridge.testing import MPPX_MANIFEST, node_adapter_or_skip
from conformance import versions


def test_release_protocols_follow_the_release_notes():
    assert not versions.speaks_v2("0.6.31") and versions.speaks_v2("0.7.0") and versions.speaks_v2("0.11.0")
    assert versions.speaks_v2("0.10.1") and versions.version_key("0.10.1") > versions.version_key("0.9.3")
    assert versions.PINNED[-1] == "0.11.0" and [v for v in versions.PINNED if not versions.speaks_v2(v)] == ["0.6.31"]


def test_a_release_that_cannot_install_is_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(versions.shutil, "which", lambda name: None)
    out = versions.check_release("0.8.12", machines=False, root=tmp_path)
    assert list(out) == ["install"]
    assert out["install"].verdict == "SKIPPED" and "npm is not on PATH" in out["install"].detail


def _preinstalled(tmp_path, version="0.11.0"):
    folder = tmp_path / version
    folder.mkdir()
    (folder / "node_modules").symlink_to(MPPX_MANIFEST.parent / "node_modules")
    return versions.install_release(version, root=tmp_path)


def test_release_manifest_runs_the_adapter_through_a_symlink_named_mppx(tmp_path):
    node_adapter_or_skip().close()  # builds adapters/mppx (npm ci) or skips
    path = _preinstalled(tmp_path)
    m = load_manifest(path)
    assert m.name == "mppx" and m.version == "0.11.0"  # mppx's expectations apply
    assert "--preserve-symlinks-main" in m.command and (path.parent / "adapter.mjs").is_symlink()
    assert "client.fetch" in m.capabilities


def test_adapter_started_against_a_release_folder_reports_that_release(tmp_path):
    node_adapter_or_skip().close()
    path = _preinstalled(tmp_path)
    with AdapterProcess(load_manifest(path)) as adapter:
        assert adapter.hello["version"] == "0.11.0" and adapter.hello["protocol"] == 2
        assert versions.check_vectors(adapter, "0.11.0") == {
            "vectors v1": versions.Verdict("PASS"), "vectors v2": versions.Verdict("PASS")}


def test_table_has_one_line_per_release_and_check():
    text = versions.table({"0.8.12": {"F14": versions.Verdict("shows", "8. request -> failed")},
                           "0.8.14": {"F14": versions.Verdict("absent")}})
    lines = text.splitlines()
    assert len(lines) == 3 and lines[1].split()[:3] == ["0.8.12", "F14", "shows"]
    assert lines[2].split()[:3] == ["0.8.14", "F14", "absent"]


def test_the_full_sweep_takes_every_plain_release_with_sessions_oldest_first():
    listed = ["0.0.9", "0.1.0", "0.1.1", "0.10.1", "0.2.0", "0.8.7-beta.1", "0.11.0", "0.6.31"]
    assert versions.session_releases(listed) == ["0.1.1", "0.2.0", "0.6.31", "0.10.1", "0.11.0"]
