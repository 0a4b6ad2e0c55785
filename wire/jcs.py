"""JSON on the wire: JCS canonical JSON (RFC 8785, by the `rfc8785` library) for what we send, strict parsing
(UTF-8, an object, no duplicate members, no NaN) for what we receive."""
from __future__ import annotations

import json
from typing import Any

import rfc8785

from .errors import WireError, _json_kind


def canonical_json(obj: Any) -> bytes:
    """JCS canonical JSON (RFC 8785), UTF-8, by the `rfc8785` library: keys sorted by UTF-16 code units, no
    whitespace, ES-style string escaping. Integers beyond 2^53 and lone surrogates are refused (ValueError):
    amounts travel as decimal strings."""
    return rfc8785.dumps(obj)


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_object(raw: bytes, cls: type[WireError], where: str, field: str) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object (duplicate keys and NaN rejected)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise cls(where, field, "not valid UTF-8") from None
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except _DuplicateKey as exc:
        raise cls(where, field, f"duplicate JSON member {exc.args[0]!r}") from None
    except json.JSONDecodeError as exc:
        raise cls(where, field, f"not valid JSON ({exc.msg} at offset {exc.pos})") from None
    except (ValueError, RecursionError) as exc:
        raise cls(where, field, f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise cls(where, field, f"JSON is not an object (got {_json_kind(obj)})")
    return obj
