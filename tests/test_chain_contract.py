"""One behaviour suite for every chain backend (memory, evm and rpc).

Each test runs against every backend; the evm chain is deployed once per module,
the rpc chain talks to one chain service process (`python -m adapters.chain
serve`) started for the session, and both are reset to their freshly deployed
state before each test. The last tests run one seeded random sequence of
operations on memory and on evm (and rpc) and check that they agree call for
call (same ChainError reason or the same success) and end in the same balances
and channel records.
"""
from __future__ import annotations

import random

import pytest

from adapters.chain import Chain, ChainError, make_chain
from adapters.chain._common import UINT128_MAX, address_of_key, compute_channel_id
from adapters.chain.base import ZERO_ADDRESS
from wire.crypto import SECP256K1_N, VoucherDomain, sign_voucher, to_compact, to_high_s, voucher_digest

PAYER = bytes.fromhex("11" * 32)
PAYEE = bytes.fromhex("22" * 32)
SIGNER = bytes.fromhex("33" * 32)  # a delegated voucher signer (authorizedSigner)
OTHER = bytes.fromhex("44" * 32)  # a third party
SALT = "0x" + "5a" * 32
DEPOSIT = 1_000_000
BALANCE = 10_000_000

_evm = None


def _evm_chain():
    global _evm
    if _evm is None:
        _evm = make_chain("evm")
    return _evm


@pytest.fixture(scope="session")
def rpc_chain():
    """An RpcChain on a chain service in a child process (snapshot taken right after deployment)."""
    from adapters.chain.service import start_chain_service

    with start_chain_service() as service:
        yield make_chain("rpc", url=service.url, resettable=True)


@pytest.fixture(params=["memory", "evm", "rpc"])
def chain(request) -> Chain:
    if request.param == "memory":
        return make_chain("memory")
    c = _evm_chain() if request.param == "evm" else request.getfixturevalue("rpc_chain")
    c.reset()
    return c


@pytest.fixture
def funded(chain):
    """Payer with BALANCE tokens; payee, signer and a third party with gas only."""
    chain.fund(PAYER, BALANCE)
    for key in (PAYEE, SIGNER, OTHER):
        chain.fund(key, 0)
    return chain


def addr(key: bytes) -> str:
    return address_of_key(key)


def domain(chain) -> VoucherDomain:
    return VoucherDomain("v1", chain.chain_id, chain.escrow)


def voucher(chain, key: bytes, cid: str, amount: int) -> bytes:
    return bytes.fromhex(sign_voucher(key, domain(chain), cid, amount)[2:])


def open_channel(chain, deposit=DEPOSIT, salt=SALT, signer: bytes | None = None) -> str:
    raw, cid = chain.build_open_tx(PAYER, addr(PAYEE), deposit, salt, addr(signer) if signer else ZERO_ADDRESS)
    chain.broadcast(raw)
    return cid


def reason(fn, *args, **kw) -> str:
    with pytest.raises(ChainError) as info:
        fn(*args, **kw)
    return info.value.reason


def rejected(chain, fn, *args, **kw) -> str:
    """The ChainError reason of a call that must change nothing (state, balances, nonces, clock)."""
    before = snapshot(chain)
    r = reason(fn, *args, **kw)
    assert snapshot(chain) == before, f"a rejected call ({r}) changed the chain"
    return r


def snapshot(chain, cids=()) -> tuple:
    keys = (PAYER, PAYEE, SIGNER, OTHER)
    return (
        chain.now(),
        tuple(chain.balance_of(addr(k)) for k in keys),
        chain.balance_of(chain.escrow),
        tuple(chain.nonce_of(addr(k)) for k in keys),
        tuple(chain.get_channel(c) for c in cids),
    )


