"""Planted bugs: rules as implementations got them wrong (not the first draft's, see `model/first_draft.py`).

Each function replaces one rule of `model.client` or `model.server` through their rule records
(`ClientRules`, `ServerRules`); the spec itself has no switch for any of them. The checker's known-limit
scenarios, the rule tests and the conformance mutants plant them.
"""
from __future__ import annotations

from .chain import Chain
from .messages import Challenge
from .records import Voucher
from .server import ServerChannel, reusable


def ignores_domain(challenge: Challenge) -> bool:
    """Replaces rule H7: never compares the challenge's escrow contract and chainId with its own."""
    return False


def forgets_on_gone(chain: Chain, channel_id: str) -> bool:
    """Replaces rule G1: forgets a channel on any 410 without asking the chain (the stranded-deposit bug)."""
    return False


def hints_closing_channels(rec: ServerChannel, chain: Chain) -> bool:
    """Replaces rule S-H1: hints a channel whose forced close is pending (not finalized is enough)."""
    return reusable(rec, chain) or not rec.finalized


def discloses_to_anyone(proven: str | None, rec: ServerChannel) -> bool:
    """Replaces rule UA1: the proof (highestVoucher) goes to whoever names the payer (the draft's
    snapshot, mppx), so a third party holds a voucher that closes the channel."""
    return True


def nothing_public(chain: Chain, voucher: Voucher) -> bool:
    """Replaces rule UA2 (GHSA-mv9j-8jvg-j8mr): a voucher at or below settled still buys content with
    an equal-voucher retry (V6) and still closes the channel."""
    return False


def tops_up_configured(cfg, amount: int, deposit: int) -> int:
    """Replaces rule H5b: a top-up adds the configured amount whatever the shortfall, so a charge above
    deposit + top-up leaves the channel short of the charge it was topped up for."""
    return cfg.top_up
