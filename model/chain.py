"""The escrow on chain (draft, "Channel Escrow Contract", v1 interface).

The chain is the one party both sides trust: it holds deposits, checks voucher
signatures (here: the recovered signer), and moves tokens. Amounts are ints;
`time` is the chain clock, which only the system's `advance_time` moves.
"""
from __future__ import annotations

import attrs

from .base import FrozenMap, Rejected, fm_get, fm_set, fm_values
from .records import Voucher

CLOSE_GRACE_PERIOD = 15 * 60  # draft, "requestClose": at least 15 minutes


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


@attrs.frozen
class Chain:
    channels: FrozenMap = ()  # channel_id -> EscrowChannel
    balances: FrozenMap = ()  # address -> token balance
    time: int = 1
    used_txs: frozenset = frozenset()  # signed client transactions already applied (their nonce)

    def channel(self, channel_id: str) -> EscrowChannel | None:
        return fm_get(self.channels, channel_id)

    def balance(self, address: str) -> int:
        return fm_get(self.balances, address, 0)

    def total_tokens(self) -> int:
        """Tokens in wallets plus tokens held in escrow (rule E9, conservation)."""
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
                 signer: str | None = None) -> Chain | Rejected:
    """Rule E1 (draft "open"): anyone opens; the caller becomes payer and escrows `deposit`."""
    if chain.channel(channel_id) is not None:
        return Rejected("ChannelAlreadyExists", "E1")
    if deposit <= 0 or chain.balance(caller) < deposit:
        return Rejected("TransferFailed", "E1", "deposit not covered by the payer's balance")
    ch = EscrowChannel(channel_id, caller, payee, signer or caller, deposit)
    return _put(_transfer(chain, caller, None, deposit), ch)


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
    """The checks settle and close share: a live channel, the payee calling, a valid voucher."""
    ch = _live(chain, voucher.channel_id)
    if isinstance(ch, Rejected):
        return ch
    if caller != ch.payee:
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
