"""Stateful test vectors: numbered wire steps with the verdicts the model gives, for any language to replay.

`export(dir)` writes three sets (format: vectors/README.md), one JSON file per
case plus `index.json`; expectations are never written by hand:
- v1 (`CASES`): played against the model over the real wire
  (conformance.model_impl.ModelServer: model.server.handle behind wire/codec.py
  headers and wire/crypto.py v1 signatures) on a fresh memory chain with fixed keys;
- v2 (`V2_CASES`): seeded channels, v2 voucher domain, run on model.server.handle
  directly, for mppx (vectors/run-vectors.mjs);
- client (`CLIENT_CASES`): one challenge and what the model client signs in answer.

`replay(doc, make_server, workdir)` / `replay_client(doc, make_client, workdir)` play one
exported case against any adapter with the conformance interface
(conformance/interface.py) and return the mismatches; tests/test_vectors.py runs
them on the model and the reference implementations.

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
from model import chain as mchain
from model import server as msv
from wire import codec as wire
from model.base import fm_set
from wire.crypto import (CryptoError, VoucherDomain, address_of, keccak, recover_voucher_signer, sign_voucher,
                          to_high_s)
from model.messages import Challenge as MChallenge
from model.messages import Credential as MCredential
from model.messages import Request as MRequest
from model.records import Hints, Voucher

from .interface import BASE_URL, IDEMPOTENCY_HEADER, PAID_PATH, PAYER_HEADER, ClientParams, Env
from .model_impl import ModelClient, ModelServer, challenge_from_response, domain_of, problem_slug

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
    Case("open-bad-voucher", "an open whose initial voucher another key signed is refused before the transaction "
         "is broadcast (nothing moves); the payer's proper open then succeeds",
         (_req("open", "O2", deposit=4, amount=1, signer="stranger"), _req("challenge", "O2", "S-H1"),
          _req("open", "O1", deposit=4, amount=1, replay=True))),
    Case("open-above-deposit", "an open whose initial voucher exceeds its own deposit is refused",
         (_req("open", "O2", deposit=4, amount=5),)),
    Case("open-replayed", "a replayed open for a known channel is handled as a voucher (equal: idempotent)",
         (OPEN, _req("open", "O3", "V6", "C2", deposit=4, amount=1, replay=True),
          _req("open", "O3", "C1", deposit=4, amount=2, replay=True))),
    Case("close-foreign-signature", "a close voucher another key signed is refused; the channel stays open",
         (OPEN, _req("close", "X1", amount=1, signer="stranger"), _req("voucher", "C1", amount=2))),
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
            if step.get("replay"):  # the same signed transaction again (rule O3)
                raw, cid = self.txs["open"]
            else:
                salt = "0x" + hashlib.sha256(f"vectors:salt:{self.opened}".encode()).hexdigest()
                self.opened += 1
                raw, cid = self.txs["open"] = self.chain.build_open_tx(PAYER_KEY, self.payee, step["deposit"], salt,
                                                                       self.payer)
            self.cid = cid
            key = STRANGER_KEY if step.get("signer") == "stranger" else PAYER_KEY
            return wire.OpenPayload(channel_id=cid, transaction=raw, cumulative_amount=step["amount"],
                                    signature=sign_voucher(key, self.domain, cid, step["amount"]),
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


def export(directory: str | os.PathLike) -> dict:
    """Write `v1/<caseId>.json` (memory chain, v1 voucher domain: our implementations), `v2/<caseId>.json`
    (seeded channels, v2 domain: mppx) and the top-level `index.json`; returns the index."""
    import tempfile

    out = Path(directory)
    index: dict[str, Any] = {"format": FORMAT, "modelVersion": model_version(), "sets": {}, "rules": {}}
    with tempfile.TemporaryDirectory(prefix="vectors-") as work:
        docs = {"v1": [generate(c, work) for c in CASES], "v2": [generate_v2(c) for c in V2_CASES],
                "client": [generate_client(c, work) for c in CLIENT_CASES]}
    for name, items in docs.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        entries = index["sets"][name] = []
        for doc in items:
            (out / name / f"{doc['caseId']}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
            entries.append({"caseId": doc["caseId"], "file": f"{name}/{doc['caseId']}.json", "rules": doc["rules"],
                            "steps": len(doc.get("steps", [doc]))})
            for s in doc.get("steps", [doc]):  # a client case is one step
                for r in s["rules"]:
                    per = index["rules"].setdefault(r, {"v1": 0, "v2": 0, "client": 0})
                    per[name] += 1
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
    sets = index["sets"]
    print(f"wrote {len(sets['v1'])} v1, {len(sets['v2'])} v2 and {len(sets['client'])} client cases to {args.dir}")
    for rule, count in index["rules"].items():
        print(f"  {rule}: {count['v1']} v1 steps, {count['v2']} v2 steps, {count['client']} client cases")
    return 0


# ============================================================================ v1 client cases
#
# A client case: a chain holding the payer's channel (raw memory-chain transactions to broadcast), one challenge
# (the exact WWW-Authenticate value) given to a client that lost its local state, and what the model client
# signs in answer: the action, channel and cumulativeAmount of its credential, or that it refuses.


CLIENT_PARAMS = {"deposit": 4, "topUp": 2, "maxUnproven": 0}


@attrs.frozen
class ClientCase:
    case_id: str
    description: str
    rules: tuple
    history: tuple = ()  # server-side steps played first on the model server (as in CASES)
    lie: Optional[dict] = None  # hints the challenge carries instead of the server's own (no proof)
    other_payer: bool = False  # the channel of `history` belongs to the stranger
    hinted: bool = True  # whether the server that authors the challenge hints values


CLIENT_CASES: tuple[ClientCase, ...] = (
    ClientCase("client-no-channel", "no channel and no hints: the client opens with its deposit and a voucher "
               "for the price", ("H2",)),
    ClientCase("client-hinted-proof", "a hinted challenge with the server's highest voucher as proof: a client "
               "without local state signs requiredCumulative", ("H0", "H1", "H3"),
               history=(OPEN, _req("voucher", amount=2))),
    ClientCase("client-legacy-hint", "only a channelId: the client recovers from chain (cumulative = settled) and "
               "signs from what the chain proves", ("H2", "H3"), history=(OPEN, _req("voucher", amount=2)),
               hinted=False),
    ClientCase("client-inflated-hint", "hints far above anything proven (no highestVoucher): the client must not "
               "sign above floor + price + allowance", ("H4",),
               history=(OPEN,), lie={"accepted": 50, "spent": 49, "deposit": 100, "required": 50, "settled": 0}),
    ClientCase("client-foreign-channel", "a hint for another payer's channel is ignored: the client opens its own",
               ("H0",), history=(OPEN,), other_payer=True),
)


class _ScriptedServer:
    """Answers every unpaid request with the vector's challenge and every paid one with 200, recording credentials."""

    def __init__(self, challenge: str):
        self.challenge, self.sent = challenge, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization")
        if not auth:
            return httpx.Response(402, headers={"www-authenticate": self.challenge,
                                                "content-type": "application/problem+json"},
                                  content=wire.encode_problem(wire.problem("payment-required")))
        self.sent.append(auth)
        p = wire.parse_authorization(auth).payload
        amount = getattr(p, "cumulative_amount", 0)
        receipt = wire.Receipt(timestamp="2026-01-01T00:00:00Z", reference=p.channel_id, challenge_id="vector",
                               channel_id=p.channel_id, accepted_cumulative=amount, spent=amount)
        return httpx.Response(200, headers={"payment-receipt": wire.encode_receipt(receipt)}, content=b"content")


