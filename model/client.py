"""The client's view of its channel and the rules it follows to pay.

One place per rule:
- `choose_channel`: hydrate from hints, else recover from chain, else open (H1-H2).
- `what_to_sign`: every amount the client signs on a channel, in one place: the target (H3,
  `amount_to_sign`), never below the proven floor (H3b, `proven_floor`), within the trust bound
  (H4, `trust_bound`), a top-up first above the deposit (H5) of at least the shortfall (H5b,
  `top_up_amount`), the authentication voucher (UA3,
  `authentication`) and the close amount (X2 and UA2, `close_amount`, `above_settled`).
- `next_credential` / `close_credential`: the credential that carries it (open, topUp, voucher, close),
  after the challenge checks H6 (price) and H7 (domain).
- `reconcile`: the receipt rule (R1, `merge_receipt`).
- `on_gone`: a 410 is checked against the chain (G1).
- `restart`: what survives a client restart.
"""
from __future__ import annotations

from typing import Callable

import attrs

from .base import Rejected
from .chain import Chain
from .messages import Challenge, Credential, Receipt
from .records import Hints, Voucher


@attrs.frozen
class Entry:
    """The client's runtime snapshot of one channel (seed: "runtime snapshot").

    `accepted`, `spent` and `deposit` are the server's state as last reported
    (hints, receipts): informational, never trusted to raise what it signs.
    `signed_max` is the highest cumulative this client has signed on the channel:
    the one number that is the client's own knowledge.
    """

    channel_id: str
    deposit: int = 0
    accepted: int = 0
    spent: int = 0
    signed_max: int = 0
    proven: int = 0  # the highest amount a verified highestVoucher showed (the payer's own signature)

    @property
    def local_cumulative(self) -> int:
        """The base of the next voucher when the server names no target."""
        return max(self.accepted, self.signed_max)


def sign_at_least_own(target: int, floor: int) -> int:
    """Rule H3b: never sign below what the payer provably already authorized on the
    channel (at least what this client itself signed).

    A lower voucher authorizes nothing new (the higher one exists) and the
    server must refuse it once it holds the higher one (rule V5)."""
    return max(target, floor)


def merge_receipt(entry: Entry, receipt: Receipt) -> Entry:
    """Rule R1: a receipt raises the view, it never lowers it (stale receipts
    arrive late or from cached idempotent replays); it never touches signed_max."""
    return attrs.evolve(entry, accepted=max(entry.accepted, receipt.accepted),
                        spent=max(entry.spent, receipt.spent))


def hydrate(entry: Entry, hints: Hints) -> Entry:
    """Rule H1 (seed: "hydrate runtime snapshot from server state"): the view
    takes the hinted values (by max, like receipts); signed_max is untouched."""
    return attrs.evolve(
        entry,
        accepted=max(entry.accepted, hints.accepted or 0),
        spent=max(entry.spent, hints.spent or 0),
        deposit=max(entry.deposit, hints.deposit or 0))


def top_up_amount(cfg: ClientConfig, amount: int, deposit: int) -> int:
    """Rule H5b: a top-up made because the voucher `amount` is above the on-chain `deposit` adds
    max(cfg.top_up, shortfall), shortfall = amount - deposit. The configured top-up alone can be smaller
    than the shortfall when prices, deposits and top-ups are not multiples of one another (price 5,
    deposit 11, top-up 3: the third request needs 15); the channel would still be short of the very
    charge it was topped up for, and the client would have to top up again (one more round trip, and
    one more against its retry budget) or be refused."""
    return max(cfg.top_up, amount - deposit)


def trust_bound(floor: int, cfg: ClientConfig, cost: int) -> int:
    """Rule H4: the highest cumulative any hint can make this client sign:
    proven floor + this request's price + the configured allowance."""
    return floor + cost + cfg.max_unproven


def names_another_domain(challenge: Challenge) -> bool:
    """Rule H7 (core "Challenge": the method details name the escrow and chain): a challenge whose
    escrow contract or chainId is not this deployment's is refused; nothing is signed for it."""
    return challenge.foreign


