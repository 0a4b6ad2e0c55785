"""The reference server and client end to end over real HTTP on 127.0.0.1.

Every {legacy, hinted} client x {legacy, hinted} server pair, on the memory
chain (both hint encodings) and on the evm chain; restarts of either side;
settlement, top-up, cooperative and forced close; the demo command.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from adapters.reference import DepositExhausted, HintBoundExceeded, SessionClient, SessionServer

from .test_reference_support import (
    PATH,
    PAYEE_KEY,
    PRICE,
    config,
    evm_chain,
    get_challenge,
    memory_chain,
    new_key,
    payer_of,
    receipt,
    running,
)

PAIRS = [(c, s) for c in ("hinted", "legacy") for s in ("hinted", "legacy")]
N = 6


def _run_pair(chain, tmp_path, client_mode, server_mode, encoding, n, restart_at=None, persist=True):
    key = new_key(chain)
    cfg = config(chain, tmp_path, hinted=server_mode == "hinted", hint_encoding=encoding)
    persist_path = str(tmp_path / "client.json") if persist else None
    with running(cfg) as rs:
        client = SessionClient(rs.url, key, chain, hinted=client_mode == "hinted", max_deposit=10**6,
                               persist_path=persist_path, max_price=PRICE)
        for i in range(n):
            if i == restart_at:
                client.restart()
            resp = client.request("GET", PATH)
            assert resp.status_code == 200, (i, resp.status_code, resp.text)
            r = receipt(resp)
            assert r.channel_id == client.channel_id
            assert r.units == 1 and r.spent == (i + 1) * PRICE
        records = rs.server.records()
    assert len(records) == 1
    rec = records[0]
    assert rec.payer == payer_of(key)
    assert rec.spent == n * PRICE and rec.units == n
    assert rec.accepted_cumulative == n * PRICE
    view = client.view()
    assert view.channel_id == rec.channel_id and view.signed_max == n * PRICE
    if client_mode == "hinted":
        assert (view.accepted, view.spent) == (n * PRICE, n * PRICE)
    st = chain.get_channel(rec.channel_id)
    assert st.payer == payer_of(key) and st.deposit == rec.deposit
    client.close_http()
    return rec


@pytest.mark.parametrize("encoding", ["flat", "snapshot"])
@pytest.mark.parametrize("client_mode,server_mode", PAIRS)
def test_pairs_memory(tmp_path, client_mode, server_mode, encoding):
    _run_pair(memory_chain(), tmp_path, client_mode, server_mode, encoding, N, restart_at=N // 2)


@pytest.mark.parametrize("client_mode,server_mode", PAIRS)
def test_pairs_evm(tmp_path, client_mode, server_mode):
    _run_pair(evm_chain(), tmp_path, client_mode, server_mode, "snapshot", 3)


def test_hinted_client_restart_without_persistence_snapshot(tmp_path):
    """Snapshot hints carry the highest voucher: a client that forgot everything resumes the same channel."""
    _run_pair(memory_chain(), tmp_path, "hinted", "hinted", "snapshot", N, restart_at=N // 2, persist=False)


def test_hinted_client_restart_without_persistence_flat_needs_proof(tmp_path):
    """Flat hints prove nothing: after a restart without its file the client refuses them
    (HintBoundExceeded), until the server settles (the chain's settled amount is proof)."""
    chain = memory_chain()
    key = new_key(chain)
    with running(config(chain, tmp_path, hint_encoding="flat")) as rs:
        client = SessionClient(rs.url, key, chain, hinted=True, max_deposit=10**6, max_price=PRICE)
        for _ in range(3):
            assert client.request("GET", PATH).status_code == 200
        cid = client.channel_id
        client.restart()
        with pytest.raises(HintBoundExceeded, match="requiredCumulative=4000"):
            client.request("GET", PATH)
        assert rs.server.get_record(cid).spent == 3 * PRICE
        assert rs.server.settle(cid) is not None
        assert chain.get_channel(cid).settled == 3 * PRICE
        assert rs.server.get_record(cid).settled == 3 * PRICE
        resp = client.request("GET", PATH)
        assert resp.status_code == 200 and receipt(resp).spent == 4 * PRICE
        assert client.channel_id == cid


def test_server_restart_keeps_everything(tmp_path):
    chain = memory_chain()
    key = new_key(chain)
    cfg = config(chain, tmp_path)
    with running(cfg) as rs:
        client = SessionClient(rs.url, key, chain, max_deposit=10**6, persist_path=str(tmp_path / "c.json"), max_price=PRICE)
        for _ in range(3):
            assert client.request("GET", PATH).status_code == 200
        # one request with an Idempotency-Key, remembered to replay after the restart
        seen = []
        client.observer = lambda kind, data: seen.append((kind, data))
        first = client.request("GET", PATH, idempotency_key="before-restart")
        assert first.status_code == 200
        before_records, before_dump = rs.server.records(), rs.server.dump()
    # A new instance on the same file (and a new port).
    with running(cfg) as rs2:
        assert rs2.server.records() == before_records
        assert rs2.server.dump() == before_dump
        client2 = SessionClient(rs2.url, key, chain, max_deposit=10**6, persist_path=str(tmp_path / "c.json"), max_price=PRICE)
        for _ in range(2):
            assert client2.request("GET", PATH).status_code == 200
        rec = rs2.server.get_record(client.channel_id)
        assert rec.spent == 6 * PRICE and rec.units == 6 and rec.accepted_cumulative == 6 * PRICE
        assert len(rs2.server.records()) == 1
    # and once more, replaying the keyed request of the first instance: same response, no charge
    with running(cfg) as rs3:
        headers = {"Idempotency-Key": "before-restart"}
        cred = [d for k, d in seen if k == "credential"][-1]
        assert cred["action"] == "voucher"
        # rebuild the exact Authorization the client sent (same challenge, same voucher)
        replay = _replay_last(client, rs3.url, headers)
        assert replay.status_code == 200
        assert replay.headers["payment-receipt"] == first.headers["payment-receipt"]
        assert rs3.server.get_record(client.channel_id).spent == 6 * PRICE


def _replay_last(client, url, headers):
    """Resend the last Authorization `client` sent (kept by a transport hook)."""
    auth = client._last_authorization  # set by the hook installed below
    return httpx.get(url + PATH, headers={**headers, "Authorization": auth})


@pytest.fixture(autouse=True)
def _record_authorizations(monkeypatch):
    """Keep the last Authorization each client sends (for replay tests)."""
    orig = SessionClient._send_paid

    def wrapped(self, method, path, challenge, payload, key, headers):
        from wire import Credential, encode_authorization

        cred = Credential(challenge=challenge, source=f"did:pkh:eip155:{self.chain.chain_id}:{self.address}",
                          payload=payload)
        self._last_authorization = encode_authorization(cred)
        return orig(self, method, path, challenge, payload, key, headers)

    monkeypatch.setattr(SessionClient, "_send_paid", wrapped)


def test_topup_then_deposit_exhausted(tmp_path):
    chain = memory_chain()
    key = new_key(chain)
    with running(config(chain, tmp_path, suggested_deposit=3 * PRICE)) as rs:
        client = SessionClient(rs.url, key, chain, max_deposit=5 * PRICE, max_price=PRICE)
        seen = []
        client.observer = lambda kind, data: seen.append((kind, data))
        for _ in range(5):
            assert client.request("GET", PATH).status_code == 200
        cid = client.channel_id
        topups = [d for k, d in seen if k == "credential" and d["action"] == "topUp"]
        assert topups and all(d["method"] == "HEAD" for d in topups)
        assert chain.get_channel(cid).deposit == 5 * PRICE
        rec = rs.server.get_record(cid)
        assert (rec.deposit, rec.spent) == (5 * PRICE, 5 * PRICE)
        # the same signed topUp transaction again applies nothing more
        auth_headers = {"Authorization": _topup_authorization(client, chain, key, cid, rs.url)}
        again = httpx.head(rs.url + PATH, headers=auth_headers)
        again2 = httpx.head(rs.url + PATH, headers=auth_headers)
        assert again.status_code == 200 and again2.status_code == 200
        assert receipt(again).tx_hash == receipt(again2).tx_hash
        assert chain.get_channel(cid).deposit == 6 * PRICE
        assert client.request("GET", PATH).status_code == 200  # the extra deposit pays one more
        with pytest.raises(DepositExhausted, match="max_deposit 5000"):
            client.request("GET", PATH)
        assert rs.server.get_record(cid).spent == 6 * PRICE


def _topup_authorization(client, chain, key, cid, url):
    from wire import Credential, TopUpPayload, encode_authorization

    _, ch = get_challenge(url, payer_of(key), method="HEAD")
    raw = chain.build_topup_tx(key, cid, PRICE)
    payload = TopUpPayload(channel_id=cid, transaction=raw, additional_deposit=PRICE)
    return encode_authorization(Credential(challenge=ch, payload=payload))


def test_head_voucher_is_never_charged(tmp_path):
    chain = memory_chain()
    key = new_key(chain)
    with running(config(chain, tmp_path)) as rs:
        client = SessionClient(rs.url, key, chain, max_deposit=10**6, max_price=PRICE)
        assert client.request("GET", PATH).status_code == 200
        head = client.request("HEAD", PATH)
        assert head.status_code == 200 and head.content == b""
        r = receipt(head)
        assert (r.accepted_cumulative, r.spent, r.units) == (PRICE, PRICE, None)
        assert rs.server.get_record(client.channel_id).spent == PRICE


def test_cooperative_close_then_new_channel(tmp_path):
    chain = memory_chain()
    key = new_key(chain)
    payer = payer_of(key)
    payee = payer_of(PAYEE_KEY)
    with running(config(chain, tmp_path)) as rs:
        client = SessionClient(rs.url, key, chain, max_deposit=10**6, max_price=PRICE)
        for _ in range(3):
            assert client.request("GET", PATH).status_code == 200
        cid = client.channel_id
        payee_before, payer_before = chain.balance_of(payee), chain.balance_of(payer)
        resp = client.close(PATH)
        assert resp.status_code == 200
        r = receipt(resp)
        assert r.tx_hash is not None and r.spent == 3 * PRICE
        st = chain.get_channel(cid)
        assert st.finalized and st.settled == 3 * PRICE
        assert chain.balance_of(payee) - payee_before == 3 * PRICE
        assert chain.balance_of(payer) - payer_before == st.deposit - 3 * PRICE
        assert rs.server.get_record(cid).finalized
        assert client.view() is None
        # a finalized channel is never hinted; the next request opens a new channel
        _, ch = get_challenge(rs.url, payer)
        assert ch.decoded_request().method_details.channel_id is None
        assert client.request("GET", PATH).status_code == 200
        assert client.channel_id != cid
        assert len(rs.server.records()) == 2


def test_forced_close_pending_is_not_reused(tmp_path):
    chain = memory_chain()
    key = new_key(chain)
    with running(config(chain, tmp_path)) as rs:
        client = SessionClient(rs.url, key, chain, max_deposit=10**6, max_price=PRICE)
        assert client.request("GET", PATH).status_code == 200
        cid = client.channel_id
        chain.request_close(key, cid)
        _, ch = get_challenge(rs.url, payer_of(key))
        md = ch.decoded_request().method_details
        assert md.channel_id is None and md.session_snapshot is None
        assert client.request("GET", PATH).status_code == 200
        assert client.channel_id != cid
        assert rs.server.get_record(cid).spent == PRICE


def test_demo_evm_restart_client():
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "adapters.reference", "demo", "--hints", "--chain", "evm", "--requests", "5",
         "--restart-client"],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5/5 requests served" in proc.stdout
    assert "sessionSnapshot" in proc.stdout and "action=open" in proc.stdout