def _signed(sent: list) -> list:
    out = []
    for auth in sent:
        p = wire.parse_authorization(auth).payload
        out.append({"action": p.action, "channelId": p.channel_id if p.action != "open" else None,
                    "cumulativeAmount": getattr(p, "cumulative_amount", None)})
    return out


def client_params() -> ClientParams:
    return ClientParams("payer", PAYER_KEY, True, CLIENT_PARAMS["deposit"], CLIENT_PARAMS["topUp"],
                        CLIENT_PARAMS["maxUnproven"])


def generate_client(case: ClientCase, workdir: str) -> dict:
    env, chain = _env(Case(case.case_id, case.description, (), hinted=case.hinted), workdir)
    server = ModelServer("model")
    server.reset(env)
    domain = domain_of(chain)
    author = _Author(chain, domain)
    if case.other_payer:
        author.payer = address_of(STRANGER_KEY)
    txs = []
    for step in case.history:
        payload = author.payload(step) if not case.other_payer else _stranger_open(author, step)
        if getattr(payload, "transaction", None):
            txs.append(payload.transaction)
        wc = _fresh_challenge(server, "GET", author.payer)
        auth = wire.encode_authorization(wire.Credential(challenge=wc, source="did:pkh:eip155:0:x", payload=payload))
        _send(server, "GET", _headers(True, auth, None, author.payer))
    payer = address_of(PAYER_KEY)
    if case.lie is not None:
        header = server._challenge(MChallenge(price=PRICE, hints=Hints(channel_id=author.cid, **case.lie)))
    else:
        resp = _send(server, "GET", _headers(True, None, None, author.payer if case.other_payer else payer))
        header = resp.headers["www-authenticate"]
    sent = play_client(ModelClient("model"), env, header)
    return {"format": FORMAT, "caseId": case.case_id, "description": case.description, "rules": list(case.rules),
            "modelVersion": model_version(), "deployment": {**deployment(Case(case.case_id, "", ()), chain),
                                                            "client": CLIENT_PARAMS},
            "chainSetup": txs, "challenge": header, "request": {"method": "GET", "path": PAID_PATH},
            "expect": {"signed": sent}}