def assert_conserved(chain, cids) -> None:
    """No token is created or lost: wallets + escrow == supply, escrow == what live channels hold."""
    wallets = sum(chain.balance_of(addr(k)) for k in (PAYER, PAYEE, SIGNER, OTHER))
    escrow = chain.balance_of(chain.escrow)
    assert wallets + escrow == chain.total_supply()
    held = 0
    for cid in cids:
        ch = chain.get_channel(cid)
        if ch.exists and not ch.finalized:
            held += ch.deposit - ch.settled
    assert escrow == held


# --------------------------------------------------------------------- set-up and reads


def test_backend_shape(chain):
    assert isinstance(chain, Chain)
    assert chain.name in ("memory", "evm", "rpc")
    assert chain.grace_period == 15 * 60
    for a in (chain.escrow, chain.token):
        assert a == a.lower() and a.startswith("0x") and len(a) == 42
    missing = chain.get_channel("0x" + "00" * 32)
    assert not missing.exists and missing.payer == ZERO_ADDRESS and missing.deposit == 0


def test_fund_mints_and_approves(chain):
    assert chain.fund(PAYER, 123) == addr(PAYER)
    assert chain.balance_of(addr(PAYER)) == 123
    assert chain.total_supply() == 123
    assert chain.nonce_of(addr(PAYER)) == 1  # the approve


def test_channel_id_formula_matches_compute_channel_id(funded):
    chain = funded
    for signer in (None, SIGNER):
        signer_addr = addr(signer) if signer else ZERO_ADDRESS
        salt = "0x" + ("77" if signer else "66") * 32
        raw, cid = chain.build_open_tx(PAYER, addr(PAYEE), 10, salt, signer_addr)
        local = compute_channel_id(addr(PAYER), addr(PAYEE), chain.token, salt, signer_addr, chain.escrow, chain.chain_id)
        assert cid == local == chain.compute_channel_id(addr(PAYER), addr(PAYEE), chain.token, salt, signer_addr)
        assert chain.decode_tx(raw).channel_id == cid
        chain.broadcast(raw)
        assert chain.get_channel(cid).exists
    # every input is bound in
    base = (addr(PAYER), addr(PAYEE), chain.token, SALT, ZERO_ADDRESS)
    ids = {chain.compute_channel_id(*base)}
    for i, other in enumerate((addr(OTHER), addr(OTHER), addr(OTHER), "0x" + "01" * 32, addr(OTHER))):
        ids.add(chain.compute_channel_id(*base[:i], other, *base[i + 1:]))
    assert len(ids) == 6


def test_voucher_digest_matches_model_crypto(chain):
    cid = "0x" + "ab" * 32
    for amount in (0, 1, 10**6, UINT128_MAX):
        assert chain.voucher_digest(cid, amount) == voucher_digest(domain(chain), cid, amount)


# ------------------------------------------------------------------------------- open


def test_open_escrows_the_deposit(funded):
    chain = funded
    raw, cid = chain.build_open_tx(PAYER, addr(PAYEE), DEPOSIT, SALT, addr(SIGNER))
    tx = chain.decode_tx(raw)
    assert (tx.kind, tx.sender, tx.to, tx.chain_id) == ("open", addr(PAYER), chain.escrow, chain.chain_id)
    assert (tx.payee, tx.token, tx.amount, tx.salt, tx.authorized_signer) == (addr(PAYEE), chain.token, DEPOSIT, SALT, addr(SIGNER))
    tx_hash = chain.broadcast(raw)
    assert tx_hash.startswith("0x") and len(tx_hash) == 66
    ch = chain.get_channel(cid)
    assert (ch.payer, ch.payee, ch.token, ch.authorized_signer) == (addr(PAYER), addr(PAYEE), chain.token, addr(SIGNER))
    assert (ch.deposit, ch.settled, ch.close_requested_at, ch.finalized) == (DEPOSIT, 0, 0, False)
    assert ch.expected_signer == addr(SIGNER)
    assert chain.balance_of(addr(PAYER)) == BALANCE - DEPOSIT
    assert chain.balance_of(chain.escrow) == DEPOSIT