def test_demo_fails_when_a_request_is_not_served():
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "adapters.reference", "demo", "--hints", "--hint-encoding", "flat", "--requests", "4",
         "--restart-client"],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "HintBoundExceeded" in proc.stdout


def test_new_instance_sees_records_without_serving(tmp_path):
    chain = memory_chain()
    key = new_key(chain)
    cfg = config(chain, tmp_path)
    with running(cfg) as rs:
        client = SessionClient(rs.url, key, chain, max_deposit=10**6, max_price=PRICE)
        assert client.request("POST", PATH).status_code == 200
        recs = rs.server.records()
    other = SessionServer(cfg)
    try:
        assert other.records() == recs and other.get_record(client.channel_id) == recs[0]
    finally:
        other.close()


def test_wallet_too_small_is_deposit_exhausted(tmp_path):
    chain = memory_chain()
    key = new_key(chain, amount=PRICE // 2)
    with running(config(chain, tmp_path)) as rs:
        client = SessionClient(rs.url, key, chain, max_deposit=10**6, max_price=PRICE)
        with pytest.raises(DepositExhausted, match="wallet holds 500"):
            client.request("GET", PATH)
        assert rs.server.records() == [] and chain.nonce_of(payer_of(key)) == 1  # only fund()'s approve


def test_signed_max_is_persisted_before_the_voucher_is_sent(tmp_path):
    import json

    chain = memory_chain()
    key = new_key(chain)
    path = tmp_path / "client.json"
    checked = []

    def observer(kind, data):
        if kind == "credential" and data.get("cumulativeAmount") is not None:
            saved = json.loads(path.read_text())
            entry = saved["channels"][data["channelId"]]
            assert int(entry["signed_max"]) >= data["cumulativeAmount"]
            assert saved["current"] == data["channelId"] and entry["salt"].startswith("0x")
            checked.append(data["cumulativeAmount"])

    with running(config(chain, tmp_path, hint_encoding="flat")) as rs:
        client = SessionClient(rs.url, key, chain, max_deposit=10**6, persist_path=str(path), observer=observer, max_price=PRICE)
        for _ in range(3):
            assert client.request("GET", PATH).status_code == 200
        assert checked == [PRICE, 2 * PRICE, 3 * PRICE]
        # a restarted client with its file proves its own signatures: flat hints are followed
        client.restart()
        assert client.request("GET", PATH).status_code == 200
        assert client.view().signed_max == 4 * PRICE
