"""EvmChain: the real escrow bytecode on an in-process EVM (web3's EthereumTesterProvider, py-evm).

The escrow's calls themselves (ABI encoding, signing, decoding, revert reasons)
live in `Web3Escrow`, which RpcChain (rpc.py, any JSON-RPC URL) shares; EvmChain
adds what only an in-process tester can do: deploy from an unlocked account, pin
block timestamps, snapshot and mine.

Deploys TestToken and TempoStreamChannel from the committed artifacts
(adapters/chain/artifacts/*.json, built by adapters/chain/solidity/build.mjs),
once per instance; `reset()` returns to the freshly deployed state through an
eth-tester snapshot. Clients sign real EIP-1559 transactions with eth-account;
`broadcast` sends them with send_raw_transaction.

Semantics shared with MemoryChain (see its docstring): `now()` is the block
timestamp the next transaction executes at; every transaction is mined in a
block of its own exactly one second after the previous block (the pending
header's timestamp is pinned, so wall-clock time never leaks in);
`advance_time(s)` mines an empty block `s` seconds on. Each transaction is
simulated (eth_call against the pending block) first and is not sent when it
would revert: the revert's custom error name becomes ChainError.reason, no
nonce is used and no time passes.
"""
from __future__ import annotations

import ast
import functools
import json
import threading
from pathlib import Path
from typing import Any

import eth_abi
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import to_checksum_address
from hexbytes import HexBytes

from ._common import (
    CLOSE_GRACE_PERIOD,
    UINT256_MAX,
    address_of_key,
    compute_channel_id,
    keccak,
    norm_address,
    norm_amount,
    norm_bytes32,
    norm_key,
    sig_bytes,
)
from .base import ZERO_ADDRESS, ChainError, ChannelState, DecodedTx

__all__ = ["EvmChain", "Web3Escrow", "ARTIFACTS_DIR", "load_artifact", "escrow_errors"]

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"

# Gas limits per call: about twice what each uses at most (a transaction that
# ran out would be caught by the simulation and reported as "Reverted").
_GAS = {
    "open": 300_000,
    "topUp": 120_000,
    "settle": 160_000,
    "close": 200_000,
    "requestClose": 100_000,
    "withdraw": 100_000,
    "approve": 80_000,
    "mint": 120_000,
}
_GAS_MONEY = 10**18  # wei given to each funded key
_RECEIPT_TIMEOUT = 60  # seconds a sent transaction may take to be mined
_TIP = 10**9

_CHANNEL_TUPLE = "(address,address,address,address,uint128,uint128,uint64,bool)"
_PANIC = keccak(b"Panic(uint256)")[:4]
_ERROR = keccak(b"Error(string)")[:4]


def load_artifact(name: str) -> dict[str, Any]:
    return json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())


def _signature(item: dict[str, Any]) -> str:
    return f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"


def _abi_type(inp: dict[str, Any]) -> str:
    if inp["type"].startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in inp["components"]) + ")" + inp["type"][5:]
    return inp["type"]


def _selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


def _malformed(detail: str) -> ChainError:
    return ChainError("MalformedTransaction", detail)


@functools.lru_cache(maxsize=4)
def escrow_errors(escrow_artifact: str = "TempoStreamChannel") -> dict[bytes, str]:
    """Selector -> name of every custom error of the escrow and the token (from the artifacts)."""
    errors: dict[bytes, str] = {}
    for name in (escrow_artifact, "TestToken"):
        for item in load_artifact(name)["abi"]:
            if item["type"] == "error":
                errors[_selector(_signature(item))] = item["name"]
    return errors