def test_open_rejections(funded):
    chain = funded
    cid = open_channel(chain)
    raw, same = chain.build_open_tx(PAYER, addr(PAYEE), 5, SALT, ZERO_ADDRESS)
    assert same == cid
    assert rejected(chain, chain.broadcast, raw) == "ChannelAlreadyExists"
    raw, _ = chain.build_open_tx(PAYER, addr(PAYEE), 0, "0x" + "01" * 32, ZERO_ADDRESS)
    assert rejected(chain, chain.broadcast, raw) == "TransferFailed"  # nothing to escrow
    raw, _ = chain.build_open_tx(PAYER, addr(PAYEE), BALANCE, "0x" + "02" * 32, ZERO_ADDRESS)
    assert rejected(chain, chain.broadcast, raw) == "TransferFailed"  # more than the payer has
    unfunded = bytes.fromhex("55" * 32)
    raw, _ = chain.build_open_tx(unfunded, addr(PAYEE), 1, SALT, ZERO_ADDRESS)
    assert rejected(chain, chain.broadcast, raw) == "InsufficientFunds"


def test_open_after_finalize_cannot_reuse_the_id(funded):
    chain = funded
    cid = open_channel(chain)
    chain.close(PAYEE, cid, 10, voucher(chain, PAYER, cid, 10))
    raw, same = chain.build_open_tx(PAYER, addr(PAYEE), 5, SALT, ZERO_ADDRESS)
    assert same == cid
    assert rejected(chain, chain.broadcast, raw) == "ChannelAlreadyExists"


def test_bad_arguments_are_refused_before_signing(funded):
    chain = funded
    assert reason(chain.build_open_tx, PAYER, addr(PAYEE), -1, SALT, ZERO_ADDRESS) == "InvalidArgument"
    assert reason(chain.build_open_tx, PAYER, addr(PAYEE), UINT128_MAX + 1, SALT, ZERO_ADDRESS) == "InvalidArgument"
    assert reason(chain.build_open_tx, PAYER, "0x1234", 1, SALT, ZERO_ADDRESS) == "InvalidArgument"
    assert reason(chain.build_open_tx, PAYER, addr(PAYEE), 1, "0x12", ZERO_ADDRESS) == "InvalidArgument"
    assert reason(chain.build_topup_tx, PAYER, "0x12", 1) == "InvalidArgument"
    assert reason(chain.settle, PAYEE, "0x" + "00" * 32, -5, b"") == "InvalidArgument"
    assert reason(chain.settle, PAYEE, "0x" + "00" * 32, 5, "not hex") == "InvalidArgument"


# ------------------------------------------------------------------ client transactions


def test_decode_topup(funded):
    chain = funded
    cid = open_channel(chain)
    tx = chain.decode_tx(chain.build_topup_tx(PAYER, cid, 42))
    assert (tx.kind, tx.sender, tx.to, tx.chain_id, tx.channel_id, tx.amount) == ("topUp", addr(PAYER), chain.escrow, chain.chain_id, cid, 42)


@pytest.mark.parametrize("raw", ["", "0x", "0xzz", "0x" + "00" * 10, "0x" + "ff" * 100, "nothex"])
def test_decode_rejects_garbage(chain, raw):
    assert reason(chain.decode_tx, raw) == "MalformedTransaction"
    assert reason(chain.broadcast, raw) == "MalformedTransaction"


def test_replay_and_stale_nonce(funded):
    chain = funded
    raw_a, cid_a = chain.build_open_tx(PAYER, addr(PAYEE), 10, SALT, ZERO_ADDRESS)
    raw_b, _ = chain.build_open_tx(PAYER, addr(PAYEE), 10, "0x" + "01" * 32, ZERO_ADDRESS)  # same nonce
    chain.broadcast(raw_a)
    assert rejected(chain, chain.broadcast, raw_a) == "InvalidNonce"  # replay
    assert rejected(chain, chain.broadcast, raw_b) == "InvalidNonce"  # built before raw_a went in
    assert chain.get_channel(cid_a).deposit == 10