def _stranger_open(author: _Author, step: dict):
    raw, cid = author.chain.build_open_tx(STRANGER_KEY, author.payee, step["deposit"], "0x" + "ab" * 32,
                                          address_of(STRANGER_KEY))
    author.cid = cid
    return wire.OpenPayload(channel_id=cid, transaction=raw, cumulative_amount=step["amount"],
                            signature=sign_voucher(STRANGER_KEY, author.domain, cid, step["amount"]),
                            authorized_signer=address_of(STRANGER_KEY))


def play_client(client, env: Env, header: str) -> list:
    """One GET by a fresh client against the scripted challenge; what it signed (empty: it refused)."""
    script = _ScriptedServer(header)
    client.reset(env, client_params(), httpx.MockTransport(script))
    try:
        client.request("GET", PAID_PATH)
    finally:
        if hasattr(client, "close_resources"):
            client.close_resources()
    return _signed(script.sent[:1])


def replay_client(doc: dict, make_client: Callable[[], Any], workdir: str) -> list[str]:
    env, chain = _env(Case(doc["caseId"], "", ()), workdir)
    for raw in doc["chainSetup"]:
        chain.broadcast(raw)
    got = play_client(make_client(), env, doc["challenge"])
    want = doc["expect"]["signed"]
    return [] if got == want else [f"{doc['caseId']}: expected the client to sign {want}, it signed {got}"]


# ============================================================================ v2: seeded channels, for mppx
#
# mppx@0.11.0 has only a v2 server (voucher domain "TIP20 Channel Reserve"; channel ids from the v2
# descriptor) and opens only with Tempo transactions, so the v2 set starts each case from a seeded
# channel (on chain and in the server's store) and exercises the voucher path. Its expectations come
# from model.server.handle directly, on a model chain and server holding exactly the seed.


ZERO_ADDRESS = "0x" + "00" * 20
V2_DEPLOYMENT = {"chainId": 4217, "escrow": "0x9d136eea063ede5418a6bc7beaff009bbb6cfa70",
                 "currency": "0x20c0000000000000000000000000000000000000", "price": 10000,
                 "realm": "vectors.test", "secretKey": "vectors-secret-key-0123456789abcdef",
                 "expires": "2099-01-01T00:00:00.000Z", "decimals": 6}
