"""Subprocess adapters named on the command line: `bridge:PATH/TO/manifest.json`, or a bundled short name.

Any adapter that speaks adapters/bridge/PROTOCOL.md is driven through the generic machines (conformance/machines.py)
on the harness's chain and network, exactly as mppx is (`mppx` is the bundled short name for
`bridge:adapters/mppx/manifest.json`). This module resolves such a spec to its manifest (checked, with a clear
error for a missing path or an invalid manifest), names it for the expectations (the manifest's `name`: expected
findings are keyed by it, never by path) and states which adapter ops each machine needs
(PROTOCOL.md, "What the conformance machines need").
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

from adapters.bridge.process import CORE_OPS, Manifest, load_manifest

REPO = Path(__file__).resolve().parents[1]
PREFIX = "bridge:"
# Short names for the manifests shipped with the project.
BUNDLED = {"mppx": REPO / "adapters" / "mppx" / "manifest.json",
           # the newest v1-only release (<= 0.6.x speak the v1 escrow), same adapter: runs on our v1 escrow
           "mppx-v1": REPO / "adapters" / "mppx-v1" / "manifest.json"}

# The ops without which no run of that side makes sense (the generic machines, conformance/machines.py, on the
# harness's chain): missing any -> the whole run is SKIPPED. A client answers `client.fetch` (its application entry
# point) or the low-level `client.next_credential` loop.
SERVER_ESSENTIAL = ("server.configure", "server.challenge", "server.handle", "server.record")
CLIENT_ESSENTIAL = ("client.next_credential",)


class BridgeSpecError(Exception):
    """A `bridge:` spec whose manifest is missing or invalid (the CLI exits 2 with this message)."""

    def __init__(self, given: str, what: str) -> None:
        super().__init__(f"conformance: bridge adapter: {given}: {what}")
        self.given = given
        self.what = what


def is_bridge(spec: Optional[str]) -> bool:
    return isinstance(spec, str) and (spec in BUNDLED or spec.startswith(PREFIX))


def _given(spec: str) -> str:
    return spec[len(PREFIX):] if spec.startswith(PREFIX) else spec


def manifest_path(spec: str) -> Path:
    """The resolved manifest path of a bridge spec (relative paths against the cwd; a directory means its
    manifest.json). Not checked: see `manifest_of`."""
    if spec in BUNDLED:
        return BUNDLED[spec].resolve()
    given = _given(spec)
    p = Path(given).expanduser()
    if p.is_dir():
        p = p / "manifest.json"
    return p.resolve()


_manifests: dict = {}


def manifest_of(spec: str) -> Manifest:
    """The checked manifest of a bridge spec, or BridgeSpecError saying what is wrong."""
    given = _given(spec)
    if not given:
        raise BridgeSpecError(spec, "no manifest path after 'bridge:' (use bridge:path/to/manifest.json)")
    path = manifest_path(spec)
    if path in _manifests:
        return _manifests[path]
    if not path.exists():
        raise BridgeSpecError(given, f"no such file ({path})")
    if not path.is_file():
        raise BridgeSpecError(given, f"not a file ({path})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BridgeSpecError(given, f"cannot read the manifest: {exc}") from None
    except ValueError as exc:
        raise BridgeSpecError(given, f"the manifest is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BridgeSpecError(given, "the manifest must be a JSON object (PROTOCOL.md, 'The manifest')")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BridgeSpecError(given, "the manifest lacks 'name' (a non-empty string)")
    command = data.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(a, str) and a for a in command):
        raise BridgeSpecError(given, "the manifest's 'command' must be a non-empty list of strings (an argv)")
    for key in ("build", "build_inputs", "capabilities"):
        v = data.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(a, str) for a in v)):
            raise BridgeSpecError(given, f"the manifest's {key!r} must be a list of strings")
    for key in ("timeout", "startup_timeout"):
        v = data.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
            raise BridgeSpecError(given, f"the manifest's {key!r} must be a positive number of seconds")
    try:
        manifest = load_manifest(path)
    except ValueError as exc:
        raise BridgeSpecError(given, str(exc)) from None
    exe = manifest.command[0]
    if "/" in command[0] and not Path(exe).exists():
        raise BridgeSpecError(given, f"the manifest's command {command[0]!r} does not exist ({exe})")
    _manifests[path] = manifest
    return manifest


def check_specs(*specs: str) -> None:
    """Raise BridgeSpecError for the first bridge spec whose manifest is missing or invalid."""
    for spec in specs:
        if is_bridge(spec):
            manifest_of(spec)


def impl_name(spec: str) -> str:
    """The name expectations are keyed by: the manifest's `name` for a bridge spec, else the spec itself."""
    if not is_bridge(spec):
        return spec
    try:
        return manifest_of(spec).name
    except BridgeSpecError:
        return spec


def effective_capabilities(manifest: Manifest, hello: Optional[dict]) -> frozenset:
    """The ops the adapter answers: what its `hello` lists (and its manifest too: the harness refuses the rest
    without a round trip), plus the core ops."""
    caps = set(manifest.capabilities)
    listed = (hello or {}).get("capabilities")
    if isinstance(listed, list):
        caps &= {c for c in listed if isinstance(c, str)}
    return frozenset(caps | set(CORE_OPS))


def missing(caps: Iterable[str], needed: Iterable[str]) -> list:
    have = set(caps)
    return [op for op in needed if op not in have]
