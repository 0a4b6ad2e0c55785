"""The one step vocabulary of the machines, the traces, replay and the model checker (issue 11 item 7).

A step is a plain dict (`{"op": ..., "client": ..., "fault": ...}`) because it is what a trace file stores and a
person reads. Where a step is a model action it carries the model's name (model/system.py `Act.kind`, `Fault`):
`top_up`, `deliver_held_request`, the faults `hold_request` and `hold_response`. The ops only the harness has
(`adversary`, `probe`, `concurrent`, `lie`, ...) have no model action of that name; the harness translates each
into the model steps its twin takes. The two crash faults are the model's `crash_after_broadcast` and one the model
does not need, `crash_after_commit`: the record survives and the response is lost, which the twin sees as
`hold_response` (conformance/crash.py).

Traces written before the names were unified (the same format, tempo-conformance-trace/1) used other words for the
same steps (`top_up_chain`, `deliver_held`, `lose_request`, `drop_response`, `crash_broadcast`, `crash_commit`);
`Session.do` reads every step through `canonical_step`, so a stored trace still replays.
"""
from __future__ import annotations

MODEL_OPS = ("request", "head", "duplicate", "deliver_held_request", "restart_client", "restart_server", "settle",
             "top_up", "request_close", "advance_time", "close")
"""The ops that are model actions, named as in model/system.py."""
HARNESS_OPS = ("adversary", "probe", "concurrent", "lie", "targeted", "variant")
"""The ops only the harness has (conformance/adversary.py, concurrency.py, machines.py)."""

FAULTS = ("none", "hold_request", "hold_response", "crash_after_broadcast", "crash_after_commit")
"""A request step's network fault (conformance/network.py, crash.py)."""
TWIN_FAULT = {"none": "none", "hold_request": "hold_request", "hold_response": "hold_response",
              "crash_after_broadcast": "crash_after_broadcast", "crash_after_commit": "hold_response"}
"""The model fault the twin's request gets: after a crash past the commit the record survives, as after a dropped
response."""

_OLD_OPS = {"top_up_chain": "top_up", "deliver_held": "deliver_held_request"}
_OLD_FAULTS = {"lose_request": "hold_request", "drop_response": "hold_response",
               "crash_broadcast": "crash_after_broadcast", "crash_commit": "crash_after_commit"}


def canonical_step(step: dict) -> dict:
    """`step` in the vocabulary above (a step of an older trace is renamed; anything else is returned as is)."""
    op, fault = step.get("op"), step.get("fault")
    if op not in _OLD_OPS and fault not in _OLD_FAULTS:
        return step
    out = dict(step, op=_OLD_OPS.get(op, op))
    if fault is not None:
        out["fault"] = _OLD_FAULTS.get(fault, fault)
    return out