class Web3Escrow:
    """The v1 escrow and test token as reached through a web3 instance: every call of base.Chain
    that is the same on any node (ABI encoding, local signing, decoding, simulation first,
    revert reasons). A subclass sets `w3`, calls `_connect()` then `_attach(escrow, token)`, and
    supplies what differs per node: `_head_timestamp`, `_simulate`, `_pin`, `fund`,
    `advance_time` and `reset`."""

    name = "web3"
    w3: Any
    _escrow_artifact = "TempoStreamChannel"  # evm_v2.EvmChainV2 swaps in the v2 escrow

    def _connect(self) -> None:
        """Chain id, the error table and fees, read once (before anything is signed)."""
        self.chain_id = int(self.w3.eth.chain_id)
        self._lock = threading.RLock()
        self._errors = escrow_errors(self._escrow_artifact)
        # Fees: the tester's base fee starts at 1 gwei and only falls while blocks stay small.
        base_fee = int(self.w3.eth.get_block("latest")["baseFeePerGas"])
        self._max_fee = max(10 * 10**9, 4 * base_fee + _TIP)

    def _attach(self, escrow: str, token: str) -> None:
        self.escrow, self.token = escrow.lower(), token.lower()
        self._escrow_cs = to_checksum_address(self.escrow)
        self._token_cs = to_checksum_address(self.token)
        self.grace_period = self._view(self.escrow, "CLOSE_GRACE_PERIOD()", [], [], ["uint64"])[0]
        if self.grace_period != CLOSE_GRACE_PERIOD:
            raise ChainError("WrongContract", f"escrow {self.escrow} has CLOSE_GRACE_PERIOD {self.grace_period}, "
                                              f"the v1 escrow {CLOSE_GRACE_PERIOD}")

    # -------------------------------------------------------------------- plumbing

    def _head_timestamp(self) -> int:
        raise NotImplementedError

    def _pin(self, offset: int = 1) -> None:
        """Fix the timestamp of the block the next transaction runs in (a no-op where the node
        keeps its own clock)."""

    def _simulate(self, sender: str, to: str, data: bytes, gas: int, value: int = 0) -> None:
        """Run the call against the pending block; ChainError with the revert reason if it reverts."""
        raise NotImplementedError

    @staticmethod
    def _calldata(signature: str, types: list[str], args: list[Any]) -> bytes:
        return _selector(signature) + eth_abi.encode(types, args)

    def _view(self, to: str, signature: str, types: list[str], args: list[Any], out: list[str]) -> tuple:
        data = self._calldata(signature, types, args)
        with self._lock:
            result = self.w3.eth.call({"to": to_checksum_address(to), "data": data})
        return eth_abi.decode(out, bytes(result))

    def _reason_of(self, data: bytes | str) -> ChainError:
        """The ChainError for a revert's data (a str: a reason the node gave as text)."""
        if isinstance(data, str):
            return ChainError("Error", data)
        data = bytes(data)
        if not data:
            return ChainError("Reverted", "no revert data (out of gas or a bare revert)")
        if data[:4] in self._errors:
            return ChainError(self._errors[data[:4]], "0x" + data.hex())
        if data[:4] == _PANIC and len(data) == 36:
            return ChainError(f"Panic(0x{int.from_bytes(data[4:], 'big'):02x})")
        if data[:4] == _ERROR:
            try:
                return ChainError("Error", eth_abi.decode(["string"], data[4:])[0])
            except Exception:
                pass
        return ChainError("Reverted", "0x" + data.hex())

    def _require_gas(self, sender: str, gas: int, value: int = 0) -> None:
        need = gas * self._max_fee + value
        if self.w3.eth.get_balance(to_checksum_address(sender)) < need:
            raise ChainError("InsufficientFunds", f"{sender} cannot pay for gas (use fund())")

    def _nonce(self, address: str) -> int:
        return int(self.w3.eth.get_transaction_count(to_checksum_address(address)))

    def _sign(self, key: bytes, to: str, data: bytes, gas: int, nonce: int) -> bytes:
        tx = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": to_checksum_address(to),
            "value": 0,
            "data": data,
            "gas": gas,
            "maxFeePerGas": self._max_fee,
            "maxPriorityFeePerGas": _TIP,
        }
        return bytes(Account.sign_transaction(tx, norm_key(key)).raw_transaction)

    def _send_raw(self, raw: bytes) -> str:
        self._pin()
        try:
            tx_hash = self.w3.eth.send_raw_transaction(raw)
        except Exception as exc:  # the node refused it (nonce, balance, ...)
            raise ChainError("Rejected", str(exc)) from None
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=_RECEIPT_TIMEOUT, poll_latency=0.05)
        if receipt["status"] != 1:  # the simulation said otherwise (or another sender got in between)
            raise ChainError("Reverted", f"transaction {tx_hash.hex()} failed")
        return "0x" + bytes(tx_hash).hex()

    def _transact(self, key: bytes, to: str, kind: str, signature: str, types: list[str], args: list[Any]) -> str:
        sender = address_of_key(key)
        data = self._calldata(signature, types, args)
        gas = _GAS[kind]
        with self._lock:
            self._require_gas(sender, gas)
            self._simulate(sender, to, data, gas)
            return self._send_raw(self._sign(key, to, data, gas, self._nonce(sender)))

    # ------------------------------------------------------------ accounts and tokens

    def balance_of(self, address: str) -> int:
        addr = norm_address(address, "address")
        return self._view(self.token, "balanceOf(address)", ["address"], [addr], ["uint256"])[0]

    def total_supply(self) -> int:
        return self._view(self.token, "totalSupply()", [], [], ["uint256"])[0]

    def nonce_of(self, address: str) -> int:
        return self._nonce(norm_address(address, "address"))

    def sequential_nonce(self, raw_tx: str) -> int | None:
        """The sender nonce a signed client transaction consumes (MemoryChain.sequential_nonce)."""
        return int(self._decode(raw_tx)[1]["nonce"])

    # ------------------------------------------------------------------------ reads

    def get_channel(self, channel_id: str) -> ChannelState:
        cid = norm_bytes32(channel_id, "channel_id")
        (payer, payee, token, signer, deposit, settled, requested, finalized), = self._view(
            self.escrow, "getChannel(bytes32)", ["bytes32"], [bytes.fromhex(cid[2:])], [_CHANNEL_TUPLE]
        )
        return ChannelState(cid, payer.lower(), payee.lower(), token.lower(), signer.lower(), deposit, settled, requested, finalized)

    def get_channels_batch(self, channel_ids: list[str]) -> list[ChannelState]:
        cids = [norm_bytes32(c, "channel_id") for c in channel_ids]
        (rows,) = self._view(
            self.escrow, "getChannelsBatch(bytes32[])", ["bytes32[]"], [[bytes.fromhex(c[2:]) for c in cids]], [_CHANNEL_TUPLE + "[]"]
        )
        return [
            ChannelState(cid, p.lower(), q.lower(), t.lower(), s.lower(), d, st, r, f)
            for cid, (p, q, t, s, d, st, r, f) in zip(cids, rows)
        ]

    def opened_channel_ids(self, payee: str | None = None) -> list[str]:
        """Every channel id the escrow's ChannelOpened events name (of `payee` only, if given), in order."""
        topics: list[Any] = ["0x" + keccak(b"ChannelOpened(bytes32,address,address,address,address,uint256)").hex()]
        if payee is not None:
            topics += [None, None, "0x" + bytes(12).hex() + norm_address(payee, "payee")[2:]]
        with self._lock:
            logs = self.w3.eth.get_logs({"address": self._escrow_cs, "fromBlock": 0, "toBlock": "latest", "topics": topics})
        return ["0x" + bytes(log["topics"][1]).hex() for log in logs]

    def compute_channel_id(self, payer: str, payee: str, token: str, salt: str, authorized_signer: str) -> str:
        """The escrow's own computeChannelId (an eth_call)."""
        args = [
            norm_address(payer, "payer"),
            norm_address(payee, "payee"),
            norm_address(token, "token"),
            bytes.fromhex(norm_bytes32(salt, "salt")[2:]),
            norm_address(authorized_signer or ZERO_ADDRESS, "authorized_signer"),
        ]
        types = ["address", "address", "address", "bytes32", "address"]
        (cid,) = self._view(self.escrow, "computeChannelId(address,address,address,bytes32,address)", types, args, ["bytes32"])
        return "0x" + bytes(cid).hex()

    def voucher_digest(self, channel_id: str, cumulative_amount: int) -> bytes:
        """The escrow's getVoucherDigest (an eth_call)."""
        cid = bytes.fromhex(norm_bytes32(channel_id, "channel_id")[2:])
        amount = norm_amount(cumulative_amount, "cumulative_amount")
        (digest,) = self._view(self.escrow, "getVoucherDigest(bytes32,uint128)", ["bytes32", "uint128"], [cid, amount], ["bytes32"])
        return bytes(digest)

    def domain_separator(self) -> bytes:
        return bytes(self._view(self.escrow, "domainSeparator()", [], [], ["bytes32"])[0])

    def now(self) -> int:
        """The block timestamp the next transaction will execute at."""
        with self._lock:
            return self._head_timestamp() + 1

    # ------------------------------------------------------- client-signed transactions

    def build_open_tx(self, payer_key: bytes, payee: str, deposit: int, salt: str, authorized_signer: str) -> tuple[str, str]:
        payer = address_of_key(payer_key)
        payee = norm_address(payee, "payee")
        deposit = norm_amount(deposit, "deposit")
        salt = norm_bytes32(salt, "salt")
        signer = norm_address(authorized_signer or ZERO_ADDRESS, "authorized_signer")
        data = self._calldata(
            "open(address,address,uint128,bytes32,address)",
            ["address", "address", "uint128", "bytes32", "address"],
            [payee, self.token, deposit, bytes.fromhex(salt[2:]), signer],
        )
        with self._lock:
            raw = self._sign(payer_key, self.escrow, data, _GAS["open"], self._nonce(payer))
        cid = compute_channel_id(payer, payee, self.token, salt, signer, self.escrow, self.chain_id)
        return "0x" + raw.hex(), cid

    def build_topup_tx(self, payer_key: bytes, channel_id: str, amount: int) -> str:
        payer = address_of_key(payer_key)
        cid = norm_bytes32(channel_id, "channel_id")
        amount = norm_amount(amount, "amount")
        data = self._calldata("topUp(bytes32,uint128)", ["bytes32", "uint128"], [bytes.fromhex(cid[2:]), amount])
        with self._lock:
            raw = self._sign(payer_key, self.escrow, data, _GAS["topUp"], self._nonce(payer))
        return "0x" + raw.hex()

    def decode_tx(self, raw_tx: str) -> DecodedTx:
        return self._decode(raw_tx)[0]

    def _decode(self, raw_tx: str) -> tuple[DecodedTx, dict[str, Any], bytes]:
        if not isinstance(raw_tx, str) or not raw_tx.startswith("0x"):
            raise _malformed("expected 0x-hex")
        try:
            raw = bytes.fromhex(raw_tx[2:])
        except ValueError:
            raise _malformed("not hex") from None
        try:
            sender = Account.recover_transaction(raw).lower()
            if raw and raw[0] <= 0x7F:
                fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
                chain_id = fields.get("chainId")
            else:
                from eth_account._utils.legacy_transactions import Transaction

                fields = Transaction.from_bytes(HexBytes(raw)).as_dict()
                v = fields["v"]
                chain_id = (v - 35) // 2 if v >= 35 else None  # EIP-155
        except Exception as exc:
            raise _malformed(f"not a signed transaction ({type(exc).__name__})") from None
        if chain_id != self.chain_id:
            raise ChainError("WrongChain", f"transaction is for chain {chain_id}, this is {self.chain_id}")
        to = fields.get("to")
        to = ("0x" + bytes(to).hex()) if isinstance(to, (bytes, bytearray)) else str(to or "").lower()
        if to != self.escrow:
            raise ChainError("WrongContract", f"transaction calls {to or 'nothing (a deployment)'}, the escrow is {self.escrow}")
        decoded = self._decode_call(sender, chain_id, bytes(fields.get("data", b"")))
        return decoded, fields, raw

    def _decode_call(self, sender: str, chain_id: int, data: bytes) -> DecodedTx:
        """The escrow call a transaction makes (evm_v2 overrides it for the v2 escrow)."""
        if data[:4] == _selector("open(address,address,uint128,bytes32,address)"):
            kind, types = "open", ["address", "address", "uint128", "bytes32", "address"]
        elif data[:4] == _selector("topUp(bytes32,uint128)"):
            kind, types = "topUp", ["bytes32", "uint128"]
        else:
            raise ChainError("UnsupportedCall", f"not an open or topUp call (selector 0x{data[:4].hex()})")
        try:
            args = eth_abi.decode(types, data[4:])
        except Exception as exc:
            raise _malformed(f"bad arguments: {exc}") from None
        if kind == "open":
            payee, token, amount, salt_b, signer = args
            payee, token, signer, salt = payee.lower(), token.lower(), signer.lower(), "0x" + bytes(salt_b).hex()
            cid = compute_channel_id(sender, payee, token, salt, signer, self.escrow, self.chain_id)
            return DecodedTx("open", sender, self.escrow, chain_id, cid, payee, token, amount, salt, signer)
        cid_b, amount = args
        return DecodedTx("topUp", sender, self.escrow, chain_id, "0x" + bytes(cid_b).hex(), amount=amount)

    def broadcast(self, raw_tx: str) -> str:
        with self._lock:
            tx, fields, raw = self._decode(raw_tx)
            expected = self._nonce(tx.sender)
            if fields["nonce"] != expected:
                raise ChainError("InvalidNonce", f"expected nonce {expected}, got {fields['nonce']}")
            gas, value = int(fields["gas"]), int(fields.get("value", 0))
            self._require_gas(tx.sender, gas, value)
            self._simulate(tx.sender, self.escrow, bytes(fields["data"]), gas, value)
            return self._send_raw(raw)

    # ---------------------------------------------------------------------- direct calls

    def settle(self, payee_key: bytes, channel_id: str, cumulative_amount: int, signature: bytes) -> str:
        args = [
            bytes.fromhex(norm_bytes32(channel_id, "channel_id")[2:]),
            norm_amount(cumulative_amount, "cumulative_amount"),
            sig_bytes(signature),
        ]
        return self._transact(payee_key, self.escrow, "settle", "settle(bytes32,uint128,bytes)", ["bytes32", "uint128", "bytes"], args)

    def close(self, payee_key: bytes, channel_id: str, cumulative_amount: int, signature: bytes, capture_amount: int | None = None) -> str:
        cid = bytes.fromhex(norm_bytes32(channel_id, "channel_id")[2:])
        cum = norm_amount(cumulative_amount, "cumulative_amount")
        sig = sig_bytes(signature)
        if capture_amount is None:
            return self._transact(payee_key, self.escrow, "close", "close(bytes32,uint128,bytes)", ["bytes32", "uint128", "bytes"], [cid, cum, sig])
        capture = norm_amount(capture_amount, "capture_amount")
        return self._transact(
            payee_key, self.escrow, "close", "close(bytes32,uint128,uint128,bytes)",
            ["bytes32", "uint128", "uint128", "bytes"], [cid, cum, capture, sig],
        )

    def request_close(self, payer_key: bytes, channel_id: str) -> str:
        cid = bytes.fromhex(norm_bytes32(channel_id, "channel_id")[2:])
        return self._transact(payer_key, self.escrow, "requestClose", "requestClose(bytes32)", ["bytes32"], [cid])

    def withdraw(self, payer_key: bytes, channel_id: str) -> str:
        cid = bytes.fromhex(norm_bytes32(channel_id, "channel_id")[2:])
        return self._transact(payer_key, self.escrow, "withdraw", "withdraw(bytes32)", ["bytes32"], [cid])


