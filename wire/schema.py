"""The pydantic schema of what crosses the network (draft-tempo-session "Request Schema", "Method Details",
"Session Snapshot", "Credential Schema", "Receipt Generation", "Schema Definitions"; plus the seed's flat
hint fields in `methodDetails`). pydantic lives only in `wire/`; the spec's records are in `model/`."""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from .errors import WireError, _from_validation
from .scalars import (
    Address, Amount, Base64Url, Bytes32, HexData, JsonUInt, SignatureHex, Text, Timestamp, WireModel, _INTENT_RE,
    _METHOD_RE
)


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
    """The reusable-channel snapshot (tempo-session "Session Snapshot"; the "snapshot" hint encoding).

    `descriptor` is REQUIRED by the draft for v2 channels; it is optional here
    because v1-escrow servers use this encoding too. `highestVoucher` follows mppx.
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
    """`request.methodDetails` (tempo-session "Method Details") plus the seed's flat hints."""

    escrow_contract: Address
    channel_id: Bytes32 | None = None
    min_voucher_delta: Amount | None = None
    chain_id: JsonUInt | None = None
    operator: Address | None = None
    session_protocol: Literal["v1", "v2"] | None = None
    fee_payer: Annotated[bool, Strict()] | None = None
    session_snapshot: SessionSnapshot | None = None
    # seed: the flat hint fields
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
        from .headers import decode_request  # the codec needs this schema: imported when called

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
        from .headers import challenge_id, encode_request  # the codecs need this schema: imported when called

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


def _validate(model: type[WireModel], obj: Any, cls: type[WireError], where: str, prefix: str = ""):
    try:
        return model.model_validate(obj, context={"wire": True})
    except ValidationError as exc:
        raise _from_validation(exc, cls, where, prefix) from None
