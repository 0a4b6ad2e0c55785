#!/usr/bin/env python3
"""A tiny adapter for testing the bridge machinery itself (tests/test_bridge_protocol.py).

It speaks PROTOCOL.md over stdin/stdout through the adapter kit (kit.py, beside it), but its ops only exercise
the protocol: round trips, every error type, slowness, crashes, stray stdout output and callbacks. Standard
library only; run as `python fake_adapter.py` in this directory.

FAKE_ADAPTER_MODE (environment) changes its start-up for the failure tests:
  die-on-start  exit 7 before reading anything, after a line on stderr
  mute          read requests but never answer (hello times out)
"""
from __future__ import annotations

import os
import sys
import time

from kit import Adapter, CallbackError, OpError, unsupported

STATE = {"counter": 0}
adapter = Adapter("fake", "0.0.1", callbacks=("http", "rpc"))


@adapter.reset_with
def _reset():
    STATE["counter"] = 0


@adapter.op("echo")
def op_echo(input):
    return input


@adapter.op("fail")
def op_fail(input):
    raise OpError(str(input.get("type", "rejected")), str(input.get("message", "refused on purpose")))


@adapter.op("sleep")
def op_sleep(input):
    time.sleep(float(input.get("seconds", 1)))
    return {"slept": input.get("seconds", 1)}


@adapter.op("crash")
def op_crash(input):
    sys.stderr.write(str(input.get("stderr", "fake adapter: crashing on request")) + "\n")
    sys.stderr.flush()
    os._exit(int(input.get("code", 3)))


@adapter.op("noise")
def op_noise(input):
    adapter._out.write("this line is not JSON\n")  # on purpose: the harness must skip it
    adapter._out.flush()
    return {"after": "noise"}


@adapter.op("counter.incr")
def op_counter_incr(input):
    STATE["counter"] += int(input.get("by", 1))
    return {"counter": STATE["counter"]}


@adapter.op("voucher.digest")
def op_voucher_digest(input):
    raise unsupported("the fake adapter computes no digests")


@adapter.op("ask")
def op_ask(input):
    """Protocol 2: send one callback per entry of `asks` ({kind, request}) and answer the list of replies.
    A kind the request did not offer is not sent (its reply is {"skipped": "not offered"}) unless `force`."""
    replies = []
    for ask in input.get("asks") or []:
        if ask["kind"] not in adapter._offered and not ask.get("force"):
            replies.append({"skipped": "not offered"})
            continue
        try:
            replies.append({"ok": True, "value": adapter.call_harness(ask["kind"], ask.get("request", {}),
                                                                      offered_only=False)})
        except CallbackError as exc:
            replies.append({"ok": False, "error": {"type": exc.type, "message": exc.message}})
    return {"replies": replies}


def main() -> None:
    mode = os.environ.get("FAKE_ADAPTER_MODE", "")
    if mode == "die-on-start":
        sys.stderr.write("fake adapter: cannot start (die-on-start)\n")
        sys.stderr.flush()
        sys.exit(7)
    if mode == "mute":
        for _ in sys.stdin:
            pass
        return
    adapter.run()


if __name__ == "__main__":
    main()
