"""The two hint encodings of a 402 challenge, mapped to one `Hints` record.

- "flat": the seed's fields directly in `request.methodDetails`
  (`channelId`, `acceptedCumulative`, `spent`, `deposit`, `requiredCumulative`).
- "snapshot": draft-tempo-session-00 "Session Snapshot",
  `request.methodDetails.sessionSnapshot`, with mppx's `highestVoucher`.

Pure functions. Signature recovery is injected (`recover`), so this module
needs no key material and no domain; `recoverer(domain)` builds one.
"""
from __future__ import annotations

from typing import Callable, Literal

from .crypto import CryptoError, VoucherDomain, recover_voucher_signer
from model.records import Hints, Voucher
from .errors import WHERE_REQUEST, MalformedRequest
from .schema import Descriptor, HighestVoucher, MethodDetails, SessionRequest, SessionSnapshot

Recover = Callable[[str, int, str], "str | None"]
"""(channelId, cumulativeAmount, signature) -> recovered signer, or None if the signature is bad."""

_SNAPSHOT = "request.methodDetails.sessionSnapshot"
_FLAT_FIELDS = ("channel_id", "accepted_cumulative", "spent", "deposit", "required_cumulative")


HINT_ENCODINGS = ("flat", "snapshot")
LEGACY_HINT_PROFILES = {"v1": "flat", "v2": "snapshot"}
"""The encodings' former names ("hint profile" v1/v2, not the deployment's session protocol v1/v2)."""


def encoding_of_profile(profile: str) -> Literal["flat", "snapshot"]:
    """The hint encoding a former hint-profile name stands for (deprecated CLI options, old trace files)."""
    try:
        return LEGACY_HINT_PROFILES[profile]  # type: ignore[return-value]
    except KeyError:
        raise ValueError(f"unknown hint profile {profile!r} (v1 = flat, v2 = snapshot)") from None


def profile_of_encoding(encoding: str) -> Literal["v1", "v2"]:
    """The former hint-profile name of an encoding (what old readers of `Env.profile` and `hintProfile` expect)."""
    return next(p for p, e in LEGACY_HINT_PROFILES.items() if e == encoding)  # type: ignore[return-value]


def recoverer(domain: VoucherDomain) -> Recover:
    """A `recover` callable for `hints_from_request` bound to one voucher domain (draft "Voucher Signing Format")."""

    def recover(channel_id: str, amount: int, signature: str) -> str | None:
        try:
            return recover_voucher_signer(domain, channel_id, amount, signature)
        except CryptoError:
            return None

    return recover


def _proof(voucher: HighestVoucher, recover: Recover) -> Voucher:
    try:
        signer = recover(voucher.channel_id, voucher.cumulative_amount, voucher.signature)
    except ValueError:  # a recover that raises on a bad signature: same as None
        signer = None
    return Voucher(channel_id=voucher.channel_id, amount=voucher.cumulative_amount, signer=signer)


def _from_snapshot(details: MethodDetails, snap: SessionSnapshot, recover: Recover) -> Hints:
    """Draft "Session Snapshot": one snapshot -> Hints, checked against its challenge."""
    if details.channel_id is not None and details.channel_id != snap.channel_id:
        raise MalformedRequest(
            WHERE_REQUEST,
            f"{_SNAPSHOT}.channelId",
            f"snapshot is for channel {snap.channel_id}, the challenge names {details.channel_id}",
        )
    if snap.escrow != details.escrow_contract:
        raise MalformedRequest(
            WHERE_REQUEST,
            f"{_SNAPSHOT}.escrow",
            f"snapshot escrow {snap.escrow} differs from escrowContract {details.escrow_contract}",
        )
    if details.chain_id is not None and snap.chain_id != details.chain_id:
        raise MalformedRequest(
            WHERE_REQUEST,
            f"{_SNAPSHOT}.chainId",
            f"snapshot chainId {snap.chain_id} differs from methodDetails.chainId {details.chain_id}",
        )
    proof = _proof(snap.highest_voucher, recover) if snap.highest_voucher is not None else None
    return Hints(
        channel_id=snap.channel_id,
        accepted=snap.accepted_cumulative,
        spent=snap.spent,
        deposit=snap.deposit,
        required=snap.required_cumulative,
        settled=snap.settled,
        close_requested_at=snap.close_requested_at,
        proof=proof,
    )


