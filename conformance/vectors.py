"""Stateful test vectors: numbered wire steps with the verdicts the model gives, for any language to replay.

`export(dir)` plays each case of `CASES` against the model over the real wire
(conformance.model_impl.ModelServer: model.server.handle behind model/wire.py
headers and model/crypto.py signatures) on a fresh memory chain with fixed
keys, and writes what it sent and what the model answered: one JSON file per
case plus `index.json` (format: vectors/README.md). Expectations are never
written by hand: every `expect`/`after` is what the model did.

`replay(case, server)` plays one exported case against any adapter with the
conformance server interface (conformance/interface.py) and returns the
mismatches; tests/test_vectors.py runs it on the model and the reference server.

Each credentialed step is *rebound*: the runner asks the server under test for
a fresh challenge (the same request without Authorization) and wraps the
vector's payload in it, because the challenge id is an HMAC under the server's
own secret. The exact header the model received is kept as `authorization`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional

import attrs
import httpx

from adapters.chain import make_chain
from model import wire
from model.crypto import address_of, sign_voucher, to_high_s

from .interface import BASE_URL, IDEMPOTENCY_HEADER, PAID_PATH, PAYER_HEADER, Env
from .model_impl import ModelServer, challenge_from_response, domain_of, problem_slug

FORMAT = "tempo-session-vectors/1"
PRICE = 1
WALLET = 100
UNKNOWN_CHANNEL = "0x" + "99" * 32


def _key(tag: str) -> bytes:
    return hashlib.sha256(f"vectors:{tag}".encode()).digest()


PAYER_KEY, STRANGER_KEY, PAYEE_KEY = _key("payer"), _key("stranger"), _key("payee")


def model_version() -> str:
    """A digest of model/*.py: which model produced the expectations (stable run to run, unlike a commit)."""
    root = Path(__file__).resolve().parent.parent / "model"
    h = hashlib.sha256()
    for p in sorted(root.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return "sha256:" + h.hexdigest()[:16]


# ---------------------------------------------------------------------------- cases

@attrs.frozen
class Case:
    case_id: str
    description: str
    steps: tuple  # of dicts: {"op": ..., "rules": [...], ...} (see _play)
    profile: str = "v2"  # hint encoding of the deployment
    hinted: bool = True


def _req(op: str, *rules: str, **kw) -> dict:
    return {"op": op, "rules": list(rules), **kw}


OPEN = _req("open", "O1", "C1", "S-R1", deposit=4, amount=1)

CASES: tuple[Case, ...] = (
    Case("open-and-pay", "open a channel with a voucher for one request, then pay a second with an advancing voucher",
         (OPEN, _req("voucher", "V2", "C1", "C2", "S-R1", amount=2))),
    Case("challenge-no-channel", "an unpaid request from a payer without a channel gets a challenge without hints",
         (_req("challenge", "S-H1"),)),
    Case("challenge-hinted", "after an open the challenge hints the channel with requiredCumulative = spent + price "
         "for GET and = acceptedCumulative for HEAD",
         (OPEN, _req("challenge", "S-H1", "S-H2", "S-H3"), _req("challenge", "S-H2", "C1", method="HEAD"))),
    Case("challenge-hinted-v1", "the v1 flat hint encoding of the same challenge",
         (OPEN, _req("challenge", "S-H1", "S-H2", "S-H3")), profile="v1"),
    Case("challenge-legacy", "a legacy server gives at most the channelId",
         (OPEN, _req("challenge", "S-H3")), hinted=False),
    Case("voucher-unknown-channel", "a voucher for a channel nobody opened is 410 channel-not-found",
         (_req("voucher", "V1", amount=1, channel="unknown"),)),
    Case("voucher-finalized", "after a cooperative close a voucher is 410 channel-finalized and the challenge hints nothing",
         (OPEN, _req("close", "X1", "X2", "X3", amount=1), _req("voucher", "V1", amount=2),
          _req("challenge", "S-H1"))),
    Case("voucher-bad-signature", "a high-s signature does not verify: 402 invalid-signature, nothing changes",
         (OPEN, _req("voucher", "V2", amount=2, signer="high-s"))),
    Case("voucher-signer-mismatch", "a voucher signed by another key: 402 signer-mismatch, nothing changes",
         (OPEN, _req("voucher", "V2", amount=2, signer="stranger"))),
    Case("voucher-close-pending", "the payer requested a forced close: vouchers are refused (410) and nothing is hinted",
         (OPEN, _req("request_close", "E5"), _req("voucher", "V3", amount=2), _req("challenge", "S-H1"))),
    Case("voucher-above-deposit", "a voucher above the on-chain deposit: 402 amount-exceeds-deposit",
         (OPEN, _req("voucher", "V4", amount=5))),
    Case("voucher-below-accepted", "a voucher below acceptedCumulative: 402 verification-failed",
         (_req("open", "O1", deposit=4, amount=3), _req("voucher", "V5", amount=2))),
    Case("voucher-equal-replay", "an equal voucher is idempotent: it pays while the balance lasts, then "
         "402 insufficient-balance with requiredTopUp, nothing charged",
         (_req("open", "O1", deposit=4, amount=2), _req("voucher", "V6", "C2", amount=2),
          _req("voucher", "V6", "C2", amount=2))),
    Case("insufficient-balance-voucher-stands", "an advancing voucher that does not cover the price is accepted, "
         "the request is refused and nothing is charged",
         (_req("open", "O1", "C2", deposit=4, amount=0), _req("voucher", "C2", amount=1),
          _req("voucher", "C2", "V6", amount=1))),
    Case("head-is-free", "a voucher on HEAD is management: accepted, not charged",
         (OPEN, _req("voucher", "C1", "S-R1", amount=3, method="HEAD"), _req("voucher", "C1", amount=3))),
    Case("lost-response-retry", "the response to a paid request is lost; the retry with the same Idempotency-Key "
         "gets the stored response and is not charged again",
         (_req("open", "O1", deposit=4, amount=1, key="k-open"),
          _req("voucher", "C1", amount=2, key="k-1", lost=True),
          _req("voucher", "I1", amount=2, key="k-1"),
          _req("voucher", "I1", "C1", amount=3, key="k-2"))),
    Case("idempotency-key-alone", "a known Idempotency-Key with a voucher another key signed buys nothing",
         (_req("open", "O1", deposit=4, amount=1, key="k-open"),
          _req("voucher", "I1", "V2", amount=1, key="k-open", signer="stranger"))),
    Case("server-restart", "the server restarts between two requests: accounting is durable",
         (OPEN, _req("restart_server", "C3"), _req("challenge", "S-H2"), _req("voucher", "C3", amount=2))),
    Case("topup-then-voucher", "a voucher above the deposit is refused, the payer tops up, the same voucher is then "
         "accepted; a replayed topUp adds nothing",
         (OPEN, _req("voucher", "V4", amount=5), _req("topUp", "T1", amount=2), _req("voucher", "V4", amount=5),
          _req("topUp", "T2", amount=2, replay=True), _req("challenge", "S-H3"))),
    Case("topup-unknown-channel", "a topUp for a channel the server does not know",
         (_req("topUp", "T1", amount=2, channel="unknown"),)),
    Case("close-below-spent", "a close voucher below max(spent, settled) is refused; one covering it closes",
         (_req("open", "O1", deposit=4, amount=2), _req("voucher", "C1", amount=2),
          _req("close", "X2", amount=1), _req("close", "X1", "X2", "X3", amount=3))),
    Case("settle-then-continue", "the server settles its highest voucher; the channel goes on and the hints show "
         "what was settled",
         (_req("open", "O1", deposit=4, amount=2), _req("settle", "X4"), _req("challenge", "S-H3"),
          _req("voucher", "V5", amount=1), _req("voucher", "C2", amount=3))),
    Case("rollout-fleet", "a fleet sharing one store where one server hints and another does not",
         (OPEN, _req("challenge", "S-H3"), _req("switch_server", "S-H3", hinted=False), _req("challenge", "S-H3"),
          _req("voucher", "V2", amount=2), _req("switch_server", "S-H3", hinted=True), _req("challenge", "S-H2"))),
)


# ---------------------------------------------------------------------------- one deployment

def _env(case: Case, workdir: str) -> tuple[Env, Any]:
    chain = make_chain("memory")
    chain.fund(PAYEE_KEY, 0)
    chain.fund(PAYER_KEY, WALLET)
    chain.fund(STRANGER_KEY, WALLET)
    return Env(chain, PAYEE_KEY, PRICE, case.hinted, case.profile, 0, workdir), chain


def deployment(case: Case, chain) -> dict:
    domain = domain_of(chain)
    return {"chain": "memory", "chainId": chain.chain_id, "escrow": chain.escrow, "token": chain.token,
            "voucherDomain": {"version": domain.version, "name": "Tempo Stream Channel"},
            "price": PRICE, "hinted": case.hinted, "hintProfile": case.profile, "wallet": WALLET,
            "keys": {"payer": "0x" + PAYER_KEY.hex(), "stranger": "0x" + STRANGER_KEY.hex(),
                     "payee": "0x" + PAYEE_KEY.hex()},
            "addresses": {"payer": address_of(PAYER_KEY), "stranger": address_of(STRANGER_KEY),
                          "payee": address_of(PAYEE_KEY)}}


def switch_fleet(server, hinted: bool) -> None:
    """Route the next requests to a fleet member that shares the store but (does not) hint."""
    if isinstance(server, ModelServer):
        server.cfg = attrs.evolve(server.cfg, hinted=hinted)
        return
    server.config = attrs.evolve(server.config, hinted=hinted)
    server.restart()  # a new process on the same database


# ---------------------------------------------------------------------------- observables

def _hints(resp: httpx.Response, domain) -> Optional[dict]:
    _, ch = challenge_from_response(resp, domain)
    if ch is None or ch.hints is None:
        return None
    h = ch.hints
    out = {"channelId": h.channel_id, "acceptedCumulative": h.accepted, "spent": h.spent, "deposit": h.deposit,
           "settled": h.settled, "requiredCumulative": h.required}
    return {k: v for k, v in out.items() if v is not None}


def observe(resp: httpx.Response, domain) -> dict:
    out: dict[str, Any] = {"status": resp.status_code}
    if resp.status_code != 200:
        out["problem"] = problem_slug(resp)
        try:
            top = wire.parse_problem(resp.content).model_extra or {}
        except wire.WireError:
            top = {}
        rt = top.get("requiredTopUp", top.get("required_top_up"))
        if rt is not None:
            out["requiredTopUp"] = int(rt)
        out["challenge"] = "www-authenticate" in resp.headers
        if out["challenge"]:
            out["hints"] = _hints(resp, domain)
    else:
        r = wire.parse_receipt(resp.headers["payment-receipt"])
        out["receipt"] = {"channelId": r.channel_id, "acceptedCumulative": r.accepted_cumulative, "spent": r.spent}
    return out


def _after(server, cid: Optional[str]) -> Optional[dict]:
    rec = server.record(cid) if cid else None
    return None if rec is None else {"channelId": rec.channel_id, "acceptedCumulative": rec.accepted,
                                     "spent": rec.spent}


# ---------------------------------------------------------------------------- playing

def _headers(method_has_payer: bool, auth: Optional[str], key: Optional[str], payer: str) -> dict:
    h = {PAYER_HEADER: payer} if method_has_payer else {}
    if auth:
        h["Authorization"] = auth
    if key:
        h[IDEMPOTENCY_HEADER] = key
    return h


def _send(server, method: str, headers: dict) -> httpx.Response:
    return server.handle(httpx.Request(method, BASE_URL + PAID_PATH, headers=headers))


def _fresh_challenge(server, method: str, payer: str) -> wire.Challenge:
    resp = _send(server, method, _headers(True, None, None, payer))
    found = [c for c in wire.parse_www_authenticate(resp.headers["www-authenticate"])
             if c.method == "tempo" and c.intent == "session"]
    return found[0]


def bind(payload_json: dict, source: str, challenge: wire.Challenge) -> str:
    """The Authorization value for a vector's payload under the server's own fresh challenge."""
    doc = {"challenge": json.loads(challenge.model_dump_json(by_alias=True, exclude_none=True)),
           "source": source, "payload": payload_json}
    return "Payment " + base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")


def _payload_json(authorization: str) -> dict:
    body = authorization.split(" ", 1)[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["payload"]


class _Author:
    """Builds each step's wire request against the model, fixing every salt and transaction."""

    def __init__(self, chain, domain):
        self.chain, self.domain = chain, domain
        self.payer = address_of(PAYER_KEY)
        self.payee = address_of(PAYEE_KEY)
        self.cid: Optional[str] = None
        self.opened = 0
        self.txs: dict = {}

    def payload(self, step: dict):
        op = step["op"]
        if op == "open":
            salt = "0x" + hashlib.sha256(f"vectors:salt:{self.opened}".encode()).hexdigest()
            self.opened += 1
            raw, cid = self.chain.build_open_tx(PAYER_KEY, self.payee, step["deposit"], salt, self.payer)
            self.cid = cid
            return wire.OpenPayload(channel_id=cid, transaction=raw, cumulative_amount=step["amount"],
                                    signature=sign_voucher(PAYER_KEY, self.domain, cid, step["amount"]),
                                    authorized_signer=self.payer)
        cid = UNKNOWN_CHANNEL if step.get("channel") == "unknown" else self.cid
        if op == "topUp":
            if step.get("replay"):
                raw = self.txs[cid]
            else:
                raw = self.txs[cid] = self.chain.build_topup_tx(PAYER_KEY, cid, step["amount"])
            return wire.TopUpPayload(channel_id=cid, transaction=raw, additional_deposit=step["amount"])
        key = STRANGER_KEY if step.get("signer") == "stranger" else PAYER_KEY
        sig = sign_voucher(key, self.domain, cid, step["amount"])
        if step.get("signer") == "high-s":
            sig = to_high_s(sig)
        cls = wire.VoucherPayload if op == "voucher" else wire.ClosePayload
        return cls(channel_id=cid, cumulative_amount=step["amount"], signature=sig)


REQUEST_OPS = ("open", "voucher", "topUp", "close")


def generate(case: Case, workdir: str) -> dict:
    """Play `case` on the model over the wire; return the vector document."""
    env, chain = _env(case, workdir)
    server = ModelServer("model")
    server.reset(env)
    domain = domain_of(chain)
    author = _Author(chain, domain)
    steps = []
    for n, step in enumerate(case.steps, 1):
        op = step["op"]
        method = step.get("method", "GET")
        out: dict[str, Any] = {"n": n, "op": op, "rules": step["rules"]}
        if op == "challenge":
            headers = _headers(True, None, None, author.payer)
            resp = _send(server, method, headers)
            out["request"] = {"method": method, "path": PAID_PATH, "headers": headers}
            out["expect"] = observe(resp, domain)
        elif op in REQUEST_OPS:
            payload = author.payload(step)
            wc = _fresh_challenge(server, method, author.payer)
            source = f"did:pkh:eip155:{chain.chain_id}:{author.payer}"
            auth = wire.encode_authorization(wire.Credential(challenge=wc, source=source, payload=payload))
            key = step.get("key") if op in ("open", "voucher") else None
            headers = _headers(True, auth, key, author.payer)
            resp = _send(server, method, headers)
            out["request"] = {"method": method, "path": PAID_PATH, "headers": headers}
            out["credential"] = {"source": source, "payload": _payload_json(auth)}
            if step.get("lost"):
                out["lost"] = True
            out["expect"] = observe(resp, domain)
        elif op == "restart_server":
            server.restart()
        elif op == "switch_server":
            out["hinted"] = step["hinted"]
            switch_fleet(server, step["hinted"])
        elif op == "request_close":
            chain.request_close(PAYER_KEY, author.cid)
            out["channelId"] = author.cid
        elif op == "settle":
            server.settle(author.cid)
            out["channelId"] = author.cid
        else:  # pragma: no cover - a typo in CASES
            raise ValueError(f"case {case.case_id} step {n}: unknown op {op!r}")
        out["after"] = _after(server, author.cid)
        steps.append(out)
    rules = sorted({r for s in case.steps for r in s["rules"]})
    return {"format": FORMAT, "caseId": case.case_id, "description": case.description, "rules": rules,
            "modelVersion": model_version(), "deployment": deployment(case, chain), "steps": steps}


def export(directory: str | os.PathLike, cases: tuple[Case, ...] = CASES) -> dict:
    """Write one `<caseId>.json` per case and `index.json`; returns the index."""
    import tempfile

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    index = {"format": FORMAT, "modelVersion": model_version(), "cases": [], "rules": {}}
    with tempfile.TemporaryDirectory(prefix="vectors-") as work:
        for case in cases:
            doc = generate(case, work)
            (out / f"{case.case_id}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
            index["cases"].append({"caseId": case.case_id, "file": f"{case.case_id}.json", "rules": doc["rules"],
                                   "steps": len(doc["steps"]), "hintProfile": case.profile, "hinted": case.hinted})
            for s in doc["steps"]:
                for r in s["rules"]:
                    index["rules"][r] = index["rules"].get(r, 0) + 1
    index["rules"] = dict(sorted(index["rules"].items()))
    (out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    return index


# ---------------------------------------------------------------------------- replaying

def replay(doc: dict, make_server: Callable[[], Any], workdir: str) -> list[str]:
    """Play an exported vector against a fresh server adapter; the mismatches (empty: pass)."""
    case = Case(doc["caseId"], doc["description"], (), doc["deployment"]["hintProfile"], doc["deployment"]["hinted"])
    env, chain = _env(case, workdir)
    server = make_server()
    server.reset(env)
    domain = domain_of(chain)
    payer = doc["deployment"]["addresses"]["payer"]
    problems = []
    for step in doc["steps"]:
        op, where = step["op"], f"{doc['caseId']} step {step['n']} ({step['op']})"
        got = None
        if op == "challenge":
            got = observe(_send(server, step["request"]["method"], step["request"]["headers"]), domain)
        elif op in REQUEST_OPS:
            method = step["request"]["method"]
            wc = _fresh_challenge(server, method, payer)
            headers = dict(step["request"]["headers"])
            headers["Authorization"] = bind(step["credential"]["payload"], step["credential"]["source"], wc)
            got = observe(_send(server, method, headers), domain)
        elif op == "restart_server":
            server.restart()
        elif op == "switch_server":
            switch_fleet(server, step["hinted"])
        elif op == "request_close":
            chain.request_close(PAYER_KEY, step["channelId"])
        elif op == "settle":
            server.settle(step["channelId"])
        if got is not None and got != step["expect"]:
            problems.append(f"{where}: expected {step['expect']}, got {got}")
        cid = (step.get("after") or {}).get("channelId")
        after = _after(server, cid) if cid else None
        if after != step["after"]:
            problems.append(f"{where}: server record expected {step['after']}, got {after}")
    if hasattr(server, "close_resources"):
        server.close_resources()
    return problems


def cmd_vectors(args) -> int:
    """`python -m conformance vectors export DIR`."""
    index = export(args.dir)
    print(f"wrote {len(index['cases'])} cases to {args.dir}")
    for rule, count in index["rules"].items():
        print(f"  {rule}: {count} steps")
    return 0
