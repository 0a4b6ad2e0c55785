"""The server's wire form, checked in `strict` on every exchange (properties WF1-WF3, SPEC_NOTES "Wire form").

These are the checks mppx's former dedicated machines made (its findings F6, F9, F10), now made by the one
harness for every server: what a response says, read from its headers and body, not from the adapter's report.

* WF1 (draft "Receipt Generation": `units` is "Units consumed this request"): a receipt's `units`, when present,
  is what this request consumed (charged / price), not the channel's running count.
* WF2 (draft "Per-Request Processing" 2): a 402 `insufficient-balance` problem carries `requiredTopUp`.
* WF3 (draft "Hexadecimal Values": MUST use lowercase hex): the addresses and ids a challenge's request, a
  receipt or a problem carries are lowercase.
"""
from __future__ import annotations

import json
import re
from typing import Optional

import httpx

import wire

HEX = re.compile(r"^0x[0-9a-fA-F]+$")
WF_PROPERTIES = {
    "WF1": "a receipt's units is what this request consumed (draft 'Receipt Generation')",
    "WF2": "an insufficient-balance problem carries requiredTopUp (draft 'Per-Request Processing' 2)",
    "WF3": "hex values on the wire (challenge request, receipt, problem) are lowercase (draft 'Hexadecimal Values')",
}


def _mixed(obj, where: str, out: list) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _mixed(v, f"{where}.{k}", out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _mixed(v, f"{where}[{i}]", out)
    elif isinstance(obj, str) and HEX.match(obj) and obj != obj.lower():
        out.append(f"{where} {obj}")


def wire_form(resp: httpx.Response, charged: int, price: int) -> list:
    """(property, message) for each wire-form deviation of one response."""
    out: list = []
    mixed: list = []
    value = resp.headers.get("payment-receipt")
    if value:
        try:
            r = wire.parse_receipt(value)
        except wire.WireError:
            r = None
        try:
            _mixed(json.loads(wire.b64url_decode(value.strip())), "receipt", mixed)  # as sent, not normalized
        except (wire.WireError, ValueError):
            pass
        if r is not None:
            if r.units is not None and price and charged > 0 and r.units != charged // price:
                out.append(("WF1", f"receipt units={r.units}, this request consumed {charged // price} "
                                   "(draft: units consumed this request)"))
    if resp.status_code == 402 and "www-authenticate" in resp.headers:
        try:
            raw = wire.parse_www_authenticate(resp.headers["www-authenticate"])[0].request
            _mixed(json.loads(wire.b64url_decode(raw)), "challenge request", mixed)  # as sent, not normalized
        except (wire.WireError, IndexError, ValueError, TypeError):
            pass
    if resp.status_code >= 400 and resp.content:
        problem: Optional[dict] = None
        try:
            problem = json.loads(resp.content)
        except ValueError:
            pass
        if isinstance(problem, dict):
            _mixed({k: v for k, v in problem.items() if k != "detail"}, "problem", mixed)
            if str(problem.get("type", "")).endswith("insufficient-balance") and "requiredTopUp" not in problem:
                out.append(("WF2", "insufficient-balance without requiredTopUp (problem members: "
                                   f"{sorted(problem)})"))
    if mixed:
        out.append(("WF3", "not lowercase hex: " + "; ".join(mixed[:3])))
    return out
