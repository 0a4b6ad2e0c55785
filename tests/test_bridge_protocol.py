"""The subprocess adapter protocol machinery (adapters/bridge), tested against a fake adapter.

No Node here: adapters/bridge/fake_adapter.py is a standard-library Python
adapter whose ops exercise round trips, every error type, timeouts, crashes and
stray stdout output.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import attrs
import pytest

from adapters.bridge import (
    AdapterCrashed,
    AdapterError,
    AdapterProcess,
    AdapterTimeout,
    Unsupported,
    build_adapter,
    load_manifest,
)

BRIDGE = Path(__file__).resolve().parent.parent / "adapters" / "bridge"
FAKE_MANIFEST = BRIDGE / "fake_manifest.json"


@pytest.fixture
def fake():
    with AdapterProcess(FAKE_MANIFEST) as adapter:
        yield adapter


def test_manifest_resolves_python_and_paths():
    m = load_manifest(FAKE_MANIFEST)
    assert m.name == "fake"
    assert m.root == BRIDGE
    assert Path(m.command[0]).name.startswith("python")
    assert m.command[1] == "fake_adapter.py"
    assert m.supports("echo") and m.supports("hello") and m.supports("reset")
    assert not m.supports("voucher.sign")


def test_manifest_errors_are_clear(tmp_path):
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(ValueError, match="lacks 'command'"):
        load_manifest(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read adapter manifest"):
        load_manifest(bad)
    bad.write_text(json.dumps({"name": "x", "command": "node a.mjs"}))
    with pytest.raises(ValueError, match="argv list"):
        load_manifest(bad)


def test_hello_and_round_trip(fake):
    assert fake.hello["name"] == "fake"
    payload = {
        "amount": "340282366920938463463374607431768211455",
        "nested": {"list": [1, "two", None, True], "unicode": "żółw ✓"},
        "empty": {},
    }
    assert fake.call("echo", payload) == payload
    assert fake.call("echo", amount="1", chainId=4217) == {"amount": "1", "chainId": 4217}
    assert fake.call("reset") == {}


@pytest.mark.parametrize("etype", ["invalid-input", "rejected", "internal"])
def test_error_types_map_to_adapter_error(fake, etype):
    with pytest.raises(AdapterError) as info:
        fake.call("fail", type=etype, message="nope")
    err = info.value
    assert not isinstance(err, Unsupported)
    assert err.type == etype
    assert err.message.startswith("nope")
    assert err.adapter == "fake" and err.op == "fail"
    assert "[fake] fail" in str(err)


def test_unknown_error_type_becomes_internal(fake):
    with pytest.raises(AdapterError) as info:
        fake.call("fail", type="exploded", message="boom")
    assert info.value.type == "internal"
    assert "exploded" in info.value.message


def test_unsupported_from_adapter(fake):
    with pytest.raises(Unsupported) as info:
        fake.call("voucher.digest", version="v1")
    assert info.value.type == "unsupported"
    assert "no digests" in info.value.message


def test_unsupported_from_manifest_without_round_trip(fake):
    starts = fake.starts
    with pytest.raises(Unsupported, match="does not list op 'voucher.sign'"):
        fake.call("voucher.sign", version="v2")
    assert fake.starts == starts


def test_input_checks(fake):
    with pytest.raises(TypeError):
        fake.call("echo", {"a": 1}, b=2)
    with pytest.raises(AdapterError) as info:
        fake.call("echo", value=object())
    assert info.value.type == "invalid-input"


def test_timeout_kills_and_restarts(tmp_path):
    adapter = AdapterProcess(FAKE_MANIFEST, timeout=0.5)
    try:
        assert adapter.call("counter.incr") == {"counter": 1}
        t0 = time.monotonic()
        with pytest.raises(AdapterTimeout) as info:
            adapter.call("sleep", seconds=30)
        assert time.monotonic() - t0 < 5
        msg = str(info.value)
        assert "[fake] sleep" in msg and "0.5s" in msg and "killed" in msg
        # The next call gets a fresh process (state is gone) and the restart is on record.
        assert adapter.call("counter.incr") == {"counter": 1}
        assert adapter.starts == 2
        assert any("timed out" in c for c in adapter.crashes)
        # A per-call timeout overrides the default.
        assert adapter.call("sleep", seconds=0.8, timeout=5) == {"slept": 0.8}
    finally:
        adapter.close()


def test_crash_is_reported_with_exit_code_and_stderr(fake):
    fake.call("counter.incr", by=5)
    with pytest.raises(AdapterCrashed) as info:
        fake.call("crash", code=9, stderr="panic: the fake adapter fell over")
    msg = str(info.value)
    assert "exited (code 9)" in msg
    assert "panic: the fake adapter fell over" in msg
    assert "[fake] crash" in msg
    # Restarted on the next call, with fresh state.
    assert fake.call("counter.incr") == {"counter": 1}
    assert len(fake.crashes) == 1


def test_death_between_calls_is_recorded(fake):
    fake.call("counter.incr")
    fake._proc.kill()
    fake._proc.wait()
    assert fake.call("echo", x=1) == {"x": 1}
    assert any("had exited" in c for c in fake.crashes)


def test_stdout_noise_is_skipped_and_kept_for_diagnostics(fake):
    assert fake.call("noise") == {"after": "noise"}
    assert "this line is not JSON" in fake.stderr_tail()
    assert fake.call("echo", ok=True) == {"ok": True}


def test_adapter_dying_at_start_is_a_clear_error():
    adapter = AdapterProcess(FAKE_MANIFEST, env={"FAKE_ADAPTER_MODE": "die-on-start"})
    t0 = time.monotonic()
    with pytest.raises(AdapterCrashed) as info:
        adapter.start()
    assert time.monotonic() - t0 < 5
    assert "exited (code 7)" in str(info.value)
    assert "cannot start (die-on-start)" in str(info.value)
    assert "[fake] hello" in str(info.value)


def test_mute_adapter_times_out_at_start():
    manifest = attrs.evolve(load_manifest(FAKE_MANIFEST), startup_timeout=0.5)
    adapter = AdapterProcess(manifest, env={"FAKE_ADAPTER_MODE": "mute"})
    with pytest.raises(AdapterTimeout, match=r"\[fake\] hello"):
        adapter.start()
    adapter.close()


def test_missing_executable(tmp_path):
    (tmp_path / "manifest.json").write_text(
        json.dumps({"name": "ghost", "command": ["no-such-runtime-xyz", "adapter.js"], "capabilities": ["echo"]})
    )
    adapter = AdapterProcess(tmp_path / "manifest.json")
    with pytest.raises(AdapterCrashed, match="not on PATH"):
        adapter.call("echo")


def test_close_ends_the_process():
    adapter = AdapterProcess(FAKE_MANIFEST)
    with adapter:
        proc = adapter._proc
        assert proc.poll() is None
    assert proc.poll() is not None
    assert adapter._proc is None


def test_build_with_stamp(tmp_path):
    (tmp_path / "lock.txt").write_text("v1")
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "name": "built",
                "command": ["{python}", "x.py"],
                "build": ["{python}", "-c", "import pathlib; p = pathlib.Path('out'); p.mkdir(exist_ok=True); (p / 'n').write_text(str(len(list(pathlib.Path('.').glob('log*')))))"],
                "built_marker": "out/n",
                "build_inputs": ["lock.txt"],
                "build_stamp": "out/stamp",
            }
        )
    )
    m = load_manifest(tmp_path / "manifest.json")
    assert not m.is_built
    build_adapter(m)
    assert m.is_built
    stamp = (tmp_path / "out" / "stamp").read_text()
    assert stamp.strip().endswith("  lock.txt")
    (tmp_path / "lock.txt").write_text("v2")
    assert not m.is_built
    build_adapter(m)
    assert m.is_built


def test_failed_build_reports_output(tmp_path):
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "name": "broken",
                "command": ["{python}", "x.py"],
                "build": ["{python}", "-c", "import sys; sys.stderr.write('compiler says no'); sys.exit(2)"],
                "built_marker": "never",
            }
        )
    )
    with pytest.raises(RuntimeError, match="compiler says no"):
        build_adapter(load_manifest(tmp_path / "manifest.json"))


# -- protocol 2: callbacks from the adapter to the harness -------------------------------------------------


def test_callbacks_are_answered_by_the_registered_handlers_before_the_op_answer(fake):
    seen = []
    fake.callbacks["http"] = lambda req: seen.append(("http", req)) or {"status": 200, "headers": {}, "body": "hi"}
    fake.callbacks["rpc"] = lambda req: seen.append(("rpc", req)) or "0x1079"
    out = fake.call("ask", asks=[{"kind": "http", "request": {"method": "GET", "url": "http://t/x"}},
                                 {"kind": "rpc", "request": {"method": "eth_chainId", "params": []}}])
    assert out["replies"] == [{"ok": True, "value": {"status": 200, "headers": {}, "body": "hi"}},
                              {"ok": True, "value": "0x1079"}]
    assert seen == [("http", {"method": "GET", "url": "http://t/x"}), ("rpc", {"method": "eth_chainId", "params": []})]
    assert list(fake.callback_log) == [("http", "ask"), ("rpc", "ask")]


def test_only_registered_kinds_are_offered(fake):
    fake.callbacks["http"] = lambda req: {"status": 204}
    out = fake.call("ask", asks=[{"kind": "rpc", "request": {}}, {"kind": "http", "request": {}}])
    assert out["replies"] == [{"skipped": "not offered"}, {"ok": True, "value": {"status": 204}}]


def test_a_refusing_or_failing_handler_answers_ok_false(fake):
    from adapters.bridge import CallbackRefused

    def refuse(req):
        raise CallbackRefused("connection reset by the harness network", type="network")

    fake.callbacks["http"] = refuse
    fake.callbacks["rpc"] = lambda req: 1 / 0
    out = fake.call("ask", asks=[{"kind": "http", "request": {}}, {"kind": "rpc", "request": {}}])
    assert out["replies"][0] == {"ok": False, "error": {"type": "network",
                                                        "message": "connection reset by the harness network"}}
    assert out["replies"][1]["ok"] is False and out["replies"][1]["error"]["type"] == "internal"
    assert "ZeroDivisionError" in out["replies"][1]["error"]["message"]


def test_a_callback_of_an_unregistered_kind_is_answered_unsupported(fake):
    # an adapter that sends a kind the harness did not offer gets `unsupported`, never a silent success
    fake.callbacks["http"] = lambda req: {}
    out = fake.call("ask", asks=[{"kind": "rpc", "request": {}, "force": True}])
    assert out["replies"][0]["ok"] is False
    assert out["replies"][0]["error"]["type"] == "unsupported"
    assert "serves no 'rpc' callbacks" in out["replies"][0]["error"]["message"]
