"""The chain service (adapters/chain/service.py) and RpcChain against it.

The JSON-RPC it speaks must be the standard one (mppx's viem client will use it):
quantities as 0x-hex, camelCase keys, reverts as error code 3 with the revert
data, JSON-RPC error objects (never an HTTP 5xx) for junk. RpcChain's common
behaviour is in test_chain_contract.py (parametrized over backends); here is
what only it has: the test-only methods and a node that lacks them.
"""
from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from adapters.chain import ChainError, make_chain
from adapters.chain._common import address_of_key, keccak
from adapters.chain.service import MAX_BATCH, MAX_BODY_BYTES, TEST_METHODS, ChainService, RpcError, make_app, start_chain_service

KEY = bytes.fromhex("61" * 32)
PAYEE = bytes.fromhex("62" * 32)


@pytest.fixture(scope="module")
def service():
    return ChainService()


@pytest.fixture(scope="module")
def process():
    with start_chain_service() as proc:
        yield proc


def call(service: ChainService, method: str, *params):
    out = service.handle_body(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode())
    return json.loads(out)


def result(service: ChainService, method: str, *params):
    answer = call(service, method, *params)
    assert "error" not in answer, answer
    return answer["result"]


def error(service: ChainService, method: str, *params) -> dict:
    answer = call(service, method, *params)
    assert "result" not in answer, answer
    return answer["error"]


# ------------------------------------------------------------------ junk in, error objects out


@pytest.mark.parametrize("body,code,says", [
    (b"not json", -32700, "parse error"),
    (b"\xff\xfe", -32700, "parse error"),
    (b"[]", -32600, "empty batch"),
    (b"42", -32600, "expected a JSON object"),
    (b'{"jsonrpc":"2.0","id":1}', -32600, '"method"'),
    (b'{"jsonrpc":"1.0","id":1,"method":"eth_chainId"}', -32600, '"jsonrpc"'),
    (b'{"jsonrpc":"2.0","id":{},"method":"eth_chainId"}', -32600, "id must be"),
    (b'{"jsonrpc":"2.0","id":1e999,"method":"eth_chainId"}', -32600, "id must be"),
    # py-evm raises the recursion limit: without a depth bound this killed the process (SIGSEGV).
    (b"[" * 100_000 + b"]" * 100_000, -32700, "nested more than 64 deep"),
    (b'{"a":' * 65 + b"1" + b"}" * 65, -32700, "nested more than 64 deep"),
    (b'{"jsonrpc":"2.0","id":1,"method":"web3_sha3","params":["' + b"[" * 1000 + b'"]}', -32602, "web3_sha3"),
    (b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":{"a":1}}', -32602, "params must be an array"),
    (b'{"jsonrpc":"2.0","id":1,"method":"eth_nothing"}', -32601, "method not found: eth_nothing"),
    (b'{"jsonrpc":"2.0","id":1,"method":"eth_sendTransaction","params":[{}]}', -32601, "eth_sendRawTransaction"),
    (b'{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0xzz"]}', -32602, "eth_getBalance"),
    (b'{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":[]}', -32602, "eth_getBalance"),
    (b'{"jsonrpc":"2.0","id":1,"method":"eth_call","params":["0x12"]}', -32602, "transaction object"),
    (b'{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":[{"blockHash":"0x00"}]}', -32602, "EIP-1898"),
    (b'{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x1234"]}', -32000, "transaction rejected"),
    (b'{"jsonrpc":"2.0","id":1,"method":"tempo_fund","params":["0x12", "0x1"]}', -32602, "address"),
    (b'{"jsonrpc":"2.0","id":1,"method":"tempo_fund","params":["0x' + b"11" * 20 + b'", "lots"]}', -32602, "amount"),
    (b'{"jsonrpc":"2.0","id":1,"method":"evm_increaseTime","params":[-5]}', -32602, "seconds"),
    (b'{"jsonrpc":"2.0","id":1,"method":"evm_setNextBlockTimestamp","params":["0x1"]}', -32602, "not after"),
])
def test_junk_gets_a_json_rpc_error_saying_what(service, body, code, says):
    answer = json.loads(service.handle_body(body))
    assert answer["jsonrpc"] == "2.0" and answer["error"]["code"] == code
    assert says in answer["error"]["message"]


def test_batches_and_notifications(service):
    batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_blockNumber"} for i in range(3)]
    batch.append({"jsonrpc": "2.0", "method": "eth_blockNumber"})  # a notification: no answer
    answers = json.loads(service.handle_body(json.dumps(batch).encode()))
    assert [a["id"] for a in answers] == [0, 1, 2]
    assert service.handle_body(b'{"jsonrpc":"2.0","method":"eth_blockNumber"}') is None
    too_many = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(MAX_BATCH + 1)]
    answer = json.loads(service.handle_body(json.dumps(too_many).encode()))
    assert answer["error"]["code"] == -32600 and f"at most {MAX_BATCH}" in answer["error"]["message"]