class EvmChain(Web3Escrow):
    """The v1 escrow and test token deployed on py-evm through web3's tester provider."""

    name = "evm"

    def __init__(self) -> None:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import EthereumTesterProvider, Web3

        escrow_art, token_art = load_artifact(self._escrow_artifact), load_artifact("TestToken")
        self._tester = EthereumTester(PyEVMBackend(genesis_state=self._genesis_state(PyEVMBackend, escrow_art)))
        self.w3 = Web3(EthereumTesterProvider(self._tester))
        self._faucet = self.w3.eth.accounts[0]  # an unlocked tester account with plenty of ether
        self._connect()
        ctor = eth_abi.encode(["string", "string"], ["Tempo Test USD", "tUSD"])
        token = self._deploy(bytes.fromhex(token_art["bytecode"][2:]) + ctor)
        escrow = self._place_escrow(escrow_art)
        self._attach(escrow, token)
        self._snapshot = self._tester.take_snapshot()

    def _genesis_state(self, backend: Any, escrow_art: dict[str, Any]) -> Any:
        """The tester's genesis accounts; None for its default ones (the v1 escrow is deployed after)."""
        return None

    def _place_escrow(self, escrow_art: dict[str, Any]) -> str:
        """Put the escrow on chain and return its address: v1 deploys it with a transaction."""
        return self._deploy(bytes.fromhex(escrow_art["bytecode"][2:]))

    @property
    def tester(self) -> Any:
        """The eth_tester.EthereumTester behind this chain (the chain service serves it over JSON-RPC)."""
        return self._tester

    def reset(self) -> None:
        """Back to the freshly deployed state (an eth-tester snapshot revert; fast)."""
        with self._lock:
            self._tester.revert_to_snapshot(self._snapshot)

    def _deploy(self, code: bytes) -> str:
        self._pin()
        tx_hash = self.w3.eth.send_transaction(
            {"from": self._faucet, "data": code, "gas": 3_000_000, "maxFeePerGas": self._max_fee, "maxPriorityFeePerGas": _TIP}
        )
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise ChainError("DeployFailed", tx_hash.hex())
        return receipt["contractAddress"].lower()

    def _head_timestamp(self) -> int:
        return int(self._tester.backend.chain.get_canonical_head().timestamp)

    def _pin(self, offset: int = 1) -> None:
        """Make the pending block's timestamp the head's plus `offset` (py-evm would use the wall clock)."""
        self.pin_next_block(self._head_timestamp() + offset)

    def pin_next_block(self, timestamp: int) -> None:
        """The next block (and every call against "pending") runs at `timestamp`."""
        chain = self._tester.backend.chain
        chain.header = chain.header.copy(timestamp=timestamp)

    def _revert_reason(self, exc: Exception) -> ChainError:
        data: Any = exc.args[0] if exc.args else b""
        while isinstance(data, Exception):
            data = data.args[0] if data.args else b""
        if isinstance(data, str) and data[:2] in ("b'", 'b"'):
            try:
                data = ast.literal_eval(data)  # eth-tester hands over repr(revert data)
            except (ValueError, SyntaxError):
                pass
        return self._reason_of(data)

    def _simulate(self, sender: str, to: str, data: bytes, gas: int, value: int = 0) -> None:
        from eth_tester.exceptions import TransactionFailed

        self._pin()
        tx = {"from": to_checksum_address(sender), "to": to_checksum_address(to), "data": "0x" + data.hex(), "gas": gas, "value": value}
        try:
            self._tester.call(tx, "pending")
        except TransactionFailed as exc:
            raise self._revert_reason(exc) from None

    def fund(self, key: bytes, amount: int) -> str:
        addr = address_of_key(key)
        with self._lock:
            self.fund_address(addr, amount)
            self._transact(key, self.token, "approve", "approve(address,uint256)", ["address", "uint256"], [self.escrow, UINT256_MAX])
        return addr

    def fund_address(self, address: str, amount: int) -> list[str]:
        """The first two steps of `fund`, which need no key: gas money and `amount` minted tokens
        for `address` (two transactions from the faucet). Returns their hashes."""
        addr = norm_address(address, "address")
        amount = norm_amount(amount, "amount", UINT256_MAX)
        with self._lock:
            if self.total_supply() + amount > UINT256_MAX:
                raise ChainError("Panic(0x11)", "mint overflows totalSupply")
            fees = {"gas": 21_000, "maxFeePerGas": self._max_fee, "maxPriorityFeePerGas": _TIP}
            self._pin()
            gas_tx = self.w3.eth.send_transaction({"from": self._faucet, "to": to_checksum_address(addr), "value": _GAS_MONEY, **fees})
            self._pin()
            mint = self._calldata("mint(address,uint256)", ["address", "uint256"], [addr, amount])
            mint_tx = self.w3.eth.send_transaction({"from": self._faucet, "to": self._token_cs, "data": mint, **fees, "gas": _GAS["mint"]})
        return ["0x" + bytes(gas_tx).hex(), "0x" + bytes(mint_tx).hex()]

    def advance_time(self, seconds: int) -> None:
        seconds = norm_amount(seconds, "seconds", UINT256_MAX)
        if seconds == 0:
            return
        with self._lock:
            self._pin(seconds)
            self._tester.mine_blocks(1)
