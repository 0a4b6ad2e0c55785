"""One behaviour suite for every v2 chain backend (the TIP-20 channel escrow precompile).

The same tests run on each backend in BACKENDS_V2: descriptor-derived ids,
uint96 bounds, the v2 voucher domain, the operator, every revert reason and
forced close with its grace period; plus the deployment seam.
"""
from __future__ import annotations

import attrs
import pytest

from adapters.chain import BACKENDS_V2, ChainError, ChannelDescriptor, make_chain
from adapters.chain._common import PRECOMPILE_ESCROW, UINT96_MAX, address_of_key, compute_channel_id_v2
from adapters.chain.base import ZERO_ADDRESS, ChainV2
from adapters.chain.deployment import deployment_of
from wire.crypto import VoucherDomain, sign_voucher, voucher_digest

PAYER = bytes.fromhex("11" * 32)
PAYEE = bytes.fromhex("22" * 32)
SIGNER = bytes.fromhex("33" * 32)
OTHER = bytes.fromhex("44" * 32)
OPERATOR = bytes.fromhex("55" * 32)
SALT = "0x" + "5a" * 32
DEPOSIT = 1_000_000
BALANCE = 10_000_000
KEYS = (PAYER, PAYEE, SIGNER, OTHER, OPERATOR)

_shared: dict[str, object] = {}


@pytest.fixture(params=BACKENDS_V2)
def chain(request) -> ChainV2:
    """memory-v2 fresh per test; evm-v2 deployed once per module and reset (it is slow to deploy)."""
    if request.param.startswith("memory"):
        return make_chain(request.param)
    return _evm_v2()


def _evm_v2():
    """The module's one evm-v2 chain, reset to its freshly deployed state."""
    c = _shared.get("evm-v2")
    if c is None:
        c = _shared["evm-v2"] = make_chain("evm-v2")
    c.reset()
    return c


@pytest.fixture
def funded(chain):
    chain.fund(PAYER, BALANCE)
    for key in KEYS[1:]:
        chain.fund(key, 0)
    return chain


def addr(key: bytes) -> str:
    return address_of_key(key)


def v2_voucher(chain, key: bytes, cid: str, amount: int) -> bytes:
    return bytes.fromhex(sign_voucher(key, VoucherDomain("v2", chain.chain_id, chain.escrow), cid, amount)[2:])


def open_channel(chain, deposit=DEPOSIT, signer: bytes | None = None, operator: bytes | None = None):
    raw, d = chain.build_open_tx(
        PAYER, addr(PAYEE), deposit, SALT, addr(signer) if signer else ZERO_ADDRESS, addr(operator) if operator else ZERO_ADDRESS
    )
    chain.broadcast(raw)
    return d, chain.compute_channel_id(d)


def reason(fn, *args) -> str:
    with pytest.raises(ChainError) as info:
        fn(*args)
    return info.value.reason


def snapshot(chain, cids=()) -> tuple:
    return (
        chain.now(),
        tuple(chain.balance_of(addr(k)) for k in KEYS),
        chain.balance_of(chain.escrow),
        tuple(chain.nonce_of(addr(k)) for k in KEYS),
        tuple(chain.get_channel(c) for c in cids),
    )


def rejected(chain, fn, *args) -> str:
    """The reason of a call that must change nothing."""
    before = snapshot(chain)
    r = reason(fn, *args)
    assert snapshot(chain) == before, f"a rejected call ({r}) changed the chain"
    return r


# ------------------------------------------------------------------ set-up and the seam


def test_backend_shape_and_deployment(chain):
    assert isinstance(chain, ChainV2)
    assert chain.escrow == PRECOMPILE_ESCROW  # mppx's default escrow: no allowCustomEscrow needed
    dep = deployment_of(chain)
    assert dep.protocol == "v2"
    assert dep.domain == VoucherDomain("v2", chain.chain_id, PRECOMPILE_ESCROW)
    assert dep.domain.name == "TIP20 Channel Reserve"
    assert dep.max_amount == 2**96 - 1
    with pytest.raises(ValueError, match="v2 deployment"):
        dep.channel_id_v1(addr(PAYER), addr(PAYEE), chain.token, SALT, ZERO_ADDRESS)


