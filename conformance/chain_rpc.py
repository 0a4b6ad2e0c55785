"""The JSON-RPC an SDK's viem/ethers client makes, answered from the harness's own v2 chain backend.

A bridge adapter (adapters/bridge/PROTOCOL.md section 8) sends every chain request of its implementation as an
`rpc` callback; `HarnessRpc(chain)` is the handler. Reads come from the backend (`get_channel`, `now`,
`nonce_of`); a raw transaction comes with the adapter's decoding (`decoded`: sender recovered by the adapter,
its calls, each escrow call decoded, and for an open the expiringNonceHash the precompile derives from the
transaction), because the harness backends cannot decode a Tempo 0x76 transaction. Its escrow call is applied to
the backend as that sender, and the receipt carries the event the precompile would emit (ABI of
adapters/chain/artifacts/TIP20ChannelEscrow.json, which is mppx's precompile ABI), so the SDK's own receipt
checks run. A call the backend refuses is mined and reverts, as on a chain: a receipt with status 0x0 and no
logs. A request the harness cannot answer is an RPC error (`rejected`).

What it answers: eth_chainId, eth_blockNumber, eth_getBlockByNumber, eth_getTransactionCount, eth_gasPrice,
eth_maxPriorityFeePerGas, eth_feeHistory, eth_estimateGas, eth_call (getChannelState, getChannelStatesBatch,
getChannel, getChannelById; any other call, e.g. the simulation of a transaction before it is sent, succeeds
with empty data), eth_sendRawTransaction(Sync), eth_getTransactionReceipt. Anything else is refused and
recorded in `unanswered`.

Backends: memory-v2 and evm-v2 apply every escrow call of a decoded transaction (`apply_foreign`; evm-v2 relays
it as an ordinary transaction of the same sender, an open through its escrow's harness-only `openWithNonceHash`,
so the channel gets the id the SDK computed). On a backend without it only the calls the harness can sign itself
run: settle, close, topUp, requestClose and withdraw of an account whose key the harness holds (`keys`); an open
is refused there, because such an escrow derives its own expiringNonceHash and so another channel id.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from eth_abi import decode as abi_decode, encode as abi_encode

from adapters.bridge import CallbackRefused
from adapters.chain.base import ZERO_ADDRESS, ChainError, ChannelDescriptor
from wire.crypto import address_of, keccak

ARTIFACTS = Path(__file__).resolve().parents[1] / "adapters" / "chain" / "artifacts"
# the escrow ABI of each protocol: v1 TempoStreamChannel (mppx <= 0.6.x's escrow interface), v2 the precompile's
ABI_PATHS = {"v1": ARTIFACTS / "TempoStreamChannel.json", "v2": ARTIFACTS / "TIP20ChannelEscrow.json"}
DESCRIPTOR_FIELDS = ("payer", "payee", "operator", "token", "salt", "authorizedSigner", "expiringNonceHash")


def _type_of(param: dict) -> str:
    t = param["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_type_of(c) for c in param["components"]) + ")" + t[len("tuple"):]
    return t


def _load_abi(path: Path) -> tuple[dict, dict]:
    abi = json.loads(path.read_text())["abi"]
    functions, events = {}, {}
    for item in abi:
        if item["type"] == "function":
            sig = f"{item['name']}({','.join(_type_of(i) for i in item['inputs'])})"
            functions[keccak(sig.encode())[:4]] = item
        elif item["type"] == "event":
            sig = f"{item['name']}({','.join(_type_of(i) for i in item['inputs'])})"
            events[item["name"]] = (item, "0x" + keccak(sig.encode()).hex())
    return functions, events


ABIS = {proto: _load_abi(path) for proto, path in ABI_PATHS.items()}
FUNCTIONS, EVENTS = ABIS["v2"]


def _hex(n: int) -> str:
    return hex(int(n))


def _word(address: str) -> str:
    return "0x" + "00" * 12 + address.lower()[2:]


def _descriptor(value: Any) -> ChannelDescriptor:
    """A descriptor as the adapter decoded it (an object of the ABI's field names) or as eth_abi decodes it."""
    if isinstance(value, dict):
        vals = [value[k] for k in DESCRIPTOR_FIELDS]
    else:
        vals = list(value)
    out = []
    for v in vals:
        out.append("0x" + v.hex() if isinstance(v, bytes) else str(v).lower())
    return ChannelDescriptor(*out)


def _sig(value: Any) -> bytes:
    return value if isinstance(value, bytes) else bytes.fromhex(str(value)[2:])


class HarnessRpc:
    """An `rpc` callback handler over one v2 chain backend (see the module docstring). One per session: the
    client and the server adapters of a session share it, so a transaction one sends the other can read."""

    def __init__(self, chain: Any, keys: tuple = ()):
        from adapters.chain.deployment import PROTOCOL_OF_BACKEND

        self.chain = chain
        self.protocol = PROTOCOL_OF_BACKEND.get(getattr(chain, "name", ""), "v1")
        self.functions, self.events = ABIS[self.protocol]
        self.keys = {address_of(k): k for k in keys}
        self.block = 1
        self.receipts: dict = {}
        self.log: list = []  # (side, method)
        self.unanswered: list = []
        self.applied: list = []  # (side, sender, escrow function)
        self.calls: list = []  # (side, sender, escrow function, decoded arguments): what each transaction published

    def add_key(self, key: bytes) -> None:
        self.keys[address_of(key)] = key

    # -- the callback

    def __call__(self, request: dict) -> Any:
        method = str(request.get("method") or "")
        params = request.get("params") or []
        side = str(request.get("side") or "")
        self.log.append((side, method))
        fn = getattr(self, "_m_" + method, None)
        if fn is None:
            self.unanswered.append(method)
            raise CallbackRefused(f"the harness chain does not answer {method}", type="rejected")
        if method.startswith("eth_sendRawTransaction"):
            return fn(params, request.get("decoded"), side)
        return fn(params)

    # -- reads

    def _m_eth_chainId(self, params):
        return _hex(self.chain.chain_id)

    def _m_eth_blockNumber(self, params):
        return _hex(self.block)

    def _m_eth_getBlockByNumber(self, params):
        z32 = "0x" + "00" * 32
        return {"number": _hex(self.block), "hash": "0x" + keccak(self.block.to_bytes(32, "big")).hex(),
                "parentHash": z32, "timestamp": _hex(self.chain.now()), "baseFeePerGas": "0x1",
                "gasLimit": _hex(30_000_000), "gasUsed": "0x0", "transactions": [], "miner": ZERO_ADDRESS,
                "difficulty": "0x0", "extraData": "0x", "logsBloom": "0x" + "00" * 256, "nonce": "0x" + "00" * 8,
                "receiptsRoot": z32, "sha3Uncles": z32, "size": "0x0", "stateRoot": z32, "totalDifficulty": "0x0",
                "transactionsRoot": z32, "uncles": []}

    def _m_eth_getTransactionCount(self, params):
        nonce_of = getattr(self.chain, "nonce_of", None)
        return _hex(nonce_of(str(params[0]).lower()) if nonce_of else 0)

    def _m_eth_gasPrice(self, params):
        return "0x1"

    _m_eth_maxPriorityFeePerGas = _m_eth_gasPrice

    def _m_eth_estimateGas(self, params):
        return _hex(500_000)

    def _m_eth_feeHistory(self, params):
        return {"oldestBlock": _hex(self.block), "baseFeePerGas": ["0x1", "0x1"], "gasUsedRatio": [0.0],
                "reward": [["0x1"]]}

    def _m_eth_getTransactionReceipt(self, params):
        return self.receipts.get(str(params[0]).lower())

    # The v1 escrow's getChannel struct, by field, in the deployed TempoStreamChannel's order (mppx 0.4.12 and later);
    # the draft's reference interface (and adapters/chain's TempoStreamChannel.sol, and mppx up to 0.4.8) order the
    # same fields payer first and finalized last (FINDINGS.md F18). `v1_fields` is the order the caller's ABI
    # decodes (the adapter's hello `v1ChannelFields`), set by conformance/mppx_impl.py.
    DEPLOYED_V1_FIELDS = ("finalized", "closeRequestedAt", "payer", "payee", "token", "authorizedSigner", "deposit",
                          "settled")
    v1_fields: tuple = DEPLOYED_V1_FIELDS

    def _v1_view(self, cid: str) -> tuple:
        """getChannel's struct in `v1_fields` order; an unknown channel is all zero."""
        st = self.chain.get_channel(cid)
        by = {"finalized": st.finalized, "closeRequestedAt": st.close_requested_at, "payer": st.payer,
              "payee": st.payee, "token": st.token, "authorizedSigner": st.authorized_signer, "deposit": st.deposit,
              "settled": st.settled}
        return tuple(by[f] for f in self.v1_fields)

    def _v1_types(self) -> str:
        t = {"finalized": "bool", "closeRequestedAt": "uint64", "deposit": "uint128", "settled": "uint128"}
        return "(" + ",".join(t.get(f, "address") for f in self.v1_fields) + ")"

    def _state(self, cid: str) -> tuple:
        """The precompile's view: (settled, deposit, closeRequestedAt); finalized or unknown read as zero."""
        st = self.chain.get_channel(cid)
        if not st.exists or st.finalized:
            return (0, 0, 0)
        return (st.settled, st.deposit, st.close_requested_at)

    def _m_eth_call(self, params):
        call = params[0] if params else {}
        data = bytes.fromhex(str(call.get("data") or call.get("input") or "0x")[2:])
        to = str(call.get("to") or "").lower()
        item = self.functions.get(data[:4]) if to == self.chain.escrow.lower() else None
        if item is None or item["name"] not in ("getChannelState", "getChannelStatesBatch", "getChannel",
                                                  "getChannelById", "getChannelsBatch"):
            return "0x"  # not an escrow view (e.g. the simulation of a transaction before broadcast)
        args = abi_decode([_type_of(i) for i in item["inputs"]], data[4:])
        out_types = [_type_of(o) for o in item["outputs"]]
        name = item["name"]
        if self.protocol == "v1":
            view = self._v1_types()
            if name == "getChannel":
                out_types, value = [view], [self._v1_view("0x" + args[0].hex())]
            else:
                out_types, value = [view + "[]"], [[self._v1_view("0x" + c.hex()) for c in args[0]]]
        elif name == "getChannelState":
            value = [self._state("0x" + args[0].hex())]
        elif name == "getChannelStatesBatch":
            value = [[self._state("0x" + c.hex()) for c in args[0]]]
        else:
            if name == "getChannel":
                d = _descriptor(args[0])
                cid = self.chain.compute_channel_id(d)
            else:
                cid = "0x" + args[0].hex()
                st = self.chain.get_channel(cid)
                d = st.descriptor if st.exists else ChannelDescriptor(*([ZERO_ADDRESS] * 4 + ["0x" + "00" * 32, ZERO_ADDRESS, "0x" + "00" * 32]))
            value = [(tuple(bytes.fromhex(v[2:]) if len(v) == 66 else v for v in d.as_abi()), self._state(cid))]
        return "0x" + abi_encode(out_types, value).hex()

    # -- transactions

    def _m_eth_sendRawTransaction(self, params, decoded, side):
        return self._send(str(params[0]), decoded, side)["transactionHash"]

    def _m_eth_sendRawTransactionSync(self, params, decoded, side):
        return self._send(str(params[0]), decoded, side)

    def _send(self, raw: str, decoded: Optional[dict], side: str) -> dict:
        if not isinstance(decoded, dict) or not decoded.get("from"):
            raise CallbackRefused("a raw transaction needs the adapter's decoding (`decoded`: sender and calls); "
                                  "the harness chain cannot decode it itself", type="rejected")
        sender = str(decoded["from"]).lower()
        calls = []
        for c in decoded.get("calls") or []:  # the escrow calls, decoded here with the deployment's ABI
            data = bytes.fromhex(str(c.get("data") or "0x")[2:])
            item = self.functions.get(data[:4]) if str(c.get("to", "")).lower() == self.chain.escrow.lower() else None
            if item is not None:
                calls.append((item["name"], list(abi_decode([_type_of(i) for i in item["inputs"]], data[4:]))))
        if not calls:
            raise CallbackRefused("the transaction makes no escrow call the harness chain models", type="rejected")
        fn, args = calls[-1]
        self.calls.append((side, sender, fn, tuple(args)))
        reverted = None
        try:
            cid, event = self._apply(sender, fn, args, decoded.get("expiringNonceHash"))
        except ChainError as exc:
            # as on a chain: the transaction is included and reverts (status 0x0, no logs); the sender learns it
            # from the receipt, not from the submission
            reverted, event = f"{exc.reason}: {exc.detail}", None
        self.applied.append((side, sender, fn if reverted is None else f"{fn} reverted ({reverted})"))
        self.block += 1
        tx_hash = "0x" + keccak(bytes.fromhex(raw[2:])).hex()
        block_hash = "0x" + keccak(self.block.to_bytes(32, "big")).hex()
        logs = []
        if event is not None:
            name, values = event
            item, topic0 = self.events[name]
            indexed = [i for i in item["inputs"] if i["indexed"]]
            plain = [i for i in item["inputs"] if not i["indexed"]]
            topics = [topic0] + [values[i["name"]] if i["type"] == "bytes32" else _word(values[i["name"]])
                                 for i in indexed]
            data = abi_encode([_type_of(i) for i in plain],
                              [bytes.fromhex(values[i["name"]][2:]) if i["type"] == "bytes32" else values[i["name"]]
                               for i in plain])
            logs.append({"address": self.chain.escrow, "topics": topics, "data": "0x" + data.hex(),
                         "blockNumber": _hex(self.block), "blockHash": block_hash, "transactionHash": tx_hash,
                         "transactionIndex": "0x0", "logIndex": "0x0", "removed": False})
        receipt = {"transactionHash": tx_hash, "transactionIndex": "0x0", "blockHash": block_hash,
                   "blockNumber": _hex(self.block), "from": sender, "to": self.chain.escrow,
                   "cumulativeGasUsed": "0x5208", "gasUsed": "0x5208", "effectiveGasPrice": "0x1",
                   "contractAddress": None, "logs": logs, "logsBloom": "0x" + "00" * 256,
                   "status": "0x1" if reverted is None else "0x0",
                   "type": str(decoded.get("type") or "0x76")}
        self.receipts[tx_hash] = receipt
        return receipt

    def _apply(self, sender: str, fn: str, args: list, enh: Optional[str]) -> tuple:
        """Apply one escrow call as `sender`; (channel id, (event name, values) or None)."""
        if self.protocol == "v1":
            return self._apply_v1(sender, fn, args)
        ch = self.chain
        foreign = getattr(ch, "apply_foreign", None)
        args = [("0x" + a.hex()) if isinstance(a, bytes) and len(a) == 32 else a for a in args]
        if fn == "open":
            payee, operator, token, deposit, salt, signer = args
            if foreign is None or not enh:
                raise CallbackRefused(f"{ch.name} cannot open a channel from a foreign transaction (its escrow "
                                      "derives its own expiringNonceHash)", type="rejected")
            d = ChannelDescriptor(sender, payee.lower(), operator.lower(), token.lower(), str(salt).lower(),
                                  signer.lower(), enh.lower())
            foreign(sender, "open", (d.payee, d.operator, d.token, int(deposit), d.salt, d.authorized_signer), enh)
            cid = ch.compute_channel_id(d)
            return cid, ("ChannelOpened", {"channelId": cid, "payer": sender, "payee": d.payee, "operator": d.operator,
                                           "token": d.token, "authorizedSigner": d.authorized_signer, "salt": d.salt,
                                           "expiringNonceHash": d.expiring_nonce_hash, "deposit": int(deposit)})
        d = _descriptor(args[0])
        cid = ch.compute_channel_id(d)
        before = ch.get_channel(cid)
        if fn == "topUp":
            call = (d, int(args[1]))
        elif fn == "settle":
            call = (d, int(args[1]), _sig(args[2]))
        elif fn == "close":
            call = (d, int(args[1]), int(args[2]), _sig(args[3]))
        elif fn in ("requestClose", "withdraw"):
            call = (d,)
        else:
            raise CallbackRefused(f"escrow function {fn} is not modelled", type="rejected")
        if foreign is not None:
            foreign(sender, fn, call)
        else:
            key = self.keys.get(sender)
            if key is None:
                raise CallbackRefused(f"{ch.name}: the harness holds no key of {sender} to send its {fn}",
                                      type="rejected")
            if fn == "close":
                ch.close(key, d, call[1], call[2], call[3])
            elif fn == "topUp":
                ch.broadcast(ch.build_topup_tx(key, d, call[1]))
            elif fn == "settle":
                ch.settle(key, d, call[1], call[2])
            elif fn == "requestClose":
                ch.request_close(key, d)
            else:
                ch.withdraw(key, d)
        return cid, self._event(fn, cid, d.payer, d.payee, call[1:2], before, ch.get_channel(cid))

    def _apply_v1(self, sender: str, fn: str, args: list) -> tuple:
        """A v1 escrow call (channels named by id) as `sender` on a backend with apply_foreign (memory)."""
        ch = self.chain
        foreign = getattr(ch, "apply_foreign", None)
        if foreign is None:
            raise CallbackRefused(f"{ch.name} cannot run a foreign transaction's {fn} (no apply_foreign)",
                                  type="rejected")
        hexed = [("0x" + a.hex()) if isinstance(a, bytes) and len(a) == 32 else
                 a.lower() if isinstance(a, str) else a for a in args]
        if fn == "open":
            payee, token, deposit, salt, signer = hexed
            foreign(sender, "open", (payee, token, int(deposit), salt, signer))
            cid = ch.compute_channel_id(sender, payee, token, salt, signer)
            return cid, ("ChannelOpened", {"channelId": cid, "payer": sender, "payee": payee, "token": token,
                                           "authorizedSigner": signer, "deposit": int(deposit)})
        cid = hexed[0]
        before = ch.get_channel(cid)
        if fn == "topUp":
            call = (cid, int(hexed[1]))
        elif fn == "settle":
            call = (cid, int(hexed[1]), _sig(args[2]))
        elif fn == "close":  # close(id, cumulative, signature) captures cumulative; the 4-argument form a capture
            call = ((cid, int(hexed[1]), int(hexed[1]), _sig(args[2])) if len(args) == 3
                    else (cid, int(hexed[1]), int(hexed[2]), _sig(args[3])))
        elif fn in ("requestClose", "withdraw"):
            call = (cid,)
        else:
            raise CallbackRefused(f"escrow function {fn} is not modelled", type="rejected")
        foreign(sender, fn, call)
        return cid, self._event(fn, cid, before.payer, before.payee, call[1:2], before, ch.get_channel(cid))

    def _event(self, fn: str, cid: str, payer: str, payee: str, amount: tuple, before, after) -> Optional[tuple]:
        """The escrow event (name, args) a v1 or v2 call emits, from the channel before and after it
        (`amount`: the call's own amount, the topUp's or the settle's cumulative; withdraw emits none here)."""
        base = {"channelId": cid, "payer": payer, "payee": payee}
        if fn == "topUp":
            return ("TopUp", dict(base, additionalDeposit=amount[0], newDeposit=after.deposit))
        if fn == "settle":
            return ("Settled", dict(base, cumulativeAmount=amount[0], deltaPaid=after.settled - before.settled,
                                    newSettled=after.settled))
        if fn == "close":
            return ("ChannelClosed", dict(base, settledToPayee=after.settled - before.settled,
                                          refundedToPayer=before.deposit - after.settled))
        if fn == "requestClose":
            return ("CloseRequested", dict(base, closeGraceEnd=after.close_requested_at + self.chain.grace_period))
        return None
