"""The adapter kit for Python: the JSON-lines plumbing of PROTOCOL.md, so an adapter is only its operations.

    from adapters.bridge.kit import Adapter, rejected

    adapter = Adapter("my-sdk", "1.2.3")

    @adapter.op("voucher.sign")
    def sign(input):
        ...
        return {"signature": sig}

    adapter.run()

What the kit does, so an adapter does not: the read-dispatch-answer loop; `hello` (name, version, protocol 2, the
registered ops as capabilities, the callback kinds it may send, notes) and `reset` (calls the `on_reset`
functions); the error types (`OpError`: raise `rejected(...)`, `unsupported(...)`, `invalid_input(...)`; any other
exception is answered `internal` with its traceback); a request that is not JSON; an unknown op; keeping stdout for
answers only (`print` inside an op goes to stderr); callbacks (`adapter.call_harness(kind, request)`), including
the harness's nested requests while a callback is outstanding. Standard library only, so it can be copied into an
adapter that does not import this project.
"""
from __future__ import annotations

import json
import sys
import traceback
from typing import Any, Callable, Optional, TextIO

__all__ = ["Adapter", "OpError", "CallbackError", "rejected", "unsupported", "invalid_input", "field", "amount",
           "hex_value"]

ERROR_TYPES = ("unsupported", "invalid-input", "rejected", "internal")


class OpError(Exception):
    """An op's failure, answered as {"ok": false, "error": {"type", "message"}}. `type` is one of ERROR_TYPES
    (the harness treats any other as internal)."""

    def __init__(self, type: str, message: str) -> None:
        super().__init__(message)
        self.type, self.message = type, message


class CallbackError(Exception):
    """The harness answered a callback with ok: false (type: unsupported | network | rejected | invalid-input |
    internal)."""

    def __init__(self, type: str, message: str) -> None:
        super().__init__(f"{type}: {message}")
        self.type, self.message = type, message


def rejected(message: str) -> OpError:
    return OpError("rejected", message)


def unsupported(message: str) -> OpError:
    return OpError("unsupported", message)


def invalid_input(message: str) -> OpError:
    return OpError("invalid-input", message)


# -- input readers (PROTOCOL.md section 3: amounts are decimal strings, hex is 0x-prefixed)

def field(input: dict, key: str, optional: bool = False) -> Any:
    if key not in input or input[key] is None:
        if optional:
            return None
        raise invalid_input(f"input.{key} is missing")
    return input[key]


def amount(input: dict, key: str, optional: bool = False) -> Optional[int]:
    value = field(input, key, optional)
    if value is None:
        return None
    if not isinstance(value, str) or not value.isdigit() or (len(value) > 1 and value[0] == "0"):
        raise invalid_input(f"input.{key} must be a decimal string of base units, got {value!r}")
    return int(value)


def hex_value(input: dict, key: str, n_bytes: Optional[int] = None, optional: bool = False) -> Optional[str]:
    value = field(input, key, optional)
    if value is None:
        return None
    body = value[2:] if isinstance(value, str) and value[:2] in ("0x", "0X") else None
    if body is None or any(c not in "0123456789abcdefABCDEF" for c in body) or len(body) % 2 \
            or (n_bytes is not None and len(body) != 2 * n_bytes):
        size = f"{n_bytes} bytes of " if n_bytes else ""
        raise invalid_input(f"input.{key} must be {size}0x-prefixed hex, got {value!r}")
    return "0x" + body.lower()


