"""The subprocess adapter protocol: drive an implementation in any language over JSON lines (PROTOCOL.md)."""
from adapters.bridge.process import (
    AdapterCrashed,
    AdapterError,
    AdapterProcess,
    AdapterProtocolError,
    AdapterTimeout,
    CallbackRefused,
    Manifest,
    Unsupported,
    build_adapter,
    load_manifest,
)

__all__ = [
    "AdapterCrashed",
    "AdapterError",
    "AdapterProcess",
    "AdapterProtocolError",
    "AdapterTimeout",
    "CallbackRefused",
    "Manifest",
    "Unsupported",
    "build_adapter",
    "load_manifest",
]
