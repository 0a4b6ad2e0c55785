"""The wire boundary: pydantic models and header codecs for Tempo sessions.

Implements draft-httpauth-payment-00 ("Challenge (WWW-Authenticate)",
"Credentials (Authorization)", "Payment-Receipt Header", "Error Handling",
"ABNF Collected") and draft-tempo-session-00 ("Encoding Conventions",
"Request Schema", "Method Details", "Session Snapshot", "Credential Schema",
"Receipt Generation", "Rejection and Error Responses", "Schema Definitions"),
plus the seed's flat v1 hint fields in `methodDetails`.

pydantic lives only here. Every failure is a `WireError` naming where it was
found (which header or document) and the dotted JSON path of the field.
Unknown JSON fields and unknown auth-params are ignored (httpauth
"Versioning": "implementations MUST ignore unknown parameters and fields").
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from typing import Annotated, Any, ClassVar, Literal, Mapping, Union

import attrs
import rfc8785
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

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


# --------------------------------------------------------------------------
# Field types (tempo-session "Encoding Conventions")
# --------------------------------------------------------------------------

from model.base import UINT128_MAX  # noqa: E402 (defined once, in model/base.py)
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


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


class Descriptor(WireModel):
    """v2 channel descriptor (tempo-session "Channel Descriptor")."""

    payer: Address
    payee: Address
    operator: Address
    token: Address
    salt: Bytes32
    authorized_signer: Address
    expiring_nonce_hash: Bytes32

    @classmethod
    def of(cls, record: Any) -> "Descriptor":
        """The wire form of any descriptor record with these field names (model.chain.Descriptor, the chain
        backends' ChannelDescriptor)."""
        return cls(payer=record.payer, payee=record.payee, operator=record.operator, token=record.token,
                   salt=record.salt, authorized_signer=record.authorized_signer,
                   expiring_nonce_hash=record.expiring_nonce_hash)


class HighestVoucher(WireModel):
    """The server's highest accepted voucher, as mppx 0.11 puts in a snapshot."""

    channel_id: Bytes32
    cumulative_amount: Amount
    signature: SignatureHex


class SessionSnapshot(WireModel):
    """v2 reusable-channel snapshot (tempo-session "Session Snapshot").

    `descriptor` is REQUIRED by the draft for v2 channels; it is optional here
    because v1-escrow servers use this profile too. `highestVoucher` follows mppx.
    """

    accepted_cumulative: Amount
    chain_id: JsonUInt
    channel_id: Bytes32
    close_requested_at: Amount | None = None
    deposit: Amount
    descriptor: Descriptor | None = None
    escrow: Address
    highest_voucher: HighestVoucher | None = None
    required_cumulative: Amount
    settled: Amount
    spent: Amount
    units: JsonUInt | None = None


class MethodDetails(WireModel):
    """`request.methodDetails` (tempo-session "Method Details") plus the seed's flat v1 hints."""

    escrow_contract: Address
    channel_id: Bytes32 | None = None
    min_voucher_delta: Amount | None = None
    chain_id: JsonUInt | None = None
    operator: Address | None = None
    session_protocol: Literal["v1", "v2"] | None = None
    fee_payer: Annotated[bool, Strict()] | None = None
    session_snapshot: SessionSnapshot | None = None
    # seed: flat v1 hint fields
    accepted_cumulative: Amount | None = None
    spent: Amount | None = None
    deposit: Amount | None = None
    required_cumulative: Amount | None = None


class SessionRequest(WireModel):
    """The decoded challenge `request` (tempo-session "Request Schema")."""

    amount: Amount
    unit_type: Text | None = None
    suggested_deposit: Amount | None = None
    currency: Address
    recipient: Address
    method_details: MethodDetails


class Challenge(WireModel):
    """A Payment challenge's auth-params (httpauth "Challenge (WWW-Authenticate)").

    `request` and `opaque` are kept exactly as sent (base64url), since the
    challenge binding HMACs them byte for byte.
    """

    id: Text
    realm: Text
    method: Text
    intent: Text
    request: Base64Url
    expires: Timestamp | None = None
    digest: Text | None = None
    description: Text | None = None
    opaque: Base64Url | None = None

    @field_validator("id")
    @classmethod
    def _id_non_empty(cls, value: str) -> str:
        if not value:
            raise PydanticCustomError("empty_id", "id must be non-empty", {})
        return value

    @field_validator("method")
    @classmethod
    def _method_lowercase(cls, value: str) -> str:
        if not _METHOD_RE.fullmatch(value):
            raise PydanticCustomError(
                "method", "method must be lowercase ASCII letters (1*LOWERALPHA), got {v}", {"v": repr(value)}
            )
        return value

    @field_validator("intent")
    @classmethod
    def _intent_token(cls, value: str) -> str:
        if not _INTENT_RE.fullmatch(value):
            raise PydanticCustomError(
                "intent", "intent must match 1*( ALPHA / DIGIT / \"-\" ), got {v}", {"v": repr(value)}
            )
        return value

    def decoded_request(self) -> SessionRequest:
        """Decode `request` as a session request (raises MalformedRequest)."""
        return decode_request(self.request)

    @classmethod
    def issue(
        cls,
        secret: bytes,
        *,
        realm: str,
        request: SessionRequest | str,
        method: str = "tempo",
        intent: str = "session",
        expires: str | None = None,
        digest: str | None = None,
        description: str | None = None,
        opaque: str | None = None,
    ) -> "Challenge":
        """Build a challenge whose id is the HMAC-SHA256 binding (httpauth "Challenge Binding")."""
        request_b64 = request if isinstance(request, str) else encode_request(request)
        cid = challenge_id(secret, realm, method, intent, request_b64, expires, digest, opaque)
        return cls(
            id=cid, realm=realm, method=method, intent=intent, request=request_b64,
            expires=expires, digest=digest, description=description, opaque=opaque,
        )


class OpenPayload(WireModel):
    """`action: "open"` (tempo-session "Open Payload")."""

    _constants: ClassVar[dict[str, str]] = {"action": "open", "type": "transaction"}

    action: Literal["open"]
    type: Literal["transaction"]
    channel_id: Bytes32
    transaction: HexData
    authorized_signer: Address | None = None
    descriptor: Descriptor | None = None
    cumulative_amount: Amount
    signature: SignatureHex


class TopUpPayload(WireModel):
    """`action: "topUp"` (tempo-session "TopUp Payload")."""

    _constants: ClassVar[dict[str, str]] = {"action": "topUp", "type": "transaction"}

    action: Literal["topUp"]
    type: Literal["transaction"]
    channel_id: Bytes32
    transaction: HexData
    descriptor: Descriptor | None = None
    additional_deposit: Amount


class VoucherPayload(WireModel):
    """`action: "voucher"` (tempo-session "Voucher Payload")."""

    _constants: ClassVar[dict[str, str]] = {"action": "voucher"}

    action: Literal["voucher"]
    channel_id: Bytes32
    descriptor: Descriptor | None = None
    cumulative_amount: Amount
    signature: SignatureHex


class ClosePayload(WireModel):
    """`action: "close"` (tempo-session "Close Payload")."""

    _constants: ClassVar[dict[str, str]] = {"action": "close"}

    action: Literal["close"]
    channel_id: Bytes32
    descriptor: Descriptor | None = None
    cumulative_amount: Amount
    signature: SignatureHex


Payload = Annotated[
    Union[OpenPayload, TopUpPayload, VoucherPayload, ClosePayload], Field(discriminator="action")
]
"""The session payload, discriminated on `action` (tempo-session "Payload Actions")."""


class Credential(WireModel):
    """The decoded `Authorization: Payment` credential (httpauth "Credentials")."""

    challenge: Challenge
    source: Text | None = None
    payload: Payload


class Receipt(WireModel):
    """The decoded session `Payment-Receipt` (tempo-session "Receipt Generation")."""

    _constants: ClassVar[dict[str, str]] = {"method": "tempo", "intent": "session", "status": "success"}

    method: Literal["tempo"]
    intent: Literal["session"]
    status: Literal["success"]
    timestamp: Timestamp
    reference: Bytes32
    challenge_id: Text
    channel_id: Bytes32
    accepted_cumulative: Amount
    spent: Amount
    units: JsonUInt | None = None
    tx_hash: Bytes32 | None = None


class ProblemDetails(WireModel):
    """RFC 9457 problem details (httpauth "Error Handling"; tempo-session "Rejection and Error Responses").

    The session extension members are typed; any other member is kept as is.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="allow"
    )

    type: Text = "about:blank"
    title: Text
    status: JsonUInt
    detail: Text | None = None
    channel_id: Bytes32 | None = None
    required_top_up: Amount | None = None
    accepted_cumulative: Amount | None = None
    required_cumulative: Amount | None = None
    deposit: Amount | None = None


# --------------------------------------------------------------------------
# Problem types
# --------------------------------------------------------------------------

PROBLEM_BASE = "https://paymentauth.org/problems/"


@attrs.frozen
class ProblemType:
    """A registered problem type (httpauth "Error Codes"; tempo-session "Problem Type Registration")."""

    slug: str
    uri: str
    title: str
    status: int


def _problems() -> dict[str, ProblemType]:
    core = [
        ("payment-required", "Payment Required", 402),
        ("payment-insufficient", "Payment Insufficient", 402),
        ("payment-expired", "Payment Expired", 402),
        ("verification-failed", "Payment Verification Failed", 402),
        ("method-unsupported", "Method Unsupported", 400),
        ("malformed-credential", "Malformed Credential", 402),
        ("invalid-challenge", "Invalid Challenge", 402),
    ]
    session = [
        ("invalid-signature", "Invalid Signature", 402),
        ("signer-mismatch", "Signer Mismatch", 402),
        ("amount-exceeds-deposit", "Amount Exceeds Deposit", 402),
        ("delta-too-small", "Delta Too Small", 402),
        ("channel-not-found", "Channel Not Found", 410),
        ("channel-finalized", "Channel Finalized", 410),
        ("challenge-not-found", "Challenge Not Found", 402),
        ("insufficient-balance", "Insufficient Balance", 402),
    ]
    table = {s: ProblemType(s, PROBLEM_BASE + s, t, st) for s, t, st in core}
    table.update({s: ProblemType(s, PROBLEM_BASE + "session/" + s, t, st) for s, t, st in session})
    return table


PROBLEMS: dict[str, ProblemType] = _problems()
"""Problem types keyed by slug ("invalid-signature", "payment-required", ...)."""
PROBLEMS_BY_URI: dict[str, ProblemType] = {p.uri: p for p in PROBLEMS.values()}


def problem(slug: str, detail: str | None = None, **extensions: Any) -> ProblemDetails:
    """A ProblemDetails for a registered type; extensions by snake_case or camelCase name."""
    kind = PROBLEMS[slug]
    return ProblemDetails(type=kind.uri, title=kind.title, status=kind.status, detail=detail, **extensions)


def encode_problem(details: ProblemDetails) -> bytes:
    """The application/problem+json body (canonical JSON)."""
    return canonical_json(details.to_wire())


def parse_problem(body: bytes | str) -> ProblemDetails:
    """Parse an application/problem+json body (raises MalformedProblem)."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    obj = _json_object(raw, MalformedProblem, WHERE_PROBLEM, "body")
    return _validate(ProblemDetails, obj, MalformedProblem, WHERE_PROBLEM)


# --------------------------------------------------------------------------
# Codecs
# --------------------------------------------------------------------------


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


def _validate(model: type[WireModel], obj: Any, cls: type[WireError], where: str, prefix: str = ""):
    try:
        return model.model_validate(obj, context={"wire": True})
    except ValidationError as exc:
        raise _from_validation(exc, cls, where, prefix) from None


def encode_request(request: SessionRequest) -> str:
    """`request` = base64url-nopad(JCS(request JSON)), absent fields omitted (httpauth "Required Parameters")."""
    return b64url_encode(canonical_json(request.to_wire()))


def decode_request(value: str) -> SessionRequest:
    """Decode a challenge `request`; errors name "challenge request" and "request.<path>"."""
    raw = b64url_decode(value, where=WHERE_REQUEST, field="request", error=MalformedRequest)
    obj = _json_object(raw, MalformedRequest, WHERE_REQUEST, "request")
    return _validate(SessionRequest, obj, MalformedRequest, WHERE_REQUEST, "request")


def encode_opaque(data: Mapping[str, str]) -> str:
    """`opaque` = base64url-nopad(JCS(flat string map)) (httpauth "Optional Parameters")."""
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise WireError(WHERE_OPAQUE, f"opaque.{key}", "opaque must be a flat string-to-string map")
    return b64url_encode(canonical_json(dict(data)))


def decode_opaque(value: str) -> dict[str, str]:
    """Decode `opaque` into its flat string map (raises MalformedRequest)."""
    raw = b64url_decode(value, where=WHERE_OPAQUE, field="opaque", error=MalformedRequest)
    obj = _json_object(raw, MalformedRequest, WHERE_OPAQUE, "opaque")
    for key, item in obj.items():
        if not isinstance(item, str):
            raise MalformedRequest(WHERE_OPAQUE, f"opaque.{key}", f"expected a string, got JSON {_json_kind(item)}")
    return obj


def challenge_id(
    secret: bytes,
    realm: str,
    method: str,
    intent: str,
    request_b64: str,
    expires: str | None = None,
    digest: str | None = None,
    opaque_b64: str | None = None,
) -> str:
    """base64url(HMAC-SHA256(secret, seven pipe-joined slots)) (httpauth "Recommended: HMAC-SHA256 Binding")."""
    slots = [realm, method, intent, request_b64, expires or "", digest or "", opaque_b64 or ""]
    mac = hmac.new(secret, "|".join(slots).encode("utf-8"), hashlib.sha256).digest()
    return b64url_encode(mac)


def verify_challenge_id(secret: bytes, challenge: Challenge) -> bool:
    """True when `challenge.id` is the HMAC binding of its parameters (constant-time compare)."""
    expected = challenge_id(
        secret, challenge.realm, challenge.method, challenge.intent, challenge.request,
        challenge.expires, challenge.digest, challenge.opaque,
    )
    return hmac.compare_digest(expected.encode(), challenge.id.encode("utf-8", "surrogatepass"))


# ---- WWW-Authenticate (RFC 9110 section 11; httpauth "Challenge", "ABNF Collected")

_TOKEN68_RE = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_CHALLENGE_PARAMS = ("id", "realm", "method", "intent", "request", "expires", "digest", "description", "opaque")
_REQUIRED_PARAMS = ("id", "realm", "method", "intent", "request")


def _qd_ok(ch: str) -> bool:
    """qdtext / quoted-pair octets: HTAB, SP, VCHAR, obs-text (non-ASCII accepted as text)."""
    o = ord(ch)
    return o == 0x09 or 0x20 <= o <= 0x7E or o >= 0x80


# The same classes as regular expressions (the fast path; the character loop above only names the error).
_NOT_QD_RE = re.compile(r"[^\t\x20-\x7e\x80-\U0010ffff]")
_QUOTED_RE = re.compile(r'"((?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]|\\[\t\x20-\x7e\x80-\U0010ffff])*)"')
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.S)
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _quote(value: str, name: str) -> str:
    bad = _NOT_QD_RE.search(value)
    if bad:
        raise MalformedHeader(WHERE_WWW_AUTHENTICATE, name,
                              f"control character {bad.group(0)!r} cannot appear in a quoted-string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_www_authenticate(challenge: Challenge) -> str:
    """`Payment id="…", realm="…", …` with quoted-string escaping (httpauth "Challenge")."""
    params = challenge.model_dump(exclude_none=True)
    return "Payment " + ", ".join(f"{k}={_quote(params[k], k)}" for k in _CHALLENGE_PARAMS if k in params)


class _Scanner:
    """A cursor over a WWW-Authenticate value (RFC 9110 auth-scheme / auth-param / token68)."""

    def __init__(self, text: str) -> None:
        self.s, self.i, self.n = text, 0, len(text)

    def error(self, field: str, what: str) -> MalformedHeader:
        return MalformedHeader(WHERE_WWW_AUTHENTICATE, field, f"{what} at offset {self.i}")

    def ows(self) -> None:
        while self.i < self.n and self.s[self.i] in " \t":
            self.i += 1

    def peek(self) -> str:
        return self.s[self.i] if self.i < self.n else ""

    def token(self) -> str:
        m = _TOKEN_RE.match(self.s, self.i)
        if m is None:
            return ""
        self.i = m.end()
        return m.group(0)

    def skip_list_separators(self) -> None:
        self.ows()
        while self.peek() == ",":
            self.i += 1
            self.ows()

    def at_param(self) -> bool:
        """Lookahead: `token BWS "="` starts an auth-param (otherwise a new challenge begins)."""
        m = _TOKEN_RE.match(self.s, self.i)
        if m is None:
            return False
        j = m.end()
        while j < self.n and self.s[j] in " \t":
            j += 1
        return j < self.n and self.s[j] == "="

    def quoted(self, name: str) -> str:
        m = _QUOTED_RE.match(self.s, self.i)
        if m is not None:
            self.i = m.end()
            body = m.group(1)
            return _QUOTED_PAIR_RE.sub(r"\1", body) if "\\" in body else body
        return self._quoted_error(name)

    def _quoted_error(self, name: str) -> str:
        """The character walk, run only on a quoted-string the expression refused: it names what is wrong."""
        self.i += 1  # opening DQUOTE
        out: list[str] = []
        while self.i < self.n:
            ch = self.s[self.i]
            if ch == '"':
                self.i += 1
                return "".join(out)
            if ch == "\\":
                if self.i + 1 >= self.n:
                    raise self.error(name, "dangling backslash in quoted-string")
                nxt = self.s[self.i + 1]
                if not _qd_ok(nxt):
                    raise self.error(name, f"invalid quoted-pair {nxt!r}")
                out.append(nxt)
                self.i += 2
                continue
            if not _qd_ok(ch):
                raise self.error(name, f"invalid character {ch!r} in quoted-string")
            out.append(ch)
            self.i += 1
        raise self.error(name, "unterminated quoted-string")

    def challenge(self) -> tuple[str, list[tuple[str, str]] | str | None]:
        scheme = self.token()
        if not scheme:
            raise self.error("auth-scheme", f"expected an auth-scheme, found {self.peek()!r}")
        start = self.i
        while self.peek() == " " or self.peek() == "\t":
            self.i += 1
        if self.i >= self.n or self.peek() == ",":
            return scheme, None
        if self.i == start:
            raise self.error("auth-scheme", f"expected SP after auth-scheme {scheme!r}")
        m = _TOKEN68_RE.match(self.s, self.i)
        if m:
            j = m.end()
            while j < self.n and self.s[j] in " \t":
                j += 1
            if j >= self.n or self.s[j] == ",":
                self.i = j
                return scheme, m.group(0)
        params: list[tuple[str, str]] = []
        while True:
            name = self.token()
            if not name:
                raise self.error("auth-param", f"expected a parameter name, found {self.peek()!r}")
            name = name.lower()
            self.ows()
            if self.peek() != "=":
                raise self.error(name, "expected '=' after parameter name")
            self.i += 1
            self.ows()
            if self.peek() == '"':
                value = self.quoted(name)
            else:
                value = self.token()
                if not value:
                    raise self.error(name, "expected a token or quoted-string value")
            params.append((name, value))
            self.ows()
            if self.i >= self.n:
                return scheme, params
            if self.peek() != ",":
                raise self.error(name, f"unexpected {self.peek()!r} after parameter value")
            self.skip_list_separators()
            if self.i >= self.n or not self.at_param():
                return scheme, params


def _payment_challenge(params: list[tuple[str, str]] | str | None) -> Challenge:
    if params is None or isinstance(params, str):
        raise MalformedHeader(WHERE_WWW_AUTHENTICATE, "id", "Payment challenge without auth-params (id is required)")
    seen: dict[str, str] = {}
    for name, value in params:
        if name in seen:
            raise MalformedHeader(WHERE_WWW_AUTHENTICATE, name, "parameter appears more than once")
        seen[name] = value
    for name in _REQUIRED_PARAMS:
        if name not in seen:
            raise MalformedHeader(WHERE_WWW_AUTHENTICATE, name, "required parameter is missing")
    known = {k: v for k, v in seen.items() if k in _CHALLENGE_PARAMS}
    return _validate(Challenge, known, MalformedHeader, WHERE_WWW_AUTHENTICATE)


def parse_www_authenticate(value: str) -> list[Challenge]:
    """All Payment challenges in a WWW-Authenticate value (RFC 9110 #challenge list).

    Other schemes are skipped, unknown params ignored, param names and the
    scheme are case-insensitive. Raises MalformedHeader naming the param.
    """
    scanner = _Scanner(value)
    found: list[Challenge] = []
    scanner.skip_list_separators()
    while scanner.i < scanner.n:
        scheme, params = scanner.challenge()
        if scheme.lower() == "payment":
            found.append(_payment_challenge(params))
        scanner.skip_list_separators()
    return found


# ---- Authorization (httpauth "Credentials (Authorization)")


def encode_authorization(credential: Credential) -> str:
    """`Payment <base64url-nopad(JSON credential)>`."""
    return "Payment " + b64url_encode(canonical_json(credential.to_wire()))


def parse_authorization(value: str) -> Credential:
    """Parse `Authorization: Payment <base64url-nopad>`; errors name "Authorization header" and the field."""
    text = value.strip(" \t")
    scheme, sep, rest = text.partition(" ")
    if scheme.lower() != "payment":
        raise MalformedCredential(WHERE_AUTHORIZATION, "scheme", f"expected the Payment scheme, got {scheme!r}")
    token = rest.lstrip(" ")
    if not sep or not token:
        raise MalformedCredential(WHERE_AUTHORIZATION, "credential", "missing base64url credential after 'Payment'")
    if any(c in token for c in " \t,"):
        raise MalformedCredential(WHERE_AUTHORIZATION, "credential", "expected exactly one base64url token")
    raw = b64url_decode(token, where=WHERE_AUTHORIZATION, field="credential", error=MalformedCredential)
    obj = _json_object(raw, MalformedCredential, WHERE_AUTHORIZATION, "credential")
    return _validate(Credential, obj, MalformedCredential, WHERE_AUTHORIZATION)


_PAYLOAD_AMOUNTS = ("cumulative_amount", "additional_deposit")
_WIRE_NAMES = {"cumulative_amount": "cumulativeAmount", "additional_deposit": "additionalDeposit"}
_PROTOCOL_MAX = {"v1": UINT128_MAX, "v2": 2**96 - 1}


def check_credential_protocol(credential: Credential, protocol: Literal["v1", "v2"]) -> Credential:
    """The payload rules of the deployment's session protocol, once it is known (a credential parses the
    same on both; these rules need the deployment):

    * v2 (draft, "Open/TopUp/Voucher/Close Payload": `descriptor` "REQUIRED for v2"): every action carries
      the channel descriptor; its amounts are uint96 ("Channel Descriptor": clients and servers MUST reject
      amounts above 2^96-1). An open's `authorizedSigner`, when present, equals the descriptor's.
    * v1: amounts are uint128 (already enforced by parsing); a `descriptor` is not a v1 field and is
      ignored (it is never what names a v1 channel).

    Returns the credential; raises MalformedCredential naming the payload field."""
    if protocol not in _PROTOCOL_MAX:
        raise ValueError(f"unknown session protocol {protocol!r}")
    p = credential.payload
    if protocol == "v1":
        return credential
    if p.descriptor is None:
        raise MalformedCredential(WHERE_AUTHORIZATION, "payload.descriptor",
                                  f"a v2 {p.action} credential must carry the channel descriptor")
    for name in _PAYLOAD_AMOUNTS:
        value = getattr(p, name, None)
        if value is not None and value > _PROTOCOL_MAX["v2"]:
            raise MalformedCredential(WHERE_AUTHORIZATION, f"payload.{_WIRE_NAMES[name]}",
                                      f"amount {value} exceeds 2^96-1 (v2 amounts are uint96)")
    signer = getattr(p, "authorized_signer", None)
    if signer is not None and signer != p.descriptor.authorized_signer:
        raise MalformedCredential(WHERE_AUTHORIZATION, "payload.authorizedSigner",
                                  f"{signer} differs from descriptor.authorizedSigner {p.descriptor.authorized_signer}")
    return credential


def parse_authorization_for(value: str, protocol: Literal["v1", "v2"]) -> Credential:
    """parse_authorization, then the protocol's payload rules (check_credential_protocol)."""
    return check_credential_protocol(parse_authorization(value), protocol)


# ---- Payment-Receipt (httpauth "Payment-Receipt Header"; tempo-session "Receipt Generation")


def encode_receipt(receipt: Receipt) -> str:
    """base64url-nopad(JSON receipt)."""
    return b64url_encode(canonical_json(receipt.to_wire()))


def parse_receipt(value: str) -> Receipt:
    """Decode a Payment-Receipt header value (raises MalformedReceipt)."""
    raw = b64url_decode(value.strip(" \t"), where=WHERE_RECEIPT, field="receipt", error=MalformedReceipt)
    obj = _json_object(raw, MalformedReceipt, WHERE_RECEIPT, "receipt")
    return _validate(Receipt, obj, MalformedReceipt, WHERE_RECEIPT)


# ---- Payment-Session-Snapshot / Payment-Session (tempo-session "Session Snapshot")


def encode_snapshot_header(snapshot: SessionSnapshot) -> str:
    """base64url-nopad(JSON snapshot), as the draft specifies."""
    return b64url_encode(canonical_json(snapshot.to_wire()))


def decode_snapshot_header(value: str) -> SessionSnapshot:
    """Decode a Payment-Session-Snapshot value: base64url-nopad (draft) or padded standard base64 (mppx 0.11)."""
    text = value.strip(" \t")
    if any(c in text for c in "+/="):
        if "-" in text or "_" in text:
            raise MalformedHeader(WHERE_SNAPSHOT, "snapshot", "mixes base64 and base64url alphabets")
        body = text.rstrip("=")
        if len(text) % 4 or len(text) - len(body) > 2:
            raise MalformedHeader(WHERE_SNAPSHOT, "snapshot", "invalid base64 padding")
        text = body.replace("+", "-").replace("/", "_")
    raw = b64url_decode(text, where=WHERE_SNAPSHOT, field="snapshot", error=MalformedHeader)
    obj = _json_object(raw, MalformedHeader, WHERE_SNAPSHOT, "snapshot")
    return _validate(SessionSnapshot, obj, MalformedHeader, WHERE_SNAPSHOT)


def parse_session_header(value: str) -> str:
    """The reusable channelId from a Payment-Session header, lowercase."""
    text = value.strip(" \t")
    try:
        return _hex_validator((32,), "bytes32")(text)
    except PydanticCustomError as exc:
        raise MalformedHeader(WHERE_SESSION, "channelId", str(exc)) from None
