"""Problem types (RFC 9457; httpauth "Error Codes"; tempo-session "Problem Type Registration",
"Rejection and Error Responses")."""
from __future__ import annotations

from typing import Any

import attrs

from .errors import MalformedProblem, WHERE_PROBLEM
from .jcs import _json_object, canonical_json
from .schema import ProblemDetails, _validate


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