def hints_from_request(request: SessionRequest, recover: Recover) -> Hints | None:
    """The server hints of a challenge request, in either encoding.

    The `sessionSnapshot` wins when present (draft "Session Snapshot");
    otherwise the seed's flat fields; a bare `channelId` gives a Hints
    with only `channel_id`; no channelId anywhere gives None (flat values
    without a channelId describe no channel and are dropped).

    Raises MalformedRequest (a WireError) when the snapshot contradicts its
    challenge: another channelId than `methodDetails.channelId`, another
    escrow than `escrowContract`, another chainId than `methodDetails.chainId`.
    `proof.channel_id` is the voucher's own channelId; callers must compare
    it with `channel_id` before trusting it.
    """
    details = request.method_details
    if details.session_snapshot is not None:
        return _from_snapshot(details, details.session_snapshot, recover)
    if details.channel_id is None:
        return None
    return Hints(
        channel_id=details.channel_id,
        accepted=details.accepted_cumulative,
        spent=details.spent,
        deposit=details.deposit,
        required=details.required_cumulative,
    )


def _snapshot(
    hints: Hints,
    *,
    chain_id: int,
    escrow: str,
    highest_voucher_signature: str | None,
    descriptor: Descriptor | None,
) -> SessionSnapshot:
    required = {
        "acceptedCumulative": hints.accepted,
        "deposit": hints.deposit,
        "requiredCumulative": hints.required,
        "settled": hints.settled,
        "spent": hints.spent,
    }
    for name, value in required.items():
        if value is None:
            raise MalformedRequest(
                WHERE_REQUEST, f"{_SNAPSHOT}.{name}", "required by the snapshot but absent from the hints"
            )
    highest = None
    if highest_voucher_signature is not None:
        voucher_channel = hints.proof.channel_id if hints.proof is not None else hints.channel_id
        voucher_amount = hints.proof.amount if hints.proof is not None else hints.accepted
        highest = HighestVoucher(
            channel_id=voucher_channel, cumulative_amount=voucher_amount, signature=highest_voucher_signature
        )
    return SessionSnapshot(
        accepted_cumulative=hints.accepted,
        chain_id=chain_id,
        channel_id=hints.channel_id,
        close_requested_at=hints.close_requested_at,
        deposit=hints.deposit,
        descriptor=descriptor,
        escrow=escrow,
        highest_voucher=highest,
        required_cumulative=hints.required,
        settled=hints.settled,
        spent=hints.spent,
    )


def _replace(base: MethodDetails, update: dict) -> MethodDetails:
    """A validated copy of `base` with `update` applied (hex normalized, ranges checked)."""
    fields = {name: getattr(base, name) for name in MethodDetails.model_fields}
    return MethodDetails(**(fields | update))


def method_details_with_hints(
    base: MethodDetails,
    hints: Hints | None,
    encoding: Literal["flat", "snapshot"],
    *,
    chain_id: int,
    escrow: str,
    highest_voucher_signature: str | None,
    descriptor: Descriptor | None = None,
) -> MethodDetails:
    """The server side: `base` with exactly the hints of `hints` in the chosen encoding.

    Any hint fields already in `base` are replaced. None -> no hints; a Hints
    with only `channel_id` -> only `channelId` (both encodings). "flat" writes the
    seed's fields (it cannot carry settled, closeRequestedAt or a proof;
    those are dropped). "snapshot" writes `channelId` and a `sessionSnapshot` (draft
    "Session Snapshot") for `chain_id`/`escrow`, with `highestVoucher` when a
    signature is given (amount: `hints.proof.amount`, else `hints.accepted`);
    it raises MalformedRequest naming the snapshot field when a value the
    snapshot requires (accepted, deposit, required, settled, spent) is None.
    """
    cleared = {name: None for name in _FLAT_FIELDS} | {"session_snapshot": None}
    if hints is None:
        return _replace(base, cleared)
    bare = not hints.has_values and hints.settled is None and hints.close_requested_at is None
    if bare:
        return _replace(base, cleared | {"channel_id": hints.channel_id})
    if encoding == "flat":
        return base.model_copy(
            update=cleared
            | {
                "channel_id": hints.channel_id,
                "accepted_cumulative": hints.accepted,
                "spent": hints.spent,
                "deposit": hints.deposit,
                "required_cumulative": hints.required,
            }
        )
    if encoding != "snapshot":
        raise ValueError(f"unknown hint encoding {encoding!r}")
    snapshot = _snapshot(
        hints,
        chain_id=chain_id,
        escrow=escrow,
        highest_voucher_signature=highest_voucher_signature,
        descriptor=descriptor,
    )
    return _replace(base, cleared | {"channel_id": hints.channel_id, "session_snapshot": snapshot})
