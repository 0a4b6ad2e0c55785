"""Tempo 0x76 transactions on the harness's v2 backends (adapters/chain/tempo_tx.py; memory-v2 applies them,
evm-v2 relays them onto py-evm), and mppx meeting our reference side through the generic machines on them.

The first tests need no Node: the codec round-trips, each v2 backend decodes and applies a Tempo open and topUp
(the channel id from the transaction's expiringNonceHash), refuses a replay, a wrong chain and a tampered
signature; evm-v2 refuses to relay for an account it never funded. The rest drive the real mppx@0.11.0 (skipped
only without Node): mppx's own decoder agrees with ours on the sender and the expiringNonceHash, and
`--client mppx --server reference` / `--client reference --server mppx` run on memory-v2 and evm-v2 (not SKIPPED)
with only known findings.
"""
from __future__ import annotations

import hashlib

import pytest

from adapters.bridge.testing import node_adapter_or_skip
from adapters.chain import make_chain, tempo_tx
from adapters.chain.base import ZERO_ADDRESS, ChainError
from conformance.harness import RunConfig
from conformance.runner import generic_v2_gap, replay, run_pair
from wire.crypto import address_of

SALT = "0x" + "01" * 32


def _key(tag: str) -> bytes:
    return hashlib.sha256(tag.encode()).digest()


@pytest.fixture(params=["memory-v2", "evm-v2"])
def chain(request):
    ch = make_chain(request.param)
    ch.fund(_key("payee"), 0)
    ch.fund(_key("payer"), 10_000)
    ch.tx_format = "tempo"
    return ch


def test_sign_decode_round_trip():
    key = _key("payer")
    data = tempo_tx.open_calldata("0x" + "22" * 20, ZERO_ADDRESS, "0x" + "33" * 20, 500, SALT, address_of(key))
    raw = tempo_tx.sign(key, 4217, 7, "0x" + "44" * 20, data)
    assert raw.startswith("0x76")
    tx = tempo_tx.decode(raw)
    assert (tx.sender, tx.chain_id, tx.nonce) == (address_of(key), 4217, 7)
    kind, args = tempo_tx.escrow_call(tx, "0x" + "44" * 20)
    assert kind == "open" and args == ("0x" + "22" * 20, ZERO_ADDRESS, "0x" + "33" * 20, 500, SALT, address_of(key))
    with pytest.raises(ChainError) as e:
        tempo_tx.escrow_call(tx, "0x" + "55" * 20)
    assert e.value.reason == "WrongContract"


def test_tampered_and_malformed_are_refused():
    key = _key("payer")
    raw = tempo_tx.sign(key, 4217, 0, "0x" + "44" * 20, b"\x00" * 4)
    flipped = raw[:-2] + ("1c" if raw[-2:] == "1b" else "1b")
    assert tempo_tx.decode(flipped).sender != address_of(key)  # another signature recovers another sender
    for bad in ("0x76", "0x76zz", "0x02" + raw[4:], raw[:-10]):
        with pytest.raises(ChainError) as e:
            tempo_tx.decode(bad)
        assert e.value.reason == "MalformedTransaction"


def test_v2_backends_decode_and_apply_tempo_open_and_topup(chain):
    payer, payee = _key("payer"), address_of(_key("payee"))
    raw, d = chain.build_open_tx(payer, payee, 1000, SALT, address_of(payer))
    assert raw.startswith("0x76")
    assert d.expiring_nonce_hash == tempo_tx.decode(raw).expiring_nonce_hash  # the precompile's, not a stand-in
    dtx = chain.decode_tx(raw)
    assert (dtx.kind, dtx.sender, dtx.amount, dtx.descriptor) == ("open", address_of(payer), 1000, d)
    chain.broadcast(raw)
    cid = chain.compute_channel_id(d)
    assert chain.get_channel(cid).deposit == 1000
    with pytest.raises(ChainError) as e:  # the same transaction again
        chain.broadcast(raw)
    assert e.value.reason == "InvalidNonce"
    top = chain.build_topup_tx(payer, d, 250)
    assert chain.decode_tx(top).kind == "topUp"
    chain.broadcast(top)
    assert chain.get_channel(cid).deposit == 1250
    # the backend's own encoding still works beside it
    chain.tx_format = type(chain).tx_format
    chain.broadcast(chain.build_topup_tx(payer, d, 5))
    assert chain.get_channel(cid).deposit == 1255


