"""Wire errors: every decoding failure is a `WireError` naming where it was found (which header or document)
and the dotted JSON path of the field (draft-httpauth-payment "Error Handling": say what was wrong and where)."""
from __future__ import annotations

from typing import Any, Mapping

from pydantic import (
    ValidationError,
)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

WHERE_WWW_AUTHENTICATE = "WWW-Authenticate header"
WHERE_AUTHORIZATION = "Authorization header"
WHERE_RECEIPT = "Payment-Receipt header"
WHERE_REQUEST = "challenge request"
WHERE_SNAPSHOT = "Payment-Session-Snapshot header"
WHERE_SESSION = "Payment-Session header"
WHERE_PROBLEM = "problem details body"
WHERE_OPAQUE = "challenge opaque"


class WireError(ValueError):
    """A wire value could not be decoded: `where` (header/document), `field` (dotted JSON path)."""

    def __init__(self, where: str, field: str, what: str) -> None:
        super().__init__(f"{where}: {field}: {what}")
        self.where = where
        self.field = field
        self.what = what


class MalformedHeader(WireError):
    """A header's syntax is wrong (httpauth "ABNF Collected")."""


class MalformedCredential(WireError):
    """An `Authorization: Payment` credential is malformed (httpauth "Credentials")."""


class MalformedRequest(WireError):
    """A challenge `request` (or `opaque`) is malformed (tempo-session "Request Schema")."""


class MalformedReceipt(WireError):
    """A `Payment-Receipt` is malformed (tempo-session "Receipt Generation")."""


class MalformedProblem(WireError):
    """A Problem Details body is malformed (RFC 9457; httpauth "Error Handling")."""


_UNION_TAGS = frozenset({"open", "topUp", "voucher", "close"})


def _error_path(loc: tuple[Any, ...], kind: str) -> list[str]:
    """Turn a pydantic error location into JSON path segments (dropping union tags)."""
    parts: list[str] = []
    for i, item in enumerate(loc):
        if i > 0 and loc[i - 1] == "payload" and item in _UNION_TAGS:
            continue  # the discriminated-union tag pydantic inserts
        parts.append(str(item))
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        parts.append("action")
    return parts


def _error_text(err: Mapping[str, Any]) -> str:
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "union_tag_not_found":
        return "required field is missing"
    if err["type"] == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        return f"unknown action {tag!r} (expected one of 'open', 'topUp', 'voucher', 'close')"
    msg = str(err["msg"])
    return msg[len("Value error, "):] if msg.startswith("Value error, ") else msg


def _from_validation(
    exc: ValidationError, cls: type[WireError], where: str, prefix: str = ""
) -> WireError:
    """Convert a pydantic ValidationError into a WireError naming the first failing field."""
    err = exc.errors(include_url=False)[0]
    parts = _error_path(tuple(err["loc"]), err["type"])
    if prefix:
        parts.insert(0, prefix)
    return cls(where, ".".join(parts) or prefix or "(root)", _error_text(err))


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
