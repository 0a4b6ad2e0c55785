"""Client mutants: the model client over the wire with one of the first draft's bugs planted
through its swappable rules (model/client.py, ClientRules; model/first_draft.py, model/deviations.py)."""
from __future__ import annotations

import attrs

from model import deviations, first_draft

from ..model_impl import ModelClient


def _mutant(name: str, rules: dict | None = None, **changes) -> ModelClient:
    """The model client with some of its rules (`ClientRules`) and config fields replaced."""
    def hook(cfg):
        if rules:
            cfg = attrs.evolve(cfg, rules=attrs.evolve(cfg.rules, **rules))
        return attrs.evolve(cfg, **changes)
    return ModelClient(name, cfg_hook=hook)


def signs_below_own_client():
    return _mutant("client-signs-below-own", rules=dict(amount=lambda target, signed_max: target))


def overwrite_view_client():
    return _mutant("client-overwrites-view",
                   rules=dict(reconcile=lambda e, r: attrs.evolve(e, accepted=r.accepted, spent=r.spent)))


def chain_after_restart_client():
    return _mutant("client-chain-after-restart", rules=dict(follows_hints=first_draft.chain_after_restart))


def deposit_drain_client():
    return _mutant("client-deposit-drain", max_unproven=10**30)


def signs_ahead_client():
    """Bug: pays one price ahead of the server's target (a client that adds the price to requiredCumulative)."""
    return _mutant("client-signs-ahead", rules=dict(amount=lambda target, floor: max(target, floor) + 1), max_unproven=1)


class _RefusesHead(ModelClient):
    """Bug: HEAD requests are treated as free and never paid: the client refuses them."""

    def request(self, method, path, idempotency_key=None):
        from ..interface import Outcome

        if method.upper() == "HEAD":
            return Outcome("refused:head-not-paid")
        return super().request(method, path, idempotency_key)


def refuses_head_client():
    return _RefusesHead("client-refuses-head")


def pays_any_price_client():
    """Bug: no price check (rule H6): it pays whatever a challenge asks, a lied price included."""
    return _mutant("client-pays-any-price", max_price=None)


def forgets_live_channel_client():
    """Bug: forgets a channel on any 410 without asking the chain (rule G1): a lying 410 strands the deposit."""
    return _mutant("client-forgets-live-channel", rules=dict(holds_escrow=deviations.forgets_on_gone))


def ignores_domain_client():
    """Bug: never compares the challenge's escrow contract and chainId with its own (rule H7)."""
    return _mutant("client-ignores-domain", rules=dict(foreign=deviations.ignores_domain))


def tops_up_short_client():
    """Bug: a top-up adds only the configured amount (rule H5b): a charge short of the deposit by more than that
    leaves the channel short of it after the top-up."""
    return _mutant("client-tops-up-short", rules=dict(top_up=deviations.tops_up_configured))


class _KeepsPaying(ModelClient):
    """Bug: no retry budget: it answers every 402 with another voucher until the deposit runs out, so a server
    that takes vouchers and answers 402 keeps being paid."""

    max_paid_attempts = None

    def reset(self, env, params, transport):
        super().reset(env, params, transport)
        self.cfg = attrs.evolve(self.cfg, max_paid_attempts=10**6)  # round_trip_limit: 3 x MAX_ROUND_TRIPS


def keeps_paying_client():
    return _KeepsPaying("client-keeps-paying")


class _SulksAfterGone(ModelClient):
    """Bug: after any 410 it distrusts the server for good and refuses every later request."""

    def reset(self, env, params, transport):
        super().reset(env, params, transport)
        self.sulking = False

    def _receive(self, resp, cid, closing=False):
        if resp.status_code == 410:
            self.sulking = True
        super()._receive(resp, cid, closing)

    def request(self, method, path, idempotency_key=None):
        from ..interface import Outcome

        if self.sulking:
            return Outcome("refused:server-distrusted")
        return super().request(method, path, idempotency_key)


def sulks_after_gone_client():
    return _SulksAfterGone("client-sulks-after-gone")


# --- adversary teeth (issue 9 items 5/6): the edges of rule H4 (conformance/adversary.py CRAFTED_LIES) ---


class _ProofSignerUnchecked(ModelClient):
    """Bug: the snapshot's highestVoucher is taken as proof on its amount and channel alone; its signature is
    never recovered (as if the server could only hold the payer's vouchers), so a lying server's proof signed by
    another key raises the proven floor of rule H4 to whatever it claims."""

    def _challenge(self, resp):
        wc, ch = super()._challenge(resp)
        if ch is not None and ch.hints is not None and ch.hints.proof is not None:
            ch = attrs.evolve(ch, hints=attrs.evolve(ch.hints, proof=attrs.evolve(ch.hints.proof, signer=self.addr)))
        return wc, ch


def proof_signer_unchecked_client():
    return _ProofSignerUnchecked("client-proof-signer-unchecked")


def bound_extra_price_client():
    """Bug: rule H4's bound counts the request's price twice (floor + 2 x price + allowance): a hint one price
    above the real bound is signed."""
    from model.client import trust_bound

    return _mutant("client-bound-extra-price", rules=dict(bound=lambda floor, cfg, cost: trust_bound(floor, cfg, cost) + cost))
