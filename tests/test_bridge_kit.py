"""The adapter kits (adapters/bridge/kit.py, adapters/bridge/js/kit.mjs) and PROTOCOL.md's example adapter."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from adapters.bridge import AdapterError, Unsupported
from adapters.bridge.kit import Adapter, CallbackError, amount, hex_value, rejected
from adapters.bridge.process import AdapterProcess, CallbackRefused, load_manifest
from adapters.bridge.testing import node_adapter_or_skip, node_major
import wire
from wire import crypto

REPO = Path(__file__).resolve().parents[1]
KEY = "0x" + "42" * 32
ESCROW = "0x4d50500000000000000000000000000000000000"
CHANNEL = "0x" + "ab" * 32


def run_python(adapter: Adapter, *lines) -> list[dict]:
    out = io.StringIO()
    adapter.run(io.StringIO("".join(json.dumps(m) + "\n" if not isinstance(m, str) else m for m in lines)), out)
    return [json.loads(x) for x in out.getvalue().splitlines()]


def small_adapter() -> Adapter:
    a = Adapter("py-kit", "1.0", callbacks=("http",), notes={"v1": "not offered"})
    state = {"n": 0}
    a.reset_with(lambda: state.update(n=0))

    @a.op("count")
    def count(input):
        state["n"] += amount(input, "by")
        return {"n": state["n"]}

    @a.op("refuse")
    def refuse(input):
        raise rejected("no " + hex_value(input, "channelId", 32))

    @a.op("bug")
    def bug(input):
        return 1 // 0

    @a.op("ask")
    def ask(input):
        try:
            return {"value": a.call_harness("http", {"url": input["url"]})}
        except CallbackError as exc:
            return {"error": exc.type}

    return a


def test_python_kit_hello_reset_errors():
    out = run_python(small_adapter(), {"id": 1, "op": "hello"}, {"id": 2, "op": "count", "input": {"by": "2"}},
                     {"id": 3, "op": "reset"}, {"id": 4, "op": "count", "input": {"by": "3"}},
                     {"id": 5, "op": "count", "input": {"by": 3}}, {"id": 6, "op": "refuse", "input": {"channelId": CHANNEL}},
                     {"id": 7, "op": "bug"}, {"id": 8, "op": "nope"}, "not json\n")
    hello = out[0]["value"]
    assert hello == {"name": "py-kit", "version": "1.0", "protocol": 2, "capabilities": ["ask", "bug", "count", "refuse"],
                     "callbacks": ["http"], "notes": {"v1": "not offered"}}
    assert out[1]["value"] == {"n": 2} and out[2]["value"] == {} and out[3]["value"] == {"n": 3}
    assert out[4]["error"]["type"] == "invalid-input" and "input.by" in out[4]["error"]["message"]
    assert out[5]["error"] == {"type": "rejected", "message": "no " + CHANNEL}
    assert out[6]["error"]["type"] == "internal" and "ZeroDivisionError" in out[6]["error"]["message"]
    assert out[7]["error"]["type"] == "unsupported" and "'nope'" in out[7]["error"]["message"]
    assert out[8] == {"id": None, "ok": False, "error": {"type": "invalid-input", "message": out[8]["error"]["message"]}}
    assert [m["id"] for m in out[:8]] == list(range(1, 9))


def test_python_kit_callbacks_with_a_nested_request_and_a_refusal():
    out = run_python(small_adapter(),
                     {"id": 1, "op": "ask", "input": {"url": "u1"}, "callbacks": ["http"]},
                     {"id": 2, "op": "count", "input": {"by": "5"}},  # nested: sent while the callback is open
                     {"callback": 1, "ok": True, "value": {"status": 200}},
                     {"id": 3, "op": "ask", "input": {"url": "u2"}, "callbacks": ["http"]},
                     {"callback": 2, "ok": False, "error": {"type": "network", "message": "lost"}},
                     {"id": 4, "op": "ask", "input": {"url": "u3"}})  # not offered
    assert out[0] == {"callback": 1, "kind": "http", "request": {"url": "u1"}}
    assert out[1] == {"id": 2, "ok": True, "value": {"n": 5}}
    assert out[2] == {"id": 1, "ok": True, "value": {"value": {"status": 200}}}
    assert out[3]["callback"] == 2 and out[4] == {"id": 3, "ok": True, "value": {"error": "network"}}
    assert out[5]["error"]["type"] == "unsupported" and "offers no http callback" in out[5]["error"]["message"]


def test_the_adapters_are_built_on_the_kits():
    assert "from kit import" in (REPO / "adapters/bridge/fake_adapter.py").read_text()
    mppx = (REPO / "adapters/mppx/adapter.mjs").read_text()
    assert "createAdapter(" in mppx and "readline" not in mppx  # the kit runs its loop


# -- the JS kit, through the real bridge

@pytest.fixture(scope="module")
def kit_fetch():
    if (node_major() or 0) < 20:
        pytest.skip("node >= 20 is not on PATH")
    with AdapterProcess(load_manifest(REPO / "tests/fixtures/kit_fetch_manifest.json")) as p:
        yield p


def test_js_kit_callbacks_and_errors(kit_fetch):
    assert kit_fetch.hello["capabilities"] == ["fetch", "refuse", "bug", "big"]
    assert kit_fetch.hello["protocol"] == 2 and kit_fetch.hello["callbacks"] == ["http"]
    seen = []

    def http(request):
        seen.append(request)
        if request["url"].endswith("/lost"):
            raise CallbackRefused("dropped by the test", type="network")
        return {"status": 402, "headers": {"www-authenticate": "Payment x"}, "body": "pay"}

    kit_fetch.callbacks["http"] = http
    assert kit_fetch.call("fetch", url="http://server.test/a") == {"status": 402, "body": "pay", "fetches": 1}
    assert seen[0]["method"] == "GET" and seen[0]["url"] == "http://server.test/a" and seen[0]["body"] is None
    got = kit_fetch.call("fetch", url="http://server.test/lost")
    assert got["fetches"] == 2 and "dropped by the test" in got["thrown"]
    kit_fetch.call("reset")
    assert kit_fetch.call("fetch", url="http://server.test/b")["fetches"] == 1
    with pytest.raises(AdapterError) as info:
        kit_fetch.call("refuse")
    assert info.value.type == "rejected"
    with pytest.raises(AdapterError) as info:
        kit_fetch.call("bug")
    assert info.value.type == "internal" and "a bug" in info.value.message
    assert kit_fetch.call("big") == {"amount": str(2**100)}  # bigints leave as decimal strings


# -- PROTOCOL.md's example adapter (mppx's vouchers and codecs behind the JS kit)

@pytest.fixture(scope="module")
def example():
    p = node_adapter_or_skip(REPO / "adapters/mppx/example/manifest.json")
    yield p
    p.close()


def test_the_example_is_about_fifty_lines_and_shown_in_protocol_md():
    src = (REPO / "adapters/mppx/example/adapter.mjs").read_text()
    assert len(src.splitlines()) <= 60
    doc = (REPO / "adapters/bridge/PROTOCOL.md").read_text()
    assert "```js\n" + src + "```" in doc, "PROTOCOL.md section 10 must show adapters/mppx/example/adapter.mjs as it is"


def test_the_example_signs_and_verifies_as_the_model(example):
    domain = crypto.VoucherDomain("v2", 4217, ESCROW)
    common = dict(version="v2", chainId=4217, verifyingContract=ESCROW, channelId=CHANNEL, cumulativeAmount="250000")
    sig = example.call("voucher.sign", privateKey=KEY, **common)["signature"]
    assert sig == crypto.sign_voucher(KEY, domain, CHANNEL, 250000)
    payer = crypto.address_of(KEY)
    assert example.call("voucher.verify", signature=sig, signer=payer, **common) == {"valid": True}
    other = dict(common, cumulativeAmount="250001")
    assert example.call("voucher.verify", signature=sig, signer=payer, **other) == {"valid": False}
    assert example.call("voucher.digest", **common)["digest"] == "0x" + crypto.voucher_digest(domain, CHANNEL, 250000).hex()
    with pytest.raises(Unsupported):
        example.call("voucher.sign", privateKey=KEY, **dict(common, version="v1"))
    with pytest.raises(AdapterError) as info:
        example.call("voucher.sign", privateKey=KEY, **dict(common, cumulativeAmount="25e4"))
    assert info.value.type == "invalid-input"
    with pytest.raises(AdapterError) as info:  # above uint96: mppx refuses
        example.call("voucher.sign", privateKey=KEY, **dict(common, cumulativeAmount=str(2**96)))
    assert info.value.type == "rejected"


def test_the_example_parses_what_the_model_writes(example):
    request = wire.b64url_encode(json.dumps({"amount": "1", "currency": "0x" + "11" * 20}).encode())
    header = wire.format_www_authenticate(wire.Challenge(id="abc", realm="api.test", method="tempo",
                                                         intent="session", request=request))
    parsed = example.call("challenge.parse", header=header)
    assert len(parsed) == 1 and parsed[0]["id"] == "abc" and parsed[0]["intent"] == "session"
    with pytest.raises(AdapterError) as info:
        example.call("challenge.parse", header="Bearer nothing")
    assert info.value.type == "rejected"
