"""EvmChain specifics: the deployed bytecode, raw-transaction decoding, events, the pinned clock.

The escrow behaviour itself is tested once for both backends in test_chain_contract.py.
"""
from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes

from adapters.chain import Chain, ChainError, make_chain
from adapters.chain._common import address_of_key
from adapters.chain.base import ZERO_ADDRESS
from adapters.chain.evm import EvmChain, load_artifact
from wire.crypto import VoucherDomain, domain_separator, sign_voucher

PAYER = bytes.fromhex("11" * 32)
PAYEE = bytes.fromhex("22" * 32)
SALT = "0x" + "5a" * 32


@pytest.fixture(scope="module")
def deployed() -> EvmChain:
    return make_chain("evm")


@pytest.fixture
def chain(deployed) -> EvmChain:
    deployed.reset()
    deployed.fund(PAYER, 10**9)
    deployed.fund(PAYEE, 0)
    return deployed


def _sign(chain: EvmChain, **overrides) -> str:
    tx = {
        "type": 2, "chainId": chain.chain_id, "nonce": chain.nonce_of(address_of_key(PAYER)), "to": chain._escrow_cs,
        "value": 0, "data": b"", "gas": 300_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
    }
    tx.update(overrides)
    return "0x" + bytes(Account.sign_transaction(tx, PAYER).raw_transaction).hex()


def _calldata(raw: str) -> bytes:
    return bytes(TypedTransaction.from_bytes(HexBytes(bytes.fromhex(raw[2:]))).as_dict()["data"])


def _reason(fn, *args) -> str:
    with pytest.raises(ChainError) as info:
        fn(*args)
    return info.value.reason


def test_is_a_chain_with_the_committed_bytecode(chain):
    assert isinstance(chain, Chain) and chain.name == "evm"
    for address, name in ((chain.escrow, "TempoStreamChannel"), (chain.token, "TestToken")):
        code = bytes(chain.w3.eth.get_code(chain.w3.to_checksum_address(address)))
        assert "0x" + code.hex() == load_artifact(name)["deployedBytecode"]
    assert chain.domain_separator() == domain_separator(VoucherDomain("v1", chain.chain_id, chain.escrow))


def test_decode_rejects_what_is_not_an_open_or_topup_on_this_escrow(chain):
    raw, _ = chain.build_open_tx(PAYER, address_of_key(PAYEE), 5, SALT, ZERO_ADDRESS)
    data = _calldata(raw)  # a good open call, sent to the wrong places below
    assert _reason(chain.decode_tx, _sign(chain, data=data, to="0x" + "12" * 20)) == "WrongContract"
    assert _reason(chain.decode_tx, _sign(chain, data=data, chainId=chain.chain_id + 1)) == "WrongChain"
    settle = bytes.fromhex("d1b4c3a4") + bytes(96)  # any selector that is not open/topUp
    assert _reason(chain.decode_tx, _sign(chain, data=settle)) == "UnsupportedCall"
    assert _reason(chain.decode_tx, _sign(chain, data=data[:40])) == "MalformedTransaction"
    assert _reason(chain.decode_tx, _sign(chain, data=data, to=b"")) == "WrongContract"  # a deployment


def test_legacy_transactions_decode_too(chain):
    raw, cid = chain.build_open_tx(PAYER, address_of_key(PAYEE), 5, SALT, ZERO_ADDRESS)
    typed = chain.decode_tx(raw)
    data = _calldata(raw)
    legacy = {"chainId": chain.chain_id, "nonce": chain.nonce_of(address_of_key(PAYER)), "to": chain._escrow_cs,
              "value": 0, "data": data, "gas": 300_000, "gasPrice": 10**10}
    legacy_raw = "0x" + bytes(Account.sign_transaction(legacy, PAYER).raw_transaction).hex()
    assert chain.decode_tx(legacy_raw) == typed
    chain.broadcast(legacy_raw)
    assert chain.get_channel(cid).deposit == 5


def test_events(chain):
    escrow = chain.w3.eth.contract(address=chain._escrow_cs, abi=load_artifact("TempoStreamChannel")["abi"])
    receipt = chain.w3.eth.get_transaction_receipt

    def events(tx_hash, name):
        return [e["args"] for e in getattr(escrow.events, name)().process_receipt(receipt(tx_hash))]

    raw, cid = chain.build_open_tx(PAYER, address_of_key(PAYEE), 1_000, SALT, ZERO_ADDRESS)
    (opened,) = events(chain.broadcast(raw), "ChannelOpened")
    assert (opened["deposit"], opened["payer"].lower()) == (1_000, address_of_key(PAYER))
    dom = VoucherDomain("v1", chain.chain_id, chain.escrow)
    (settled,) = events(chain.settle(PAYEE, cid, 100, sign_voucher(PAYER, dom, cid, 100)), "Settled")
    assert (settled["cumulativeAmount"], settled["deltaPaid"], settled["newSettled"]) == (100, 100, 100)
    t = chain.now()
    (requested,) = events(chain.request_close(PAYER, cid), "CloseRequested")
    assert requested["closeGraceEnd"] == t + 900
    tx = chain.broadcast(chain.build_topup_tx(PAYER, cid, 50))
    assert len(events(tx, "CloseRequestCancelled")) == 1
    (top,) = events(tx, "TopUp")
    assert (top["additionalDeposit"], top["newDeposit"]) == (50, 1_050)
    closed_tx = chain.close(PAYEE, cid, 400, sign_voucher(PAYER, dom, cid, 400), 300)
    (closed,) = events(closed_tx, "ChannelClosed")
    assert (closed["settledToPayee"], closed["refundedToPayer"]) == (300, 750)


def test_each_transaction_gets_its_own_block_one_second_apart(chain):
    w3 = chain.w3
    raw, cid = chain.build_open_tx(PAYER, address_of_key(PAYEE), 1_000, SALT, ZERO_ADDRESS)
    t = chain.now()
    h1 = chain.broadcast(raw)
    h2 = chain.request_close(PAYER, cid)
    b1 = w3.eth.get_block(w3.eth.get_transaction_receipt(h1)["blockNumber"])
    b2 = w3.eth.get_block(w3.eth.get_transaction_receipt(h2)["blockNumber"])
    assert (b1["timestamp"], b2["timestamp"]) == (t, t + 1)
    assert b2["number"] == b1["number"] + 1
    number = w3.eth.block_number
    with pytest.raises(ChainError):
        chain.withdraw(PAYER, cid)  # refused: simulated, never sent
    assert w3.eth.block_number == number


def test_batch_read(chain):
    raw, cid = chain.build_open_tx(PAYER, address_of_key(PAYEE), 1_000, SALT, ZERO_ADDRESS)
    chain.broadcast(raw)
    missing = "0x" + "00" * 32
    assert chain.get_channels_batch([cid, missing]) == [chain.get_channel(cid), chain.get_channel(missing)]