def follows_hints(st: "ClientState") -> bool:
    """Rule H1: a hinted client follows the server's hints whenever it has them, after a restart too."""
    return True


def chain_holds_escrow(chain: Chain, channel_id: str) -> bool:
    """Rule G1: the chain still holds the channel's escrow (it is there and not finalized), whatever
    a server's 410 says."""
    ch = chain.channel(channel_id)
    return ch is not None and not ch.finalized


@attrs.frozen
class ClientRules:
    """The client rules an implementation can get wrong, as swappable functions: by default the spec's
    own (above). `model/first_draft.py` and `model/deviations.py` hold the wrong ones the checker and
    the mutants plant (`ClientRules(amount=first_draft.sign_exactly_required)`); the spec's code calls
    them through `cfg.rules` and has no switch of its own."""

    amount: Callable[[int, int], int] = sign_at_least_own  # H3b
    reconcile: Callable[[Entry, Receipt], Entry] = merge_receipt  # R1
    follows_hints: Callable[["ClientState"], bool] = follows_hints  # H1
    bound: Callable[[int, "ClientConfig", int], int] = trust_bound  # H4, on what it pays
    foreign: Callable[[Challenge], bool] = names_another_domain  # H7
    holds_escrow: Callable[[Chain, str], bool] = chain_holds_escrow  # G1
    top_up: Callable[["ClientConfig", int, int], int] = top_up_amount  # H5b


@attrs.frozen
class ClientConfig:
    name: str
    payer: str  # the payer's address, which is also its voucher signer here
    hinted: bool = True
    deposit: int = 4  # what it escrows when it opens a channel
    top_up: int = 2  # what it adds when a voucher would exceed the deposit (at least the shortfall, rule H5b)
    max_unproven: int = 0  # rule H4: how far above its proven floor a hint may take it
    max_price: int | None = None  # rule H6: the most it pays per request (None: any price)
    persist: bool = False  # keeps (channel, signed_max) across restarts
    use_keys: bool = True  # sends Idempotency-Key on content requests
    # An implementation's retry budget: a logical request gives up after this many voucher-carrying
    # attempts (None: only the system's round-trip bound). Not a rule: the harness copies the budget a
    # client under test declares, so that its twin gives up when it does.
    max_paid_attempts: int | None = None
    rules: ClientRules = ClientRules()


@attrs.frozen
class ClientState:
    entry: Entry | None = None
    persisted: Entry | None = None  # survives restarts when cfg.persist
    requests: int = 0  # counts logical requests (names idempotency keys)
    restarted: bool = False  # true from a restart until the next channel choice
    kept: tuple[Entry, ...] = ()  # rule G1: channels a server answered 410 for while the chain still holds them


@attrs.frozen
class Refused:
    """The client declined to sign (rule H4 or H5); the request fails at the client."""

    reason: str  # "hint-bound-exceeded" | "deposit-exhausted"
    detail: str = ""


def _ours_and_live(chain: Chain, channel_id: str, payer: str) -> bool:
    """Rule H0: a hinted channel is usable only if the chain says it is this payer's,
    live, and not closing (seed: a hint is only a hint; draft "Existing channel")."""
    ch = chain.channel(channel_id)
    return ch is not None and ch.payer == payer and not ch.finalized and ch.close_requested_at == 0


def _remembered(st: ClientState, channel_id: str) -> Entry | None:
    for e in (st.entry, st.persisted) + st.kept:
        if e is not None and e.channel_id == channel_id:
            return e
    return None


def recover_from_chain(st: ClientState, chain: Chain, channel_id: str) -> Entry:
    """Rule H2 (seed: "fallback snapshot from chain"): local cumulative = settled."""
    ch = chain.channel(channel_id)
    known = _remembered(st, channel_id) or Entry(channel_id)
    return attrs.evolve(known, deposit=ch.deposit, accepted=max(known.accepted, ch.settled))


