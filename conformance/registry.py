"""Adapters by bundled name or by import path `package.module:factory`.

Bundled servers and clients:
  reference  adapters/reference, hinted (the server's hints follow the run's hint encoding)
  legacy     adapters/reference with hints off (server: channelId only; client: ignores hint values)
  model      model/ rules over the real wire (conformance/model_impl.py), hinted
  model-legacy  the same, legacy
  mppx       the real mppx@0.11.0 over the Node bridge (conformance/mppx_impl.py; v2 only: on --chain memory-v2,
             its default, mppx runs the generic machines on the harness's chain, against itself, the reference and
             the model sides (memory-v2 decodes and signs Tempo 0x76); on another chain its pairs are reported
             SKIPPED with the reason)
  mppx-v1    mppx@0.6.31 (adapters/mppx-v1, the same adapter), the newest v1-only release: mppx-v1 x mppx-v1 runs
             the generic machines on our v1 escrow (--chain memory)
  bridge:PATH  any adapter speaking adapters/bridge/PROTOCOL.md, started from its manifest (PATH, relative to the
             cwd or absolute; `mppx` is the short name of bridge:adapters/mppx/manifest.json), driven like mppx
A factory is called with no arguments and returns a ServerUnderTest / ClientUnderTest.
"""
from __future__ import annotations

import importlib
from typing import Callable

from .interface import ClientUnderTest, ServerUnderTest


def _servers() -> dict[str, Callable[[], ServerUnderTest]]:
    from . import model_impl as m
    from . import reference_impl as r

    return {"reference": r.reference_server, "legacy": r.legacy_server, "model": m.model_server,
            "model-legacy": m.model_legacy_server, "mppx": _mppx_server,
            "mppx-v1": lambda: _mppx_server("mppx-v1")}


def _mppx_server(name: str = "mppx") -> ServerUnderTest:
    from .mppx_impl import MppxServer

    return MppxServer(name)


def _mppx_client(name: str = "mppx") -> ClientUnderTest:
    from .mppx_impl import MppxClient

    return MppxClient(name)


def _clients() -> dict[str, Callable[[], ClientUnderTest]]:
    from . import model_impl as m
    from . import reference_impl as r

    return {"reference": r.reference_client, "legacy": r.legacy_client, "model": m.model_client,
            "model-legacy": m.model_legacy_client, "mppx": _mppx_client,
            "mppx-v1": lambda: _mppx_client("mppx-v1")}


BUNDLED_SERVERS = ("reference", "legacy", "model", "mppx")
BUNDLED_CLIENTS = ("reference", "legacy", "model", "mppx")


def _import(spec: str):
    mod, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"{spec!r}: expected a bundled name or package.module:factory")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_server(spec: str) -> ServerUnderTest:
    table = _servers()
    if spec in table:
        return table[spec]()
    if spec.startswith("bridge:"):
        from .bridge_spec import manifest_of
        from .mppx_impl import MppxServer

        manifest_of(spec)  # BridgeSpecError when the path or the manifest is wrong
        return MppxServer(spec)
    if spec.startswith("mutant:"):
        from .mutants import MUTANTS

        return MUTANTS[spec[len("mutant:"):]].make()
    srv = _import(spec)()
    if not isinstance(srv, ServerUnderTest):
        raise TypeError(f"{spec} did not return a ServerUnderTest")
    return srv


def load_client(spec: str) -> ClientUnderTest:
    table = _clients()
    if spec in table:
        return table[spec]()
    if spec.startswith("bridge:"):
        from .bridge_spec import manifest_of
        from .mppx_impl import MppxClient

        manifest_of(spec)
        return MppxClient(spec)
    if spec.startswith("mutant:"):
        from .mutants import MUTANTS

        return MUTANTS[spec[len("mutant:"):]].make()
    cli = _import(spec)()
    if not isinstance(cli, ClientUnderTest):
        raise TypeError(f"{spec} did not return a ClientUnderTest")
    return cli


def is_hinted(spec: str) -> bool:
    """Whether an adapter follows hints: bundled names by name; an import path's adapter by its `hinted`
    attribute, or the `force_hinted` our own adapters carry (default True)."""
    if spec in ("legacy", "model-legacy"):
        return False
    if spec in _servers() or spec in _clients() or spec.startswith(("bridge:", "mutant:")):
        return True
    obj = _import(spec)()
    forced = getattr(obj, "force_hinted", None)
    return bool(getattr(obj, "hinted", True) if forced is None else forced)
