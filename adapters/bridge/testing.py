"""pytest helpers for tests that drive a real adapter (imported by tests only)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from adapters.bridge.process import AdapterProcess, build_adapter, load_manifest

REPO = Path(__file__).resolve().parents[2]
MPPX_MANIFEST = REPO / "adapters" / "mppx" / "manifest.json"


def node_major() -> int | None:
    """The major version of `node` on PATH, or None when there is none."""
    node = shutil.which("node")
    if node is None:
        return None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"v(\d+)\.", out.strip())
    return int(m.group(1)) if m else None


def node_adapter_or_skip(manifest_path: Path = MPPX_MANIFEST, *, min_node: int = 20) -> AdapterProcess:
    """Build (npm ci, once per lock file) and start a Node adapter, or skip saying why.

    Skips only when `node`/`npm` are missing or too old, or when the install
    cannot run (e.g. no registry). A built adapter that then fails to start is
    an error, not a skip.
    """
    major = node_major()
    if major is None:
        pytest.skip("node is not on PATH: the mppx adapter needs Node >= 20")
    if major < min_node:
        pytest.skip(f"node v{major} is too old: the mppx adapter needs Node >= {min_node}")
    manifest = load_manifest(manifest_path)
    if not manifest.is_built:
        if shutil.which("npm") is None:
            pytest.skip("npm is not on PATH: cannot install the mppx adapter (make mppx)")
        try:
            build_adapter(manifest)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"cannot install the {manifest.name} adapter ({' '.join(manifest.build)}): {exc}")
    adapter = AdapterProcess(manifest)
    adapter.start()
    return adapter
