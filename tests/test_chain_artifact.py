"""The committed contract artifacts match their sources and the pinned compiler.

1. Each artifact records the sha256 of the current .sol files.
2. The artifacts were built by the solc version that package.json and
   package-lock.json pin, with the settings build.mjs uses.
3. The v1 escrow's ABI has the draft's v1 interface; the v2 escrow's has mppx's
   `Session.Precompile.escrowAbi` functions and events (so mppx's calls and log
   decoding work against it).
4. With node on PATH: a fresh `npm ci` of the pinned solc and `node build.mjs`
   into a temporary directory reproduce the committed artifacts byte for byte.
   Skipped without node; without the npm registry it is skipped too, except in
   CI (CI set), where the registry is reachable and a failure is a failure.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHAIN = Path(__file__).resolve().parent.parent / "adapters" / "chain"
SOLIDITY = CHAIN / "solidity"
ARTIFACTS = CHAIN / "artifacts"
NAMES = ("TempoStreamChannel", "TestToken", "TIP20ChannelEscrow")
SOURCES = ("TempoStreamChannel.sol", "TestToken.sol", "TIP20ChannelEscrow.sol")


def _artifact(name: str) -> dict:
    return json.loads((ARTIFACTS / f"{name}.json").read_text())


def _pinned() -> str:
    return json.loads((SOLIDITY / "package.json").read_text())["dependencies"]["solc"]


@pytest.mark.parametrize("name", NAMES)
def test_artifact_hashes_match_the_sources(name):
    recorded = _artifact(name)["sources"]
    assert set(recorded) == set(SOURCES)
    for source in SOURCES:
        digest = hashlib.sha256((SOLIDITY / source).read_bytes()).hexdigest()
        assert recorded[source]["sha256"] == digest, f"{source} changed since {name}.json was built: run `make contracts`"


@pytest.mark.parametrize("name", NAMES)
def test_artifact_records_the_pinned_compiler(name):
    art = _artifact(name)
    pinned = _pinned()
    assert pinned.count(".") == 2 and pinned[0].isdigit(), "package.json must pin an exact solc version"
    lock = json.loads((SOLIDITY / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/solc"]["version"] == pinned
    assert art["compiler"]["version"].startswith(pinned + "+")
    assert art["compiler"]["npmPackage"] == f"solc@{pinned}"
    assert art["settings"]["optimizer"] == {"enabled": True, "runs": 200}
    for key in ("abi", "bytecode", "deployedBytecode"):
        assert art[key]
    assert art["bytecode"].startswith("0x") and art["deployedBytecode"].startswith("0x")


def test_escrow_abi_has_the_draft_v1_interface():
    abi = _artifact("TempoStreamChannel")["abi"]
    sigs = {
        (item["type"], f"{item['name']}({','.join(i['type'] for i in item['inputs'])})")
        for item in abi
        if item["type"] in ("function", "event", "error")
    }
    functions = [
        "open(address,address,uint128,bytes32,address)",
        "settle(bytes32,uint128,bytes)",
        "topUp(bytes32,uint128)",
        "close(bytes32,uint128,bytes)",
        "close(bytes32,uint128,uint128,bytes)",  # our capture overload
        "requestClose(bytes32)",
        "withdraw(bytes32)",
        "getChannel(bytes32)",
        "getChannelsBatch(bytes32[])",
        "computeChannelId(address,address,address,bytes32,address)",
        "getVoucherDigest(bytes32,uint128)",
        "domainSeparator()",
        "CLOSE_GRACE_PERIOD()",
        "VOUCHER_TYPEHASH()",
    ]
    events = [
        "ChannelOpened(bytes32,address,address,address,address,uint256)",
        "Settled(bytes32,address,address,uint256,uint256,uint256)",
        "CloseRequested(bytes32,address,address,uint256)",
        "CloseRequestCancelled(bytes32,address,address)",
        "TopUp(bytes32,address,address,uint256,uint256)",
        "ChannelClosed(bytes32,address,address,uint256,uint256)",
    ]
    errors = [
        "ChannelAlreadyExists()", "ChannelNotFound()", "ChannelFinalized()", "InvalidSignature()",
        "AmountExceedsDeposit()", "AmountNotIncreasing()", "NotPayer()", "NotPayee()",
        "TransferFailed()", "CloseNotReady()",
    ]
    missing = (
        [f for f in functions if ("function", f) not in sigs]
        + [e for e in events if ("event", e) not in sigs]
        + [e for e in errors if ("error", e) not in sigs]
    )
    assert not missing


def _signatures(abi: list[dict]) -> set[tuple[str, str]]:
    def typ(i: dict) -> str:
        if i["type"].startswith("tuple"):
            return "(" + ",".join(typ(c) for c in i["components"]) + ")" + i["type"][5:]
        return i["type"]

    return {
        (item["type"], f"{item['name']}({','.join(typ(i) for i in item['inputs'])})")
        for item in abi
        if item["type"] in ("function", "event", "error")
    }


_DESCRIPTOR = "(address,address,address,address,bytes32,address,bytes32)"


def test_v2_escrow_abi_has_the_precompile_interface_of_mppx():
    """Every function and event of mppx 0.11's Session.Precompile.escrowAbi, with its argument types,
    and each event's indexed fields as mppx decodes them."""
    abi = _artifact("TIP20ChannelEscrow")["abi"]
    sigs = _signatures(abi)
    functions = [
        "CLOSE_GRACE_PERIOD()",
        "VOUCHER_TYPEHASH()",
        "open(address,address,address,uint96,bytes32,address)",
        f"settle({_DESCRIPTOR},uint96,bytes)",
        f"topUp({_DESCRIPTOR},uint96)",
        f"close({_DESCRIPTOR},uint96,uint96,bytes)",
        f"requestClose({_DESCRIPTOR})",
        f"withdraw({_DESCRIPTOR})",
        f"getChannel({_DESCRIPTOR})",
        "getChannelState(bytes32)",
        "getChannelStatesBatch(bytes32[])",
        "computeChannelId(address,address,address,address,bytes32,address,bytes32)",
        "getVoucherDigest(bytes32,uint96)",
        "domainSeparator()",
    ]
    events = {
        "ChannelOpened(bytes32,address,address,address,address,address,bytes32,bytes32,uint96)": 3,
        "Settled(bytes32,address,address,uint96,uint96,uint96)": 3,
        "TopUp(bytes32,address,address,uint96,uint96)": 3,
        "CloseRequested(bytes32,address,address,uint256)": 3,
        "ChannelClosed(bytes32,address,address,uint96,uint96)": 3,
        "CloseRequestCancelled(bytes32,address,address)": 3,
    }
    missing = [f for f in functions if ("function", f) not in sigs] + [e for e in events if ("event", e) not in sigs]
    assert not missing
    for item in abi:
        if item["type"] == "event":
            assert [i["indexed"] for i in item["inputs"]][:3] == [True, True, True], item["name"]
            assert not any(i["indexed"] for i in item["inputs"][3:]), item["name"]
    outputs = {item["name"]: item["outputs"] for item in abi if item["type"] == "function"}
    (state,) = outputs["getChannelState"]
    assert [(c["name"], c["type"]) for c in state["components"]] == [
        ("settled", "uint96"), ("deposit", "uint96"), ("closeRequestedAt", "uint32")
    ]
    (channel,) = outputs["getChannel"]
    assert [c["name"] for c in channel["components"]] == ["descriptor", "state"]


def _npm_ci(workdir: Path) -> None:
    try:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=workdir, check=True, capture_output=True, text=True, timeout=300,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        if os.environ.get("CI"):
            pytest.fail(f"npm ci of the pinned solc failed in CI: {detail[-2000:]}")
        pytest.skip(f"npm ci of the pinned solc failed (no npm registry here?): {detail[-300:]}")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH: cannot recompile the contracts")
def test_recompiling_reproduces_the_committed_artifacts(tmp_path):
    work = tmp_path / "solidity"
    work.mkdir()
    for name in ("package.json", "package-lock.json", "build.mjs", *SOURCES):
        shutil.copy2(SOLIDITY / name, work / name)
    _npm_ci(work)
    out = tmp_path / "artifacts"
    subprocess.run(["node", "build.mjs", "--out", str(out)], cwd=work, check=True, capture_output=True, text=True, timeout=300)
    for name in NAMES:
        committed = (ARTIFACTS / f"{name}.json").read_bytes()
        rebuilt = (out / f"{name}.json").read_bytes()
        if rebuilt != committed:
            a, b = json.loads(committed), json.loads(rebuilt)
            differing = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            pytest.fail(f"{name}.json differs from a fresh build in {differing}: run `make contracts`")