def test_deployment_of_v1_backend():
    dep = deployment_of(make_chain("memory"))
    assert dep.protocol == "v1" and dep.max_amount == 2**128 - 1
    assert dep.domain.name == "Tempo Stream Channel"
    with pytest.raises(ValueError, match="v1 deployment"):
        dep.channel_id_v2(ChannelDescriptor(*([ZERO_ADDRESS] * 4), SALT, ZERO_ADDRESS, SALT))


def test_channel_id_is_the_descriptor_formula(funded):
    d, cid = open_channel(funded, operator=OPERATOR)
    assert cid == compute_channel_id_v2(d, funded.escrow, funded.chain_id)
    assert d.payer == addr(PAYER) and d.payee == addr(PAYEE) and d.operator == addr(OPERATOR)
    assert d.token == funded.token and d.salt == SALT and d.authorized_signer == ZERO_ADDRESS
    state = funded.get_channel(cid)
    assert state.descriptor == d
    assert (state.deposit, state.settled, state.close_requested_at, state.finalized) == (DEPOSIT, 0, 0, False)
    # any one field changed names another channel
    for field in ("payee", "operator", "token", "authorized_signer"):
        other = attrs.evolve(d, **{field: addr(OTHER)})
        assert funded.compute_channel_id(other) != cid
    assert funded.compute_channel_id(attrs.evolve(d, salt="0x" + "00" * 32)) != cid
    assert funded.compute_channel_id(attrs.evolve(d, expiring_nonce_hash="0x" + "00" * 32)) != cid


def test_the_same_open_twice_makes_two_channels(funded):
    """The expiringNonceHash differs per open, so the same arguments give a fresh id."""
    d1, c1 = open_channel(funded)
    d2, c2 = open_channel(funded)
    assert c1 != c2 and d1.expiring_nonce_hash != d2.expiring_nonce_hash
    assert funded.balance_of(funded.escrow) == 2 * DEPOSIT


def test_voucher_digest_is_the_v2_domain(chain):
    cid = "0x" + "11" * 32
    assert chain.voucher_digest(cid, 250_000) == voucher_digest(VoucherDomain("v2", chain.chain_id, chain.escrow), cid, 250_000)


def test_open_rejections(funded):
    assert rejected(funded, funded.broadcast, funded.build_open_tx(PAYER, addr(PAYEE), 0, SALT, ZERO_ADDRESS)[0]) == "TransferFailed"
    assert rejected(funded, funded.broadcast, funded.build_open_tx(PAYER, addr(PAYEE), BALANCE + 1, SALT, ZERO_ADDRESS)[0]) == "TransferFailed"
    assert reason(funded.build_open_tx, PAYER, addr(PAYEE), UINT96_MAX + 1, SALT, ZERO_ADDRESS) == "InvalidArgument"


def test_decode_open_and_topup(funded):
    raw, d = funded.build_open_tx(PAYER, addr(PAYEE), DEPOSIT, SALT, addr(SIGNER), addr(OPERATOR))
    tx = funded.decode_tx(raw)
    assert (tx.kind, tx.sender, tx.to, tx.amount, tx.descriptor) == ("open", addr(PAYER), funded.escrow, DEPOSIT, d)
    assert tx.channel_id == funded.compute_channel_id(d)
    funded.broadcast(raw)
    assert reason(funded.broadcast, raw) == "InvalidNonce"  # a replay
    tx = funded.decode_tx(funded.build_topup_tx(PAYER, d, 5))
    assert (tx.kind, tx.channel_id, tx.amount, tx.descriptor) == ("topUp", funded.compute_channel_id(d), 5, d)


