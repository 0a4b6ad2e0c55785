"""The escrow on chain (draft, "Channel Escrow Contract" v1, and the v2 precompile).

The chain is the one party both sides trust: it holds deposits, checks voucher
signatures (here: the recovered signer), and moves tokens. Amounts are ints;
`time` is the chain clock, which only the system's `advance_time` moves.

One set of rules serves both deployments (draft, "Protocol Versions"); what v2
changes is data, not code paths: `Chain.max_amount` is 2^96-1 instead of
2^128-1 (a deposit or top-up past it is `Panic(0x11)`, a voucher or capture past
it is `InvalidArgument`), a channel may name an `operator` who settles and closes
for the payee, and a v2 channel id is not assigned by the escrow but derived from
its descriptor (`Descriptor`, `descriptor_channel_id`; rule E1b). Close always
takes the capture (rule E4) on both.
"""
from __future__ import annotations

import attrs

from .base import FrozenMap, Rejected, fm_get, fm_set, fm_values
from .base import UINT96_MAX, UINT128_MAX, keccak
from .records import Voucher

CLOSE_GRACE_PERIOD = 15 * 60  # draft, "requestClose": at least 15 minutes
MAX_AMOUNT = {"v1": UINT128_MAX, "v2": UINT96_MAX}  # draft: uint128 (v1), uint96 (v2, "Precompile-Backed Channel State")
ZERO_ADDRESS = "0x" + "00" * 20


@attrs.frozen
class Descriptor:
    """A v2 channel descriptor (draft, "Channel Descriptor"): lowercase 0x-hex fields, the zero address for
    an unset operator or authorized signer."""

    payer: str
    payee: str
    operator: str
    token: str
    salt: str
    authorized_signer: str
    expiring_nonce_hash: str

    @property
    def signer(self) -> str:
        return self.payer if self.authorized_signer == ZERO_ADDRESS else self.authorized_signer


def _word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def descriptor_channel_id(d: Descriptor, escrow: str, chain_id: int) -> str:
    """Rule E1b (draft, "Channel Descriptor"): keccak256(abi.encode(payer, payee, operator, token, salt,
    authorizedSigner, expiringNonceHash, escrow, chainId)). A descriptor that differs in any field names
    another channel."""
    return "0x" + keccak(
        _word(d.payer) + _word(d.payee) + _word(d.operator) + _word(d.token) + bytes.fromhex(d.salt[2:])
        + _word(d.authorized_signer) + bytes.fromhex(d.expiring_nonce_hash[2:]) + _word(escrow)
        + chain_id.to_bytes(32, "big")
    ).hex()


@attrs.frozen
class EscrowChannel:
    """One channel's on-chain record (draft, "Contract-Backed Channel State")."""

    channel_id: str
    payer: str
    payee: str
    signer: str  # authorizedSigner, or the payer when none was given
    deposit: int
    settled: int = 0
    close_requested_at: int = 0
    finalized: bool = False
    operator: str | None = None  # v2: may settle and close for the payee (None: no operator)


@attrs.frozen
class Chain:
    channels: FrozenMap = ()  # channel_id -> EscrowChannel
    balances: FrozenMap = ()  # address -> token balance
    time: int = 1
    used_txs: frozenset = frozenset()  # signed client transactions already applied (their nonce)
    max_amount: int = UINT128_MAX  # the deployment's amount bound: MAX_AMOUNT["v1"] or MAX_AMOUNT["v2"]

    def channel(self, channel_id: str) -> EscrowChannel | None:
        return fm_get(self.channels, channel_id)

    def balance(self, address: str) -> int:
        return fm_get(self.balances, address, 0)

    def total_tokens(self) -> int:
        """Tokens in wallets plus tokens held in escrow (what property S5, conservation, counts)."""
        held = sum(c.deposit - c.settled for c in fm_values(self.channels) if not c.finalized)
        return sum(v for _, v in self.balances) + held


def _transfer(chain: Chain, frm: str | None, to: str | None, amount: int) -> Chain:
    balances = chain.balances
    if frm is not None:
        balances = fm_set(balances, frm, fm_get(balances, frm, 0) - amount)
    if to is not None:
        balances = fm_set(balances, to, fm_get(balances, to, 0) + amount)
    return attrs.evolve(chain, balances=balances)


def _put(chain: Chain, ch: EscrowChannel) -> Chain:
    return attrs.evolve(chain, channels=fm_set(chain.channels, ch.channel_id, ch))


def mint(chain: Chain, address: str, amount: int) -> Chain:
    """Test set-up: give `address` tokens."""
    return _transfer(chain, None, address, amount)


def open_channel(chain: Chain, caller: str, channel_id: str, payee: str, deposit: int,
                 signer: str | None = None, operator: str | None = None) -> Chain | Rejected:
    """Rule E1 (draft "open"): anyone opens; the caller becomes payer and escrows `deposit`
    (rule E7: at most the deployment's bound, else the escrow's `Panic(0x11)`)."""
    if chain.channel(channel_id) is not None:
        return Rejected("ChannelAlreadyExists", "E1")
    if deposit > chain.max_amount:
        return Rejected("Panic(0x11)", "E1", f"deposit above {chain.max_amount}")
    if deposit <= 0 or chain.balance(caller) < deposit:
        return Rejected("TransferFailed", "E1", "deposit not covered by the payer's balance")
    ch = EscrowChannel(channel_id, caller, payee, signer or caller, deposit, operator=operator)
    return _put(_transfer(chain, caller, None, deposit), ch)


