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