def test_an_included_open_decodes_as_the_channel_it_created(funded):
    """The stand-in expiringNonceHash reads the payer's opens, which the open itself raises: decoding the same
    transaction again after it was mined must still name the channel it created (a server sent the same open
    credential again after a crash finds the payer's deposit; FINDINGS 'Stale hints', CR on memory-v2), while
    an open not yet sent decodes with the next stand-in hash."""
    raw, d = funded.build_open_tx(PAYER, addr(PAYEE), DEPOSIT, SALT, addr(SIGNER))
    funded.broadcast(raw)
    cid = funded.compute_channel_id(d)
    tx = funded.decode_tx(raw)
    assert (tx.descriptor, tx.channel_id) == (d, cid) and funded.get_channel(cid).deposit == DEPOSIT
    raw2, d2 = funded.build_open_tx(PAYER, addr(PAYEE), DEPOSIT, SALT, addr(SIGNER))
    assert funded.decode_tx(raw2).descriptor == d2 != d


# --------------------------------------------------------------------- settle and close


def test_settle_pays_the_delta_to_the_payee(funded):
    d, cid = open_channel(funded)
    funded.settle(PAYEE, d, 300, v2_voucher(funded, PAYER, cid, 300))
    funded.settle(PAYEE, d, 500, v2_voucher(funded, PAYER, cid, 500))
    assert funded.balance_of(addr(PAYEE)) == 500
    assert funded.get_channel(cid).settled == 500


def test_settle_rejections(funded):
    d, cid = open_channel(funded)
    good = v2_voucher(funded, PAYER, cid, 300)
    assert rejected(funded, funded.settle, OTHER, d, 300, good) == "NotPayee"
    assert rejected(funded, funded.settle, PAYER, d, 300, good) == "NotPayee"
    assert rejected(funded, funded.settle, PAYEE, d, 301, good) == "InvalidSignature"
    assert rejected(funded, funded.settle, PAYEE, d, 300, v2_voucher(funded, OTHER, cid, 300)) == "InvalidSignature"
    assert rejected(funded, funded.settle, PAYEE, d, DEPOSIT + 1, v2_voucher(funded, PAYER, cid, DEPOSIT + 1)) == "AmountExceedsDeposit"
    funded.settle(PAYEE, d, 300, good)
    assert rejected(funded, funded.settle, PAYEE, d, 300, good) == "AmountNotIncreasing"
    assert rejected(funded, funded.settle, PAYEE, d, 0, v2_voucher(funded, PAYER, cid, 0)) == "AmountNotIncreasing"
    assert reason(funded.settle, PAYEE, d, UINT96_MAX + 1, good) == "InvalidArgument"


def test_descriptor_mismatch_is_channel_not_found(funded):
    d, cid = open_channel(funded)
    wrong = attrs.evolve(d, salt="0x" + "00" * 32)
    sig = v2_voucher(funded, PAYER, cid, 300)
    assert rejected(funded, funded.settle, PAYEE, wrong, 300, sig) == "ChannelNotFound"
    assert rejected(funded, funded.close, PAYEE, wrong, 300, 300, sig) == "ChannelNotFound"
    assert rejected(funded, funded.broadcast, funded.build_topup_tx(PAYER, wrong, 5)) == "ChannelNotFound"
    assert rejected(funded, funded.request_close, PAYER, wrong) == "ChannelNotFound"
    assert rejected(funded, funded.withdraw, PAYER, wrong) == "ChannelNotFound"


def test_v1_vouchers_are_rejected_and_v2_vouchers_are_not_v1(funded):
    d, cid = open_channel(funded)
    v1 = bytes.fromhex(sign_voucher(PAYER, VoucherDomain("v1", funded.chain_id, funded.escrow), cid, 300)[2:])
    assert rejected(funded, funded.settle, PAYEE, d, 300, v1) == "InvalidSignature"
    v1_chain = make_chain("memory", escrow=funded.escrow)  # a v1 escrow at the same address
    v1_chain.fund(PAYER, BALANCE)
    v1_chain.fund(PAYEE, 0)
    raw, v1_cid = v1_chain.build_open_tx(PAYER, addr(PAYEE), DEPOSIT, SALT, ZERO_ADDRESS)
    v1_chain.broadcast(raw)
    v2_sig = v2_voucher(v1_chain, PAYER, v1_cid, 300)
    assert reason(v1_chain.settle, PAYEE, v1_cid, 300, v2_sig) == "InvalidSignature"