def test_http_bounds_and_methods(process):
    with httpx.Client(base_url=process.url, timeout=30) as http:
        big = http.post("/", content=b"[" + b" " * MAX_BODY_BYTES + b"]", headers={"content-type": "application/json"})
        assert big.status_code == 413 and big.json()["error"]["code"] == -32600
        assert f"at most {MAX_BODY_BYTES}" in big.json()["error"]["message"]
        get = http.get("/")
        assert get.status_code == 405 and "POST" in get.json()["error"]["message"]
        junk = http.post("/", content=b"{{{")
        assert junk.status_code == 200 and junk.json()["error"]["code"] == -32700
        ok = http.post("/", json={"jsonrpc": "2.0", "id": "a", "method": "eth_chainId"})
        assert ok.status_code == 200 and ok.json()["id"] == "a" and ok.json()["result"].startswith("0x")


# ------------------------------------------------------------------ standard encoding


def _hex_quantity(value) -> bool:
    return isinstance(value, str) and value.startswith("0x") and (value == "0x0" or value[2] != "0")


def test_standard_answers_are_json_rpc_encoded(service):
    chain = service.chain
    assert _hex_quantity(result(service, "eth_chainId")) and int(result(service, "eth_chainId"), 16) == chain.chain_id
    assert result(service, "net_version") == str(chain.chain_id)
    assert result(service, "eth_accounts") == []
    for m in ("eth_blockNumber", "eth_gasPrice", "eth_maxPriorityFeePerGas"):
        assert _hex_quantity(result(service, m)), m
    assert result(service, "eth_getCode", chain.escrow, "latest").startswith("0x6080")
    assert result(service, "eth_getCode", chain.escrow) == result(service, "eth_getCode", chain.escrow, "finalized")
    dep = result(service, "tempo_deployment")
    assert dep == {"chainId": hex(chain.chain_id), "escrow": chain.escrow, "token": chain.token, "closeGracePeriod": "0x384"}

    # A transaction with a log: receipt, transaction, block and logs as nodes encode them.
    addr = address_of_key(KEY)
    funded = result(service, "tempo_fund", addr, hex(5_000))
    assert funded["address"] == addr and len(funded["transactions"]) == 2
    mint_hash = funded["transactions"][1]
    receipt = result(service, "eth_getTransactionReceipt", mint_hash)
    assert receipt["status"] == "0x1" and _hex_quantity(receipt["gasUsed"]) and _hex_quantity(receipt["blockNumber"])
    assert "stateRoot" not in receipt and "state_root" not in receipt
    assert len(receipt["logsBloom"]) == 2 + 512 and int(receipt["logsBloom"], 16) != 0
    (log,) = receipt["logs"]
    assert log["removed"] is False and "type" not in log and _hex_quantity(log["logIndex"])
    assert log["topics"][0] == "0x" + keccak(b"Transfer(address,address,uint256)").hex()
    tx = result(service, "eth_getTransactionByHash", mint_hash)
    assert tx["input"].startswith("0x40c10f19") and "data" not in tx and _hex_quantity(tx["nonce"])
    block = result(service, "eth_getBlockByNumber", receipt["blockNumber"], True)
    assert block["logsBloom"] == receipt["logsBloom"]
    (full,) = block["transactions"]
    assert full["hash"] == mint_hash and "blockHash" in full and "block_hash" not in full and "input" in full
    assert _hex_quantity(block["timestamp"]) and _hex_quantity(block["baseFeePerGas"])
    logs = result(service, "eth_getLogs", {"fromBlock": receipt["blockNumber"], "toBlock": "latest", "address": chain.token})
    assert logs[0]["transactionHash"] == mint_hash and logs[0]["removed"] is False
    assert int(result(service, "eth_getBalance", addr), 16) == 10**18