def test_tempo_tx_for_another_chain_is_refused(chain):
    payer = _key("payer")
    data = tempo_tx.open_calldata(address_of(_key("payee")), ZERO_ADDRESS, chain.token, 10, SALT, address_of(payer))
    raw = tempo_tx.sign(payer, chain.chain_id + 1, 0, chain.escrow, data)
    with pytest.raises(ChainError) as e:
        chain.decode_tx(raw)
    assert e.value.reason == "WrongChain"


def test_evm_v2_relays_only_for_accounts_it_funded():
    """The relay signs with the key an account was funded with: a Tempo open from any other sender is refused
    (nothing is applied), and an open of an id already in use reverts as the escrow's open does."""
    chain = make_chain("evm-v2")
    chain.fund(_key("payer"), 10_000)
    chain.tx_format = "tempo"
    stranger = _key("stranger")
    data = tempo_tx.open_calldata(address_of(_key("payee")), ZERO_ADDRESS, chain.token, 10, SALT, address_of(stranger))
    raw = tempo_tx.sign(stranger, chain.chain_id, 0, chain.escrow, data)
    with pytest.raises(ChainError) as e:
        chain.broadcast(raw)
    assert e.value.reason == "UnknownSender"
    assert chain.get_channel(chain.decode_tx(raw).channel_id).deposit == 0
    payer = _key("payer")
    raw, d = chain.build_open_tx(payer, address_of(_key("payee")), 100, SALT, address_of(payer))
    chain.broadcast(raw)
    with pytest.raises(ChainError) as e:  # the same descriptor through the relay's own entry point
        chain.apply_foreign(address_of(payer), "open", (d.payee, d.operator, d.token, 100, d.salt, d.authorized_signer),
                            d.expiring_nonce_hash)
    assert e.value.reason == "ChannelAlreadyExists"


def test_mixed_pairs_are_not_skipped_on_the_v2_backends():
    for ch in ("memory-v2", "evm-v2"):
        assert generic_v2_gap(RunConfig(client="mppx", server="reference", chain=ch), "pair") is None
        assert generic_v2_gap(RunConfig(client="reference", server="mppx", chain=ch), "pair") is None
        assert generic_v2_gap(RunConfig(client="mppx", server="mppx", chain=ch), "server") is None
    why = generic_v2_gap(RunConfig(client="reference", server="mppx", chain="memory"), "pair")
    assert why and "Tempo 0x76" in why


def test_mppx_decodes_our_tempo_tx_as_we_do():
    adapter = node_adapter_or_skip()
    key = _key("payer")
    data = tempo_tx.open_calldata("0x" + "22" * 20, ZERO_ADDRESS, "0x" + "33" * 20, 12345, SALT, address_of(key))
    raw = tempo_tx.sign(key, 4217, 3, "0x" + "44" * 20, data)
    out = adapter.call("tx.decode", raw=raw)
    ours = tempo_tx.decode(raw)
    assert out["from"].lower() == ours.sender
    assert out["expiringNonceHash"].lower() == ours.expiring_nonce_hash
    assert out["calls"][-1]["function"] == "open"


@pytest.mark.parametrize("client,server,machine,chain,profile", [
    ("mppx", "reference", "pair", "memory-v2", "ci"), ("reference", "mppx", "pair", "memory-v2", "ci"),
    ("reference", "mppx", "server", "memory-v2", "ci"), ("mppx", "reference", "client", "memory-v2", "ci"),
    # evm-v2 is ~10x slower per step (py-evm): the quick profile, one pair each way plus mppx with itself
    ("mppx", "reference", "pair", "evm-v2", "quick"), ("reference", "mppx", "server", "evm-v2", "quick"),
    ("mppx", "mppx", "pair", "evm-v2", "quick"),
])
def test_mppx_meets_the_reference_and_model_sides_on_the_v2_backends(client, server, machine, chain, profile, tmp_path):
    node_adapter_or_skip()
    rc = RunConfig(client=client, server=server, chain=chain, seed=3)
    rep = run_pair(rc, profile, machine, trace_dir=str(tmp_path), shrink=False)
    assert rep.skipped is None and rep.error is None and rep.steps > 0
    assert not rep.unexpected, rep.unexpected
    # every known finding the run went past is reported with its own replayable trace, never as a pass
    for fid, d in rep.findings.items():
        assert d["trace_file"] and (tmp_path / d["trace_file"].rsplit("/", 1)[-1]).exists()
        if d["trace_file"].endswith(f"-{fid}.json"):  # a finding the exploration went past: its trace replays it
            ok, text = replay(d["trace_file"])
            assert not ok and f"finding {fid}: reproduces" in text, text[-400:]
    if rep.findings:
        assert not rep.ok
