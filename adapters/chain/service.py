"""The chain as its own process: the evm backend served as a standard Ethereum JSON-RPC node.

    python -m adapters.chain serve --port 8545      # prints "tempo chain service: http://127.0.0.1:8545 ..."

A reference server, its clients (in other processes) and mppx's viem client can
all pay through one chain that outlives any of them: restart a server and the
channels are still there. The node is an EvmChain (py-evm through eth-tester)
with the escrow and the test token deployed at start.

Standard methods are passed through to web3's EthereumTesterProvider and their
answers re-encoded the way JSON-RPC nodes encode them (quantities as 0x-hex,
camelCase keys, reverts as error code 3 with the revert data):
eth_chainId, net_version, eth_blockNumber, eth_call, eth_estimateGas,
eth_sendRawTransaction, eth_getTransactionReceipt, eth_getTransactionByHash,
eth_getTransactionCount, eth_getBlockByNumber, eth_getBlockByHash, eth_gasPrice,
eth_maxPriorityFeePerGas, eth_feeHistory, eth_getLogs, eth_getCode,
eth_getBalance, eth_getStorageAt, ... (`STANDARD_METHODS`). There are no unlocked
accounts: eth_accounts is empty and eth_sendTransaction is not offered; sign
locally and use eth_sendRawTransaction.

Test-only methods, named like anvil's and hardhat's where they exist:

* evm_snapshot -> id; evm_revert(id) -> true/false (that snapshot and later ones are gone)
* evm_mine([timestamp]) mines an empty block (at `timestamp` if given)
* evm_increaseTime(seconds) -> total pending increase: the next block is that much later
* evm_setNextBlockTimestamp(timestamp): the next block's timestamp
* tempo_fund(address, amount) -> {address, transactions}: gas money and `amount` minted test tokens
* tempo_deployment() -> {chainId, escrow, token, closeGracePeriod}

Time is the evm backend's: each block is one second after the previous one
(never the wall clock), unless moved on by the methods above.

Bounded: a request body of at most MAX_BODY_BYTES, nested at most MAX_DEPTH deep,
batches of at most MAX_BATCH calls, loopback only. Junk gets a JSON-RPC error object (parse error, invalid
request, invalid params, method not found), never an HTTP 5xx.
"""
from __future__ import annotations

import ast
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import attrs
import eth_abi

from ._common import UINT256_MAX, keccak
from .base import ChainError

__all__ = [
    "ChainService",
    "RpcError",
    "make_app",
    "run",
    "start_chain_service",
    "ChainServiceProcess",
    "STANDARD_METHODS",
    "TEST_METHODS",
    "MAX_BODY_BYTES",
    "MAX_BATCH",
]

HOST = "127.0.0.1"
MAX_BODY_BYTES = 1 << 20
MAX_BATCH = 100
MAX_DEPTH = 64  # JSON nesting; real calls nest a handful deep
READY_PREFIX = "tempo chain service: "

# JSON-RPC 2.0 and EIP-1474 error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
TRANSACTION_REJECTED = -32000
EXECUTION_REVERTED = 3