def test_a_revert_is_error_code_3_with_the_revert_data(service):
    chain = service.chain
    data = chain._calldata("settle(bytes32,uint128,bytes)", ["bytes32", "uint128", "bytes"], [b"\x01" * 32, 5, b""])
    err = error(service, "eth_call", {"to": chain.escrow, "data": "0x" + data.hex()}, "latest")
    assert err["code"] == 3 and err["message"].startswith("execution reverted")
    assert err["data"] == "0x" + keccak(b"ChannelNotFound()")[:4].hex()
    est = error(service, "eth_estimateGas", {"to": chain.escrow, "input": "0x" + data.hex()})
    assert est["code"] == 3 and est["data"] == err["data"]


def test_time_methods_move_the_next_block(service):
    def head() -> tuple[int, int]:
        b = result(service, "eth_getBlockByNumber", "latest", False)
        return int(b["number"], 16), int(b["timestamp"], 16)

    n, t = head()
    assert result(service, "evm_mine") == "0x0"
    assert head() == (n + 1, t + 1)  # one second per block, never the wall clock
    assert result(service, "evm_increaseTime", 100) == 100
    assert result(service, "evm_increaseTime", "0x10") == 116
    pending = result(service, "eth_getBlockByNumber", "pending", False)
    assert int(pending["timestamp"], 16) == t + 1 + 1 + 116
    result(service, "evm_mine")
    assert head() == (n + 2, t + 118)
    result(service, "evm_setNextBlockTimestamp", hex(t + 1000))
    result(service, "evm_mine")
    assert head() == (n + 3, t + 1000)
    result(service, "evm_mine", t + 2000)
    assert head() == (n + 4, t + 2000)
    result(service, "evm_mine")
    assert head() == (n + 5, t + 2001)  # the increase was used up by the block that absorbed it


def test_snapshot_and_revert(service):
    addr = address_of_key(bytes.fromhex("63" * 32))
    first = result(service, "evm_snapshot")
    result(service, "tempo_fund", addr, "0x7")
    second = result(service, "evm_snapshot")
    result(service, "tempo_fund", addr, "0x7")
    assert result(service, "evm_revert", first) is True
    assert result(service, "eth_getBalance", addr, "latest") == "0x0"
    assert result(service, "evm_revert", second) is False  # later snapshots are gone with it
    assert result(service, "evm_revert", first) is False  # and so is the one reverted to
    assert error(service, "evm_revert")["code"] == -32602


# ------------------------------------------------------------------ RpcChain specifics


class _PlainNode(ChainService):
    """A node without the dev chain's test-only methods (as a production node would be)."""

    def call(self, method, params):
        if method in TEST_METHODS:
            raise RpcError(-32601, f"the method {method} does not exist/is not available")
        return super().call(method, params)


@pytest.fixture(scope="module")
def plain_node():
    import socket

    import uvicorn

    node = _PlainNode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(make_app(node), log_level="warning", lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield node, f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)


def test_a_node_without_test_methods_gets_clear_errors(plain_node):
    node, url = plain_node
    with pytest.raises(ChainError, match="tempo_deployment") as info:
        make_chain("rpc", url=url)
    assert info.value.reason == "Unsupported"
    chain = make_chain("rpc", url=url, escrow=node.chain.escrow, token=node.chain.token)
    assert chain.get_channel("0x" + "00" * 32).exists is False
    for op, what in ((lambda: chain.fund(KEY, 1), "tempo_fund"), (lambda: chain.advance_time(5), "evm_setNextBlockTimestamp"),
                     (chain.reset, "resettable=True")):
        with pytest.raises(ChainError, match=what) as info:
            op()
        assert info.value.reason == "Unsupported"
    with pytest.raises(ChainError, match="evm_snapshot"):
        make_chain("rpc", url=url, escrow=node.chain.escrow, token=node.chain.token, resettable=True)