def test_a_reverting_transaction_uses_no_nonce(funded):
    chain = funded
    early = chain.build_topup_tx(PAYER, chain.compute_channel_id(addr(PAYER), addr(PAYEE), chain.token, SALT, ZERO_ADDRESS), 7)
    assert rejected(chain, chain.broadcast, early) == "ChannelNotFound"
    # the payer's nonce was not used, so the open built now has the same nonce as `early`
    cid = open_channel(chain)
    assert rejected(chain, chain.broadcast, early) == "InvalidNonce"
    chain.broadcast(chain.build_topup_tx(PAYER, cid, 7))
    assert chain.get_channel(cid).deposit == DEPOSIT + 7


def test_clock_moves_one_second_per_transaction(funded):
    chain = funded
    t0 = chain.now()
    cid = open_channel(chain)
    assert chain.now() == t0 + 1
    reason(chain.withdraw, PAYER, cid)
    assert chain.now() == t0 + 1  # a refused call mines nothing
    chain.advance_time(100)
    assert chain.now() == t0 + 101
    chain.advance_time(0)
    assert chain.now() == t0 + 101
    chain.request_close(PAYER, cid)
    assert chain.get_channel(cid).close_requested_at == t0 + 101
    assert chain.now() == t0 + 102


# ----------------------------------------------------------------------------- settle


def test_settle_pays_the_delta(funded):
    chain = funded
    cid = open_channel(chain)
    chain.settle(PAYEE, cid, 100, voucher(chain, PAYER, cid, 100))
    assert chain.get_channel(cid).settled == 100
    assert chain.balance_of(addr(PAYEE)) == 100
    chain.settle(PAYEE, cid, 250, voucher(chain, PAYER, cid, 250))
    assert chain.balance_of(addr(PAYEE)) == 250
    chain.settle(PAYEE, cid, DEPOSIT, voucher(chain, PAYER, cid, DEPOSIT))  # exactly the deposit
    assert chain.get_channel(cid).settled == DEPOSIT
    assert chain.balance_of(chain.escrow) == 0
    assert not chain.get_channel(cid).finalized
    assert_conserved(chain, [cid])


def test_settle_accepts_compact_signatures(funded):
    chain = funded
    cid = open_channel(chain)
    sig = sign_voucher(PAYER, domain(chain), cid, 100)
    chain.settle(PAYEE, cid, 100, bytes.fromhex(to_compact(sig)[2:]))
    assert chain.get_channel(cid).settled == 100


def test_settle_rejections(funded):
    chain = funded
    cid = open_channel(chain)
    good = voucher(chain, PAYER, cid, 100)
    assert rejected(chain, chain.settle, PAYER, cid, 100, good) == "NotPayee"
    assert rejected(chain, chain.settle, OTHER, cid, 100, good) == "NotPayee"
    assert rejected(chain, chain.settle, PAYEE, "0x" + "99" * 32, 100, good) == "ChannelNotFound"
    assert rejected(chain, chain.settle, PAYEE, cid, 100, voucher(chain, OTHER, cid, 100)) == "InvalidSignature"
    assert rejected(chain, chain.settle, PAYEE, cid, 100, voucher(chain, PAYEE, cid, 100)) == "InvalidSignature"
    assert rejected(chain, chain.settle, PAYEE, cid, 101, good) == "InvalidSignature"  # signed another amount
    other_cid = "0x" + "98" * 32
    assert rejected(chain, chain.settle, PAYEE, cid, 100, voucher(chain, PAYER, other_cid, 100)) == "InvalidSignature"
    foreign = VoucherDomain("v1", chain.chain_id, "0x" + "12" * 20)  # another escrow's domain
    sig = bytes.fromhex(sign_voucher(PAYER, foreign, cid, 100)[2:])
    assert rejected(chain, chain.settle, PAYEE, cid, 100, sig) == "InvalidSignature"


