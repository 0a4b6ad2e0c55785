"""The exported test vectors (conformance/vectors.py): deterministic, and every case passes on the model
and on the reference server when replayed from the JSON alone."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import attrs
import pytest

from conformance import vectors
from conformance.model_impl import ModelServer
from conformance.model_impl import ModelClient
from conformance.reference_impl import ReferenceClient, ReferenceServer

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "vectors" / "fixtures"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("vectors")
    vectors.export(out)
    return out


def _docs(directory: Path, name: str = "v1") -> list[dict]:
    index = json.loads((directory / "index.json").read_text())
    return [json.loads((directory / c["file"]).read_text()) for c in index["sets"][name]]


def test_export_is_byte_identical_run_to_run(exported, tmp_path):
    vectors.export(tmp_path)
    first = sorted(str(p.relative_to(exported)) for p in exported.rglob("*.json"))
    assert len(first) > 30
    assert first == sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.json"))
    for name in first:
        assert (exported / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_committed_sample_is_the_current_export(exported):
    """vectors/fixtures is what `python -m conformance vectors export vectors/fixtures` writes today."""
    for p in exported.rglob("*.json"):
        name = p.relative_to(exported)
        assert (SAMPLE / name).read_bytes() == p.read_bytes(), f"vectors/fixtures/{name} is stale: re-export"


def test_spec_rule_ids_are_read_from_spec_notes():
    ids = vectors.spec_rule_ids()
    assert {"E0", "E1b", "E8", "O1", "O2", "O3", "X1", "X4", "UA1", "UA3", "H2b", "H3b", "S-H1", "W2", "L",
            "RS", "G1"} <= set(ids)
    assert "UA1-UA2" not in ids and "O1-O3" not in ids
    extra = vectors.SPEC_NOTES.read_text().replace("| E8 |", "| E8 |\n| Z9 | a new rule | here |\n| ignore |", 1)
    assert "Z9" in vectors.spec_rule_ids(extra)


def test_every_rule_has_accepting_and_rejecting_vectors(exported):
    """Every rule id of SPEC_NOTES has vectors on both paths, except a rule the index says shows only one path
    or nothing on the wire (each with its reason); a new rule without vectors fails here."""
    index = json.loads((exported / "index.json").read_text())
    one_path, no_wire = index["onePath"], index["notOnTheWire"]
    spec = set(vectors.spec_rule_ids())
    assert set(one_path) <= spec and set(no_wire) <= spec, "a listed rule that SPEC_NOTES no longer has"
    missing, one_sided = [], []
    for rule in sorted(spec - set(no_wire)):
        count = index["rules"].get(rule)
        if count is None:
            missing.append(rule)
        elif rule not in one_path and not (count["accept"] and count["reject"]):
            one_sided.append(f"{rule} {count}")
    assert missing == [], f"rules without a vector: {missing}"
    assert one_sided == [], f"rules with only one path: {one_sided}"
    assert all(r in spec for r in index["rules"]), set(index["rules"]) - spec
    docs = _docs(exported) + _docs(exported, "v2") + _docs(exported, "v2-wire")
    statuses = {s["expect"]["status"] for d in docs for s in d["steps"] if "expect" in s}
    assert {200, 402, 410} <= statuses
    problems = {s["expect"].get("problem") for d in docs for s in d["steps"] if "expect" in s}
    assert {"channel-not-found", "channel-finalized", "invalid-signature", "signer-mismatch",
            "amount-exceeds-deposit", "verification-failed", "insufficient-balance"} <= problems


@pytest.mark.parametrize("make", [lambda: ModelServer("model"), lambda: ReferenceServer("reference")],
                         ids=["model", "reference"])
@pytest.mark.parametrize("name", ["v1", "v2-wire"])
def test_vectors_pass_on(make, name, exported, tmp_path):
    docs = _docs(exported, name)
    assert docs and all(d["deployment"]["chain"] == ("memory" if name == "v1" else "memory-v2") for d in docs)
    failures = [m for doc in docs for m in vectors.replay(doc, make, str(tmp_path))]
    assert failures == []


@pytest.mark.parametrize("make", [lambda: ModelClient("model"), lambda: ReferenceClient("reference")],
                         ids=["model", "reference"])
@pytest.mark.parametrize("name", ["client", "client-v2"])
def test_client_vectors_pass_on(make, name, exported, tmp_path):
    docs = _docs(exported, name)
    ids = {d["caseId"].replace("client-v2-", "client-") for d in docs}
    assert ids >= {"client-inflated-hint", "client-hinted-proof", "client-tops-up", "client-other-escrow",
                   "client-price-too-high", "client-gone-lie"}
    failures = [m for doc in docs for m in vectors.replay_client(doc, make, str(tmp_path))]
    assert failures == []


def test_client_replay_detects_a_client_that_signs_an_unproven_hint(exported, tmp_path):
    """The inflated-hint vector expects no signature of the hinted amount (H4), only the authentication
    voucher at settled + price (rule UA3); a client trusting the hint fails it."""
    doc = json.loads((exported / "client" / "client-inflated-hint.json").read_text())
    signed = [v["cumulativeAmount"] for v in doc["expect"]["signed"]]
    assert signed[0] == 1 and max(signed) <= 2  # settled + price, then the proven target: never the hinted 50
    def trusting():
        return ModelClient("model", cfg_hook=lambda cfg: attrs.evolve(cfg, max_unproven=10**6))

    assert vectors.replay_client(doc, trusting, str(tmp_path))


def test_client_replay_detects_a_client_that_tops_up_short(exported, tmp_path):
    """Rule H5b's vectors: a client that tops up only its configured amount (the planted deviation) sends a topUp
    the recording has no answer for, on both paths; the vector's own expectation is the shortfall."""
    from model import deviations

    def short():
        return ModelClient("model", cfg_hook=lambda cfg: attrs.evolve(
            cfg, rules=attrs.evolve(cfg.rules, top_up=deviations.tops_up_configured)))

    for name in ("client-tops-up-shortfall", "client-shortfall-exhausted"):
        doc = json.loads((exported / "client" / f"{name}.json").read_text())
        assert vectors.replay_client(doc, short, str(tmp_path)), name
    doc = json.loads((exported / "client" / "client-tops-up-shortfall.json").read_text())
    assert [v.get("additionalDeposit") for v in doc["expect"]["signed"] if v["action"] == "topUp"] == [2]