# Passed through to eth-tester; the value says which positional parameter is a block tag
# and how many parameters come before it (None: no block parameter).
STANDARD_METHODS: dict[str, int | None] = {
    "web3_clientVersion": None,
    "web3_sha3": None,
    "net_listening": None,
    "net_peerCount": None,
    "eth_chainId": None,
    "eth_syncing": None,
    "eth_blockNumber": None,
    "eth_gasPrice": None,
    "eth_maxPriorityFeePerGas": None,
    "eth_blobBaseFee": None,
    "eth_feeHistory": 1,
    "eth_call": 1,
    "eth_estimateGas": 1,
    "eth_sendRawTransaction": None,
    "eth_getTransactionReceipt": None,
    "eth_getTransactionByHash": None,
    "eth_getTransactionByBlockHashAndIndex": None,
    "eth_getTransactionByBlockNumberAndIndex": 0,
    "eth_getTransactionCount": 1,
    "eth_getBlockByNumber": 0,
    "eth_getBlockByHash": None,
    "eth_getBlockTransactionCountByNumber": 0,
    "eth_getBlockTransactionCountByHash": None,
    "eth_getCode": 1,
    "eth_getBalance": 1,
    "eth_getStorageAt": 2,
}
TEST_METHODS = (
    "evm_snapshot",
    "evm_revert",
    "evm_mine",
    "evm_increaseTime",
    "evm_setNextBlockTimestamp",
    "tempo_fund",
    "tempo_deployment",
)
_OWN_METHODS = ("net_version", "eth_accounts", "eth_getLogs") + TEST_METHODS
_NO_UNLOCKED = ("eth_sendTransaction", "eth_sign", "eth_signTransaction", "eth_signTypedData_v4", "personal_sign")
_ERROR_STRING = keccak(b"Error(string)")[:4]
_QUANTITY_RE = re.compile(r"0x(0|[1-9a-fA-F][0-9a-fA-F]*)")


class RpcError(Exception):
    """A JSON-RPC error object: code, message and optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def _invalid(detail: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"invalid params: {detail}")


# ----------------------------------------------------------------- result encoding


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _plain(value: Any) -> Any:
    """eth-tester's answer as plain dicts and lists with JSON-RPC's camelCase keys."""
    if isinstance(value, dict):
        return {_camel(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _hexify(value: Any) -> Any:
    """Quantities as 0x-hex without leading zeros, byte strings as 0x-hex (JSON-RPC's encoding)."""
    if value is None or isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {k: _hexify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hexify(v) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} as JSON-RPC")


def _bloom_of(logs: list[dict[str, Any]]) -> int:
    from eth_bloom import BloomFilter  # py-evm's own dependency

    bloom = BloomFilter()
    for log in logs:
        bloom.add(bytes.fromhex(str(log["address"])[2:]))
        for topic in log.get("topics", []):
            bloom.add(bytes.fromhex(str(topic)[2:]))
    return int(bloom)


def _bloom_hex(bloom: int) -> str:
    return "0x" + bloom.to_bytes(256, "big").hex()


def _fix_log(log: dict[str, Any]) -> dict[str, Any]:
    log.pop("type", None)  # eth-tester's "mined"; not a JSON-RPC field
    log.setdefault("removed", False)
    return log


def _fix_tx(tx: dict[str, Any]) -> dict[str, Any]:
    if "data" in tx and "input" not in tx:
        tx["input"] = tx.pop("data")
    if tx.get("to") == "":
        tx["to"] = None
    return tx


def _fix_receipt(rec: dict[str, Any]) -> dict[str, Any]:
    rec.pop("stateRoot", None)  # eth-tester's empty pre-Byzantium root; receipts carry status
    rec["logs"] = [_fix_log(log) for log in rec.get("logs", [])]
    rec["logsBloom"] = _bloom_hex(_bloom_of(rec["logs"]))
    return rec


# ----------------------------------------------------------------- parameters


def _quantity(value: Any, field: str, limit: int = UINT256_MAX) -> int:
    """A non-negative integer given as 0x-hex, a decimal string or a JSON number (dev chains accept all)."""
    if isinstance(value, bool):
        raise _invalid(f"{field}: expected a quantity, got {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and _QUANTITY_RE.fullmatch(value):
        n = int(value, 16)
    elif isinstance(value, str) and value.isdigit() and len(value) <= 78:
        n = int(value)
    else:
        raise _invalid(f"{field}: expected a 0x-hex quantity, got {value!r}")
    if not 0 <= n <= limit:
        raise _invalid(f"{field}: {n} is out of range [0, {limit}]")
    return n


def _block_tag(value: Any) -> Any:
    """Block tags as eth-tester knows them: every block of a dev chain is final."""
    if value in ("safe", "finalized"):
        return "latest"
    if isinstance(value, dict):
        raise _invalid("block: EIP-1898 block objects are not supported; give a number or a tag")
    return value


def _block_number(value: Any, head: int, field: str) -> int:
    if value in ("latest", "safe", "finalized", "pending"):
        return head
    if value == "earliest":
        return 0
    return _quantity(value, field, 2**64 - 1)


_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_TOPIC_RE = re.compile(r"0x[0-9a-fA-F]{64}")


def _address_filter(value: Any) -> set[str] | None:
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and _ADDRESS_RE.fullmatch(v) for v in values):
        raise _invalid(f"eth_getLogs: address must be an address or a list of them, got {value!r}")
    return {v.lower() for v in values}


def _topic_filter(value: Any) -> list[set[str] | None]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 4:
        raise _invalid(f"eth_getLogs: topics must be a list of at most 4 entries, got {value!r}")
    out: list[set[str] | None] = []
    for entry in value:
        options = entry if isinstance(entry, list) else [entry]
        if entry is None or options == []:
            out.append(None)
            continue
        if not all(isinstance(t, str) and _TOPIC_RE.fullmatch(t) for t in options):
            raise _invalid(f"eth_getLogs: a topic must be null, a 32-byte hex or a list of them, got {entry!r}")
        out.append({t.lower() for t in options})
    return out


def _topics_match(wanted: list[set[str] | None], topics: list[str]) -> bool:
    for i, options in enumerate(wanted):
        if options is None:
            continue
        if i >= len(topics) or topics[i] not in options:
            return False
    return True


def _revert_data(exc: BaseException) -> bytes:
    """The revert data of a failed eth-tester call (it hands over bytes, their repr, or a reason string)."""
    data: Any = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])  # web3's ContractPanicError / OffchainLookup carry it as hex
    data = exc.args[0] if exc.args else b""
    while isinstance(data, BaseException):
        data = data.args[0] if data.args else b""
    if isinstance(data, str) and data[:2] in ("b'", 'b"'):
        try:
            data = ast.literal_eval(data)
        except (ValueError, SyntaxError):
            pass
    if isinstance(data, str):  # a decoded Error(string): encode it back
        return _ERROR_STRING + eth_abi.encode(["string"], [data])
    return bytes(data)