def choose_channel(cfg: ClientConfig, st: ClientState, challenge: Challenge, chain: Chain) -> Entry | None:
    """Rules H0-H2 and L (seed, "Client Control Flow"). None means: open a new channel (rule H2b).
    A legacy client (rule L) ignores hint values: its local entry, else a bare channelId recovered from
    chain, else a persisted channel, else open."""
    hints = challenge.hints
    hinted_ok = hints is not None and _ours_and_live(chain, hints.channel_id, cfg.payer)
    local_ok = st.entry is not None and _ours_and_live(chain, st.entry.channel_id, cfg.payer)
    if cfg.hinted and hinted_ok:
        known = _remembered(st, hints.channel_id) or Entry(hints.channel_id)
        if hints.has_values and not _ignores_hints(cfg, st):
            return hydrate(known, hints)  # H1
        if st.entry is not None and st.entry.channel_id == hints.channel_id:
            return st.entry
        return recover_from_chain(st, chain, hints.channel_id)  # H2
    if local_ok:
        return st.entry
    if hinted_ok:  # a legacy client uses a bare channelId (the pre-hint flow)
        return recover_from_chain(st, chain, hints.channel_id)
    persisted_ok = st.persisted is not None and _ours_and_live(chain, st.persisted.channel_id, cfg.payer)
    if persisted_ok:
        return recover_from_chain(st, chain, st.persisted.channel_id)
    return None


def _ignores_hints(cfg: ClientConfig, st: ClientState) -> bool:
    """Rule H1 as the client's rules apply it (`ClientRules.follows_hints`)."""
    return not cfg.rules.follows_hints(st)


def proven_floor(entry: Entry, chain: Chain, hints: Hints | None, payer: str) -> int:
    """Rule H4: the amount the client knows is already authorized, from proof only:
    its own signatures, the chain's settled amount, or the server's highest
    voucher when it carries this payer's valid signature on this channel."""
    ch = chain.channel(entry.channel_id)
    floor = max(entry.signed_max, entry.proven, ch.settled if ch else 0)
    return max(floor, verified_proof(entry, hints, payer))


def verified_proof(entry: Entry, hints: Hints | None, payer: str) -> int:
    """The amount of the hint's highestVoucher if its signature is this payer's on this channel, else 0."""
    if hints is not None and hints.proof is not None:
        p = hints.proof
        if p.channel_id == entry.channel_id and p.signer == payer:
            return p.amount
    return 0


def above_settled(ch, price: int) -> int | None:
    """The lowest voucher a client signs to show it is the payer when it knows no more than the chain's
    settled amount (rules UA2, UA3): settled + one price (the voucher a recovering client signs anyway,
    rule H2; within H4), at most the deposit; None when nothing is left above settled."""
    if ch is None or ch.deposit <= ch.settled:
        return None
    return min(ch.settled + max(price, 1), ch.deposit)


def authentication(entry: Entry, chain: Chain, hints: Hints | None, amount: int, bound: int,
                   payer: str, price: int) -> int | None:
    """Rule UA3: the amount of an authentication voucher, or None when none is needed or can help.

    Under rule UA1 a server gives the proof (highestVoucher) only to a request that proves its
    sender holds the channel, so a hinted client that cannot prove the hinted acceptedCumulative
    (a restart without persistence, another device of the payer) first sends a voucher that proves
    it is the payer: its own highest signature when that is above settled (already authorized), else
    settled + one price (`above_settled`; a voucher at or below settled is public and proves nothing).
    The server refuses it as lower (V5) or takes it as the payer's own, and its 402 carries the proof;
    the client then signs the target. One extra round trip (R2)."""
    if hints is None or not hints.has_values or verified_proof(entry, hints, payer) or amount <= bound:
        return None  # (a proof that does not verify is no proof: authenticating may bring the real one)
    ch = chain.channel(entry.channel_id)
    auth = entry.signed_max if ch is not None and entry.signed_max > ch.settled else above_settled(ch, price)
    if auth is None or (hints.accepted or 0) < auth:
        return None  # nothing above settled to prove, or the hint claims no more than that
    return auth