V2_SEED = {"deposit": 1_000_000, "acceptedCumulative": 250_000, "spent": 240_000, "settled": 0,
           "closeRequestedAt": 0, "finalized": False}


def v2_domain() -> VoucherDomain:
    return VoucherDomain("v2", V2_DEPLOYMENT["chainId"], V2_DEPLOYMENT["escrow"])


def v2_descriptor() -> dict:
    return {"payer": address_of(PAYER_KEY).lower(), "payee": address_of(PAYEE_KEY).lower(),
            "operator": ZERO_ADDRESS, "token": V2_DEPLOYMENT["currency"], "salt": "0x" + "00" * 31 + "01",
            "authorizedSigner": ZERO_ADDRESS, "expiringNonceHash": "0x" + "00" * 31 + "02"}


def v2_channel_id(d: dict) -> str:
    """The v2 channel id: keccak256 of the ABI-encoded descriptor, escrow and chainId (all static words)."""
    def word(hexstr: str) -> bytes:
        return bytes.fromhex(hexstr[2:]).rjust(32, b"\0")
    parts = [word(d[k]) for k in ("payer", "payee", "operator", "token", "salt", "authorizedSigner",
                                  "expiringNonceHash")]
    parts += [word(V2_DEPLOYMENT["escrow"]), V2_DEPLOYMENT["chainId"].to_bytes(32, "big")]
    return "0x" + keccak(b"".join(parts)).hex()


@attrs.frozen
class SeededCase:
    case_id: str
    description: str
    steps: tuple
    seed: dict = attrs.field(factory=dict)  # overrides of V2_SEED
    min_voucher_delta: int = 0


V = _req  # a step of the v2 set
V2_CASES: tuple[SeededCase, ...] = (
    SeededCase("v2-challenge-hints", "the challenge hints the seeded channel: requiredCumulative = max(accepted, "
               "spent + price) for GET, = accepted for HEAD",
               (V("challenge", "S-H1", "S-H2", "S-H3"), V("challenge", "S-H2", "C1", method="HEAD"))),
    SeededCase("v2-challenge-below-accepted", "accepted 250000 with spent 200000: requiredCumulative stays 250000",
               (V("challenge", "S-H2"),), seed={"spent": 200_000}),
    SeededCase("v2-advance", "two advancing vouchers, each charged the price",
               (V("voucher", "V2", "C1", "S-R1", amount=260_000), V("voucher", "C1", "S-R1", amount=270_000))),
    SeededCase("v2-equal-replay", "an equal voucher pays while the balance lasts, then insufficient-balance with "
               "requiredTopUp",
               (V("voucher", "V6", "C2", amount=250_000), V("voucher", "V6", "C2", amount=250_000))),
    SeededCase("v2-below-accepted", "a voucher below acceptedCumulative: verification-failed",
               (V("voucher", "V5", amount=245_000),)),
    SeededCase("v2-above-deposit", "a voucher above the deposit: amount-exceeds-deposit",
               (V("voucher", "V4", amount=2_000_000),)),
    SeededCase("v2-high-s", "a high-s signature does not verify: invalid-signature, nothing stored",
               (V("voucher", "V2", amount=260_000, signer="high-s"), V("challenge", "S-H3"))),
    SeededCase("v2-signer-mismatch", "a voucher signed by another key: signer-mismatch",
               (V("voucher", "V2", amount=260_000, signer="stranger"),)),
    SeededCase("v2-bad-signature-above-deposit", "a foreign signature above the deposit: the signature is "
               "checked first (signer-mismatch)",
               (V("voucher", "V2", amount=2_000_000, signer="stranger"),)),
    SeededCase("v2-unknown-channel", "a voucher for an unknown channel: 410 channel-not-found",
               (V("voucher", "V1", amount=260_000, channel="unknown"),)),
    SeededCase("v2-finalized", "a finalized channel: 410 channel-finalized",
               (V("voucher", "V1", amount=260_000),), seed={"finalized": True}),
    SeededCase("v2-close-pending", "a pending forced close: 410, and no hints",
               (V("voucher", "V3", amount=260_000), V("challenge", "S-H1")), seed={"closeRequestedAt": 1}),
    SeededCase("v2-min-delta", "an advance below minVoucherDelta: delta-too-small; a large enough one is accepted",
               (V("voucher", "V7", amount=260_000), V("voucher", "V7", amount=300_000)), min_voucher_delta=50_000),
    SeededCase("v2-insufficient", "an advancing voucher short of the price is accepted, nothing charged",
               (V("voucher", "C2", amount=255_000), V("challenge", "C2", "S-H2")), seed={"spent": 250_000}),
    SeededCase("v2-head-free", "a voucher on HEAD is not charged",
               (V("voucher", "C1", amount=260_000, method="HEAD"),)),
    SeededCase("v2-idempotent-retry", "a lost response, retried with the same Idempotency-Key and voucher: the "
               "stored response, not charged again",
               (V("voucher", "C1", amount=260_000, key="k-1", lost=True), V("voucher", "I1", amount=260_000, key="k-1"))),
    SeededCase("v2-restart", "the server restarts between requests on the same store",
               (V("voucher", "C3", amount=260_000), V("restart_server", "C3"), V("challenge", "S-H2"),
                V("voucher", "C3", amount=270_000))),
    SeededCase("v2-topup-then-voucher", "a voucher above the deposit, the deposit grows on chain, the same voucher "
               "is accepted",
               (V("voucher", "V4", amount=1_200_000), V("chain", "T1", set={"deposit": 1_500_000}),
                V("voucher", "V4", "C1", amount=1_200_000), V("challenge", "S-H3"))),
)