def test_authorized_signer(funded):
    d, cid = open_channel(funded, signer=SIGNER)
    assert rejected(funded, funded.settle, PAYEE, d, 300, v2_voucher(funded, PAYER, cid, 300)) == "InvalidSignature"
    funded.settle(PAYEE, d, 300, v2_voucher(funded, SIGNER, cid, 300))


def test_operator_may_settle_and_close_for_the_payee(funded):
    d, cid = open_channel(funded, operator=OPERATOR)
    funded.settle(OPERATOR, d, 300, v2_voucher(funded, PAYER, cid, 300))
    funded.close(OPERATOR, d, 600, 400, v2_voucher(funded, PAYER, cid, 600))
    assert funded.balance_of(addr(PAYEE)) == 400  # settlement goes to the payee, not the operator
    assert funded.balance_of(addr(OPERATOR)) == 0
    assert funded.balance_of(addr(PAYER)) == BALANCE - 400
    # without an operator nobody but the payee may
    d2, cid2 = open_channel(funded)
    assert rejected(funded, funded.settle, OPERATOR, d2, 300, v2_voucher(funded, PAYER, cid2, 300)) == "NotPayee"


def test_close_captures_and_refunds(funded):
    d, cid = open_channel(funded)
    funded.settle(PAYEE, d, 100, v2_voucher(funded, PAYER, cid, 100))
    funded.close(PAYEE, d, 900, 250, v2_voucher(funded, PAYER, cid, 900))
    st = funded.get_channel(cid)
    assert (st.finalized, st.settled) == (True, 250)
    assert funded.balance_of(addr(PAYEE)) == 250
    assert funded.balance_of(addr(PAYER)) == BALANCE - 250
    assert funded.balance_of(funded.escrow) == 0
    assert rejected(funded, funded.settle, PAYEE, d, 950, v2_voucher(funded, PAYER, cid, 950)) == "ChannelFinalized"


def test_close_rejections(funded):
    d, cid = open_channel(funded)
    funded.settle(PAYEE, d, 100, v2_voucher(funded, PAYER, cid, 100))
    sig = v2_voucher(funded, PAYER, cid, 500)
    assert rejected(funded, funded.close, OTHER, d, 500, 500, sig) == "NotPayee"
    assert rejected(funded, funded.close, PAYEE, d, 501, 500, sig) == "InvalidSignature"
    big = v2_voucher(funded, PAYER, cid, DEPOSIT + 1)
    assert rejected(funded, funded.close, PAYEE, d, DEPOSIT + 1, 500, big) == "AmountExceedsDeposit"
    assert rejected(funded, funded.close, PAYEE, d, 500, 99, sig) == "AmountNotIncreasing"  # below settled
    assert rejected(funded, funded.close, PAYEE, d, 500, 501, sig) == "AmountNotIncreasing"  # above the voucher
    assert reason(funded.close, PAYEE, d, 500, UINT96_MAX + 1, sig) == "InvalidArgument"


# ------------------------------------------------------------------- topUp and forced close


def test_topup_adds_and_cancels_a_pending_close(funded):
    d, cid = open_channel(funded)
    funded.request_close(PAYER, d)
    assert funded.get_channel(cid).close_requested_at != 0
    funded.broadcast(funded.build_topup_tx(PAYER, d, 500))
    st = funded.get_channel(cid)
    assert (st.deposit, st.close_requested_at) == (DEPOSIT + 500, 0)