def amount_to_sign(cfg: ClientConfig, entry: Entry, hints: Hints | None, cost: int, floor: int) -> int:
    """Rule H3 (seed: "sign exact server target", else "local cumulative + amount"):
    target = requiredCumulative when the hint is for this channel, else local + cost;
    then never below the proven floor (H3b): its own highest signature, chain settled, or a
    verified highestVoucher. Together with H4 every voucher lies in [floor, floor + price + allowance]."""
    use_required = (cfg.hinted and hints is not None and hints.required is not None
                    and hints.channel_id == entry.channel_id)
    target = hints.required if use_required else entry.local_cumulative + cost
    return cfg.rules.amount(target, max(entry.signed_max, floor))


def close_amount(cfg: ClientConfig, entry: Entry, hints: Hints | None) -> int:
    """Rule X2, client side: a close voucher covers what the server says was spent (a hinted client
    reads the hint's spent) and at least what the client itself authorized (its local cumulative)."""
    spent_hint = hints.spent if (cfg.hinted and hints is not None and hints.spent is not None) else 0
    return max(entry.local_cumulative, spent_hint)


@attrs.frozen
class ToSign:
    """What the client signs in answer to one challenge, and why (`what_to_sign`)."""

    amount: int  # the cumulative it signs (H3 and H3b; on a close X2 and UA2)
    floor: int  # rule H4: what it knows is already authorized
    bound: int  # rule H4: the most any hint can make it sign
    top_up: bool = False  # rule H5: the amount is above the deposit, top up first
    authenticate: int | None = None  # rule UA3: the authentication voucher to send instead, if one can help


def what_to_sign(cfg: ClientConfig, entry: Entry, chain: Chain, hints: Hints | None, price: int,
                 content: bool = True, close: bool = False, authenticated: bool = True) -> ToSign:
    """Every amount a client signs on an existing channel, in one place (`hints`: the challenge's
    hints for this channel, else None).

    Paying (a voucher): the target of rule H3 (requiredCumulative, else local + cost), never below the
    proven floor (H3b); within the trust bound floor + cost + allowance (H4), else the authentication
    voucher of rule UA3 when this request has not sent one (`authenticated`), else a refusal; above the
    deposit, a top-up first (H5).
    Closing: the close amount of rule X2 (`close_amount`), raised above settled when it would be public
    (UA2: it closes nothing, and the payee captures max(spent, settled) whatever the voucher says);
    within the trust bound floor + allowance (H4, no price: a close buys nothing).
    An open signs the price of its request (`next_credential`)."""
    ch = chain.channel(entry.channel_id)
    if close:
        amount = close_amount(cfg, entry, hints)
        floor = proven_floor(entry, chain, hints, cfg.payer)
        if ch is not None and amount <= ch.settled < ch.deposit:
            amount = above_settled(ch, price)
            floor = max(floor, amount)
        return ToSign(amount, floor, trust_bound(floor, cfg, 0))
    cost = price if content else 0
    floor = proven_floor(entry, chain, hints if cfg.hinted else None, cfg.payer)
    amount = amount_to_sign(cfg, entry, hints, cost, floor)
    bound = cfg.rules.bound(floor, cfg, cost)
    auth = None
    if amount > bound and not authenticated and cfg.hinted:
        auth = authentication(entry, chain, hints, amount, bound, cfg.payer, price)
    return ToSign(amount, floor, bound, top_up=amount > ch.deposit, authenticate=auth)