def test_rpc_chain_refuses_what_is_not_an_escrow(service, plain_node):
    node, url = plain_node
    with pytest.raises(ChainError, match="no contract at the escrow address") as info:
        make_chain("rpc", url=url, escrow="0x" + "12" * 20, token=node.chain.token)
    assert info.value.reason == "WrongContract"
    with pytest.raises(ChainError) as info:
        make_chain("rpc", url="http://127.0.0.1:9")
    assert info.value.reason == "Unreachable"
    with pytest.raises(ChainError) as info:
        make_chain("rpc", url="ftp://x")
    assert info.value.reason == "InvalidArgument"


def test_clients_in_two_processes_share_one_chain(process):
    """What one RpcChain does, another one (here: another connection) sees: the chain is the process's."""
    a = make_chain("rpc", url=process.url)
    b = make_chain("rpc", url=process.url)
    payee = a.fund(PAYEE, 0)
    a.fund(KEY, 10_000)
    raw, cid = b.build_open_tx(KEY, payee, 4_000, "0x" + "77" * 32, "0x" + "00" * 20)
    a.broadcast(raw)
    assert b.get_channel(cid).deposit == 4_000
    assert cid in b.opened_channel_ids(payee)


# ------------------------------------------------------------------ a server process restarted on the same chain