def test_v2_channel_id_is_the_descriptor_hash():
    """The seeded v2 channel id is keccak(abi.encode(descriptor, escrow, chainId)) as mppx computes it;
    pinned here so a change of the derivation shows (mppx itself checks it in the Node runner)."""
    cid = vectors.v2_channel_id(vectors.v2_descriptor())
    assert cid == json.loads((SAMPLE / "v2" / "v2-advance.json").read_text())["seed"]["channelId"]
    assert vectors.v2_channel_id({**vectors.v2_descriptor(), "salt": "0x" + "00" * 31 + "03"}) != cid


def test_replay_detects_a_wrong_expectation(exported, tmp_path):
    doc = json.loads((exported / "v1" / "voucher-equal-replay.json").read_text())
    doc["steps"][-1]["expect"]["status"] = 200
    assert vectors.replay(doc, lambda: ModelServer("model"), str(tmp_path))


def _mppx_installed_or_skip() -> None:
    """The pinned mppx install in adapters/mppx/node_modules, made as the mppx tests make it (npm ci, once per
    lock file); skips only when node/npm are missing or the install cannot run."""
    from adapters.bridge.testing import node_adapter_or_skip

    node_adapter_or_skip().close()


def test_node_runner_against_mppx(tmp_path):
    """vectors/run-vectors.mjs against mppx@0.11.0: every mismatch is an expected failure with its finding id,
    and every listed one still happens (the runner exits 1 otherwise)."""
    _mppx_installed_or_skip()
    out = tmp_path / "run.json"
    proc = subprocess.run([shutil.which("node"), str(REPO / "vectors" / "run-vectors.mjs"), "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads(out.read_text())
    verdicts = {r["caseId"]: r["verdict"] for r in run["results"]}
    assert set(verdicts) == {c.case_id for c in vectors.V2_CASES + vectors.V2_WIRE_CASES + vectors.CLIENT_V2_CASES}
    assert set(verdicts.values()) <= {"pass", "xfail", "unsupported"}
    # what mppx cannot be asked is named, never passed: a fleet member without hints, the payee's own settle, a
    # legacy client
    assert {c for c, v in verdicts.items() if v == "unsupported"} == {
        "v2w-challenge-legacy", "v2w-rollout-fleet", "v2w-settle-then-continue", "v2w-public-voucher",
        "client-v2-legacy"}
    assert all(r["reason"] for r in run["results"] if r["verdict"] == "unsupported")
    assert verdicts["v2-advance"] == "pass"  # signatures and channel ids agree with mppx
    assert verdicts["v2w-open-and-pay"] == "pass"  # a Tempo open, its descriptor and the v2 domain agree too
    assert verdicts["v2w-forced-close-withdraw"] in ("pass", "xfail") and verdicts["v2w-close-below-spent"] == "pass"
    # mppx's client, answered from the recorded exchanges: it refuses another escrow (H7) and keeps its floor (H3b)
    assert verdicts["client-v2-other-escrow"] == "pass" and verdicts["client-v2-floor-settled"] == "pass"
    findings = {f for r in run["results"] for f in r["findings"]}
    assert {"F1", "F2", "F3", "F7", "F8", "F9", "F11", "F12", "F13", "F19", "F130", "F131", "F132", "F133", "F134",
            "F135", "F136"} <= findings
    assert {r: c["fail"] for r, c in run["perRule"].items() if c["fail"]} == {}


def test_node_runner_fails_on_an_unlisted_divergence(tmp_path):
    """Without the expectations file every known divergence is an unexpected failure: none passes silently."""
    _mppx_installed_or_skip()
    empty = tmp_path / "none.json"
    empty.write_text('{"cases": {}}')
    proc = subprocess.run([shutil.which("node"), str(REPO / "vectors" / "run-vectors.mjs"), "--expectations",
                           str(empty)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "FAIL  v2-high-s" in proc.stdout