def next_credential(cfg: ClientConfig, st: ClientState, challenge: Challenge, chain: Chain,
                    content: bool, authenticated: bool = True) -> tuple[ClientState, Credential] | Refused:
    """The client's answer to a challenge: open, topUp or a voucher (seed flowchart); the amount
    is `what_to_sign`'s. `authenticated`: this logical request already sent its authentication
    voucher (rule UA3: at most one per request; a request starts with False)."""
    if cfg.rules.foreign(challenge):  # rule H7
        return Refused("challenge-rejected", "the challenge names another escrow or chainId")
    if cfg.max_price is not None and challenge.price > cfg.max_price:
        # Rule H6 (core, "Amount Verification": clients MUST verify the requested amount).
        return Refused("price-too-high", f"price {challenge.price} above the client's limit {cfg.max_price}")
    cost = challenge.price if content else 0
    entry = choose_channel(cfg, st, challenge, chain)
    if entry is None:
        # Rule H2b, nothing to reuse: open a channel escrowing the configured deposit (at least the
        # price), its initial voucher the price of this request. The configured deposit takes precedence
        # over a challenge's suggestedDeposit, as the reference client's `open_deposit` does: the model
        # client is always configured with one (the harness sets it, and the server's suggestedDeposit,
        # to the run's deposit), so a suggestedDeposit would change nothing it can observe.
        deposit = max(cfg.deposit, cost)
        if chain.balance(cfg.payer) < deposit:
            return Refused("deposit-exhausted", f"cannot escrow {deposit}")
        n = sum(1 for cid, _ in chain.channels if cid.startswith(cfg.name + "."))
        cid = f"{cfg.name}.{n + 1}"
        entry = Entry(cid, deposit=deposit, signed_max=cost)
        st = _remember(cfg, st, entry)
        return st, Credential("open", cid, Voucher(cid, cost, cfg.payer), amount=deposit, payer=cfg.payer)
    hints = challenge.hints if challenge.hints is not None and challenge.hints.channel_id == entry.channel_id else None
    if _ignores_hints(cfg, st):
        hints = None
    if cfg.hinted:
        entry = attrs.evolve(entry, proven=max(entry.proven, verified_proof(entry, hints, cfg.payer)))
    plan = what_to_sign(cfg, entry, chain, hints, challenge.price, content, authenticated=authenticated)
    if plan.amount > plan.bound:
        if plan.authenticate is not None:
            # The unproven hint does not enter the view (it may be a lie): only what the client knew.
            known = _remembered(st, entry.channel_id) or Entry(entry.channel_id, deposit=entry.deposit)
            entry = attrs.evolve(known, signed_max=max(known.signed_max, plan.authenticate), proven=entry.proven)
            st = _remember(cfg, st, entry)
            return st, Credential("voucher", entry.channel_id, Voucher(entry.channel_id, plan.authenticate, cfg.payer),
                                  authenticates=True)
        return Refused("hint-bound-exceeded", f"asked to sign {plan.amount}, proven floor + price allows {plan.bound}")
    deposit = chain.channel(entry.channel_id).deposit
    if plan.top_up:  # rules H5 and H5b
        add = cfg.rules.top_up(cfg, plan.amount, deposit)
        if chain.balance(cfg.payer) < add:
            return Refused("deposit-exhausted", f"voucher {plan.amount} above deposit {deposit}, top-up {add}")
        st = _remember(cfg, st, entry)
        return st, top_up_credential(cfg, entry.channel_id, deposit, add)
    entry = attrs.evolve(entry, deposit=deposit, signed_max=max(entry.signed_max, plan.amount))
    st = _remember(cfg, st, entry)
    return st, Credential("voucher", entry.channel_id, Voucher(entry.channel_id, plan.amount, cfg.payer))


def top_up_credential(cfg: ClientConfig, channel_id: str, deposit: int, amount: int | None = None) -> Credential:
    """A signed topUp transaction adding `amount` (rule H5b's when paying; None: the configured top-up, a top-up
    the payer makes of its own accord). Its nonce is the deposit it was signed against, so (like an account
    nonce) two top-ups signed from the same state apply once."""
    return Credential("topUp", channel_id, amount=cfg.top_up if amount is None else amount, payer=cfg.payer,
                      tx_nonce=deposit)