class Adapter:
    """One adapter process: register ops with `@adapter.op(name)`, then `adapter.run()`."""

    def __init__(self, name: str, version: str, *, callbacks: tuple = (), notes: Optional[dict] = None) -> None:
        self.name, self.version = name, version
        self.callbacks = tuple(callbacks)  # the kinds this adapter may send (hello's `callbacks`)
        self.notes = dict(notes or {})
        self.ops: dict[str, Callable[[dict], Any]] = {}
        self.on_reset: list[Callable[[], None]] = []
        self._offered: frozenset = frozenset()
        self._next_callback = 0
        self._in: TextIO = sys.stdin
        self._out: TextIO = sys.stdout

    def op(self, name: str) -> Callable:
        def register(fn: Callable[[dict], Any]) -> Callable[[dict], Any]:
            if name in ("hello", "reset") or name in self.ops:
                raise ValueError(f"op {name!r} is the kit's or registered twice")
            self.ops[name] = fn
            return fn

        return register

    def reset_with(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Register a function `reset` calls (drop all state)."""
        self.on_reset.append(fn)
        return fn

    # -- the protocol

    def hello(self) -> dict:
        out = {"name": self.name, "version": self.version, "protocol": 2, "capabilities": sorted(self.ops)}
        if self.callbacks:
            out["callbacks"] = list(self.callbacks)
        if self.notes:
            out["notes"] = self.notes
        return out

    def call_harness(self, kind: str, request: dict, *, offered_only: bool = True) -> Any:
        """Send a callback and wait for its answer; the harness's own requests that arrive meanwhile are
        answered at once (they offer no callbacks). Raises CallbackError when the harness answers ok: false.
        `offered_only=False` sends a kind the request did not offer (only to test a harness's refusal)."""
        if offered_only and kind not in self._offered:
            raise unsupported(f"the harness offers no {kind} callback for this op")
        self._next_callback += 1
        number = self._next_callback
        self._write({"callback": number, "kind": kind, "request": request})
        while True:
            line = self._in.readline()
            if not line:
                raise OpError("internal", f"stdin closed while waiting for callback {number}")
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                self._write({"id": None, "ok": False, "error": {"type": "invalid-input", "message": "not JSON"}})
                continue
            if isinstance(message, dict) and "callback" in message and "op" not in message:
                if message["callback"] != number:
                    continue  # an answer to a callback nobody waits for any more
                if message.get("ok") is True:
                    return message.get("value")
                err = message.get("error") or {}
                raise CallbackError(str(err.get("type", "internal")), str(err.get("message", "callback failed")))
            outer = self._offered
            try:
                self._answer(message, nested=True)
            finally:
                self._offered = outer

    def _write(self, message: dict) -> None:
        self._out.write(json.dumps(message, separators=(",", ":")) + "\n")
        self._out.flush()

    def _answer(self, request: Any, nested: bool = False) -> None:
        if not isinstance(request, dict):
            self._write({"id": None, "ok": False, "error": {"type": "invalid-input", "message": "a request is a JSON object"}})
            return
        rid, op = request.get("id"), request.get("op")
        self._offered = frozenset() if nested else frozenset(request.get("callbacks") or ())
        try:
            if op == "hello":
                value = self.hello()
            elif op == "reset":
                for fn in self.on_reset:
                    fn()
                value = {}
            elif isinstance(op, str) and op in self.ops:
                input = request.get("input") or {}
                if not isinstance(input, dict):
                    raise invalid_input("input must be a JSON object")
                value = self.ops[op](input)
            else:
                raise unsupported(f"{self.name} adapter has no op {op!r}")
        except OpError as exc:
            self._write({"id": rid, "ok": False, "error": {"type": exc.type, "message": exc.message}})
            return
        except Exception:  # the adapter's own bug: internal, with where it happened
            self._write({"id": rid, "ok": False, "error": {"type": "internal", "message": f"{op}: {traceback.format_exc()}"}})
            return
        self._write({"id": rid, "ok": True, "value": value})

    def run(self, stdin: Optional[TextIO] = None, stdout: Optional[TextIO] = None) -> None:
        """Answer requests until stdin closes. `print` inside ops goes to stderr: stdout carries answers only."""
        self._in = stdin or sys.stdin
        self._out = stdout or sys.stdout
        if stdout is None:
            sys.stdout = sys.stderr
        try:
            for line in self._in:
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                except ValueError as exc:
                    self._write({"id": None, "ok": False,
                                 "error": {"type": "invalid-input", "message": f"request is not JSON: {exc}"}})
                    continue
                self._answer(request)
        finally:
            if stdout is None:
                sys.stdout = self._out