class ChainService:
    """JSON-RPC over one EvmChain; `handle_body` answers one HTTP body (thread-safe: calls run one at a time)."""

    def __init__(self, chain: Any = None) -> None:
        from web3 import EthereumTesterProvider, Web3

        from .evm import EvmChain

        self.chain = chain if chain is not None else EvmChain()
        tester = self.chain.tester

        class _RawRevertProvider(EthereumTesterProvider):
            """web3's tester provider, but a revert reaches us with its data (web3 would make it a string)."""

            def make_request(self, method: Any, params: Any) -> Any:
                namespace, _, endpoint = str(method).partition("_")
                delegator = self.api_endpoints[namespace][endpoint]
                return {"jsonrpc": "2.0", "id": 0, "result": delegator(self.ethereum_tester, params)}

        w3 = Web3(_RawRevertProvider(tester), middleware=[])
        # The provider's own middleware maps JSON-RPC parameters to eth-tester's and its answers back.
        self._request = w3.provider.request_func(w3, w3.middleware_onion)
        self._tester = tester
        self._lock = threading.Lock()
        self._time_increase = 0  # evm_increaseTime seconds not yet absorbed by a mined block
        self._next_timestamp: int | None = None  # evm_setNextBlockTimestamp
        self._snapshots: list[int] = []
        self._log_cache: dict[int, list[dict[str, Any]]] = {}

    # ------------------------------------------------------------------ HTTP body

    def handle_body(self, body: bytes) -> bytes | None:
        """One HTTP request body -> the response body (None when every call was a notification)."""
        if _nesting_depth(body) > MAX_DEPTH:
            return _dump(_error_response(None, RpcError(
                PARSE_ERROR, f"parse error: JSON nested more than {MAX_DEPTH} deep")))
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            return _dump(_error_response(None, RpcError(PARSE_ERROR, f"parse error: {type(exc).__name__}: {exc}")))
        if isinstance(payload, list):
            if not payload:
                return _dump(_error_response(None, RpcError(INVALID_REQUEST, "invalid request: empty batch")))
            if len(payload) > MAX_BATCH:
                return _dump(_error_response(
                    None, RpcError(INVALID_REQUEST, f"invalid request: batch of {len(payload)} calls, at most {MAX_BATCH}")))
            answers = [a for a in (self.handle_call(item) for item in payload) if a is not None]
            return _dump(answers) if answers else None
        answer = self.handle_call(payload)
        return _dump(answer) if answer is not None else None

    def handle_call(self, item: Any) -> dict[str, Any] | None:
        """One JSON-RPC request object -> its response object (None for a notification)."""
        if not isinstance(item, dict):
            return _error_response(None, RpcError(INVALID_REQUEST, "invalid request: expected a JSON object"))
        rid = item.get("id")
        if not (rid is None or isinstance(rid, (str, int)) and not isinstance(rid, bool)
                or isinstance(rid, float) and math.isfinite(rid)):
            return _error_response(None, RpcError(INVALID_REQUEST, "invalid request: id must be a string, number or null"))
        method, params = item.get("method"), item.get("params", [])
        try:
            if item.get("jsonrpc") != "2.0":
                raise RpcError(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"')
            if not isinstance(method, str) or not method:
                raise RpcError(INVALID_REQUEST, 'invalid request: "method" must be a non-empty string')
            if params is None:
                params = []
            if not isinstance(params, list):
                raise _invalid(f"{method}: params must be an array (by-position)")
            result = self.call(method, params)
        except RpcError as err:
            return None if "id" not in item else _error_response(rid, err)
        if "id" not in item:
            return None
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    # ------------------------------------------------------------------ one call

    def call(self, method: str, params: list[Any]) -> Any:
        """Run one method; its JSON-encoded result, or RpcError."""
        if method in _NO_UNLOCKED:
            raise RpcError(METHOD_NOT_FOUND, f"{method} is not offered: this node holds no keys; "
                                             "sign locally and use eth_sendRawTransaction")
        if method not in STANDARD_METHODS and method not in _OWN_METHODS:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {method}")
        with self._lock:
            head = self._head()
            self.chain.pin_next_block(self._pending_timestamp(head))
            try:
                if method in STANDARD_METHODS:
                    result = self._standard(method, params)
                else:
                    result = getattr(self, "_m_" + method)(params)
            finally:
                if self._head()[0] != head[0]:  # a block was mined: pending time changes are absorbed
                    self._time_increase, self._next_timestamp = 0, None
        return result

    def _head(self) -> tuple[int, int]:
        header = self._tester.backend.chain.get_canonical_head()
        return int(header.block_number), int(header.timestamp)

    def _pending_timestamp(self, head: tuple[int, int]) -> int:
        if self._next_timestamp is not None:
            return self._next_timestamp
        return head[1] + 1 + self._time_increase

    def _standard(self, method: str, params: list[Any]) -> Any:
        from eth_tester.exceptions import TransactionFailed

        params = self._normalize(method, list(params))
        try:
            raw = self._request(method, params)["result"]
        except TransactionFailed as exc:
            data = _revert_data(exc)
            message = "execution reverted"
            if data[:4] == _ERROR_STRING:
                try:
                    message += ": " + eth_abi.decode(["string"], data[4:])[0]
                except Exception:
                    pass
            raise RpcError(EXECUTION_REVERTED, message, "0x" + data.hex()) from None
        except RpcError:
            raise
        except Exception as exc:
            if method == "eth_sendRawTransaction":
                raise RpcError(TRANSACTION_REJECTED, f"transaction rejected: {exc}") from None
            if type(exc).__name__ == "ContractPanicError":  # web3 turns Panic reverts into this
                raise RpcError(EXECUTION_REVERTED, "execution reverted", getattr(exc, "data", None)) from None
            raise _invalid(f"{method}: {type(exc).__name__}: {exc}") from None
        return _hexify(self._fix(method, _plain(raw)))

    def _normalize(self, method: str, params: list[Any]) -> list[Any]:
        """Fill what JSON-RPC lets callers leave out; refuse the shapes eth-tester would choke on."""
        tag_at = STANDARD_METHODS[method]
        if tag_at is not None:
            if len(params) == tag_at:
                params.append("latest")
            if len(params) > tag_at:
                params[tag_at] = _block_tag(params[tag_at])
        if method in ("eth_call", "eth_estimateGas"):
            if not params or not isinstance(params[0], dict):
                raise _invalid(f"{method}: the first parameter must be a transaction object")
            tx = dict(params[0])
            if "input" in tx and "data" not in tx:
                tx["data"] = tx.pop("input")
            tx.pop("input", None)
            # Without "from", eth-tester's middleware picks its first (funded) account: py-evm charges
            # calls for gas, so a zero-balance default sender, as geth uses, could not call at all.
            params[0] = tx
        elif method in ("eth_getBlockByNumber", "eth_getBlockByHash"):
            if len(params) == 1:
                params.append(False)
        return params

    def _fix(self, method: str, value: Any) -> Any:
        if not isinstance(value, (dict, list)):
            return value
        if method in ("eth_getBlockByNumber", "eth_getBlockByHash") and isinstance(value, dict):
            txs = value.get("transactions", [])
            value["transactions"] = [_fix_tx(t) if isinstance(t, dict) else t for t in txs]
            mined = isinstance(value.get("number"), int) and value["number"] <= self._head()[0]
            value["logsBloom"] = _bloom_hex(_bloom_of(self._logs_of_block(value["number"])) if mined else 0)
        elif method.startswith("eth_getTransactionBy") and isinstance(value, dict):
            value = _fix_tx(value)
        elif method == "eth_getTransactionReceipt" and isinstance(value, dict):
            value = _fix_receipt(value)
        return value

    def _logs_of_block(self, number: int) -> list[dict[str, Any]]:
        """The JSON-RPC log objects of a mined block, cached (mined blocks change only by evm_revert).
        eth-tester reports a block's logsBloom as 0, and both its eth_getLogs and its receipt lookup
        take time linear in the chain's length (a soak's chain: minutes per eth_getLogs), so logs
        are read here from py-evm's receipts of the block, which it stores by block."""
        logs = self._log_cache.get(number)
        if logs is None:
            from eth_utils import to_checksum_address

            vm_chain = self._tester.backend.chain
            block = vm_chain.get_canonical_block_by_number(number)
            logs = []
            for tx_index, (tx, receipt) in enumerate(zip(block.transactions, block.get_receipts(vm_chain.chaindb))):
                for log in receipt.logs:
                    logs.append({
                        "address": to_checksum_address(log.address),
                        "topics": ["0x" + t.to_bytes(32, "big").hex() for t in log.topics],
                        "data": "0x" + bytes(log.data).hex(),
                        "blockNumber": hex(number),
                        "blockHash": "0x" + bytes(block.hash).hex(),
                        "transactionHash": "0x" + bytes(tx.hash).hex(),
                        "transactionIndex": hex(tx_index),
                        "logIndex": hex(len(logs)),
                        "removed": False,
                    })
            self._log_cache[number] = logs
        return logs

    def _m_eth_getLogs(self, params: list[Any]) -> list[dict[str, Any]]:
        if len(params) != 1 or not isinstance(params[0], dict):
            raise _invalid("eth_getLogs: expects one filter object")
        flt = params[0]
        head = self._head()[0]
        if "blockHash" in flt:
            if "fromBlock" in flt or "toBlock" in flt:
                raise _invalid("eth_getLogs: blockHash excludes fromBlock and toBlock")
            block = self._standard("eth_getBlockByHash", [flt["blockHash"], False])
            if block is None:
                raise _invalid(f"eth_getLogs: unknown block {flt['blockHash']}")
            first = last = int(block["number"], 16)
        else:
            first = _block_number(flt.get("fromBlock", "latest"), head, "fromBlock")
            last = min(_block_number(flt.get("toBlock", "latest"), head, "toBlock"), head)
        addresses = _address_filter(flt.get("address"))
        topics = _topic_filter(flt.get("topics"))
        out = []
        for number in range(first, last + 1):
            for log in self._logs_of_block(number):
                if addresses is not None and log["address"].lower() not in addresses:
                    continue
                if _topics_match(topics, [t.lower() for t in log["topics"]]):
                    out.append(dict(log))
        return out

    # ------------------------------------------------------------------ own methods

    def _m_net_version(self, params: list[Any]) -> str:
        return str(self.chain.chain_id)

    def _m_eth_accounts(self, params: list[Any]) -> list[str]:
        return []  # no unlocked accounts

    def _m_tempo_deployment(self, params: list[Any]) -> dict[str, Any]:
        return {
            "chainId": hex(self.chain.chain_id),
            "escrow": self.chain.escrow,
            "token": self.chain.token,
            "closeGracePeriod": hex(self.chain.grace_period),
        }

    def _m_tempo_fund(self, params: list[Any]) -> dict[str, Any]:
        if len(params) != 2:
            raise _invalid("tempo_fund: expects [address, amount]")
        address, amount = params[0], _quantity(params[1], "amount")
        try:
            hashes = self.chain.fund_address(address, amount)
        except ChainError as exc:
            raise _invalid(f"tempo_fund: {exc}") from None
        return {"address": str(address).lower(), "transactions": hashes}

    def _m_evm_snapshot(self, params: list[Any]) -> str:
        sid = int(self._tester.take_snapshot())
        self._snapshots.append(sid)
        return hex(sid)

    def _m_evm_revert(self, params: list[Any]) -> bool:
        if len(params) != 1:
            raise _invalid("evm_revert: expects [snapshot id]")
        sid = _quantity(params[0], "snapshot id")
        if sid not in self._snapshots:
            return False
        self._tester.revert_to_snapshot(sid)
        self._log_cache.clear()  # block numbers after the snapshot will be reused by other blocks
        # As on hardhat and anvil: that snapshot and every later one are used up.
        self._snapshots = self._snapshots[: self._snapshots.index(sid)]
        self._time_increase, self._next_timestamp = 0, None
        return True

    def _m_evm_mine(self, params: list[Any]) -> str:
        if len(params) > 1:
            raise _invalid("evm_mine: expects [] or [timestamp]")
        if params:
            self._set_next_timestamp(params[0])
            self.chain.pin_next_block(self._next_timestamp)
        self._tester.mine_blocks(1)
        return "0x0"

    def _m_evm_increaseTime(self, params: list[Any]) -> int:
        if len(params) != 1:
            raise _invalid("evm_increaseTime: expects [seconds]")
        self._time_increase += _quantity(params[0], "seconds", 2**64 - 1)
        return self._time_increase

    def _m_evm_setNextBlockTimestamp(self, params: list[Any]) -> None:
        if len(params) != 1:
            raise _invalid("evm_setNextBlockTimestamp: expects [timestamp]")
        self._set_next_timestamp(params[0])
        return None

    def _set_next_timestamp(self, value: Any) -> None:
        ts = _quantity(value, "timestamp", 2**64 - 1)
        latest = self._head()[1]
        if ts <= latest:
            raise _invalid(f"timestamp {ts} is not after the latest block's {latest}")
        self._next_timestamp = ts


def _nesting_depth(body: bytes) -> int:
    """How deep arrays and objects nest in `body` (brackets inside strings do not count); the
    scan stops as soon as it is past MAX_DEPTH.

    Checked before json.loads: py-evm raises the interpreter's recursion limit to 100000, so
    the C JSON decoder would recurse on a body of nested brackets until the thread's stack
    overflows and the whole process dies (a segmentation fault, not a RecursionError)."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return 0  # cannot be deeper than the number of openers
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def _error_response(rid: Any, err: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": err.to_json()}


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# ----------------------------------------------------------------- HTTP


def make_app(service: ChainService) -> Any:
    """The Starlette app: POST / with a JSON-RPC body (at most MAX_BODY_BYTES)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    def error(status: int, code: int, message: str) -> Response:
        return Response(_dump(_error_response(None, RpcError(code, message))), status_code=status,
                        media_type="application/json")

    async def rpc(request: Request) -> Response:
        if request.method != "POST":
            return error(405, INVALID_REQUEST, "invalid request: JSON-RPC is POST / with a JSON body")
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return error(400, INVALID_REQUEST, f"invalid request: Content-Length {declared!r} is not a number")
            if int(declared) > MAX_BODY_BYTES:
                return error(413, INVALID_REQUEST, f"invalid request: body of {declared} bytes, at most {MAX_BODY_BYTES}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return error(413, INVALID_REQUEST, f"invalid request: body larger than {MAX_BODY_BYTES} bytes")
        try:
            out = await run_in_threadpool(service.handle_body, bytes(body))
        except Exception as exc:  # a bug of ours: still a JSON-RPC answer, not a 500
            return error(200, INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}")
        if out is None:
            return Response(status_code=204)
        return Response(out, media_type="application/json")

    return Starlette(routes=[Route("/", rpc, methods=["POST", "GET", "PUT", "DELETE", "PATCH"])])


def run(port: int = 8545, backend: str = "evm", out: Any = None) -> None:
    """Serve until SIGINT/SIGTERM, on 127.0.0.1 only; prints one READY_PREFIX line with the URL."""
    import uvicorn

    if backend != "evm":
        raise ValueError(f"backend {backend!r}: only 'evm' speaks Ethereum JSON-RPC")
    service = ChainService()
    # IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then (no 40 ms delayed ACKs).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    c = service.chain
    print(f"{READY_PREFIX}http://{HOST}:{bound} chainId={c.chain_id} escrow={c.escrow} token={c.token}",
          file=out or sys.stdout, flush=True)
    config = uvicorn.Config(make_app(service), log_level="warning", lifespan="off", access_log=False, ws="none",
                            timeout_keep_alive=30)
    uvicorn.Server(config).run(sockets=[sock])


# ----------------------------------------------------------------- a service in a child process


@attrs.define
class ChainServiceProcess:
    """A chain service running as a child process (`python -m adapters.chain serve`)."""

    url: str
    process: subprocess.Popen
    log_path: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def __enter__(self) -> "ChainServiceProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_chain_service(port: int = 0, timeout: float = 120.0, log_dir: str | None = None) -> ChainServiceProcess:
    """Start `python -m adapters.chain serve` and wait for its ready line; its output goes to a log file."""
    log_dir = log_dir or tempfile.mkdtemp(prefix="tempo-chain-")
    log_path = os.path.join(log_dir, f"chain-service-{os.getpid()}-{time.monotonic_ns()}.log")
    log = open(log_path, "wb")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "adapters.chain", "serve", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    finally:
        log.close()
    deadline = time.monotonic() + timeout
    ready = re.compile(re.escape(READY_PREFIX) + r"(http://\S+)")
    while True:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        m = ready.search(text)
        if m:
            return ChainServiceProcess(m.group(1), proc, log_path)
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise RuntimeError(f"the chain service did not start (exit {proc.returncode}); its output:\n{text[-2000:]}")
        time.sleep(0.05)
