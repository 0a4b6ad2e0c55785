"""Header codecs (draft-httpauth-payment "Challenge (WWW-Authenticate)", "Credentials (Authorization)",
"Payment-Receipt Header", "ABNF Collected"; draft-tempo-session "Session Snapshot"): the challenge `request` and
`opaque`, challenge ids, and each header to and from its `wire.schema` model."""
from __future__ import annotations

import hashlib
import hmac
import re
from typing import Literal, Mapping

from pydantic_core import PydanticCustomError

from model.base import UINT128_MAX  # defined once, in model/base.py
from .errors import (
    MalformedCredential, MalformedHeader, MalformedReceipt, MalformedRequest, WHERE_AUTHORIZATION, WHERE_OPAQUE,
    WHERE_RECEIPT, WHERE_REQUEST, WHERE_SESSION, WHERE_SNAPSHOT, WHERE_WWW_AUTHENTICATE, WireError, _json_kind
)
from .scalars import _hex_validator, b64url_decode, b64url_encode
from .jcs import _json_object, canonical_json
from .schema import Challenge, Credential, Receipt, SessionRequest, SessionSnapshot, _validate


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
