#!/usr/bin/env python3
"""A tiny adapter for testing the bridge machinery itself (tests/test_bridge_protocol.py).

It speaks PROTOCOL.md over stdin/stdout like a real adapter, but its ops only
exercise the protocol: round trips, every error type, slowness, crashes and
stray stdout output. Standard library only; run as `python fake_adapter.py`.

FAKE_ADAPTER_MODE (environment) changes its start-up for the failure tests:
  die-on-start  exit 7 before reading anything, after a line on stderr
  mute          read requests but never answer (hello times out)
"""
from __future__ import annotations

import json
import os
import sys
import time

STATE = {"counter": 0}
CAPABILITIES = ["echo", "fail", "sleep", "crash", "noise", "counter.incr", "voucher.digest", "ask"]
CALLBACKS = {"next": 0}


class OpError(Exception):
    def __init__(self, type: str, message: str) -> None:
        super().__init__(message)
        self.type = type


def op_hello(_input):
    return {"name": "fake", "version": "0.0.1", "protocol": 2, "capabilities": CAPABILITIES, "callbacks": ["http", "rpc"]}


def op_reset(_input):
    STATE["counter"] = 0
    return {}


def op_echo(input):
    return input


def op_fail(input):
    raise OpError(str(input.get("type", "rejected")), str(input.get("message", "refused on purpose")))


def op_sleep(input):
    time.sleep(float(input.get("seconds", 1)))
    return {"slept": input.get("seconds", 1)}


def op_crash(input):
    sys.stderr.write(str(input.get("stderr", "fake adapter: crashing on request")) + "\n")
    sys.stderr.flush()
    os._exit(int(input.get("code", 3)))


def op_noise(input):
    sys.stdout.write("this line is not JSON\n")
    sys.stdout.flush()
    return {"after": "noise"}


def op_counter_incr(input):
    STATE["counter"] += int(input.get("by", 1))
    return {"counter": STATE["counter"]}


def op_ask(input):
    """Protocol 2: send one callback per entry of `asks` ({kind, request}) and answer the list of replies.
    A kind the request did not offer is not sent (its reply is {"skipped": "not offered"}) unless `force`."""
    offered = input.get("_offered") or []
    replies = []
    for ask in input.get("asks") or []:
        if ask["kind"] not in offered and not ask.get("force"):
            replies.append({"skipped": "not offered"})
            continue
        CALLBACKS["next"] += 1
        number = CALLBACKS["next"]
        answer({"callback": number, "kind": ask["kind"], "request": ask.get("request", {})})
        reply = json.loads(sys.stdin.readline())
        if reply.get("callback") != number:
            raise OpError("internal", f"callback answer {reply!r} does not match callback {number}")
        replies.append({k: v for k, v in reply.items() if k != "callback"})
    return {"replies": replies}


def op_voucher_digest(input):
    raise OpError("unsupported", "the fake adapter computes no digests")


OPS = {
    "hello": op_hello,
    "reset": op_reset,
    "echo": op_echo,
    "fail": op_fail,
    "sleep": op_sleep,
    "crash": op_crash,
    "noise": op_noise,
    "counter.incr": op_counter_incr,
    "voucher.digest": op_voucher_digest,
    "ask": op_ask,
}


def answer(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    mode = os.environ.get("FAKE_ADAPTER_MODE", "")
    if mode == "die-on-start":
        sys.stderr.write("fake adapter: cannot start (die-on-start)\n")
        sys.stderr.flush()
        sys.exit(7)
    for line in sys.stdin:
        if not line.strip():
            continue
        if mode == "mute":
            continue
        try:
            request = json.loads(line)
        except ValueError as exc:
            answer({"id": None, "ok": False, "error": {"type": "invalid-input", "message": f"not JSON: {exc}"}})
            continue
        rid = request.get("id")
        fn = OPS.get(request.get("op"))
        if fn is None:
            answer({"id": rid, "ok": False, "error": {"type": "unsupported", "message": f"no op {request.get('op')!r}"}})
            continue
        try:
            value = fn(request.get("input") or {}) if fn is not op_ask else fn(
                dict(request.get("input") or {}, _offered=request.get("callbacks") or []))
        except OpError as exc:
            answer({"id": rid, "ok": False, "error": {"type": exc.type, "message": str(exc)}})
            continue
        except Exception as exc:  # a bug in an op is "internal"
            answer({"id": rid, "ok": False, "error": {"type": "internal", "message": repr(exc)}})
            continue
        answer({"id": rid, "ok": True, "value": value})


if __name__ == "__main__":
    main()