def _recover(cid: str, amount: int, sig: str) -> Optional[str]:
    try:
        return recover_voucher_signer(v2_domain(), cid, amount, sig)
    except CryptoError:
        return None


def _seeded_state(case: SeededCase, cid: str):
    seed = {**V2_SEED, **case.seed}
    payer = address_of(PAYER_KEY)
    ch = mchain.EscrowChannel(cid, payer, address_of(PAYEE_KEY), payer, seed["deposit"], seed["settled"],
                              seed["closeRequestedAt"], seed["finalized"])
    chain = mchain.Chain(channels=fm_set((), cid, ch), time=2)
    accepted = seed["acceptedCumulative"]
    rec = msv.ServerChannel(cid, payer, accepted, Voucher(cid, accepted, payer), spent=seed["spent"],
                            units=0, deposit=seed["deposit"], settled=seed["settled"],
                            close_requested_at=seed["closeRequestedAt"], finalized=seed["finalized"], seq=1)
    return seed, chain, msv.Server(channels=fm_set((), cid, rec), opened=1)


def _model_observe(resp) -> dict:
    out: dict[str, Any] = {"status": resp.status}
    if resp.status == 200:
        r = resp.receipt
        out["receipt"] = {"channelId": r.channel_id, "acceptedCumulative": r.accepted, "spent": r.spent}
        return out
    out["problem"] = resp.problem
    if resp.required_top_up is not None:
        out["requiredTopUp"] = resp.required_top_up
    out["challenge"] = resp.challenge is not None
    if resp.challenge is not None:
        h = resp.challenge.hints
        out["hints"] = None if h is None else {k: v for k, v in {
            "channelId": h.channel_id, "acceptedCumulative": h.accepted, "spent": h.spent, "deposit": h.deposit,
            "settled": h.settled, "requiredCumulative": h.required}.items() if v is not None}
    return out