def test_settle_rejects_malleated_and_malformed_signatures(funded):
    chain = funded
    cid = open_channel(chain)
    good = voucher(chain, PAYER, cid, 100)
    high_s = bytes.fromhex(to_high_s(good)[2:])
    assert int.from_bytes(high_s[32:64], "big") > SECP256K1_N // 2
    assert rejected(chain, chain.settle, PAYEE, cid, 100, high_s) == "InvalidSignature"
    v01 = good[:64] + bytes([good[64] - 27])  # v as 0/1: the escrow takes only 27/28
    assert rejected(chain, chain.settle, PAYEE, cid, 100, v01) == "InvalidSignature"
    r_zero = bytes(32) + good[32:]
    s_zero = good[:32] + bytes(32) + good[64:]
    r_too_big = SECP256K1_N.to_bytes(32, "big") + good[32:]
    for bad in (b"", good[:63], good + b"\x00", bytes(65), r_zero, s_zero, r_too_big):
        assert rejected(chain, chain.settle, PAYEE, cid, 100, bad) == "InvalidSignature"
    chain.settle(PAYEE, cid, 100, good)  # and the good one still works


def test_settle_amount_rules(funded):
    chain = funded
    cid = open_channel(chain)
    assert rejected(chain, chain.settle, PAYEE, cid, DEPOSIT + 1, voucher(chain, PAYER, cid, DEPOSIT + 1)) == "AmountExceedsDeposit"
    assert rejected(chain, chain.settle, PAYEE, cid, 0, voucher(chain, PAYER, cid, 0)) == "AmountNotIncreasing"
    chain.settle(PAYEE, cid, 300, voucher(chain, PAYER, cid, 300))
    assert rejected(chain, chain.settle, PAYEE, cid, 300, voucher(chain, PAYER, cid, 300)) == "AmountNotIncreasing"
    assert rejected(chain, chain.settle, PAYEE, cid, 200, voucher(chain, PAYER, cid, 200)) == "AmountNotIncreasing"
    # the signature is checked before the amounts
    assert rejected(chain, chain.settle, PAYEE, cid, 200, voucher(chain, OTHER, cid, 200)) == "InvalidSignature"


def test_authorized_signer(funded):
    chain = funded
    cid = open_channel(chain, signer=SIGNER)
    assert rejected(chain, chain.settle, PAYEE, cid, 100, voucher(chain, PAYER, cid, 100)) == "InvalidSignature"
    chain.settle(PAYEE, cid, 100, voucher(chain, SIGNER, cid, 100))
    assert rejected(chain, chain.close, PAYEE, cid, 200, voucher(chain, PAYER, cid, 200)) == "InvalidSignature"
    chain.close(PAYEE, cid, 200, voucher(chain, SIGNER, cid, 200))
    assert chain.balance_of(addr(PAYEE)) == 200


# ------------------------------------------------------------------------------ topUp


def test_topup_adds_and_cancels_a_pending_close(funded):
    chain = funded
    cid = open_channel(chain)
    chain.request_close(PAYER, cid)
    assert chain.get_channel(cid).close_requested_at != 0
    chain.broadcast(chain.build_topup_tx(PAYER, cid, 500))
    ch = chain.get_channel(cid)
    assert (ch.deposit, ch.close_requested_at) == (DEPOSIT + 500, 0)
    assert chain.balance_of(chain.escrow) == DEPOSIT + 500
    chain.advance_time(chain.grace_period + 10)
    assert rejected(chain, chain.withdraw, PAYER, cid) == "CloseNotReady"  # the request is gone
    chain.request_close(PAYER, cid)  # and a new one may be made
    assert_conserved(chain, [cid])


def test_topup_rejections(funded):
    chain = funded
    cid = open_channel(chain)
    assert rejected(chain, chain.broadcast, chain.build_topup_tx(PAYEE, cid, 5)) == "NotPayer"
    assert rejected(chain, chain.broadcast, chain.build_topup_tx(PAYER, "0x" + "99" * 32, 5)) == "ChannelNotFound"
    assert rejected(chain, chain.broadcast, chain.build_topup_tx(PAYER, cid, 0)) == "TransferFailed"
    assert rejected(chain, chain.broadcast, chain.build_topup_tx(PAYER, cid, BALANCE)) == "TransferFailed"
    chain.close(PAYEE, cid, 0, voucher(chain, PAYER, cid, 0))
    assert rejected(chain, chain.broadcast, chain.build_topup_tx(PAYER, cid, 5)) == "ChannelFinalized"


