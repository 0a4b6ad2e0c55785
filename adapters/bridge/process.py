"""The Python end of the subprocess adapter protocol (see PROTOCOL.md beside this file).

An adapter is a long-lived process that answers JSON-lines requests on its
stdin/stdout. `AdapterProcess` starts it once, sends one request at a time and
waits for the answer with the same id, and turns every way that can go wrong
into an `AdapterError` that names the adapter and the op:

- the adapter answered ``ok: false``       -> AdapterError(type) (Unsupported for "unsupported")
- it did not answer in time                 -> AdapterTimeout (the process is killed)
- it exited or closed stdout mid-request    -> AdapterCrashed (with its exit code and stderr tail)
- it wrote an answer that is not protocol   -> AdapterProtocolError

After a timeout or a crash the next call starts a fresh process; every such
restart is recorded in `crashes` so a harness can report it (state the adapter
held, e.g. a server's channel store, is gone after a restart).

Protocol version 2 adds *callbacks*: while the harness waits on an op, the adapter may ask the harness
something (`{"callback": N, "kind": "http"|"rpc", "request": {...}}`) and gets the answer on stdin before it
answers the op. `AdapterProcess.callbacks` maps a kind to the handler the Python side registered; every
request line lists the kinds it offers (`"callbacks": [...]`), so an adapter falls back (or answers
`unsupported`) for a kind nobody serves.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import attrs

PROTOCOL_VERSION = 2  # 2 = 1 + callbacks from the adapter to the harness (PROTOCOL.md section 8)
CALLBACK_KINDS = ("http", "rpc")
ERROR_TYPES = ("unsupported", "invalid-input", "rejected", "internal")
# Ops every adapter answers, whatever its manifest lists.
CORE_OPS = ("hello", "reset")


class AdapterError(Exception):
    """The adapter (or the harness talking to it) reports a failure of one op."""

    def __init__(self, type: str, message: str, *, adapter: str = "?", op: str = "?") -> None:
        super().__init__(f"[{adapter}] {op}: {type}: {message}")
        self.type = type
        self.message = message
        self.adapter = adapter
        self.op = op


class Unsupported(AdapterError):
    """The implementation lacks the capability: a harness reports SKIPPED, never passed."""


class AdapterTimeout(AdapterError):
    """No answer within the timeout; the adapter process was killed."""


class AdapterCrashed(AdapterError):
    """The adapter process exited (or closed its stdout) before answering."""


class AdapterProtocolError(AdapterError):
    """The adapter wrote something on stdout that is not a protocol answer."""


class CallbackRefused(Exception):
    """Raised by a callback handler to answer `ok: false` with `type` and the message: "rejected" (the harness
    refuses, e.g. an RPC error), "network" (an http callback whose connection failed: a fault of the harness's
    network, which the adapter turns into its language's network error)."""

    def __init__(self, message: str, type: str = "rejected") -> None:
        super().__init__(message)
        self.type = type


# A callback handler gets the callback's `request` object and returns its JSON `value`.
CallbackHandler = Callable[[dict], Any]


@attrs.frozen
class Manifest:
    """adapters/<name>/manifest.json, with paths resolved against its directory."""

    name: str
    root: Path
    command: tuple[str, ...]
    build: tuple[str, ...] = ()
    built_marker: str | None = None
    build_inputs: tuple[str, ...] = ()
    build_stamp: str | None = None
    capabilities: tuple[str, ...] = ()
    version: str | None = None
    env: dict[str, str] = attrs.field(factory=dict)
    timeout: float = 30.0
    startup_timeout: float = 60.0

    def supports(self, op: str) -> bool:
        return op in CORE_OPS or op in self.capabilities

    def expected_stamp(self) -> str:
        """`sha256sum`-style lines over `build_inputs` (what `build_stamp` holds after a build)."""
        lines = []
        for name in self.build_inputs:
            digest = hashlib.sha256((self.root / name).read_bytes()).hexdigest()
            lines.append(f"{digest}  {name}")
        return "\n".join(lines)

    @property
    def is_built(self) -> bool:
        """The build output exists and, when stamped, was built from the current inputs."""
        if self.built_marker is not None and not (self.root / self.built_marker).exists():
            return False
        if self.build_stamp is not None and self.build_inputs:
            stamp = self.root / self.build_stamp
            try:
                return stamp.read_text().strip() == self.expected_stamp()
            except OSError:
                return False
        return True


def _resolve_argv(argv: list[str], root: Path) -> tuple[str, ...]:
    out: list[str] = []
    for i, arg in enumerate(argv):
        if not isinstance(arg, str):
            raise ValueError(f"manifest command/build entries must be strings, got {arg!r}")
        if arg == "{python}":
            out.append(sys.executable)
        elif i == 0 and ("/" in arg or arg.startswith(".")):
            out.append(str((root / arg).resolve()))
        else:
            out.append(arg)
    return tuple(out)


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and check a manifest; `command` and `build` are argv lists run in its directory."""
    path = Path(path).resolve()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read adapter manifest {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"adapter manifest {path} must be a JSON object")
    for key in ("name", "command"):
        if key not in data:
            raise ValueError(f"adapter manifest {path} lacks {key!r}")
    command = data["command"]
    if not isinstance(command, list) or not command:
        raise ValueError(f"adapter manifest {path}: 'command' must be a non-empty argv list")
    build = data.get("build") or []
    if not isinstance(build, list):
        raise ValueError(f"adapter manifest {path}: 'build' must be an argv list")
    caps = data.get("capabilities") or []
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise ValueError(f"adapter manifest {path}: 'capabilities' must be a list of op names")
    root = path.parent
    return Manifest(
        name=str(data["name"]),
        root=root,
        command=_resolve_argv(command, root),
        build=_resolve_argv(build, root) if build else (),
        built_marker=data.get("built_marker"),
        build_inputs=tuple(data.get("build_inputs") or ()),
        build_stamp=data.get("build_stamp"),
        capabilities=tuple(caps),
        version=data.get("version"),
        env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
        timeout=float(data.get("timeout", 30.0)),
        startup_timeout=float(data.get("startup_timeout", 60.0)),
    )


def build_adapter(manifest: Manifest, *, force: bool = False, timeout: float = 600.0) -> None:
    """Run the manifest's build command in its directory unless it is already built (`is_built`).

    After a successful build the stamp file (if the manifest names one) records the
    hashes of `build_inputs`, so a changed lock file triggers a rebuild.
    """
    if not manifest.build or (manifest.is_built and not force):
        return
    # Several processes (pytest-xdist workers, parallel CLI runs) may build one checkout at once: two `npm ci`
    # in one node_modules corrupt each other. One file lock per adapter directory; whoever waited finds it built.
    from filelock import FileLock

    with FileLock(str(manifest.root / ".bridge-build.lock"), timeout=timeout):
        if manifest.is_built and not force:
            return
        _run_build(manifest, timeout)


def _run_build(manifest: Manifest, timeout: float) -> None:
    exe = manifest.build[0]
    if shutil.which(exe) is None and not Path(exe).exists():
        raise FileNotFoundError(f"adapter {manifest.name}: build tool {exe!r} is not on PATH")
    proc = subprocess.run(
        manifest.build, cwd=manifest.root, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"adapter {manifest.name}: build {' '.join(manifest.build)} failed with exit code "
            f"{proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    if manifest.build_stamp is not None and manifest.build_inputs:
        stamp = manifest.root / manifest.build_stamp
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(manifest.expected_stamp() + "\n")


_EOF = object()


class AdapterProcess:
    """One adapter process, started on first use and reused for every call.

    `call(op, **input)` returns the answer's `value` or raises `AdapterError`.
    Calls are serialized (a lock); the process is started lazily, or eagerly by
    `start()` / entering the context manager.
    """

    def __init__(
        self,
        manifest: Manifest | str | os.PathLike[str],
        *,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        stderr_lines: int = 200,
    ) -> None:
        self.manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
        self.timeout = self.manifest.timeout if timeout is None else timeout
        self._env = env
        self._proc: subprocess.Popen[str] | None = None
        self._answers: queue.Queue[Any] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self._noise: collections.deque[str] = collections.deque(maxlen=20)
        self._lock = threading.RLock()
        self._next_id = 0
        self._stderr_thread: threading.Thread | None = None
        self.hello: dict[str, Any] | None = None
        self.crashes: list[str] = []  # one message per crash/timeout that forced a restart
        self.starts = 0
        # kind -> handler of the adapter's callbacks ("http", "rpc"); registered by the Python wrapper that
        # drives an op needing them, offered on every request line.
        self.callbacks: dict[str, CallbackHandler] = {}
        self.callback_log: collections.deque[tuple[str, str]] = collections.deque(maxlen=200)

    @property
    def name(self) -> str:
        return self.manifest.name

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Start the process (if it is not running) and return its `hello` answer."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                assert self.hello is not None
                return self.hello
            self._spawn()
            try:
                hello = self._roundtrip("hello", {}, timeout=self.manifest.startup_timeout)
            except AdapterError:
                self._kill()
                raise
            if not isinstance(hello, dict):
                self._kill()
                raise AdapterProtocolError(
                    "protocol", f"hello answered {hello!r}, expected an object", adapter=self.name, op="hello"
                )
            self.hello = hello
            return hello

    def _spawn(self) -> None:
        exe = self.manifest.command[0]
        if shutil.which(exe) is None and not Path(exe).exists():
            raise AdapterCrashed(
                "crashed", f"cannot start: {exe!r} is not on PATH", adapter=self.name, op="start"
            )
        env = dict(os.environ)
        env.update(self.manifest.env)
        if self._env:
            env.update(self._env)
        self._answers = queue.Queue()
        self._stderr.clear()
        try:
            proc = subprocess.Popen(
                self.manifest.command,
                cwd=self.manifest.root,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                bufsize=1,
                env=env,
            )
        except OSError as exc:
            raise AdapterCrashed("crashed", f"cannot start {self.manifest.command}: {exc}", adapter=self.name, op="start") from exc
        self._proc = proc
        self.starts += 1
        answers = self._answers
        threading.Thread(target=self._read_stdout, args=(proc, answers), daemon=True).start()
        self._stderr_thread = threading.Thread(target=self._read_stderr, args=(proc,), daemon=True)
        self._stderr_thread.start()

    def _read_stdout(self, proc: subprocess.Popen[str], answers: queue.Queue[Any]) -> None:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                answers.put(line)
        except (OSError, ValueError):
            pass
        answers.put(_EOF)

    def _read_stderr(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        try:
            for line in proc.stderr:
                self._stderr.append(line.rstrip("\n"))
        except (OSError, ValueError):
            pass

    def stderr_tail(self, n: int = 30) -> str:
        lines = list(self._stderr)[-n:]
        return "\n".join(lines)

    def _kill(self) -> None:
        proc = self._proc
        self._proc = None
        self.hello = None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def close(self) -> None:
        """Close stdin (the adapter should exit), then make sure it is gone."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self._kill()

    def __enter__(self) -> AdapterProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; close() is the supported way
        try:
            self._kill()
        except Exception:
            pass

    # -- calls -------------------------------------------------------------

    def supports(self, op: str) -> bool:
        return self.manifest.supports(op)

    def call(self, op: str, input: dict[str, Any] | None = None, /, *, timeout: float | None = None, **fields: Any) -> Any:
        """Send `op` with `input` (a dict, or keyword fields) and return the answer's value.

        Ops the manifest does not list raise `Unsupported` without a round trip.
        """
        if input is not None and fields:
            raise TypeError("pass the input either as a dict or as keyword fields, not both")
        payload = dict(input if input is not None else fields)
        if not self.manifest.supports(op):
            raise Unsupported(
                "unsupported", f"manifest of {self.name} does not list op {op!r}", adapter=self.name, op=op
            )
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:
                    self._record_crash("before", op)
                self.start()
            return self._roundtrip(op, payload, timeout=self.timeout if timeout is None else timeout)

    def _record_crash(self, when: str, op: str) -> None:
        proc = self._proc
        code = proc.poll() if proc is not None else None
        msg = f"adapter {self.name} had exited (code {code}) {when} op {op}; restarting. stderr:\n{self.stderr_tail()}"
        self.crashes.append(msg)
        self._kill()

    def _roundtrip(self, op: str, payload: dict[str, Any], *, timeout: float) -> Any:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self._next_id += 1
        rid = self._next_id
        try:
            message: dict[str, Any] = {"id": rid, "op": op, "input": payload}
            if self.callbacks:
                message["callbacks"] = sorted(self.callbacks)
            line = json.dumps(message, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise AdapterError("invalid-input", f"input is not JSON-serializable: {exc}", adapter=self.name, op=op) from exc
        try:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            return self._crashed(op)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._timed_out(op, timeout)
            try:
                item = self._answers.get(timeout=remaining)
            except queue.Empty:
                return self._timed_out(op, timeout)
            if item is _EOF:
                return self._crashed(op)
            text = item.strip()
            if not text:
                continue
            try:
                answer = json.loads(text)
            except ValueError:
                # Not protocol; keep it for error messages and go on waiting.
                self._noise.append(text[:500])
                self._stderr.append(f"[stdout, not JSON] {text[:500]}")
                continue
            if isinstance(answer, dict) and "callback" in answer and "id" not in answer:
                self._serve_callback(op, answer, proc)
                deadline = time.monotonic() + timeout  # the harness's time answering is not the adapter's
                continue
            if not isinstance(answer, dict) or "id" not in answer:
                raise AdapterProtocolError(
                    "protocol", f"answer without id: {text[:300]}", adapter=self.name, op=op
                )
            if answer["id"] != rid:
                continue  # a late answer to an earlier request; ignore
            return self._unwrap(op, answer, text)

    def _serve_callback(self, op: str, message: dict[str, Any], proc: subprocess.Popen[str]) -> None:
        """Answer one callback of the adapter (sent while it works on `op`) with the registered handler."""
        number = message.get("callback")
        kind = message.get("kind")
        request = message.get("request")
        if not isinstance(number, int) or isinstance(number, bool):
            raise AdapterProtocolError("protocol", f"callback without an integer number: {message!r:.300}",
                                       adapter=self.name, op=op)
        handler = self.callbacks.get(kind) if isinstance(kind, str) else None
        if handler is None:
            reply = {"callback": number, "ok": False,
                     "error": {"type": "unsupported", "message": f"the harness serves no {kind!r} callbacks for op {op}"
                               f" (offered: {sorted(self.callbacks) or 'none'})"}}
        elif not isinstance(request, dict):
            reply = {"callback": number, "ok": False,
                     "error": {"type": "invalid-input", "message": "callback 'request' must be an object"}}
        else:
            try:
                reply = {"callback": number, "ok": True, "value": handler(request)}
            except CallbackRefused as exc:
                reply = {"callback": number, "ok": False, "error": {"type": exc.type, "message": str(exc)}}
            except Exception as exc:  # a bug of the handler: the adapter fails the op with it ("internal")
                reply = {"callback": number, "ok": False,
                         "error": {"type": "internal", "message": f"{kind} callback handler raised {exc!r}"}}
        self.callback_log.append((str(kind), op))
        try:
            text = json.dumps(reply, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            text = json.dumps({"callback": number, "ok": False,
                               "error": {"type": "internal", "message": f"answer is not JSON: {exc}"}})
        try:
            assert proc.stdin is not None
            proc.stdin.write(text + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the process is gone; the op's own wait reports the crash

    def _unwrap(self, op: str, answer: dict[str, Any], text: str) -> Any:
        if answer.get("ok") is True:
            return answer.get("value")
        if answer.get("ok") is False:
            err = answer.get("error")
            if not isinstance(err, dict):
                raise AdapterProtocolError("protocol", f"error answer without error object: {text[:300]}", adapter=self.name, op=op)
            etype = str(err.get("type", "internal"))
            message = str(err.get("message", ""))
            if etype not in ERROR_TYPES:
                message = f"(unknown error type {etype!r}) {message}"
                etype = "internal"
            if etype == "internal":
                tail = self.stderr_tail(10)
                if tail:
                    message = f"{message}\n--- adapter stderr (tail) ---\n{tail}"
            cls = Unsupported if etype == "unsupported" else AdapterError
            raise cls(etype, message, adapter=self.name, op=op)
        raise AdapterProtocolError("protocol", f"answer with neither ok true nor ok false: {text[:300]}", adapter=self.name, op=op)

    def _timed_out(self, op: str, timeout: float) -> Any:
        tail = self.stderr_tail()
        self.crashes.append(f"adapter {self.name} timed out after {timeout:g}s on op {op}; killed")
        self._kill()
        raise AdapterTimeout(
            "timeout",
            f"no answer within {timeout:g}s; the adapter process was killed and will be restarted on the next call"
            + (f"\n--- adapter stderr (tail) ---\n{tail}" if tail else ""),
            adapter=self.name,
            op=op,
        )

    def _crashed(self, op: str) -> Any:
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=2)  # let the stderr reader drain the last lines
        tail = self.stderr_tail()
        msg = f"adapter process exited (code {code}) before answering"
        self.crashes.append(f"adapter {self.name} crashed on op {op} (exit code {code})")
        self._kill()
        raise AdapterCrashed(
            "crashed",
            msg + "; it will be restarted on the next call" + (f"\n--- adapter stderr (tail) ---\n{tail}" if tail else ""),
            adapter=self.name,
            op=op,
        )