def test_topup_rejections(funded):
    d, cid = open_channel(funded)
    assert rejected(funded, funded.broadcast, funded.build_topup_tx(OTHER, d, 5)) == "NotPayer"
    assert rejected(funded, funded.broadcast, funded.build_topup_tx(PAYER, d, 0)) == "TransferFailed"
    assert rejected(funded, funded.broadcast, funded.build_topup_tx(PAYER, d, BALANCE)) == "TransferFailed"
    assert reason(funded.build_topup_tx, PAYER, d, UINT96_MAX + 1) == "InvalidArgument"


def test_topup_past_uint96_panics(chain):
    chain.fund(PAYER, 2**97)
    chain.fund(PAYEE, 0)
    raw, d = chain.build_open_tx(PAYER, addr(PAYEE), UINT96_MAX, SALT, ZERO_ADDRESS)
    chain.broadcast(raw)
    assert rejected(chain, chain.broadcast, chain.build_topup_tx(PAYER, d, 1)) == "Panic(0x11)"


def test_request_close_and_withdraw_after_the_grace_period(funded):
    d, cid = open_channel(funded)
    funded.settle(PAYEE, d, 100, v2_voucher(funded, PAYER, cid, 100))
    assert rejected(funded, funded.withdraw, PAYER, d) == "CloseNotReady"
    assert rejected(funded, funded.request_close, OTHER, d) == "NotPayer"
    assert rejected(funded, funded.request_close, PAYEE, d) == "NotPayer"
    funded.request_close(PAYER, d)
    assert rejected(funded, funded.request_close, PAYER, d) == "CloseAlreadyRequested"
    requested = funded.get_channel(cid).close_requested_at
    funded.advance_time(funded.grace_period - (funded.now() - requested) - 1)
    assert rejected(funded, funded.withdraw, PAYER, d) == "CloseNotReady"
    # the payee can still settle during the grace period
    funded.settle(PAYEE, d, 200, v2_voucher(funded, PAYER, cid, 200))
    assert rejected(funded, funded.withdraw, OTHER, d) == "NotPayer"
    funded.withdraw(PAYER, d)
    st = funded.get_channel(cid)
    assert st.finalized and funded.balance_of(addr(PAYER)) == BALANCE - 200
    assert rejected(funded, funded.withdraw, PAYER, d) == "ChannelFinalized"


def test_unknown_channel(funded):
    d = ChannelDescriptor(addr(PAYER), addr(PAYEE), ZERO_ADDRESS, funded.token, SALT, ZERO_ADDRESS, SALT)
    assert not funded.get_channel(funded.compute_channel_id(d)).exists
    assert rejected(funded, funded.request_close, PAYER, d) == "ChannelNotFound"


# ------------------------------------------------------------------ against mppx's numbers


def test_mppx_v2_vector_settles_on_memory_v2():
    """mppx 0.11's v2 test vector (mppx-0.11-notes.md: chainId 4217, verifyingContract = the
    precompile): our digest is its digest, and its signature is accepted by the escrow."""
    chain = make_chain("memory-v2", chain_id=4217)
    key = bytes.fromhex("0123456789012345678901234567890123456789012345678901234567890123")
    cid = "0x" + "11" * 32
    assert chain.voucher_digest(cid, 250_000).hex() == "0193b8672e0f544be6f54b83a14309a668c03f8d19d9b32e1a1dc49932f44122"
    mppx_sig = bytes.fromhex(
        "c3dc8b626b69f76eaab05513a296b6cbc1642c04fef052b14a704cada58f1d21"
        "3cf9505f9af29c1d9240ace5f5ada6c9c19964bdba0d9d5e34697ad4530a669b1b"
    )
    chain.fund(key, BALANCE)
    chain.fund(PAYEE, 0)
    raw, d = chain.build_open_tx(key, addr(PAYEE), DEPOSIT, SALT, ZERO_ADDRESS)
    chain.broadcast(raw)
    real = chain.compute_channel_id(d)
    # the vector's channel id is not ours, so its signature is for another channel ...
    assert reason(chain.settle, PAYEE, d, 250_000, mppx_sig) == "InvalidSignature"
    # ... and the signature our signer makes for the vector's channel is mppx's
    assert v2_voucher(chain, key, cid, 250_000) == mppx_sig
    chain.settle(PAYEE, d, 250_000, v2_voucher(chain, key, real, 250_000))


