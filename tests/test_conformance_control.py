"""Control: the unmodified reference and model adapters, loaded by import path the way an SDK author loads
theirs, pass every machine in both strengths on several seeds, on a v1 deployment (the memory escrow) and on a
v2 deployment (memory-v2: descriptors, v2 vouchers, uint96), plus one evm-v2 run. A failure here is a false
alarm of the suite (or a real divergence between the reference and the model, which must be settled before it
ships)."""
from __future__ import annotations

import pytest

from conformance.harness import RunConfig, drives
from conformance.runner import run_pair

REF, MODEL = "conformance.reference_impl", "conformance.model_impl"
SERVERS = [f"{REF}:reference_server", f"{REF}:legacy_server", f"{MODEL}:model_server", f"{MODEL}:model_legacy_server"]
CLIENTS = [f"{REF}:reference_client", f"{REF}:legacy_client", f"{MODEL}:model_client", f"{MODEL}:model_legacy_client"]
SEEDS = (0, 1, 2)
V2_SEEDS = (0, 1)  # v2 (memory-v2): fewer seeds keep the runtime modest; the rules are the same


def _cases():
    for chain, seeds in (("memory", SEEDS), ("memory-v2", V2_SEEDS)):
        for case in _chain_cases(seeds):
            yield (chain,) + case
    yield "evm-v2", 0, "must", "pair", CLIENTS[0], SERVERS[0]  # the v2 contract on py-evm


def _chain_cases(seeds):
    for seed in seeds:
        for strength in ("must", "strict"):
            for c in CLIENTS[::2]:  # hinted clients against every server
                for s in SERVERS:
                    yield seed, strength, "pair", c, s
            yield seed, strength, "pair", CLIENTS[1], SERVERS[1]  # legacy with legacy
            for s in SERVERS:
                yield seed, strength, "server", CLIENTS[0], s
            yield seed, strength, "server", CLIENTS[1], SERVERS[0]  # the legacy flavour of the model clients
            for c in CLIENTS:
                yield seed, strength, "client", c, SERVERS[0]


def _id(case):
    chain, seed, strength, machine, c, s = case
    where = "" if chain == "memory" else f"{chain}-"
    return f"{where}{machine}-{strength}-s{seed}-{c.split(':')[1]}-x-{s.split(':')[1]}"


@pytest.mark.parametrize("case", list(_cases()), ids=_id)
def test_correct_adapter_by_import_path_passes(case, tmp_path):
    chain, seed, strength, machine, client, server = case
    rc = RunConfig(client=client, server=server, seed=seed, strength=strength, chain=chain)
    r = run_pair(rc, "quick", machine, None, str(tmp_path), shrink=False)
    assert r.error is None, r.failure
    assert r.ok, f"false alarm ({drives(rc, machine)}):\n{r.failure}"
    assert r.steps > 0
    assert all(not v.startswith("VIOLATED") for v in r.properties.values()), r.properties
    if machine == "server":  # B1 on the implementation: its other configuration ran side by side (conformance/b1.py)
        assert r.properties["B1"] == "held", r.properties["B1"]
    if machine != "client" and server.startswith(REF):  # the reference server offers crash points (CR)
        assert not r.properties["CR"].startswith("skipped"), r.properties["CR"]


def test_each_machine_says_what_it_drives():
    rc = RunConfig(client=CLIENTS[0], server=SERVERS[0])
    assert "not used" in drives(rc, "client") and SERVERS[0] in drives(rc, "client")
    assert "model + adversary" in drives(rc, "server")
    assert drives(rc, "pair") == f"client {CLIENTS[0]} and server {SERVERS[0]} under test"
    legacy = RunConfig(client=CLIENTS[1], server=SERVERS[0])
    assert "model-legacy" in drives(legacy, "server")
