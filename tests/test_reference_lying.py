"""A hinted client against a lying server: inflated hints are refused (HintBoundExceeded)
and nothing is signed; a hint for someone else's channel is ignored."""
from __future__ import annotations

import attrs
import pytest

from adapters.reference import HintBoundExceeded, SessionClient, SessionServer
from model.records import Voucher

from .test_reference_support import (
    PATH,
    PRICE,
    config,
    memory_chain,
    new_key,
    running,
    sign,
)


class LyingServer(SessionServer):
    """A real reference server whose challenges lie about the payer's channel.

    mode "inflate-flat": flat hints claiming the whole deposit was accepted and is required;
    mode "forged-proof": a snapshot whose highestVoucher (the whole deposit) is signed by an attacker;
    mode "inflated-required": a snapshot with the genuine highestVoucher but requiredCumulative far above it;
    mode "other-channel": hints (true values) for another payer's channel.
    """

    mode: str | None = None
    attacker_key: bytes = b""
    other_channel: str | None = None

    def _hints_for(self, rec, content):
        hints, sig = super()._hints_for(rec, content)
        if hints is None or self.mode is None:
            return hints, sig
        st = self.chain.get_channel(hints.channel_id)
        if self.mode == "inflate-flat":
            top = st.deposit
            return attrs.evolve(hints, accepted=top, required=top, spent=top, proof=None), None
        if self.mode == "forged-proof":
            top = st.deposit
            forged = sign(self.chain, self.attacker_key, hints.channel_id, top)
            lie = attrs.evolve(hints, accepted=top, required=top, spent=top,
                               proof=Voucher(hints.channel_id, top, None))
            return lie, forged
        if self.mode == "inflated-required":
            return attrs.evolve(hints, required=hints.accepted + 20 * PRICE), sig
        if self.mode == "other-channel":
            other = self.store.get(self.other_channel)
            return super()._hints_for(other, content)
        raise AssertionError(self.mode)


def _setup(tmp_path, encoding):
    chain = memory_chain()
    key = new_key(chain)
    cfg = config(chain, tmp_path, hint_encoding=encoding)
    server = LyingServer(cfg)
    return chain, key, server


def _snapshot(rs, client, persist_path):
    with open(persist_path, "rb") as f:
        persisted = f.read()
    return rs.server.dump(), client.view(), persisted


@pytest.mark.parametrize("mode,encoding", [
    ("inflate-flat", "flat"),
    ("forged-proof", "snapshot"),
    ("inflated-required", "snapshot"),
])
def test_inflated_hints_are_refused(tmp_path, mode, encoding):
    chain, key, server = _setup(tmp_path, encoding)
    persist = str(tmp_path / "client.json")
    with running(server) as rs:
        client = SessionClient(rs.url, key, chain, hinted=True, max_deposit=10**6, persist_path=persist, max_price=PRICE)
        for _ in range(2):
            assert client.request("GET", PATH).status_code == 200
        before = _snapshot(rs, client, persist)
        server.mode = mode
        server.attacker_key = new_key(chain)
        with pytest.raises(HintBoundExceeded) as info:
            client.request("GET", PATH)
        msg = str(info.value)
        assert "requiredCumulative=" in msg and "proven floor 2000" in msg
        if mode == "forged-proof":
            assert "not proven" in msg
        assert _snapshot(rs, client, persist) == before  # nothing signed, persisted or charged
        # the allowance is what lets a client follow unproven hints
        server.mode = "inflated-required"
        generous = SessionClient(rs.url, key, chain, hinted=True, max_deposit=10**6, max_unproven_hint=25 * PRICE, max_price=PRICE)
        resp = generous.request("GET", PATH)
        assert resp.status_code == 200
        assert generous.view().signed_max == 22 * PRICE
        # an honest server again. The original client signed only 2000 itself; with snapshot hints the
        # highestVoucher (22000, signed with its key by the other instance) proves the rest.
        server.mode = None
        if encoding == "snapshot":
            assert client.request("GET", PATH).status_code == 200
            assert client.view().signed_max == 22 * PRICE
        else:
            with pytest.raises(HintBoundExceeded):
                client.request("GET", PATH)
        client.close_http()
        generous.close_http()


def test_restarted_client_trusts_only_proof(tmp_path):
    """After a restart without persistence, a genuine highestVoucher is enough proof (snapshot hints),
    a forged one is not."""
    chain, key, server = _setup(tmp_path, "snapshot")
    with running(server) as rs:
        client = SessionClient(rs.url, key, chain, hinted=True, max_deposit=10**6, max_price=PRICE)
        for _ in range(3):
            assert client.request("GET", PATH).status_code == 200
        client.restart()
        server.mode = "forged-proof"
        server.attacker_key = new_key(chain)
        # It authenticates first (rule UA3: a voucher at settled + price), and the forged proof of the
        # answer proves nothing: refused.
        with pytest.raises(HintBoundExceeded, match=rf"proven floor {PRICE} .*not proven"):
            client.request("GET", PATH)
        server.mode = None
        resp = client.request("GET", PATH)
        assert resp.status_code == 200 and client.view().signed_max == 4 * PRICE


def test_hint_for_another_payers_channel_is_ignored(tmp_path):
    chain, key, server = _setup(tmp_path, "snapshot")
    victim_key = new_key(chain)
    with running(server) as rs:
        victim = SessionClient(rs.url, victim_key, chain, hinted=True, max_deposit=10**6, max_price=PRICE)
        assert victim.request("GET", PATH).status_code == 200
        server.mode = "other-channel"
        server.other_channel = victim.channel_id
        client = SessionClient(rs.url, key, chain, hinted=True, max_deposit=10**6, max_price=PRICE)
        seen = []
        client.observer = lambda kind, data: seen.append((kind, data))
        assert client.request("GET", PATH).status_code == 200
        assert client.channel_id != victim.channel_id
        creds = [d for k, d in seen if k == "credential"]
        assert [d["action"] for d in creds] == ["open"]
        assert all(d["channelId"] != victim.channel_id for d in creds)
        assert rs.server.get_record(victim.channel_id).spent == PRICE
        victim.close_http()
        client.close_http()


def test_price_above_max_price_is_refused_before_signing(tmp_path):
    from adapters.reference.client import PriceTooHigh, SessionClient
    from adapters.reference.server import SessionServer, serve

    from .test_reference_support import PATH, PRICE, config, memory_chain, new_key

    chain = memory_chain()
    with serve(SessionServer(config(chain, tmp_path, price=PRICE * 50))) as rs:
        client = SessionClient(rs.url, new_key(chain), chain, max_price=PRICE)
        with pytest.raises(PriceTooHigh, match=r"asks 50000 per request, above this client's max_price 1000"):
            client.request("GET", PATH)
        assert client.view() is None
