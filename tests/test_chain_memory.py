"""MemoryChain specifics: its signed transaction format, no web3 on its path, speed.

The escrow behaviour itself is tested once for both backends in test_chain_contract.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.chain import ChainError, make_chain
from adapters.chain._common import address_of_key
from adapters.chain.base import ZERO_ADDRESS
from adapters.chain.memory import MemoryChain
from wire.crypto import VoucherDomain, sign_voucher

ROOT = Path(__file__).resolve().parent.parent
PAYER = bytes.fromhex("11" * 32)
PAYEE = bytes.fromhex("22" * 32)
SALT = "0x" + "5a" * 32


@pytest.fixture
def chain() -> MemoryChain:
    c = make_chain("memory")
    c.fund(PAYER, 10**9)
    c.fund(PAYEE, 0)
    return c


def _split(raw: str) -> tuple[bytes, bytes]:
    b = bytes.fromhex(raw[2:])
    return b[:-65], b[-65:]


def test_memory_path_does_not_import_web3():
    code = (
        "import sys; from adapters.chain import make_chain; c = make_chain('memory'); "
        "assert 'web3' not in sys.modules and 'eth_tester' not in sys.modules, sorted(m for m in sys.modules if 'web3' in m)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_transaction_is_canonical_json_plus_signature(chain):
    raw, cid = chain.build_open_tx(PAYER, address_of_key(PAYEE), 500, SALT, ZERO_ADDRESS)
    body, sig = _split(raw)
    payload = json.loads(body)
    assert payload == {
        "args": {
            "authorizedSigner": ZERO_ADDRESS,
            "deposit": "500",
            "payee": address_of_key(PAYEE),
            "salt": SALT,
            "token": chain.token,
        },
        "chainId": chain.chain_id,
        "kind": "open",
        "nonce": 1,  # fund's approve used nonce 0
        "to": chain.escrow,
    }
    assert sig[64] in (27, 28)
    assert chain.decode_tx(raw).sender == address_of_key(PAYER)


def test_tampering_changes_the_sender_or_breaks_the_format(chain):
    raw, _ = chain.build_open_tx(PAYER, address_of_key(PAYEE), 500, SALT, ZERO_ADDRESS)
    body, sig = _split(raw)
    forged = body.replace(b'"500"', b'"900"')
    tx = chain.decode_tx("0x" + (forged + sig).hex())
    assert tx.amount == 900 and tx.sender != address_of_key(PAYER)  # someone else (unfunded) "signed" it
    with pytest.raises(ChainError) as info:
        chain.broadcast("0x" + (forged + sig).hex())
    assert info.value.reason == "InvalidNonce"  # the forged sender is a fresh account (nonce 0)
    spaced = body.replace(b":", b": ", 1)  # valid JSON, not canonical
    with pytest.raises(ChainError) as info:
        chain.decode_tx("0x" + (spaced + sig).hex())
    assert info.value.reason == "MalformedTransaction"
    high_s = sig[:32] + (0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big") + bytes([sig[64] ^ 1])
    with pytest.raises(ChainError) as info:
        chain.decode_tx("0x" + (body + high_s).hex())
    assert info.value.reason == "MalformedTransaction"


def test_wrong_chain_wrong_contract_and_unsupported_calls():
    a = MemoryChain(chain_id=1)
    b = MemoryChain(chain_id=2)
    c = MemoryChain(chain_id=1, escrow="0x" + "12" * 20)
    raw, _ = a.build_open_tx(PAYER, address_of_key(PAYEE), 1, SALT, ZERO_ADDRESS)
    for other, why in ((b, "WrongChain"), (c, "WrongContract")):
        with pytest.raises(ChainError) as info:
            other.decode_tx(raw)
        assert info.value.reason == why
    settle = a._sign_tx(PAYER, "settle", {"channelId": "0x" + "00" * 32})
    with pytest.raises(ChainError) as info:
        a.decode_tx(settle)
    assert info.value.reason == "UnsupportedCall"
    bad_args = a._sign_tx(PAYER, "topUp", {"channelId": "0x" + "00" * 32, "additionalDeposit": "007"})
    with pytest.raises(ChainError) as info:
        a.decode_tx(bad_args)
    assert info.value.reason == "MalformedTransaction"


def test_uses_model_crypto_domain(chain):
    assert chain.domain == VoucherDomain("v1", chain.chain_id, chain.escrow)


def test_fast_enough_for_long_property_runs(chain):
    """Open, top up, 200 settles and a close: well under a second on the memory backend."""
    started = time.perf_counter()
    for i in range(20):
        raw, cid = chain.build_open_tx(PAYER, address_of_key(PAYEE), 10_000, "0x" + i.to_bytes(32, "big").hex(), ZERO_ADDRESS)
        chain.broadcast(raw)
        chain.broadcast(chain.build_topup_tx(PAYER, cid, 10))
        dom = chain.domain
        for amount in range(100, 1100, 100):
            chain.settle(PAYEE, cid, amount, sign_voucher(PAYER, dom, cid, amount))
        chain.close(PAYEE, cid, 1000, sign_voucher(PAYER, dom, cid, 1000))
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"{elapsed:.2f}s for 20 channel lifecycles (260 transactions)"
