"""Client mutants: the model client over the wire with one of the first draft's bugs planted
through its swappable rules (model/client.py, ClientConfig)."""
from __future__ import annotations

import attrs

from ..model_impl import ModelClient


def _mutant(name: str, **changes) -> ModelClient:
    return ModelClient(name, cfg_hook=lambda cfg: attrs.evolve(cfg, **changes))


def signs_below_own_client():
    return _mutant("client-signs-below-own", amount=lambda target, signed_max: target)


def overwrite_view_client():
    return _mutant("client-overwrites-view",
                   reconcile=lambda e, r: attrs.evolve(e, accepted=r.accepted, spent=r.spent))


def chain_after_restart_client():
    return _mutant("client-chain-after-restart", prefer_chain_after_restart=True)


def deposit_drain_client():
    return _mutant("client-deposit-drain", max_unproven=10**30)


def signs_ahead_client():
    """Bug: pays one price ahead of the server's target (a client that adds the price to requiredCumulative)."""
    return _mutant("client-signs-ahead", amount=lambda target, floor: max(target, floor) + 1, max_unproven=1)


class _RefusesHead(ModelClient):
    """Bug: HEAD requests are treated as free and never paid: the client refuses them."""

    def request(self, method, path, idempotency_key=None):
        from ..interface import Outcome

        if method.upper() == "HEAD":
            return Outcome("refused:head-not-paid")
        return super().request(method, path, idempotency_key)


def refuses_head_client():
    return _RefusesHead("client-refuses-head")