def close_credential(cfg: ClientConfig, st: ClientState, challenge: Challenge,
                     chain: Chain) -> tuple[ClientState, Credential] | Refused | None:
    """Cooperative close of the channel the client would pay on now (rules H0-H2 choose it), with the
    close voucher of `what_to_sign` (X2, UA2, bounded by H4). None: no channel to close."""
    entry = choose_channel(cfg, st, challenge, chain)
    if entry is None:
        return None
    hints = challenge.hints if challenge.hints is not None and challenge.hints.channel_id == entry.channel_id else None
    plan = what_to_sign(cfg, entry, chain, hints, challenge.price, close=True)
    if plan.amount > plan.bound:
        return Refused("hint-bound-exceeded", f"close at {plan.amount} not proven")
    entry = attrs.evolve(entry, signed_max=max(entry.signed_max, plan.amount))
    st = _remember(cfg, st, entry)
    return st, Credential("close", entry.channel_id, Voucher(entry.channel_id, plan.amount, cfg.payer))


def _remember(cfg: ClientConfig, st: ClientState, entry: Entry) -> ClientState:
    """Persist before sending (the reference client writes its file first)."""
    persisted = attrs.evolve(entry, accepted=0, spent=0, deposit=0) if cfg.persist else st.persisted
    kept = tuple(e for e in st.kept if e.channel_id != entry.channel_id)  # paying on it again
    for old in (st.entry, st.persisted):  # another channel now: the old one stays known (property ST)
        if old is not None and old.channel_id != entry.channel_id and all(e.channel_id != old.channel_id for e in kept):
            kept += (old,)
    return attrs.evolve(st, entry=entry, persisted=persisted, kept=kept)


def on_response_receipt(cfg: ClientConfig, st: ClientState, receipt: Receipt) -> ClientState:
    """Rule R1 applied: a hinted client reconciles its view from a receipt for its
    channel; a legacy client keeps its own counters; other channels are ignored."""
    if st.entry is None or receipt.channel_id != st.entry.channel_id:
        return st
    st = attrs.evolve(st, restarted=False)
    if receipt.capture is not None:  # the channel was closed
        return attrs.evolve(st, entry=None, persisted=None if cfg.persist else st.persisted)
    if not cfg.hinted:
        return st
    return attrs.evolve(st, entry=cfg.rules.reconcile(st.entry, receipt))


def drop_channel(st: ClientState, channel_id: str) -> ClientState:
    """Forget the channel (the next request opens or follows a hint)."""
    entry = None if st.entry is not None and st.entry.channel_id == channel_id else st.entry
    persisted = None if st.persisted is not None and st.persisted.channel_id == channel_id else st.persisted
    kept = tuple(e for e in st.kept if e.channel_id != channel_id)
    return attrs.evolve(st, entry=entry, persisted=persisted, kept=kept)


def on_gone(cfg: ClientConfig, st: ClientState, chain: Chain, channel_id: str) -> ClientState:
    """Rule G1: a 410 is the server's opinion; the client asks the chain. A channel the chain shows absent or
    finalized is forgotten. One the chain still holds escrow for stays known (`kept`, with what the client signed
    on it, persisted as the entry is): the client stops paying on it unless a server hints it again, and its
    deposit can still be closed or withdrawn (property ST: no stranded deposit)."""
    if not cfg.rules.holds_escrow(chain, channel_id):
        return drop_channel(st, channel_id)
    known = _remembered(st, channel_id)
    st = drop_channel(st, channel_id)
    if known is None:
        return st
    return attrs.evolve(st, kept=st.kept + (known,))


def holdings(st: ClientState) -> tuple[str, ...]:
    """The channels the client still knows (it pays on them, or can close or withdraw from them)."""
    return tuple(dict.fromkeys(e.channel_id for e in (st.entry, st.persisted) + st.kept if e is not None))


def restart(cfg: ClientConfig, st: ClientState) -> ClientState:
    """Rule RS: a client restart loses the view and signed_max; the persisted entry (written before
    sending, `_remember`) survives."""
    return ClientState(entry=None, persisted=st.persisted if cfg.persist else None,
                       requests=st.requests, restarted=True, kept=st.kept if cfg.persist else ())
