"""RpcChain: the v1 escrow on any Ethereum JSON-RPC node (web3's HTTPProvider).

    make_chain("rpc", url="http://127.0.0.1:8545")                 # a chain service: finds escrow and token
    make_chain("rpc", url=..., escrow="0x...", token="0x...")       # any node with the contracts deployed

Every call is EvmChain's (both are Web3Escrow): reads are eth_call, client
transactions are signed locally with the caller's key, server-side operations
(settle, close) are transactions signed with the payee's key, and each
transaction is simulated (eth_call against "pending") before it is sent, so a
call that would revert sends nothing. No unlocked account is used.

What needs a dev chain uses its test-only methods and raises
ChainError("Unsupported") on a node without them: `fund` (tempo_fund, then the
approve signed with the key), `advance_time` (evm_setNextBlockTimestamp +
evm_mine), `reset` (evm_revert to the evm_snapshot taken when this RpcChain
connected; only with `resettable=True`). Without `escrow` and `token` the
addresses come from tempo_deployment.

Time: on the chain service each transaction gets its own block one second
after the previous one, as on the evm backend, so `now()` (the latest block's
timestamp + 1) is exact there; on a node with a wall clock it is an estimate.
"""
from __future__ import annotations

from typing import Any

from ._common import UINT256_MAX, address_of_key, norm_address, norm_amount
from .base import ChainError
from .evm import Web3Escrow

__all__ = ["RpcChain"]

_TEST_ONLY = ("tempo_fund", "tempo_deployment", "evm_snapshot", "evm_revert", "evm_mine", "evm_setNextBlockTimestamp")


class RpcChain(Web3Escrow):
    """The v1 escrow and test token behind a JSON-RPC URL."""

    name = "rpc"

    def __init__(
        self,
        url: str,
        *,
        escrow: str | None = None,
        token: str | None = None,
        resettable: bool = False,
        timeout: float = 30.0,
    ) -> None:
        from web3 import HTTPProvider, Web3

        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ChainError("InvalidArgument", f"url: expected an http(s) JSON-RPC URL, got {url!r}")
        self.url = url
        self.w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout}), middleware=[])
        try:
            self._connect()
        except ChainError:
            raise
        except Exception as exc:
            raise ChainError("Unreachable", f"{url}: {type(exc).__name__}: {exc}") from None
        if escrow is None or token is None:
            found = self._rpc("tempo_deployment", [])
            if int(found["chainId"], 16) != self.chain_id:
                raise ChainError("WrongChain", f"tempo_deployment says chain {found['chainId']}, eth_chainId {self.chain_id}")
            escrow, token = escrow or found["escrow"], token or found["token"]
        escrow, token = norm_address(escrow, "escrow"), norm_address(token, "token")
        for what, address in (("escrow", escrow), ("token", token)):
            if len(bytes(self.w3.eth.get_code(self.w3.to_checksum_address(address)))) == 0:
                raise ChainError("WrongContract", f"no contract at the {what} address {address} on {url}")
        self._attach(escrow, token)
        self._snapshot: str | None = self._rpc("evm_snapshot", []) if resettable else None

    # ------------------------------------------------------------------ JSON-RPC

    def _rpc(self, method: str, params: list[Any]) -> Any:
        """A raw JSON-RPC call; its result, or ChainError saying what the node answered."""
        try:
            resp = self.w3.provider.make_request(method, params)
        except Exception as exc:
            raise ChainError("Unreachable", f"{self.url} {method}: {type(exc).__name__}: {exc}") from None
        err = resp.get("error")
        if err is None:
            return resp.get("result")
        code, message = err.get("code"), err.get("message", "")
        if code == -32601:
            hint = " (a test-only method of a dev chain, e.g. `python -m adapters.chain serve`)" if method in _TEST_ONLY else ""
            raise ChainError("Unsupported", f"{self.url} has no {method}{hint}: {message}")
        if code == 3 or "revert" in str(message).lower():
            raise self._reason_of(_error_data(err))
        raise ChainError("Rejected", f"{method}: {message} (code {code})")

    def _head_timestamp(self) -> int:
        with self._lock:
            return int(self._rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)

    def _simulate(self, sender: str, to: str, data: bytes, gas: int, value: int = 0) -> None:
        tx = {"from": sender, "to": to, "data": "0x" + data.hex(), "gas": hex(gas), "value": hex(value)}
        self._rpc("eth_call", [tx, "pending"])

    # ------------------------------------------------------------------ dev-chain operations

    def fund(self, key: bytes, amount: int) -> str:
        """tempo_fund (gas money and `amount` minted tokens), then the escrow approve signed with `key`."""
        addr = address_of_key(key)
        amount = norm_amount(amount, "amount", UINT256_MAX)
        with self._lock:
            if self.total_supply() + amount > UINT256_MAX:
                raise ChainError("Panic(0x11)", "mint overflows totalSupply")
            self._rpc("tempo_fund", [addr, hex(amount)])
            self._transact(key, self.token, "approve", "approve(address,uint256)", ["address", "uint256"], [self.escrow, UINT256_MAX])
        return addr

    def advance_time(self, seconds: int) -> None:
        """Mine an empty block `seconds` after the latest one (as EvmChain does)."""
        seconds = norm_amount(seconds, "seconds", UINT256_MAX)
        if seconds == 0:
            return
        with self._lock:
            self._rpc("evm_setNextBlockTimestamp", [hex(self._head_timestamp() + seconds)])
            self._rpc("evm_mine", [])

    def reset(self) -> None:
        """Back to the state when this RpcChain connected (evm_revert, then a fresh evm_snapshot)."""
        if self._snapshot is None:
            raise ChainError("Unsupported", "reset needs RpcChain(..., resettable=True) (an evm_snapshot at connection)")
        with self._lock:
            if self._rpc("evm_revert", [self._snapshot]) is not True:
                raise ChainError("Unsupported", f"{self.url} no longer has snapshot {self._snapshot}")
            self._snapshot = self._rpc("evm_snapshot", [])


def _error_data(err: dict[str, Any]) -> bytes | str:
    """The revert data of a JSON-RPC error (geth/anvil: a hex string; hardhat: nested in an object)."""
    data = err.get("data")
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            pass
    return b"" if data is None else str(data)