def generate_v2(case: SeededCase) -> dict:
    """Play a seeded v2 case on model.server.handle; the vector document."""
    descriptor = v2_descriptor()
    cid = v2_channel_id(descriptor)
    domain = v2_domain()
    payer = address_of(PAYER_KEY)
    seed, chain, server = _seeded_state(case, cid)
    highest_sig = sign_voucher(PAYER_KEY, domain, cid, seed["acceptedCumulative"])
    cfg = msv.ServerConfig(payee=address_of(PAYEE_KEY), price=V2_DEPLOYMENT["price"], hinted=True, profile="v2",
                           min_voucher_delta=case.min_voucher_delta)
    steps = []
    for n, step in enumerate(case.steps, 1):
        op, method = step["op"], step.get("method", "GET")
        content = method != "HEAD"
        out: dict[str, Any] = {"n": n, "op": op, "rules": step["rules"]}
        if op == "challenge":
            server, chain, resp = msv.handle(cfg, server, chain, MRequest(payer, content))
            out["request"] = {"method": method, "path": PAID_PATH, "headers": {"Payment-Session": cid}}
            out["expect"] = _model_observe(resp)
        elif op == "voucher":
            target = UNKNOWN_CHANNEL if step.get("channel") == "unknown" else cid
            key = STRANGER_KEY if step.get("signer") == "stranger" else PAYER_KEY
            sig = sign_voucher(key, domain, target, step["amount"])
            if step.get("signer") == "high-s":
                sig = to_high_s(sig)
            voucher = Voucher(target, step["amount"], _recover(target, step["amount"], sig))
            mreq = MRequest(payer, content, MCredential("voucher", target, voucher), step.get("key"))
            server, chain, resp = msv.handle(cfg, server, chain, mreq)
            headers = {"Payment-Session": cid}
            if step.get("key"):
                headers[IDEMPOTENCY_HEADER] = step["key"]
            out["request"] = {"method": method, "path": PAID_PATH, "headers": headers}
            out["credential"] = {"source": f"did:pkh:eip155:{V2_DEPLOYMENT['chainId']}:{payer.lower()}",
                                 "payload": {"action": "voucher", "channelId": target, "descriptor": descriptor,
                                             "cumulativeAmount": str(step["amount"]), "signature": sig}}
            if step.get("lost"):
                out["lost"] = True
            out["expect"] = _model_observe(resp)
        elif op == "chain":
            ch = chain.channel(cid)
            names = {"deposit": "deposit", "closeRequestedAt": "close_requested_at", "finalized": "finalized"}
            ch = attrs.evolve(ch, **{names[k]: v for k, v in step["set"].items()})
            chain = attrs.evolve(chain, channels=fm_set(chain.channels, cid, ch))
            out["channelId"], out["set"] = cid, step["set"]
        elif op == "restart_server":
            pass  # every field of the model server is durable
        else:  # pragma: no cover - a typo in V2_CASES
            raise ValueError(f"case {case.case_id} step {n}: unknown op {op!r}")
        rec = server.record(cid)
        out["after"] = {"channelId": cid, "acceptedCumulative": rec.accepted, "spent": rec.spent}
        steps.append(out)
    dep = {**V2_DEPLOYMENT, "voucherDomain": {"version": "v2", "name": "TIP20 Channel Reserve"},
           "minVoucherDelta": case.min_voucher_delta, "hintProfile": "v2", "hinted": True,
           "keys": {"payer": "0x" + PAYER_KEY.hex(), "stranger": "0x" + STRANGER_KEY.hex(),
                    "payee": "0x" + PAYEE_KEY.hex()},
           "addresses": {"payer": payer.lower(), "stranger": address_of(STRANGER_KEY).lower(),
                         "payee": address_of(PAYEE_KEY).lower()}}
    seed_doc = {**seed, "channelId": cid, "descriptor": descriptor,
                "highestVoucher": {"channelId": cid, "cumulativeAmount": str(seed["acceptedCumulative"]),
                                   "signature": highest_sig}}
    rules = sorted({r for s in case.steps for r in s["rules"]})
    return {"format": FORMAT, "caseId": case.case_id, "description": case.description, "rules": rules,
            "modelVersion": model_version(), "deployment": dep, "seed": seed_doc, "steps": steps}