def test_topup_past_uint128_panics(chain):
    chain.fund(PAYER, 2**129)
    chain.fund(PAYEE, 0)
    cid = open_channel(chain, deposit=UINT128_MAX - 5)
    assert rejected(chain, chain.broadcast, chain.build_topup_tx(PAYER, cid, 10)) == "Panic(0x11)"
    chain.broadcast(chain.build_topup_tx(PAYER, cid, 5))
    assert chain.get_channel(cid).deposit == UINT128_MAX


# ------------------------------------------------------------------------------ close


def test_close_v1_captures_the_voucher(funded):
    chain = funded
    cid = open_channel(chain)
    chain.settle(PAYEE, cid, 100, voucher(chain, PAYER, cid, 100))
    chain.close(PAYEE, cid, 400, voucher(chain, PAYER, cid, 400))
    ch = chain.get_channel(cid)
    assert (ch.settled, ch.finalized) == (400, True)
    assert chain.balance_of(addr(PAYEE)) == 400
    assert chain.balance_of(addr(PAYER)) == BALANCE - 400
    assert chain.balance_of(chain.escrow) == 0
    assert_conserved(chain, [cid])


def test_close_with_capture_below_the_voucher(funded):
    chain = funded
    cid = open_channel(chain)
    chain.settle(PAYEE, cid, 100, voucher(chain, PAYER, cid, 100))
    chain.close(PAYEE, cid, 900, voucher(chain, PAYER, cid, 900), capture_amount=350)
    ch = chain.get_channel(cid)
    assert (ch.deposit, ch.settled, ch.finalized) == (DEPOSIT, 350, True)
    assert chain.balance_of(addr(PAYEE)) == 350  # 100 settled + 250 captured at close
    assert chain.balance_of(addr(PAYER)) == BALANCE - 350  # refunded DEPOSIT - 350
    assert chain.balance_of(chain.escrow) == 0
    assert_conserved(chain, [cid])


def test_close_capturing_only_what_is_settled(funded):
    chain = funded
    cid = open_channel(chain)
    chain.settle(PAYEE, cid, 100, voucher(chain, PAYER, cid, 100))
    chain.close(PAYEE, cid, 100, voucher(chain, PAYER, cid, 100))  # no new money: refunds the rest
    assert chain.balance_of(addr(PAYEE)) == 100
    assert chain.balance_of(addr(PAYER)) == BALANCE - 100


def test_close_rejections(funded):
    chain = funded
    cid = open_channel(chain)
    chain.settle(PAYEE, cid, 300, voucher(chain, PAYER, cid, 300))
    v500 = voucher(chain, PAYER, cid, 500)
    assert rejected(chain, chain.close, PAYER, cid, 500, v500) == "NotPayee"
    assert rejected(chain, chain.close, OTHER, cid, 500, v500) == "NotPayee"
    assert rejected(chain, chain.close, PAYEE, "0x" + "99" * 32, 500, v500) == "ChannelNotFound"
    assert rejected(chain, chain.close, PAYEE, cid, 500, voucher(chain, OTHER, cid, 500)) == "InvalidSignature"
    assert rejected(chain, chain.close, PAYEE, cid, 500, bytes.fromhex(to_high_s(v500)[2:])) == "InvalidSignature"
    assert rejected(chain, chain.close, PAYEE, cid, 500, v500, capture_amount=501) == "AmountNotIncreasing"
    assert rejected(chain, chain.close, PAYEE, cid, 500, v500, capture_amount=299) == "AmountNotIncreasing"
    assert rejected(chain, chain.close, PAYEE, cid, 200, voucher(chain, PAYER, cid, 200)) == "AmountNotIncreasing"
    big = voucher(chain, PAYER, cid, DEPOSIT + 1)
    assert rejected(chain, chain.close, PAYEE, cid, DEPOSIT + 1, big) == "AmountExceedsDeposit"
    assert rejected(chain, chain.close, PAYEE, cid, DEPOSIT + 1, big, capture_amount=400) == "AmountExceedsDeposit"
    chain.close(PAYEE, cid, 500, v500, capture_amount=300)
    assert rejected(chain, chain.close, PAYEE, cid, 500, v500) == "ChannelFinalized"
    assert rejected(chain, chain.settle, PAYEE, cid, 500, v500) == "ChannelFinalized"


