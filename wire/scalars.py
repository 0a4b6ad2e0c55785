"""The scalar field types of the wire (draft-tempo-session "Encoding Conventions"): decimal amounts, hex
values, timestamps, base64url-nopad, and `WireModel`, the base of every wire model (camelCase, unknown fields
ignored, httpauth "Versioning")."""
from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from model.base import UINT128_MAX  # defined once, in model/base.py
from .errors import WireError, _json_kind


# --------------------------------------------------------------------------
# Field types (tempo-session "Encoding Conventions")
# --------------------------------------------------------------------------

_DECIMAL_RE = re.compile(r"[0-9]+")
_HEX_BODY_RE = re.compile(r"[0-9a-fA-F]*")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
_RFC3339_RE = re.compile(
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]"
    r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
_METHOD_RE = re.compile(r"[a-z]+")
_INTENT_RE = re.compile(r"[A-Za-z0-9-]+")


def _from_wire(info: ValidationInfo) -> bool:
    return bool(info.context) and bool(info.context.get("wire"))


def _decimal(value: Any, info: ValidationInfo) -> int:
    """Decimal-string amount (tempo-session "Numeric Values"), bounded at 2^128-1.

    On the wire only JSON strings matching ^[0-9]+$ are accepted; Python
    callers may also pass a non-negative int.
    """
    if isinstance(value, str):
        if not _DECIMAL_RE.fullmatch(value):
            raise PydanticCustomError(
                "decimal_string",
                "expected a decimal string matching ^[0-9]+$, got {value}",
                {"value": repr(value)},
            )
        digits = value.lstrip("0") or "0"
        if len(digits) > 39:
            raise PydanticCustomError(
                "decimal_overflow", "amount exceeds 2^128-1 ({n} digits)", {"n": len(digits)}
            )
        number = int(digits)
    elif isinstance(value, int) and not isinstance(value, bool) and not _from_wire(info):
        number = value
        if number < 0:
            raise PydanticCustomError("decimal_negative", "amount must be non-negative, got {n}", {"n": number})
    else:
        raise PydanticCustomError(
            "decimal_string",
            "expected a decimal string, got JSON {kind}",
            {"kind": _json_kind(value)},
        )
    if number > UINT128_MAX:
        raise PydanticCustomError("decimal_overflow", "amount {n} exceeds 2^128-1", {"n": number})
    return number



def _hex_validator(sizes: tuple[int, ...] | None, kind: str):
    """Build a validator for 0x-hex of the given byte lengths (None: any even length >= 1 byte)."""

    def validate(value: Any) -> str:
        if not isinstance(value, str):
            raise PydanticCustomError(
                "hex", "expected a 0x-prefixed hex {kind} string, got JSON {got}",
                {"kind": kind, "got": _json_kind(value)},
            )
        if not value.startswith("0x"):
            raise PydanticCustomError("hex", "expected a 0x-prefixed hex {kind}", {"kind": kind})
        body = value[2:]
        if not _HEX_BODY_RE.fullmatch(body):
            raise PydanticCustomError("hex", "{kind} contains non-hex characters", {"kind": kind})
        if len(body) % 2:
            raise PydanticCustomError("hex", "{kind} has an odd number of hex digits", {"kind": kind})
        n = len(body) // 2
        if sizes is None:
            if n == 0:
                raise PydanticCustomError("hex", "{kind} is empty", {"kind": kind})
        elif n not in sizes:
            want = " or ".join(str(s) for s in sizes)
            raise PydanticCustomError(
                "hex", "{kind} must be {want} bytes, got {n}", {"kind": kind, "want": want, "n": n}
            )
        return value.lower()

    return validate


def _strict_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("json_integer", "expected a JSON integer, got {got}", {"got": _json_kind(value)})
    if value < 0:
        raise PydanticCustomError("json_integer", "expected a non-negative integer, got {n}", {"n": value})
    return value


def _str_only(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("string", "expected a string, got JSON {got}", {"got": _json_kind(value)})
    return value


def _rfc3339(value: Any) -> str:
    value = _str_only(value)
    if not _RFC3339_RE.fullmatch(value):
        raise PydanticCustomError("rfc3339", "expected an RFC 3339 date-time, got {v}", {"v": repr(value)})
    return value


def _b64url_param(value: Any) -> str:
    value = _str_only(value)
    if not value or not _B64URL_RE.fullmatch(value):
        raise PydanticCustomError(
            "base64url", "expected base64url without padding (1*( ALPHA / DIGIT / \"-\" / \"_\" ))", {}
        )
    return value


Amount = Annotated[int, PlainValidator(_decimal), PlainSerializer(str, return_type=str, when_used="json")]
"""Decimal-string amount on the wire, int in Python."""
Address = Annotated[str, PlainValidator(_hex_validator((20,), "address"))]
Bytes32 = Annotated[str, PlainValidator(_hex_validator((32,), "bytes32"))]
SignatureHex = Annotated[str, PlainValidator(_hex_validator((64, 65), "signature"))]
HexData = Annotated[str, PlainValidator(_hex_validator(None, "hex data"))]
JsonUInt = Annotated[int, PlainValidator(_strict_int)]
Text = Annotated[str, PlainValidator(_str_only)]
Timestamp = Annotated[str, PlainValidator(_rfc3339)]
Base64Url = Annotated[str, PlainValidator(_b64url_param)]


class WireModel(BaseModel):
    """Immutable camelCase-on-the-wire model; unknown fields are ignored.

    `_constants` are constant-valued fields (`action`, `type`, receipt
    `method`/`intent`/`status`) that are REQUIRED on the wire but filled in
    when a model is constructed from Python.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )
    _constants: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _fill_constants(cls, data: Any, info: ValidationInfo) -> Any:
        if cls._constants and isinstance(data, dict) and not _from_wire(info):
            missing = {k: v for k, v in cls._constants.items() if k not in data}
            if missing:
                data = {**missing, **data}
        return data

    def to_wire(self) -> dict[str, Any]:
        """The JSON object for the wire: camelCase keys, canonical strings, absent fields omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)



def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 4648 section 5; httpauth "base64url-nopad")."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(
    value: str, *, where: str = "base64url", field: str = "value", error: type[WireError] = WireError
) -> bytes:
    """Strict base64url-nopad decoding: no padding, only the URL-safe alphabet, canonical bits.

    Raises `error` (a WireError subclass) with `where` and `field`.
    """
    if not isinstance(value, str):
        raise error(where, field, f"expected a string, got {type(value).__name__}")
    if "=" in value:
        raise error(where, field, "padding characters ('=') are not allowed in base64url-nopad")
    if not _B64URL_RE.fullmatch(value):
        bad = next(c for c in value if not (c.isascii() and (c.isalnum() or c in "-_")))
        raise error(where, field, f"invalid base64url character {bad!r}")
    if len(value) % 4 == 1:
        raise error(where, field, "invalid base64url length")
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - excluded above
        raise error(where, field, f"invalid base64url ({exc})") from None
    if b64url_encode(data) != value:
        raise error(where, field, "non-canonical base64url (non-zero trailing bits)")
    return data