def test_evm_v2_answers_mppx_reads():
    """getChannelState, the read mppx makes, agrees with get_channel; the code is at the precompile address."""
    chain = _evm_v2()
    chain.fund(PAYER, BALANCE)
    chain.fund(PAYEE, 0)
    d, cid = open_channel(chain)
    chain.settle(PAYEE, d, 7, v2_voucher(chain, PAYER, cid, 7))
    chain.request_close(PAYER, d)
    st = chain.get_channel(cid)
    ((settled, deposit, requested),) = chain._view(
        chain.escrow, "getChannelState(bytes32)", ["bytes32"], [bytes.fromhex(cid[2:])], ["(uint96,uint96,uint32)"]
    )
    assert (settled, deposit, requested) == (st.settled, st.deposit, st.close_requested_at) == (7, DEPOSIT, st.close_requested_at)
    assert requested > 0
    assert chain.w3.eth.get_code(chain.escrow) != b""  # the code really is at the precompile address


@pytest.mark.parametrize("seed", [1, 2])
def test_memory_v2_and_evm_v2_agree_call_for_call(seed):
    import random

    rng = random.Random(seed)
    chains = [make_chain("memory-v2"), _evm_v2()]
    for c in chains:
        c.fund(PAYER, BALANCE)
        for k in KEYS[1:]:
            c.fund(k, 0)
    descs: list = [[] for _ in chains]
    succeeded = 0
    for _ in range(30):
        op = rng.choice(["open", "topUp", "settle", "close", "requestClose", "withdraw", "wait"])
        who = rng.choice([PAYER, PAYEE, OPERATOR, OTHER])
        amount = rng.choice([0, 1, 500, DEPOSIT, DEPOSIT + 1])
        pick = rng.randrange(4)
        voucher_key = rng.choice([PAYER, PAYER, OTHER])
        wait = rng.choice([1, 600, 901])
        outcomes = []
        for i, c in enumerate(chains):
            d = descs[i][pick % len(descs[i])] if descs[i] else None
            try:
                if op == "open":
                    raw, nd = c.build_open_tx(PAYER, addr(PAYEE), amount, SALT, ZERO_ADDRESS, addr(OPERATOR) if pick % 2 else ZERO_ADDRESS)
                    c.broadcast(raw)
                    descs[i].append(nd)
                elif d is None:
                    outcomes.append("none")
                    continue
                elif op == "topUp":
                    c.broadcast(c.build_topup_tx(who, d, amount))
                elif op in ("settle", "close"):
                    cid = c.compute_channel_id(d)
                    sig = v2_voucher(c, voucher_key, cid, amount)
                    if op == "settle":
                        c.settle(who, d, amount, sig)
                    else:
                        c.close(who, d, amount, amount // 2, sig)
                elif op == "requestClose":
                    c.request_close(who, d)
                elif op == "withdraw":
                    c.withdraw(who, d)
                else:
                    c.advance_time(wait)
                outcomes.append("ok")
            except ChainError as exc:
                outcomes.append(exc.reason)
        assert outcomes[0] == outcomes[1], (op, outcomes)
        succeeded += outcomes[0] == "ok"
    def states(c, ds):  # what does not depend on the backend's addresses and clock
        return [(st.deposit, st.settled, st.finalized, st.close_requested_at != 0) for st in (c.get_channel(c.compute_channel_id(d)) for d in ds)]

    assert states(chains[0], descs[0]) == states(chains[1], descs[1])
    assert len(descs[0]) > 0 and succeeded >= 5, succeeded
    assert [chains[0].balance_of(addr(k)) for k in KEYS] == [chains[1].balance_of(addr(k)) for k in KEYS]