def _events(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_a_killed_server_restarts_on_the_same_store_and_chain(process, tmp_path):
    """Chain service, server and client in three processes: kill -9 the server, start it again on the
    same SQLite file and chain, and the client (another process again) goes on on its channel."""
    from adapters.reference.soak import PRICE, ServerProcess, count_failures, start_client

    workdir = str(tmp_path)
    server = ServerProcess(process.url, str(tmp_path / "server.sqlite"), workdir)
    records = str(tmp_path / "client-0.jsonl")
    try:
        server.start()
        first = start_client(0, 11, server.url, process.url, workdir, requests=3)
        assert first.wait(timeout=300) == 0
        served_before = [e for e in _events(records) if e["event"] == "served"]
        assert len(served_before) == 3
        cid = served_before[0]["receipt"]["channelId"]
        server.kill9()
        assert server.process.returncode == -9
        server.start()
        second = start_client(0, 11, server.url, process.url, workdir, requests=3)
        assert second.wait(timeout=300) == 0
    finally:
        server.stop()
    events = _events(records)
    served = [e for e in events if e["event"] == "served"]
    assert len(served) == 6
    assert {e["receipt"]["channelId"] for e in served} == {cid}  # the same channel, found again on chain
    assert [e["action"] for e in events if e["event"] == "sent"].count("open") == 1
    assert int(served[-1]["receipt"]["spent"]) == 6 * PRICE
    counts = count_failures(workdir, server.db_path, process.url)
    assert (counts.lost_vouchers, counts.double_charges, counts.orphaned_deposits, counts.served) == (0, 0, 0, 6)


def test_soak_counts_each_kind_of_failure(tmp_path):
    """count_failures on a made-up store and client records: each kind of failure is counted."""
    from adapters.reference.__main__ import PAYEE_KEY
    from adapters.reference.soak import count_failures
    from adapters.reference.store import StoredChannel, Store, StoredResponse

    def served(key, cid, accepted):
        return {"event": "served", "key": key, "receipt": {"channelId": cid, "acceptedCumulative": str(accepted)}}

    with start_chain_service(log_dir=str(tmp_path)) as svc:
        chain = make_chain("rpc", url=svc.url)
        payee = chain.fund(PAYEE_KEY, 0)
        chain.fund(KEY, 100_000)
        cids = []
        for salt in ("01", "02", "03"):
            raw, cid = chain.build_open_tx(KEY, payee, 10_000, "0x" + salt * 32, "0x" + "00" * 20)
            chain.broadcast(raw)
            cids.append(cid)
        in_store, in_client_file, orphan = cids
        other = "0x" + "ab" * 32  # a stored channel that is not on this chain at all
        store = Store(str(tmp_path / "server.sqlite"))
        with store.transaction() as tx:
            for cid, accepted, spent in ((in_store, 2_000, 3_000), (other, 1_000, 1_000)):
                tx.insert(StoredChannel(cid, address_of_key(KEY), payee, chain.token, "0x" + "00" * 20, 10_000, 0, 0,
                                        False, accepted, "0x", spent, spent // 1_000, 0))
            for cid, key in ((in_store, "k1"), (in_store, "k2"), (other, "k2")):
                tx.put_response(cid, key, StoredResponse("GET", "/paid/resource", 200, (), ""))
        store.close()
        with open(tmp_path / "client-0.json", "w") as f:
            json.dump({"channels": {in_client_file: {"signed_max": "0"}}}, f)
        with open(tmp_path / "client-0.jsonl", "w") as f:
            for e in (served("k1", in_store, 2_000), served("k2", in_store, 5_000), served("k3", "0x" + "cd" * 32, 1_000)):
                f.write(json.dumps(e) + "\n")
        counts = count_failures(str(tmp_path), str(tmp_path / "server.sqlite"), svc.url)
    # k2 claims 5000 accepted (store: 2000); k3's channel is not in the store at all.
    assert counts.lost_vouchers == 2
    # k2 charged on two channels; in_store spent 3 prices with 2 stored requests.
    assert counts.double_charges == 2
    assert counts.orphaned_deposits == 1 and any(orphan in d for d in counts.details)
    assert not counts.ok


def test_get_logs_filters_as_eth_tester_does_and_fast(service):
    """eth_getLogs is answered from receipts (eth-tester's own is quadratic in the chain's length):
    same logs as eth-tester's for each filter shape, and a revert drops the cached blocks."""
    from adapters.chain.service import _fix_log, _hexify, _plain

    chain = service.chain
    payee = address_of_key(PAYEE)
    payer = address_of_key(KEY)
    result(service, "tempo_fund", payee, "0x0")
    result(service, "tempo_fund", payer, hex(50_000))
    topic_of = lambda a: "0x" + "00" * 12 + a[2:]  # noqa: E731
    transfer = "0x" + keccak(b"Transfer(address,address,uint256)").hex()
    filters = [
        {"fromBlock": "earliest", "toBlock": "latest"},
        {"fromBlock": "0x0", "address": chain.token},
        {"fromBlock": "0x0", "address": [chain.token, chain.escrow], "topics": [transfer]},
        {"fromBlock": "0x0", "topics": [None, None, topic_of(payer)]},
        {"fromBlock": "0x0", "topics": [[transfer, "0x" + "11" * 32], None, [topic_of(payee), topic_of(payer)]]},
        {"fromBlock": "0x2", "toBlock": "0x3"},
    ]
    for flt in filters:
        raw = service._request("eth_getLogs", [dict(flt, fromBlock=0 if flt["fromBlock"] in ("0x0", "earliest") else flt["fromBlock"])])
        expected = _hexify([_fix_log(log) for log in _plain(raw["result"])])
        got = result(service, "eth_getLogs", flt)
        assert got == expected, flt
    assert result(service, "eth_getLogs", {"fromBlock": "0x0", "topics": [None, None, topic_of(payer)]})
    latest = result(service, "eth_getBlockByNumber", "latest", False)
    by_hash = result(service, "eth_getLogs", {"blockHash": latest["hash"]})
    assert by_hash == result(service, "eth_getLogs", {"fromBlock": latest["number"], "toBlock": latest["number"]})
    assert error(service, "eth_getLogs", {"topics": ["0x12"]})["code"] == -32602
    assert error(service, "eth_getLogs", {"address": "nope"})["code"] == -32602

    snap = result(service, "evm_snapshot")
    before = result(service, "eth_getLogs", {"fromBlock": "0x0"})
    result(service, "tempo_fund", payer, hex(1))
    assert len(result(service, "eth_getLogs", {"fromBlock": "0x0"})) == len(before) + 1
    result(service, "evm_revert", snap)
    result(service, "evm_mine")  # new blocks at the reverted-to numbers (gas, then mint): their logs, not the old ones
    result(service, "evm_mine")
    assert result(service, "eth_getLogs", {"fromBlock": "0x0"}) == before
