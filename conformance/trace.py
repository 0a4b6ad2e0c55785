"""Readable failures: numbered protocol steps, a mermaid sequenceDiagram, and a replayable JSON file."""
from __future__ import annotations

import json
from typing import Iterable

from .network import Wire


def _short(cid) -> str:
    return cid[:10] if isinstance(cid, str) and cid.startswith("0x") else str(cid)


def describe_step(step: dict) -> str:
    op = step["op"]
    who = f"client {step['client']}: " if "client" in step else ""
    extra = []
    if step.get("fault", "none") != "none":
        extra.append(step["fault"].replace("_", " "))
    if op == "request" and not step.get("key", True):
        extra.append("no Idempotency-Key")
    if op == "restart_client" and not step.get("keep", True):
        extra.append("persisted state lost")
    if op == "adversary":
        extra.append(step.get("kind", ""))
    if op == "concurrent":
        extra.append(step.get("kind", ""))
        if step.get("schedule"):
            extra.append("schedule " + "".join(str(k) for k in step["schedule"]))
    if step.get("lie"):
        extra.append(f"lie: {step['lie']}")
    return f"{who}{op}" + (f" ({', '.join(extra)})" if extra else "")


def describe_wire(w: Wire) -> str:
    if w.action is None:
        left = f"{w.method} (no credential)"
    else:
        left = f"{w.method} {w.action} {_short(w.channel_id)}"
        if w.amount is not None:
            left += f" cumulative={w.amount}"
        if w.deposit is not None:
            left += f" deposit+={w.deposit}"
        if w.key:
            left += f" key={w.key}"
    if w.origin != "client":
        left = f"[{w.origin}] " + left
    if w.fate == "request-lost":
        return f"{left}  =>  (request lost in the network)"
    if w.status is not None and 200 <= w.status < 300 and w.receipt:
        c, a, s, closed = w.receipt
        right = f"{w.status} receipt accepted={a} spent={s}" + (" (tx)" if closed else "")
    else:
        right = f"{w.status} {w.problem}"
        if w.hints is not None:
            right += f" hints={w.hints}" if w.hints else " [no hints]"
    if w.charged:
        right += f"  [charged {w.charged}]"
    if w.fate == "response-dropped":
        right += "  (response dropped before the client)"
    return f"{left}  =>  {right}"


def render_steps(results: Iterable) -> str:
    lines = []
    for r in results:
        lines.append(f"{r.n}. {describe_step(r.step)} -> {r.outcome}"
                     + (f" (model: {r.twin_outcome})" if r.twin_outcome != r.outcome else ""))
        for w in r.wires:
            lines.append(f"     {describe_wire(w)}")
        for p, m in r.violations:
            lines.append(f"     !! {p}: {m}")
        for what, real, model in r.mismatches:
            lines.append(f"     != {what}: implementation {real}, model {model}")
        for p, m in r.expected:
            lines.append(f"     (known limit, the model breaks it too) {m}")
    return "\n".join(lines)


def render_mermaid(results: Iterable, n_clients: int = 2) -> str:
    lines = ["sequenceDiagram"]
    for i in range(n_clients):
        lines.append(f"    participant C{i} as client {i}")
    lines += ["    participant N as network", "    participant S as server"]
    for r in results:
        lines.append(f"    Note over C0,S: {r.n}. {describe_step(r.step)} -> {r.outcome}")
        for w in r.wires:
            src = f"C{w.client}" if w.client >= 0 else "N"
            label = describe_wire(w).split("  =>  ")
            req = label[0].replace(";", ",")
            if w.fate == "request-lost":
                lines.append(f"    {src}-xN: {req}")
                continue
            lines.append(f"    {src}->>S: {req}")
            resp = label[1].replace(";", ",") if len(label) > 1 else ""
            if w.fate == "response-dropped":
                lines.append(f"    S--xN: {resp}")
            else:
                lines.append(f"    S-->>{src}: {resp}")
        for p, m in r.violations:
            lines.append(f"    Note over C0,S: VIOLATION {p}: {m.replace(';', ',')}".replace("\n", " / "))
        for what, real, model in r.mismatches:
            lines.append(f"    Note over C0,S: MISMATCH {what}: {real} vs model {model}".replace(";", ","))
    return "\n".join(lines)


def steps_file(rc, steps: list, machine: str = "pair") -> dict:
    return {"format": "tempo-conformance-trace/1", "machine": machine, "config": rc.to_json(), "steps": steps}


def write_steps(path: str, rc, steps: list, machine: str = "pair") -> None:
    with open(path, "w") as f:
        json.dump(steps_file(rc, steps, machine), f, indent=1)
