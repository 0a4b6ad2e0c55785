"""mppx's client as applications run it: `client.fetch` = Mppx.create({methods: [sessionMethod(...)]}).fetch,
every HTTP request it makes answered by the harness through the http callback (PROTOCOL.md section 8)."""
from __future__ import annotations

import json

import httpx
import pytest

from adapters.bridge import AdapterError, Unsupported
from adapters.bridge.testing import node_adapter_or_skip
from conformance.interface import ClientParams, Env
from conformance.mppx_impl import MppxClient, decode_credential_header, fetch_outcome

KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"


@pytest.fixture(scope="module")
def adapter():
    a = node_adapter_or_skip()
    yield a
    a.close()


def test_fetch_without_the_http_callback_is_unsupported(adapter):
    adapter.call("reset")
    with pytest.raises(Unsupported, match="http callback"):
        adapter.call("client.fetch", privateKey=KEY, url="https://conformance.test/resource")


def test_every_request_goes_through_the_harness_and_a_plain_200_is_served(adapter):
    adapter.call("reset")
    seen = []

    def carry(request):
        seen.append(request)
        return {"status": 200, "headers": {"content-type": "application/json"}, "body": '{"served": true}'}

    adapter.callbacks["http"] = carry
    try:
        out = adapter.call("client.fetch", privateKey=KEY, method="GET", url="https://conformance.test/resource",
                           headers={"x-payer": "p"})
    finally:
        adapter.callbacks.pop("http")
    assert [(r["method"], r["url"], r["headers"].get("x-payer")) for r in seen] == [
        ("GET", "https://conformance.test/resource", "p")]
    assert out["response"]["status"] == 200 and out["response"]["body"] == {"served": True}
    assert out["chainSource"] == "adapter-fake-chain" and out["store"] == []


def test_mppx_answers_a_challenge_of_its_own_server_with_an_open(adapter):
    # The 402 of mppx's own server (server.challenge) through the harness; the client, with an empty store,
    # opens a channel: its credential arrives at the harness as the retried request's Authorization.
    adapter.call("reset")
    adapter.call("server.configure", amount="10000", suggestedDeposit="1000000")
    challenge = adapter.call("server.challenge", method="GET", path="/resource")
    sent = []

    def carry(request):
        auth = request["headers"].get("authorization")
        if auth is None:
            return {"status": 402, "headers": {"www-authenticate": challenge["wwwAuthenticate"]}, "body": None}
        sent.append(decode_credential_header(auth))
        return {"status": 402, "headers": {"content-type": "application/problem+json"},
                "body": json.dumps({"type": "https://paymentauth.org/problems/verification-failed"})}

    adapter.callbacks["http"] = carry
    try:
        out = adapter.call("client.fetch", privateKey=KEY, url="https://conformance.test/resource")
    finally:
        adapter.callbacks.pop("http")
    assert sent and sent[0]["payload"]["action"] == "open"
    assert sent[0]["challenge"]["request"]["methodDetails"]["sessionProtocol"] == "v2"  # request decoded
    assert fetch_outcome(out, None).kind == "failed:verification-failed"


def test_a_network_fault_of_the_harness_is_unknown(adapter):
    adapter.call("reset")

    def fail(request):
        raise httpx.ConnectError("dropped by the harness network")

    client = MppxClient()
    client.reset(Env(chain=None, payee_key=b"\x01" * 32, price=1, seed=0),
                 ClientParams("mppx", bytes.fromhex(KEY[2:]), True, 4, 2, 0, False), httpx.MockTransport(fail))
    assert client.request("GET", "/resource").kind == "unknown"
    assert "http" not in client.a.callbacks  # handlers are registered only for the duration of the op


def test_chain_reads_go_through_the_rpc_callback_when_the_harness_offers_one(adapter):
    from adapters.bridge import CallbackRefused

    adapter.call("reset")
    adapter.call("server.configure", amount="10000", suggestedDeposit="1000000")
    challenge = adapter.call("server.challenge", method="GET", path="/resource")
    rpc = []

    def carry(request):
        return {"status": 402, "headers": {"www-authenticate": challenge["wwwAuthenticate"]}, "body": None}

    def chain(request):
        rpc.append(request["method"])
        raise CallbackRefused("the harness chain refuses", type="rejected")

    adapter.callbacks.update(http=carry, rpc=chain)
    try:
        out = adapter.call("client.fetch", privateKey=KEY, url="https://conformance.test/resource")
    finally:
        adapter.callbacks.pop("http")
        adapter.callbacks.pop("rpc")
    assert rpc, "mppx's open needs the chain: its reads must reach the harness"
    assert out["chainSource"] == "harness-rpc" and "thrown" in out
    assert "the harness chain refuses" in out["thrown"]["message"]
