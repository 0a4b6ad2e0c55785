"""One step vocabulary (conformance/steps.py; issue 11 item 7): the machines draw only its names, every model op is
the model's action of the same name, and a trace in the older words replays as the same steps."""
from __future__ import annotations

import json

from conformance.harness import RunConfig
from conformance.machines import new_session, operations
from conformance.runner import replay
from conformance.steps import FAULTS, HARNESS_OPS, MODEL_OPS, TWIN_FAULT, canonical_step
from conformance.trace import write_steps
from model.system import Fault


def test_machine_ops_are_the_vocabulary():
    rc = RunConfig(client="reference", server="reference")
    for machine in ("pair", "server", "client"):
        assert set(operations(rc, machine)) <= set(MODEL_OPS + HARNESS_OPS), machine


def test_twin_faults_are_model_faults():
    assert set(TWIN_FAULT) == set(FAULTS)
    assert set(TWIN_FAULT.values()) <= set(Fault.__args__)


def test_old_words_read_as_todays():
    assert canonical_step({"op": "top_up_chain", "client": 0}) == {"op": "top_up", "client": 0}
    assert canonical_step({"op": "deliver_held", "client": 1}) == {"op": "deliver_held_request", "client": 1}
    for old, new in (("lose_request", "hold_request"), ("drop_response", "hold_response"),
                     ("crash_broadcast", "crash_after_broadcast"), ("crash_commit", "crash_after_commit")):
        assert canonical_step({"op": "request", "client": 0, "fault": old})["fault"] == new
    step = {"op": "adversary", "client": 0, "kind": "replay"}
    assert canonical_step(step) is step


OLD = [{"op": "request", "client": 0, "fault": "drop_response", "key": True},
       {"op": "request", "client": 0, "fault": "lose_request", "key": True},
       {"op": "deliver_held", "client": 0}, {"op": "top_up_chain", "client": 0},
       {"op": "request", "client": 0, "fault": "none", "key": True}]


def _run(steps):
    s = new_session(RunConfig(client="reference", server="reference"), "pair")
    try:
        return [(r.outcome, r.twin_outcome, [(w.origin, w.action, w.status, w.fate) for w in r.wires])
                for r in (s.do(step) for step in steps)], list(s.steps)
    finally:
        s.close()


def test_a_trace_in_the_older_words_replays_the_same(tmp_path):
    old, stored = _run(OLD)
    new, _ = _run([canonical_step(step) for step in OLD])
    assert old == new
    assert any(w[3] == "response-dropped" for w in old[0][2]) and any(w[3] == "request-lost" for w in old[1][2])
    assert stored == [canonical_step(step) for step in OLD]  # a trace is written in today's words
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "tempo-conformance-trace/1", "machine": "pair",
                                "config": RunConfig(client="reference", server="reference").to_json(), "steps": OLD}))
    ok, text = replay(str(path))
    assert ok and "top_up" in text and "top_up_chain" not in text
    write_steps(str(tmp_path / "new.json"), RunConfig(client="reference", server="reference"), stored)
    assert json.loads((tmp_path / "new.json").read_text())["steps"][0]["fault"] == "hold_response"