def open_descriptor(chain: Chain, caller: str, d: Descriptor, deposit: int, escrow: str,
                    chain_id: int) -> tuple[Chain, str] | Rejected:
    """Rules E1 and E1b (v2 "open"): the channel id is the descriptor's; the caller is its payer."""
    if caller != d.payer:
        return Rejected("NotPayer", "E1b", "the descriptor's payer is not the caller")
    cid = descriptor_channel_id(d, escrow, chain_id)
    operator = None if d.operator == ZERO_ADDRESS else d.operator
    opened = open_channel(chain, caller, cid, d.payee, deposit, d.signer, operator)
    return opened if isinstance(opened, Rejected) else (opened, cid)


def _live(chain: Chain, channel_id: str) -> EscrowChannel | Rejected:
    ch = chain.channel(channel_id)
    if ch is None:
        return Rejected("ChannelNotFound", "E0")
    if ch.finalized:
        return Rejected("ChannelFinalized", "E0")
    return ch


def top_up(chain: Chain, caller: str, channel_id: str, amount: int) -> Chain | Rejected:
    """Rule E2 (draft "topUp"): payer only; adds deposit and cancels a pending close."""
    ch = _live(chain, channel_id)
    if isinstance(ch, Rejected):
        return ch
    if caller != ch.payer:
        return Rejected("NotPayer", "E2")
    if ch.deposit + amount > chain.max_amount:
        return Rejected("Panic(0x11)", "E2", f"deposit would exceed {chain.max_amount}")
    if amount <= 0 or chain.balance(caller) < amount:
        return Rejected("TransferFailed", "E2")
    ch = attrs.evolve(ch, deposit=ch.deposit + amount, close_requested_at=0)
    return _put(_transfer(chain, caller, None, amount), ch)


def _check_voucher(ch: EscrowChannel, v: Voucher, rule: str) -> Rejected | None:
    """The escrow's own voucher checks (draft, "Signature Verification")."""
    if v.channel_id != ch.channel_id or v.signer != ch.signer:
        return Rejected("InvalidSignature", rule)
    if v.amount > ch.deposit:
        return Rejected("AmountExceedsDeposit", rule)
    return None


def _payee_voucher(chain: Chain, caller: str, voucher: Voucher, rule: str) -> EscrowChannel | Rejected:
    """The checks settle and close share: an amount within the bound (rule E7), a live channel, the payee
    (or, rule E8, its operator) calling, a valid voucher."""
    if voucher.amount > chain.max_amount:
        return Rejected("InvalidArgument", rule, f"voucher amount above {chain.max_amount}")
    ch = _live(chain, voucher.channel_id)
    if isinstance(ch, Rejected):
        return ch
    if caller != ch.payee and (ch.operator is None or caller != ch.operator):
        return Rejected("NotPayee", rule)
    bad = _check_voucher(ch, voucher, rule)
    return ch if bad is None else bad


def settle(chain: Chain, caller: str, voucher: Voucher) -> Chain | Rejected:
    """Rule E3 (draft "settle"): payee only; pays cumulative - settled; cumulative > settled."""
    ch = _payee_voucher(chain, caller, voucher, "E3")
    if isinstance(ch, Rejected):
        return ch
    if voucher.amount <= ch.settled:
        return Rejected("AmountNotIncreasing", "E3")
    delta = voucher.amount - ch.settled
    return _put(_transfer(chain, None, ch.payee, delta), attrs.evolve(ch, settled=voucher.amount))


def close(chain: Chain, caller: str, voucher: Voucher, capture: int) -> Chain | Rejected:
    """Rule E4 (draft "close" and "Cooperative Close"): payee only; captures `capture`
    (settled <= capture <= voucher amount <= deposit), refunds the rest, finalizes."""
    ch = _payee_voucher(chain, caller, voucher, "E4")
    if isinstance(ch, Rejected):
        return ch
    if not ch.settled <= capture <= voucher.amount:
        return Rejected("AmountNotIncreasing", "E4", "capture must lie in [settled, voucher amount]")
    chain = _transfer(chain, None, ch.payee, capture - ch.settled)
    chain = _transfer(chain, None, ch.payer, ch.deposit - capture)
    return _put(chain, attrs.evolve(ch, settled=capture, finalized=True))


def request_close(chain: Chain, caller: str, channel_id: str) -> Chain | Rejected:
    """Rule E5 (draft "requestClose"): payer only; starts the grace period."""
    ch = _live(chain, channel_id)
    if isinstance(ch, Rejected):
        return ch
    if caller != ch.payer:
        return Rejected("NotPayer", "E5")
    if ch.close_requested_at:
        return Rejected("CloseAlreadyRequested", "E5")
    return _put(chain, attrs.evolve(ch, close_requested_at=chain.time))


def withdraw(chain: Chain, caller: str, channel_id: str) -> Chain | Rejected:
    """Rule E6 (draft "withdraw"): payer only, after the grace period; refunds deposit - settled."""
    ch = _live(chain, channel_id)
    if isinstance(ch, Rejected):
        return ch
    if caller != ch.payer:
        return Rejected("NotPayer", "E6")
    if not ch.close_requested_at or chain.time < ch.close_requested_at + CLOSE_GRACE_PERIOD:
        return Rejected("CloseNotReady", "E6")
    chain = _transfer(chain, None, ch.payer, ch.deposit - ch.settled)
    return _put(chain, attrs.evolve(ch, finalized=True))


def advance_time(chain: Chain, seconds: int) -> Chain:
    return attrs.evolve(chain, time=chain.time + seconds)