# ----------------------------------------------------------------------- forced close


def test_request_close_and_withdraw_after_the_grace_period(funded):
    chain = funded
    cid = open_channel(chain)
    chain.settle(PAYEE, cid, 100, voucher(chain, PAYER, cid, 100))
    assert rejected(chain, chain.withdraw, PAYER, cid) == "CloseNotReady"  # never requested
    t = chain.now()
    chain.request_close(PAYER, cid)
    assert chain.get_channel(cid).close_requested_at == t
    assert rejected(chain, chain.request_close, PAYER, cid) == "CloseAlreadyRequested"
    # the payee may still settle during the grace period
    chain.settle(PAYEE, cid, 200, voucher(chain, PAYER, cid, 200))
    chain.advance_time(t + chain.grace_period - 1 - chain.now())
    assert chain.now() == t + chain.grace_period - 1
    assert rejected(chain, chain.withdraw, PAYER, cid) == "CloseNotReady"
    chain.advance_time(1)
    assert rejected(chain, chain.withdraw, PAYEE, cid) == "NotPayer"
    assert rejected(chain, chain.withdraw, OTHER, cid) == "NotPayer"
    chain.withdraw(PAYER, cid)
    ch = chain.get_channel(cid)
    assert (ch.settled, ch.finalized) == (200, True)
    assert chain.balance_of(addr(PAYER)) == BALANCE - 200
    assert chain.balance_of(addr(PAYEE)) == 200
    assert rejected(chain, chain.withdraw, PAYER, cid) == "ChannelFinalized"
    assert rejected(chain, chain.settle, PAYEE, cid, 300, voucher(chain, PAYER, cid, 300)) == "ChannelFinalized"
    assert rejected(chain, chain.request_close, PAYER, cid) == "ChannelFinalized"
    assert_conserved(chain, [cid])


def test_request_close_rejections(funded):
    chain = funded
    cid = open_channel(chain)
    assert rejected(chain, chain.request_close, PAYEE, cid) == "NotPayer"
    assert rejected(chain, chain.request_close, PAYER, "0x" + "99" * 32) == "ChannelNotFound"
    assert rejected(chain, chain.withdraw, PAYER, "0x" + "99" * 32) == "ChannelNotFound"


def test_payee_can_close_during_the_grace_period(funded):
    chain = funded
    cid = open_channel(chain)
    chain.request_close(PAYER, cid)
    chain.advance_time(chain.grace_period * 2)  # even after it, until the payer withdraws
    chain.close(PAYEE, cid, 700, voucher(chain, PAYER, cid, 700), capture_amount=600)
    assert chain.balance_of(addr(PAYEE)) == 600
    assert rejected(chain, chain.withdraw, PAYER, cid) == "ChannelFinalized"


def test_reset_returns_to_a_fresh_chain(funded):
    chain = funded
    cid = open_channel(chain)
    chain.reset()
    assert not chain.get_channel(cid).exists
    assert chain.balance_of(addr(PAYER)) == 0 and chain.total_supply() == 0
    assert chain.nonce_of(addr(PAYER)) == 0


# ---------------------------------------------------------- both backends agree


def _random_run(chain, seed: int, steps: int) -> tuple[list, list]:
    """A seeded walk that mostly picks the right caller and signer, and sometimes the wrong one."""
    rng = random.Random(seed)
    keys = [PAYER, PAYEE, SIGNER, OTHER]
    by_addr = {addr(k): k for k in keys}
    for k in keys:
        chain.fund(k, 20_000)
    cids: list[str] = []
    outcomes: list = []
    for step in range(steps):
        op = rng.choice(["open", "open", "topup", "settle", "settle", "settle", "close", "request", "withdraw", "time"])
        live = [c for c in cids if not chain.get_channel(c).finalized]
        roll = rng.random()
        if live and roll < 0.85:
            cid = rng.choice(live)
        elif cids and roll < 0.97:
            cid = rng.choice(cids)
        else:
            cid = "0x" + "aa" * 32
        ch = chain.get_channel(cid)
        payer = by_addr.get(ch.payer, PAYER) if rng.random() < 0.8 else rng.choice(keys)
        payee = by_addr.get(ch.payee, PAYEE) if rng.random() < 0.8 else rng.choice(keys)
        signer = by_addr.get(ch.expected_signer, PAYER) if rng.random() < 0.8 else rng.choice(keys)
        amount = max(0, ch.settled + rng.choice([-10, 0, 1, 50, 200, 1_000, 3_000]))
        try:
            if op == "open":
                salt = "0x" + rng.randrange(6).to_bytes(32, "big").hex()
                deposit = rng.choice([0, 100, 1_000, 2_000, 6_000])
                raw, new = chain.build_open_tx(rng.choice(keys), addr(rng.choice(keys)), deposit, salt, rng.choice([ZERO_ADDRESS, addr(SIGNER)]))
                chain.broadcast(raw)
                cids.append(new)
            elif op == "topup":
                chain.broadcast(chain.build_topup_tx(payer, cid, rng.choice([0, 10, 500, 9_000])))
            elif op == "settle":
                chain.settle(payee, cid, amount, voucher(chain, signer, cid, amount))
            elif op == "close":
                capture = rng.choice([None, None, ch.settled, (ch.settled + amount) // 2, amount + 1])
                chain.close(payee, cid, amount, voucher(chain, signer, cid, amount), capture_amount=capture)
            elif op == "request":
                chain.request_close(payer, cid)
            elif op == "withdraw":
                chain.withdraw(payer, cid)
            else:
                chain.advance_time(rng.choice([1, 300, 900, 901]))
            outcomes.append((step, op, "ok"))
        except ChainError as exc:
            outcomes.append((step, op, exc.reason))
    states = [attrs_tuple(chain.get_channel(c)) for c in cids]
    balances = [chain.balance_of(addr(k)) for k in keys] + [chain.balance_of(chain.escrow)]
    assert_conserved(chain, cids)
    return outcomes, states + balances


def attrs_tuple(ch) -> tuple:
    role = {addr(k): i for i, k in enumerate((PAYER, PAYEE, SIGNER, OTHER))}
    return (role.get(ch.payer), role.get(ch.payee), role.get(ch.authorized_signer, ch.authorized_signer),
            ch.deposit, ch.settled, ch.close_requested_at != 0, ch.finalized)


@pytest.mark.parametrize("seed", [3, 5])
def test_memory_and_evm_agree_call_for_call(seed):
    evm = _evm_chain()
    evm.reset()
    mem = make_chain("memory")
    got_mem = _random_run(mem, seed, 80)
    got_evm = _random_run(evm, seed, 80)
    assert got_mem[0] == got_evm[0]
    assert got_mem[1] == got_evm[1]
    assert {o[2] for o in got_mem[0]} & {"ok"}  # something went through


def test_memory_and_rpc_agree_call_for_call(rpc_chain):
    rpc_chain.reset()
    got_mem = _random_run(make_chain("memory"), 7, 60)
    got_rpc = _random_run(rpc_chain, 7, 60)
    assert got_mem[0] == got_rpc[0]
    assert got_mem[1] == got_rpc[1]
