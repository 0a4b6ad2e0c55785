"""Stateful test vectors: numbered wire steps with the verdicts the model gives, for any language to replay.

`export(dir)` writes three sets (format: vectors/README.md), one JSON file per
case plus `index.json`; expectations are never written by hand:
- v1 (`CASES`): played against the model over the real wire
  (conformance.model_impl.ModelServer: model.server.handle behind wire/headers.py
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
from adapters.chain.deployment import deployment_of
from model import chain as mchain
from model import server as msv
import wire
from model.base import fm_set
from wire.crypto import (CryptoError, VoucherDomain, address_of, keccak, recover_voucher_signer, sign_voucher,
                          to_high_s)
from model.messages import Challenge as MChallenge
from model.messages import Credential as MCredential
from model.messages import Request as MRequest
from model.messages import Response as MResponse
from model.records import Hints, Voucher
from wire.profiles import encoding_of_profile, profile_of_encoding

from .interface import BASE_URL, IDEMPOTENCY_HEADER, PAID_PATH, PAYER_HEADER, ClientParams, Env
from .model_impl import (ModelClient, ModelServer, challenge_from_response, descriptor_ok, domain_of, problem_slug,
                         wire_descriptor)

FORMAT = "tempo-session-vectors/1"
PRICE = 1
WALLET = 100
UNKNOWN_CHANNEL = "0x" + "99" * 32


def _key(tag: str) -> bytes:
    return hashlib.sha256(f"vectors:{tag}".encode()).digest()


PAYER_KEY, STRANGER_KEY, PAYEE_KEY = _key("payer"), _key("stranger"), _key("payee")


def model_version() -> str:
    """A digest of model/*.py and wire/*.py: the rules and the wire boundary that produced the expectations (the
    v1 cases are played over the real wire, so a codec change can change a verdict); stable run to run, unlike a
    commit."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for package in ("model", "wire"):
        for p in sorted((root / package).glob("*.py")):
            h.update(f"{package}/{p.name}".encode() + b"\0" + p.read_bytes() + b"\0")
    return "sha256:" + h.hexdigest()[:16]


# ---------------------------------------------------------------------------- which rules

SPEC_NOTES = Path(__file__).resolve().parent.parent / "SPEC_NOTES.md"

# Rules whose one path the wire cannot show, with the reason (written into index.json as "onePath"); every
# other rule id of SPEC_NOTES must have vectors on both its accepting and its rejecting path.
ONE_PATH = {
    "C1": "C1 decides what a served request is charged (content: the price; HEAD and management: 0), never a "
          "refusal; the refusal for want of balance is C2's",
    "C3": "durability shows only as the right accounting after a restart; there is no refusal to show",
    "S-H2": "a formula for requiredCumulative in every hinted challenge; there is no refusal to show",
    "S-R1": "receipts are only on served answers",
    "T2": "a replayed topUp is answered 200 with nothing more applied; there is no refusal to show",
    "X3": "the capture of an accepted close; a refused close captures nothing (the rejecting vectors of X1-X2)",
    "H1": "hydration shows in what a client signs after a hint with values; without values H2 and H2b apply "
          "(their vectors)",
    "H3b": "a floor on what is signed, never a refusal (refusing is H4's)",
    "E3": "settle is the payee's own chain call with its own highest voucher: no wire input makes it revert "
          "(its wire-visible refusal, a voucher at or below settled, is rule UA2's)",
    "E4": "the escrow's own refusal of a capture outside [settled, cumulative] is never reached from the wire: "
          "the server's close rules X1-X3 refuse such a close first (their rejecting vectors)",
    "E5": "requestClose is the payer's chain call; a non-payer's requestClose reverting changes nothing any "
          "server answers",
    "E8": "an operator settling or closing is the server's own chain call; the wire shows only the refusal of a "
          "descriptor naming an operator the server does not advertise",
    "X4": "settlement is the server's own choice (an op of the vectors), never a refused wire input",
    "G1": "the vectors show the client keeping a live channel after a lying 410; what it keeps after a 410 the "
          "chain confirms is its holdings(), not a wire message (property ST of machine (c))",
    "R1": "the vectors show a receipt raising the next voucher; a receipt for another channel or going backwards "
          "changes nothing on the wire by design (machine (c) lies with receipts; properties R1, RM)",
    "L": "the legacy client's only rejecting path is ignoring hint values, shown by the hinted clients' vectors "
         "(the same request signed differently) rather than by a refusal",
}
# Rules with no wire-visible effect at all (written into index.json as "notOnTheWire").
NOT_ON_THE_WIRE = {
    "RS": "what a client persists across its own restart is internal; every client vector starts a client "
          "without local state (RS's lost-memory case), and persistence is checked by the machines' restarts "
          "(properties C1, WM)",
}
# Properties (not rules) readers look for among the rule ids: where their wire-visible part is.
PROPERTIES = {
    "D1": "an exposure bound over whole runs (signed - charged <= price), checked by the machines and the model "
          "checker in every state; no single step shows it",
    "D2": "the same bound with lost requests; whole-run, as D1",
    "D3": "a request repeated with the same Idempotency-Key is charged once: the I1 vectors (lost-response-retry, "
          "v2-idempotent-retry) are its wire form",
}


def spec_rule_ids(text: Optional[str] = None) -> list[str]:
    """Every rule id of SPEC_NOTES.md: the first column of the tables of sections 1 and 4b (ranges such as
    O1-O3 expanded) and the rules named in bold paragraphs there ("rule W2")."""
    import re

    text = SPEC_NOTES.read_text() if text is None else text
    ids: list[str] = []
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line.split()[1]
        if section not in ("1.", "4b."):
            continue
        for m in re.finditer(r"\(rule ([A-Z][A-Z0-9-]*\d)\b", line):
            ids.append(m.group(1))
        cell = line.split("|")[1].strip() if line.startswith("| ") else ""
        if not re.fullmatch(r"[A-Z][A-Z-]*\d*[a-z]?(-[A-Z]+\d+)?|L|RS", cell):
            continue
        r = re.fullmatch(r"([A-Z-]*?)(\d+)-\1(\d+)", cell)
        if r:
            ids.extend(f"{r.group(1)}{i}" for i in range(int(r.group(2)), int(r.group(3)) + 1))
        else:
            ids.append(cell)
    return sorted(set(ids))


# ---------------------------------------------------------------------------- cases

@attrs.frozen
class Case:
    case_id: str
    description: str
    steps: tuple  # of dicts: {"op": ..., "rules": [...], ...} (see _play)
    hint_encoding: str = "snapshot"  # how the server's challenges carry hints: "flat" | "snapshot"
    hinted: bool = True
    chain: str = "memory"  # the deployment: "memory" (v1 escrow) or "memory-v2" (TIP-20 channel escrow, Tempo txs)


def _req(op: str, *rules: str, **kw) -> dict:
    return {"op": op, "rules": list(rules), **kw}


OPEN = _req("open", "O1", "E1", "C1", "S-R1", deposit=4, amount=1)

CASES: tuple[Case, ...] = (
    Case("open-and-pay", "open a channel with a voucher for one request, then pay a second with an advancing voucher",
         (OPEN, _req("voucher", "V1", "V2", "V5", "C1", "C2", "S-R1", amount=2))),
    Case("open-bad-voucher", "an open whose initial voucher another key signed is refused before the transaction "
         "is broadcast (nothing moves); the payer's proper open then succeeds",
         (_req("open", "O2", deposit=4, amount=1, signer="stranger"), _req("challenge", "O2", "S-H1"),
          _req("open", "O1", "O2", deposit=4, amount=1, replay=True))),
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
    Case("challenge-hinted-flat", "the flat hint encoding (the seed's methodDetails fields) of the same challenge",
         (OPEN, _req("challenge", "S-H1", "S-H2", "S-H3")), hint_encoding="flat"),
    Case("challenge-legacy", "a legacy server gives at most the channelId",
         (OPEN, _req("challenge", "S-H3")), hinted=False),
    Case("voucher-unknown-channel", "a voucher for a channel nobody opened is 410 channel-not-found",
         (_req("voucher", "V1", "E0", amount=1, channel="unknown"),)),
    Case("voucher-finalized", "after a cooperative close a voucher is 410 channel-finalized and the challenge hints nothing",
         (OPEN, _req("close", "X1", "X2", "X3", "E4", amount=1), _req("voucher", "V1", "E0", amount=2),
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
         (OPEN, _req("voucher", "V4", amount=5), _req("topUp", "T1", "E0", "E2", amount=2),
          _req("voucher", "V4", amount=5),
          _req("topUp", "T2", amount=2, replay=True), _req("challenge", "S-H3"))),
    Case("topup-unknown-channel", "a topUp for a channel the server does not know",
         (_req("topUp", "T1", "E0", amount=2, channel="unknown"),)),
    Case("close-below-spent", "a close voucher below max(spent, settled) is refused; one covering it closes",
         (_req("open", "O1", deposit=4, amount=2), _req("voucher", "C1", amount=2),
          _req("close", "X2", amount=1), _req("close", "X1", "X2", "X3", "E4", amount=3))),
    Case("settle-then-continue", "the server settles its highest voucher; the channel goes on and the hints show "
         "what was settled",
         (_req("open", "O1", deposit=4, amount=2), _req("settle", "X4", "E3"), _req("challenge", "S-H3"),
          _req("voucher", "V5", amount=1), _req("voucher", "C2", amount=3))),
    Case("rollout-fleet", "a fleet sharing one store where one server hints and another does not",
         (OPEN, _req("challenge", "S-H3"), _req("switch_server", "S-H3", hinted=False), _req("challenge", "S-H3"),
          _req("voucher", "V2", amount=2), _req("switch_server", "S-H3", hinted=True), _req("challenge", "S-H2"))),
    # escrow rules seen through the server (E0-E7), and who may see and spend a voucher (UA1-UA2)
    Case("open-zero-deposit", "an open escrowing nothing reverts on chain (E1: deposit > 0): 402, no channel",
         (_req("open", "O1", "E1", deposit=0, amount=0), _req("challenge", "S-H1"))),
    Case("topup-cancels-close", "a topUp cancels the payer's pending forced close (E2): vouchers are taken and the "
         "channel is hinted again",
         (OPEN, _req("request_close", "E5"), _req("voucher", "V3", amount=2), _req("topUp", "T1", "E2", amount=2),
          _req("voucher", "V3", "E2", amount=2), _req("challenge", "S-H1"))),
    Case("topup-finalized", "a topUp on a channel closed cooperatively reverts ChannelFinalized (E0): 410",
         (OPEN, _req("close", "X1", "E4", amount=1), _req("topUp", "T1", "E0", "E2", amount=2))),
    Case("forced-close-withdraw", "the payer's forced close: withdraw before the grace period reverts, after it "
         "the channel is finalized (E6) and the server refuses it",
         (OPEN, _req("request_close", "E5"), _req("withdraw", "E6"), _req("advance_time", "E6", seconds=15 * 60),
          _req("withdraw", "E6"), _req("voucher", "V1", "E0", amount=2), _req("challenge", "S-H1"))),
    Case("amount-bound", "amounts are bounded by the deployment (E7, v1 uint128): 2^128 is a malformed "
         "credential; 2^128-1 is well formed and refused by the deposit check",
         (OPEN, _req("voucher", "E7", amount=2, tamper={"cumulativeAmount": str(2**128)}),
          _req("voucher", "E7", "V4", amount=2**128 - 1, paths={"E7": "accept"}),
          _req("voucher", "C1", amount=2))),
    Case("proof-disclosure", "the highest voucher is disclosed only to a request proving it holds the channel "
         "(UA1): not to an unpaid request, not to a stranger's voucher, to the payer's own voucher above settled",
         (OPEN, _req("challenge", "UA1", paths={"UA1": "reject"}),
          _req("voucher", "UA1", "C2", amount=1, paths={"UA1": "accept"}),
          _req("voucher", "UA1", "V2", amount=1, signer="stranger"))),
    Case("public-voucher", "after a settle the settled voucher is public (UA2): it buys no content and closes "
         "nothing, HEAD still answers it (V6), requiredCumulative is the smallest advance above settled",
         (_req("open", "O1", deposit=4, amount=2), _req("settle", "X4", "E3"),
          _req("challenge", "UA2", "S-H2", paths={"UA2": "accept"}),
          _req("voucher", "UA2", amount=2), _req("voucher", "UA2", "V6", "C1", amount=2, method="HEAD"),
          _req("close", "UA2", "X1", amount=2), _req("voucher", "UA2", amount=3),
          _req("close", "UA2", "X1", "X2", "E4", amount=3))),
    Case("adopt-orphaned-open", "the payer's open reached the chain but the server kept no record of it (a crash "
         "between the broadcast and the commit): a voucher another key signed adopts nothing; the payer's own "
         "voucher makes the server adopt the channel from the chain (A1) and pays",
         (_req("orphan_open", deposit=4), _req("voucher", "A1", "V2", amount=1, signer="stranger"),
          _req("voucher", "A1", "C2", amount=1), _req("challenge", "S-H3"))),
)

# The same histories on a v2 deployment (memory-v2: TIP-20 channel escrow, "TIP20 Channel Reserve" vouchers,
# channel ids from descriptors, opens and topUps as Tempo 0x76 transactions): opens, topUps, cooperative and
# forced closes with the descriptor in every payload (rule W2). Left out: the flat hint encoding, the v1
# uint128 bound (v2's uint96 has its own case) and unknown channels (a v2 topUp needs the channel's descriptor).
_V1_ONLY = {"challenge-hinted-flat", "amount-bound", "topup-unknown-channel", "voucher-unknown-channel",
            "adopt-orphaned-open"}  # the last: a crash window no v2 runner reproduces yet (mppx has no crash points)
V2_WIRE_CASES: tuple[Case, ...] = tuple(
    attrs.evolve(c, case_id="v2w-" + c.case_id, chain="memory-v2") for c in CASES if c.case_id not in _V1_ONLY) + (
    Case("v2w-amount-bound", "v2 amounts are uint96 (E7): 2^96 is a malformed credential; 2^96-1 is well formed "
         "and refused by the deposit check",
         (OPEN, _req("voucher", "E7", "W2", amount=2, tamper={"cumulativeAmount": str(2**96)},
                     paths={"W2": "reject"}),
          _req("voucher", "E7", "V4", amount=2**96 - 1, paths={"E7": "accept"}), _req("voucher", "C1", "W2", amount=2)),
         chain="memory-v2"),
    Case("v2w-no-descriptor", "a v2 open, voucher or close without its descriptor is malformed (W2)",
         (OPEN, _req("voucher", "W2", amount=2, tamper={"descriptor": None}), _req("close", "W2", amount=1,
                                                                                    tamper={"descriptor": None}),
          _req("voucher", "W2", "C1", amount=2)), chain="memory-v2"),
)

# ---------------------------------------------------------------------------- one deployment

def _env(case: Case, workdir: str, price: int = PRICE) -> tuple[Env, Any]:
    chain = make_chain(case.chain)
    if case.chain == "memory-v2":
        chain.tx_format = "tempo"  # opens and topUps as Tempo 0x76 transactions, as mppx's server takes them
    chain.fund(PAYEE_KEY, 0)
    chain.fund(PAYER_KEY, WALLET)
    chain.fund(STRANGER_KEY, WALLET)
    return Env(chain, PAYEE_KEY, price, case.hinted, case.hint_encoding, 0, workdir), chain


def _hint_fields(encoding: str) -> dict:
    """The deployment's hint encoding: `hintEncoding` ("flat" | "snapshot"), and beside it the deprecated
    `hintProfile` ("v1" | "v2", its former name) for readers written before `hintEncoding`."""
    return {"hintEncoding": encoding, "hintProfile": profile_of_encoding(encoding)}


def deployment(case: Case, chain, price: int = PRICE) -> dict:
    domain = domain_of(chain)
    return {"chain": case.chain, "chainId": chain.chain_id, "escrow": chain.escrow, "token": chain.token,
            "voucherDomain": {"version": domain.version,
                              "name": "TIP20 Channel Reserve" if domain.version == "v2" else "Tempo Stream Channel"},
            "price": price, "hinted": case.hinted, **_hint_fields(case.hint_encoding), "wallet": WALLET,
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
    return hints_json(h)


def hints_json(h: Hints) -> dict:
    """The observable hint values; `highestVoucher` is the amount of the proof a snapshot discloses (rule UA1)."""
    out = {"channelId": h.channel_id, "acceptedCumulative": h.accepted, "spent": h.spent, "deposit": h.deposit,
           "settled": h.settled, "requiredCumulative": h.required,
           "highestVoucher": None if h.proof is None else h.proof.amount}
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
        self.dep = deployment_of(chain)
        self.descriptors: dict = {}  # v2: channel id -> its wire descriptor (rule W2: in every payload)
        self.payer = address_of(PAYER_KEY)
        self.payee = address_of(PAYEE_KEY)
        self.cid: Optional[str] = None
        self.opened = 0
        self.txs: dict = {}

    def new_open(self, deposit: int) -> tuple[str, str]:
        """A fresh signed open transaction of the payer (its salt fixed by the count so far): (raw, channel id)."""
        salt = "0x" + hashlib.sha256(f"vectors:salt:{self.opened}".encode()).hexdigest()
        self.opened += 1
        tx = self.dep.open_tx(PAYER_KEY, self.payee, deposit, salt, self.payer)
        self.descriptors[tx.channel_id] = wire_descriptor(tx.descriptor)
        return tx.raw, tx.channel_id

    def payload(self, step: dict):
        op = step["op"]
        if op == "open":
            if step.get("replay"):  # the same signed transaction again (rule O3)
                raw, cid = self.txs["open"]
            else:
                raw, cid = self.txs["open"] = self.new_open(step["deposit"])
            self.cid = cid
            key = STRANGER_KEY if step.get("signer") == "stranger" else PAYER_KEY
            return wire.OpenPayload(channel_id=cid, transaction=raw, cumulative_amount=step["amount"],
                                    signature=sign_voucher(key, self.domain, cid, step["amount"]),
                                    authorized_signer=self.payer, descriptor=self.descriptors[cid])
        cid = UNKNOWN_CHANNEL if step.get("channel") == "unknown" else self.cid
        if op == "topUp":
            if step.get("replay"):
                raw = self.txs[cid]
            else:
                raw = self.txs[cid] = self.dep.topup_tx(PAYER_KEY, cid, step["amount"])
            return wire.TopUpPayload(channel_id=cid, transaction=raw, additional_deposit=step["amount"],
                                     descriptor=self.descriptors.get(cid))
        key = STRANGER_KEY if step.get("signer") == "stranger" else PAYER_KEY
        sig = sign_voucher(key, self.domain, cid, step["amount"])
        if step.get("signer") == "high-s":
            sig = to_high_s(sig)
        cls = wire.VoucherPayload if op == "voucher" else wire.ClosePayload
        return cls(channel_id=cid, cumulative_amount=step["amount"], signature=sig,
                   descriptor=self.descriptors.get(cid))


REQUEST_OPS = ("open", "voucher", "topUp", "close")
CHAIN_OPS = ("withdraw", "advance_time")  # the payer's own chain calls (v1), with whether they reverted


def chain_op(chain, step: dict) -> bool:
    """Apply a v1 chain step (`withdraw` by the payer, `advance_time` by `seconds`); True if it reverted."""
    from adapters.chain.base import ChainError

    try:
        if step["op"] == "withdraw":
            deployment_of(chain).withdraw(PAYER_KEY, step["channelId"])
        else:
            chain.advance_time(step["seconds"])
    except ChainError:
        return True
    return False


def paths(step: dict, out: dict) -> dict:
    """Which path of each of its rules a step shows: "accept" (served, hinted, applied, signed) or "reject"
    (refused, unhinted, reverted, refused to sign). The case may say it for a rule (`paths=`) where the
    outcome alone does not (e.g. a well-formed amount at E7's bound that another rule then refuses)."""
    if "expect" in out and out["op"] == "challenge":
        ok = bool(out["expect"].get("hints")) and len(out["expect"]["hints"]) > 1
    elif "expect" in out:
        e = out["expect"]
        ok = e.get("status") == 200 if "status" in e else bool(e.get("signed"))
    else:
        ok = not out.get("reverted", False)
    given = step.get("paths", {})
    return {r: given.get(r, "accept" if ok else "reject") for r in step["rules"]}


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
            if step.get("tamper"):  # a payload the wire models would not build (e.g. an amount past E7's bound)
                changed = {k: v for k, v in {**_payload_json(auth), **step["tamper"]}.items() if v is not None}
                auth = bind(changed, source, wc)
            key = step.get("key") if op in ("open", "voucher") else None
            headers = _headers(True, auth, key, author.payer)
            resp = _send(server, method, headers)
            out["request"] = {"method": method, "path": PAID_PATH, "headers": headers}
            out["credential"] = {"source": source, "payload": _payload_json(auth)}
            if step.get("lost"):
                out["lost"] = True
            out["expect"] = observe(resp, domain)
        elif op == "orphan_open":
            # the chain state a server crash between an open's broadcast and its record's commit leaves: the
            # payer's open is on chain, the server holds no record of it (rule A1)
            raw, author.cid = author.new_open(step["deposit"])
            chain.broadcast(raw)
            out.update(channelId=author.cid, transaction=raw)
        elif op == "restart_server":
            server.restart()
        elif op == "switch_server":
            out["hinted"] = step["hinted"]
            switch_fleet(server, step["hinted"])
        elif op == "request_close":
            author.dep.request_close(PAYER_KEY, author.cid)
            out["channelId"] = author.cid
        elif op == "settle":
            server.settle(author.cid)
            out["channelId"] = author.cid
        elif op in CHAIN_OPS:
            out["channelId"] = author.cid
            out.update({k: step[k] for k in ("seconds",) if k in step})
            out["reverted"] = chain_op(chain, out)
        else:  # pragma: no cover - a typo in CASES
            raise ValueError(f"case {case.case_id} step {n}: unknown op {op!r}")
        out["after"] = _after(server, author.cid)
        out["paths"] = paths(step, out)
        steps.append(out)
    rules = sorted({r for s in case.steps for r in s["rules"]})
    return {"format": FORMAT, "caseId": case.case_id, "description": case.description, "rules": rules,
            "modelVersion": model_version(), "deployment": deployment(case, chain), "steps": steps}


def export(directory: str | os.PathLike) -> dict:
    """Write `v1/<caseId>.json` (memory chain, v1 voucher domain: our implementations), `v2/<caseId>.json`
    (seeded channels, v2 domain: mppx) and the top-level `index.json`; returns the index."""
    import tempfile

    out = Path(directory)
    index: dict[str, Any] = {"format": FORMAT, "modelVersion": model_version(), "sets": {}, "rules": {},
                             "onePath": ONE_PATH, "notOnTheWire": NOT_ON_THE_WIRE, "properties": PROPERTIES}
    with tempfile.TemporaryDirectory(prefix="vectors-") as work:
        docs = {"v1": [generate(c, work) for c in CASES], "v2": [generate_v2(c) for c in V2_CASES],
                "v2-wire": [generate(c, work) for c in V2_WIRE_CASES],
                "client": [generate_client(c, work) for c in CLIENT_CASES],
                "client-v2": [generate_client(c, work) for c in CLIENT_V2_CASES]}
    for name, items in docs.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        entries = index["sets"][name] = []
        for doc in items:
            (out / name / f"{doc['caseId']}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
            entries.append({"caseId": doc["caseId"], "file": f"{name}/{doc['caseId']}.json", "rules": doc["rules"],
                            "steps": len(doc.get("steps", [doc]))})
            for s in doc.get("steps", [doc]):  # a client case is one step
                for r in s["rules"]:
                    per = index["rules"].setdefault(r, {"v1": 0, "v2": 0, "v2-wire": 0, "client": 0, "client-v2": 0,
                                                        "accept": 0, "reject": 0})
                    per[name] += 1
                    per[s["paths"][r]] += 1
    index["rules"] = dict(sorted(index["rules"].items()))
    (out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    return index


# ---------------------------------------------------------------------------- replaying

def replay(doc: dict, make_server: Callable[[], Any], workdir: str) -> list[str]:
    """Play an exported vector against a fresh server adapter; the mismatches (empty: pass)."""
    dep = doc["deployment"]
    encoding = dep.get("hintEncoding") or encoding_of_profile(dep["hintProfile"])  # older files: hintProfile only
    case = Case(doc["caseId"], doc["description"], (), encoding, dep["hinted"], dep["chain"])
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
        elif op == "orphan_open":
            chain.broadcast(step["transaction"])
        elif op == "restart_server":
            server.restart()
        elif op == "switch_server":
            switch_fleet(server, step["hinted"])
        elif op == "request_close":
            deployment_of(chain).request_close(PAYER_KEY, step["channelId"])
        elif op == "settle":
            server.settle(step["channelId"])
        elif op in CHAIN_OPS:
            reverted = chain_op(chain, step)
            if reverted != step["reverted"]:
                problems.append(f"{where}: expected reverted={step['reverted']}, got {reverted}")
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
    print(f"wrote {len(sets['v1'])} v1, {len(sets['v2'])} v2, {len(sets['v2-wire'])} v2-wire, "
          f"{len(sets['client'])} client and {len(sets['client-v2'])} client-v2 cases to {args.dir}")
    for rule, count in index["rules"].items():
        print(f"  {rule}: {count['v1']} v1 steps, {count['v2']} v2 steps, {count['v2-wire']} v2-wire steps, "
              f"{count['client']} client and {count['client-v2']} client-v2 cases "
              f"({count['accept']} accepting, {count['reject']} rejecting)")
    return 0


# ============================================================================ v1 client cases
#
# A client case: a chain holding the payer's channel (`chainSetup`: raw memory-chain transactions to broadcast and
# the payee's settlements), a client that lost its local state making one GET, and every exchange of that request
# with the model server that played the history (`exchanges`: what the client sent, what the server answered, the
# first challenge possibly replaced by a lying one). `expect.signed` is every credential the model client sent:
# action, channel, cumulativeAmount (and deposit for an open), or [] when it must refuse to sign.


CLIENT_PARAMS = {"deposit": 4, "topUp": 2, "maxUnproven": 0, "hinted": True}


@attrs.frozen
class ClientCase:
    case_id: str
    description: str
    rules: tuple
    history: tuple = ()  # server-side steps played first on the model server (as in CASES; also "settle")
    lie: Optional[dict] = None  # hints the first challenge carries instead of the server's own (no proof)
    other_payer: bool = False  # the channel of `history` belongs to the stranger
    hinted: bool = True  # whether the server that authors the challenge hints values
    params: dict = attrs.field(factory=dict)  # overrides of CLIENT_PARAMS
    first: dict = attrs.field(factory=dict)  # the first challenge altered: "price", "escrowContract", "chainId"
    suggested_deposit: Optional[int] = None  # the server's suggestedDeposit in challenges without hints
    paths: dict = attrs.field(factory=dict)  # rule -> "accept" | "reject" where the outcome alone does not say
    requests: int = 1  # GETs the client makes, one after the other
    gone: bool = False  # the first paid request is answered 410 channel-not-found (a lie: the channel is live)
    chain: str = "memory"  # "memory-v2": the client-v2 set (Tempo transactions, descriptors, v2 vouchers)
    price: int = PRICE  # the deployment's price (a case without history: the history's amounts assume PRICE)


CLIENT_CASES: tuple[ClientCase, ...] = (
    ClientCase("client-no-channel", "no channel and no hints: the client opens with its deposit and a voucher "
               "for the price", ("H2b", "H6", "H7"), paths={"H2b": "accept"}),
    ClientCase("client-suggested-deposit", "no channel; the challenge suggests a deposit above the client's "
               "configured one: it opens with at most its own (H2b: suggestedDeposit capped by its maximum)",
               ("H2b",), suggested_deposit=9),
    ClientCase("client-hinted-proof", "a hinted challenge: a client without local state authenticates with "
               "settled + price (UA3), the 402 carries the highest voucher as proof, and it signs requiredCumulative",
               ("H0", "H1", "H3", "UA3", "H2", "H2b", "H4"), history=(OPEN, _req("voucher", amount=2)),
               paths={"H2": "reject", "H2b": "reject", "H4": "accept"}),
    ClientCase("client-second-request", "a client's second request on a hinted server: it proves the target with "
               "what it signed itself, so it signs requiredCumulative without an authentication voucher (UA3 not "
               "needed)", ("UA3", "H3"), history=(OPEN, _req("voucher", amount=2)), requests=2,
               paths={"UA3": "reject"}),
    ClientCase("client-legacy-hint", "only a channelId: the client recovers from chain (cumulative = settled) and "
               "signs from what the chain proves", ("H2", "H3"), history=(OPEN, _req("voucher", amount=2)),
               hinted=False),
    ClientCase("client-inflated-hint", "hints far above anything proven (no highestVoucher): the client must not "
               "sign the hinted amount (H4); it authenticates at settled + price (UA3)", ("H4", "UA3"),
               history=(OPEN,), lie={"accepted": 50, "spent": 49, "deposit": 100, "required": 50, "settled": 0},
               paths={"H4": "reject"}),
    ClientCase("client-foreign-channel", "a hint for another payer's channel is ignored: the client opens its own",
               ("H0", "H3"), history=(OPEN,), other_payer=True, paths={"H0": "reject", "H3": "reject"}),
    ClientCase("client-price-too-high", "a challenge asking 4 x the client's maximum price is refused before "
               "anything is signed (H6)", ("H6",), first={"price": 4 * PRICE}),
    ClientCase("client-other-escrow", "a challenge naming another escrow contract is refused before anything is "
               "signed (H7)", ("H7",), first={"escrowContract": "0x" + "ee" * 20}),
    ClientCase("client-other-chain", "a challenge naming another chainId is refused before anything is signed (H7)",
               ("H7",), first={"chainId": 1}),
    ClientCase("client-tops-up", "the proven target is above the on-chain deposit: the client tops up within its "
               "budget, then signs it (H5)", ("H5", "UA3"),
               history=(OPEN, _req("voucher", amount=2), _req("voucher", amount=3), _req("voucher", amount=4))),
    ClientCase("client-deposit-exhausted", "the proven target is above the deposit and the payer's wallet cannot "
               "pay the client's top-up: it refuses to sign it (H5, deposit-exhausted) after its authentication voucher",
               ("H5",), history=(OPEN, _req("voucher", amount=2), _req("voucher", amount=3), _req("voucher", amount=4)),
               params={"topUp": 1000}, paths={"H5": "reject"}),
    ClientCase("client-tops-up-shortfall", "price 3, top-up 1: the channel holds 4 with 3 accepted; after its "
               "authentication voucher the client signs 6, 2 above the deposit: it tops up the shortfall 2, more than "
               "its configured 1, then signs 6 (H5b; topping up 1 would leave the channel short of the charge and "
               "need a second top-up)", ("H5", "H5b"), price=3, params={"topUp": 1},
               history=(_req("open", deposit=4, amount=3),)),
    ClientCase("client-shortfall-exhausted", "price 60: the channel holds 60, all accepted, and the wallet 40; the "
               "next charge is 60 short of the deposit: the client refuses (H5b, deposit-exhausted) after its "
               "authentication voucher, although its configured top-up of 1 is affordable (that top-up would not "
               "make the charge payable)", ("H5b",), price=60, params={"topUp": 1},
               history=(_req("open", deposit=60, amount=60),), paths={"H5b": "reject"}),
    ClientCase("client-floor-settled", "a stale hint below what the chain settled: the client signs its proven "
               "floor, never the hinted target below it (H3b); the server refuses the floor as public (UA2) and the "
               "client advances above it", ("H3b",),
               history=(_req("open", deposit=4, amount=2), _req("voucher", amount=3), _req("settle")),
               lie={"accepted": 1, "spent": 1, "deposit": 4, "required": 2, "settled": 0}),
    ClientCase("client-receipts", "against a legacy server (no hint values) the client's second voucher builds on "
               "the first request's receipt (R1: the view rises by max)", ("R1", "L"), hinted=False, requests=2,
               history=(OPEN, _req("voucher", amount=2)), paths={"L": "reject"}),
    ClientCase("client-gone-lie", "a 410 channel-not-found for a channel the chain shows live is the server's "
               "opinion (G1): the client keeps the channel it asked the chain about", ("G1",),
               history=(OPEN,), gone=True, requests=2),
    ClientCase("client-legacy", "a legacy client ignores hint values: it recovers the hinted channelId from chain "
               "and signs from settled (L)", ("L",), history=(OPEN, _req("voucher", amount=2)),
               params={"hinted": False}),
)

# The client cases on a v2 deployment (memory-v2), for v2 clients such as mppx's (vectors/run-vectors.mjs). Left
# out: the stranger's channel (opened with a v1 transaction here).
CLIENT_V2_CASES: tuple[ClientCase, ...] = tuple(
    attrs.evolve(c, case_id=c.case_id.replace("client-", "client-v2-", 1), chain="memory-v2")
    for c in CLIENT_CASES if not c.other_payer)


class _Recorder:
    """The model server as the client's transport: records every exchange; may replace the first challenge."""

    def __init__(self, server, chain, first_challenge: Optional[str], gone: bool = False):
        self.server, self.chain, self.first, self.gone, self.exchanges = server, chain, first_challenge, gone, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.gone and "authorization" in request.headers:
            self.gone = False
            resp = httpx.Response(410, headers={"content-type": "application/problem+json"},
                                  content=wire.encode_problem(wire.problem("channel-not-found")))
        else:
            resp = self.server.handle(request)
        headers = {k: v for k, v in resp.headers.items() if k in ("www-authenticate", "payment-receipt",
                                                                 "content-type")}
        if self.first is not None and "www-authenticate" in headers:
            headers["www-authenticate"], self.first = self.first, None
        self.exchanges.append({"request": {"method": request.method, "credential": _summary(request, self.chain)},
                               "response": {"status": resp.status_code, "headers": headers,
                                            "body": resp.content.decode()}})
        return httpx.Response(resp.status_code, headers=headers, content=resp.content)


class _Replayer:
    """Answers a client with a vector's recorded exchanges, in order, while its requests match them; applies to
    the chain the client-signed transactions of the exchanges the server took (as the server did)."""

    def __init__(self, exchanges: list, chain):
        self.exchanges, self.chain, self.n, self.sent, self.stray = exchanges, chain, 0, [], []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        summary = _summary(request, self.chain)
        if summary is None:
            return self._unpaid(request)
        self.sent.append(summary)
        # Unpaid requests carry nothing signed: a client may make fewer than the recording (then they are skipped)
        # or more (then it gets the latest challenge again, below).
        at = self.n
        while at < len(self.exchanges) and self.exchanges[at]["request"]["credential"] is None:
            at += 1
        if at >= len(self.exchanges) or not _same_request(self.exchanges[at]["request"], request.method, summary):
            self.stray.append({"method": request.method, "credential": summary})
            return httpx.Response(503, content=b"vector: no recorded answer to this request")
        self.n = at + 1
        r = self.exchanges[at]["response"]
        raw = getattr(wire.parse_authorization(request.headers["authorization"]).payload, "transaction", None)
        if raw and r["status"] == 200:
            self.chain.broadcast(raw)
        return httpx.Response(r["status"], headers=r["headers"], content=r["body"].encode())

    def _unpaid(self, request: httpx.Request) -> httpx.Response:
        if self.n < len(self.exchanges) and self.exchanges[self.n]["request"]["credential"] is None \
                and self.exchanges[self.n]["request"]["method"] == request.method:
            r = self.exchanges[self.n]["response"]
            self.n += 1
        else:  # the latest challenge the recording gave (the server's state has not changed since)
            given = [x["response"] for x in self.exchanges[:self.n] if "www-authenticate" in x["response"]["headers"]]
            if not given:
                self.stray.append({"method": request.method, "credential": None})
                return httpx.Response(503, content=b"vector: no recorded challenge yet")
            r = given[-1]
        return httpx.Response(r["status"], headers=r["headers"], content=r["body"].encode())


def _same_request(recorded: dict, method: str, credential: Optional[dict]) -> bool:
    """A topUp or close is management on any method (rule C1: cost 0), so only its credential must match."""
    management = credential is not None and credential["action"] in ("topUp", "close")
    return recorded["credential"] == credential and (management or recorded["method"] == method)


def _summary(request: httpx.Request, chain) -> Optional[dict]:
    auth = request.headers.get("authorization")
    if not auth:
        return None
    p = wire.parse_authorization(auth).payload
    out = {"action": p.action, "channelId": p.channel_id if p.action != "open" else None,
           "cumulativeAmount": getattr(p, "cumulative_amount", None)}
    if p.action == "open":
        out["deposit"] = chain.decode_tx(p.transaction).amount
    if p.action == "topUp":
        out["additionalDeposit"] = p.additional_deposit
    return {k: v for k, v in out.items() if v is not None}


def client_params(overrides: Optional[dict] = None) -> ClientParams:
    c = {**CLIENT_PARAMS, **(overrides or {})}
    return ClientParams("payer", PAYER_KEY, c["hinted"], c["deposit"], c["topUp"], c["maxUnproven"])


def _altered(header: str, secret: bytes, changes: dict) -> str:
    """The challenge `header` with its price or method details changed (re-issued under the server's secret)."""
    (c,) = [c for c in wire.parse_www_authenticate(header) if c.method == "tempo" and c.intent == "session"]
    req = c.decoded_request()
    md = req.method_details.model_copy(update={k: v for k, v in {
        "escrow_contract": changes.get("escrowContract"), "chain_id": changes.get("chainId")}.items() if v is not None})
    req = req.model_copy(update={"method_details": md, **({"amount": changes["price"]} if "price" in changes else {})})
    return wire.format_www_authenticate(wire.Challenge.issue(secret, realm=c.realm, request=req, expires=c.expires))


def generate_client(case: ClientCase, workdir: str) -> dict:
    env, chain = _env(Case(case.case_id, case.description, (), hinted=case.hinted, chain=case.chain), workdir,
                      case.price)
    env = attrs.evolve(env, suggested_deposit=case.suggested_deposit)
    server = ModelServer("model")
    server.reset(env)
    domain = domain_of(chain)
    author = _Author(chain, domain)
    if case.other_payer:
        author.payer = address_of(STRANGER_KEY)
    setup: list = []
    for step in case.history:
        if step["op"] == "settle":
            rec = server.record(author.cid)
            server.settle(author.cid)
            setup.append({"op": "settle", "channelId": author.cid, "cumulativeAmount": rec.accepted,
                          "signature": server.sigs[(author.cid, rec.accepted)]})
            continue
        payload = author.payload(step) if not case.other_payer else _stranger_open(author, step)
        if getattr(payload, "transaction", None):
            setup.append(payload.transaction)
        wc = _fresh_challenge(server, "GET", author.payer)
        auth = wire.encode_authorization(wire.Credential(challenge=wc, source="did:pkh:eip155:0:x", payload=payload))
        _send(server, "GET", _headers(True, auth, None, author.payer))
    state = _chain_state(chain, author.cid)
    first = None
    if case.lie is not None:
        first = server._challenge(MChallenge(price=PRICE, hints=Hints(channel_id=author.cid, **case.lie)))
    if case.first:
        first = _altered(first or _send(server, "GET", _headers(True, None, None, address_of(PAYER_KEY)))
                         .headers["www-authenticate"], server.secret, case.first)
    recorder = _Recorder(server, chain, first, case.gone)
    client = ModelClient("model")
    client.reset(env, client_params(case.params), httpx.MockTransport(recorder))
    try:
        for _ in range(case.requests):
            client.request("GET", PAID_PATH)
    finally:
        client.close_resources()
    signed = [x["request"]["credential"] for x in recorder.exchanges if x["request"]["credential"] is not None]
    out = {"n": 1, "op": "client", "rules": list(case.rules), "expect": {"signed": signed}}
    return {"format": FORMAT, "caseId": case.case_id, "description": case.description, "rules": list(case.rules),
            "modelVersion": model_version(),
            "deployment": {**deployment(Case(case.case_id, "", (), hinted=case.hinted, chain=case.chain), chain,
                                        case.price),
                           "client": {**CLIENT_PARAMS, **case.params}, "suggestedDeposit": case.suggested_deposit},
            "chainSetup": setup, "chainState": state,
            "request": {"method": "GET", "path": PAID_PATH, "times": case.requests},
            "exchanges": recorder.exchanges, "expect": {"signed": signed},
            "paths": paths({"rules": case.rules, "paths": case.paths}, out)}


def _chain_state(chain, cid: Optional[str]) -> dict:
    """The escrow's record of the case's channel after `chainSetup` (for a runner that sets chain state instead
    of broadcasting transactions): {channelId: {payer, payee, token, authorizedSigner, deposit, settled,
    closeRequestedAt, finalized}}."""
    if cid is None:
        return {}
    st = chain.get_channel(cid)
    return {cid: {"payer": st.payer, "payee": st.payee, "token": st.token, "authorizedSigner": st.authorized_signer,
                  "deposit": st.deposit, "settled": st.settled, "closeRequestedAt": st.close_requested_at,
                  "finalized": st.finalized}}


def _stranger_open(author: _Author, step: dict):
    raw, cid = author.chain.build_open_tx(STRANGER_KEY, author.payee, step["deposit"], "0x" + "ab" * 32,
                                          address_of(STRANGER_KEY))
    author.cid = cid
    return wire.OpenPayload(channel_id=cid, transaction=raw, cumulative_amount=step["amount"],
                            signature=sign_voucher(STRANGER_KEY, author.domain, cid, step["amount"]),
                            authorized_signer=address_of(STRANGER_KEY))


def play_client(client, env: Env, doc: dict, chain) -> tuple[list, list]:
    """One GET by a fresh client against the vector's recorded exchanges: what it signed, and its requests the
    vector has no answer for."""
    script = _Replayer(doc["exchanges"], chain)
    env = attrs.evolve(env, suggested_deposit=doc["deployment"].get("suggestedDeposit"))
    client.reset(env, client_params(doc["deployment"]["client"]), httpx.MockTransport(script))
    try:
        for _ in range(doc["request"]["times"]):
            client.request("GET", PAID_PATH)
    finally:
        if hasattr(client, "close_resources"):
            client.close_resources()
    return script.sent, script.stray


def replay_client(doc: dict, make_client: Callable[[], Any], workdir: str) -> list[str]:
    env, chain = _env(Case(doc["caseId"], "", (), hinted=doc["deployment"]["hinted"], chain=doc["deployment"]["chain"]),
                      workdir, doc["deployment"]["price"])
    for item in doc["chainSetup"]:
        if isinstance(item, str):
            chain.broadcast(item)
        else:  # the payee's settlement of its highest voucher
            deployment_of(chain).settle(PAYEE_KEY, item["channelId"], item["cumulativeAmount"],
                                        bytes.fromhex(item["signature"][2:]))
    got, stray = play_client(make_client(), env, doc, chain)
    want = doc["expect"]["signed"]
    return [] if got == want and not stray else [
        f"{doc['caseId']}: expected the client to sign {want}, it signed {got}"
        + (f" (requests the vector does not answer: {stray})" if stray else "")]


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
               (V("voucher", "V2", "C1", "S-R1", "W2", "E1b", amount=260_000), V("voucher", "C1", "S-R1", amount=270_000))),
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
    # the v2 wire rules (W2, E7, E1b, E8) and who may see and spend a voucher (UA1, UA2)
    SeededCase("v2-no-descriptor", "a v2 voucher without its channel descriptor is a malformed credential (W2)",
               (V("voucher", "W2", amount=260_000, descriptor=None), V("challenge", "S-H2"))),
    SeededCase("v2-amount-bound", "v2 amounts are uint96 (E7): 2^96 is malformed; 2^96-1 is well formed and "
               "refused by the deposit check",
               (V("voucher", "E7", amount=260_000, tamper={"cumulativeAmount": str(2**96)}),
                V("voucher", "E7", "V4", amount=2**96 - 1, paths={"E7": "accept"}))),
    SeededCase("v2-descriptor-mismatch", "a descriptor that differs in any field is another channel (E1b): a "
               "voucher naming the seeded channel id with another salt is refused",
               (V("voucher", "E1b", amount=260_000, descriptor={"salt": "0x" + "00" * 31 + "03"}),
                V("challenge", "S-H2"))),
    SeededCase("v2-foreign-operator", "a descriptor naming an operator the server does not advertise (E8) is "
               "refused", (V("voucher", "E8", amount=260_000, descriptor={"operator": "0x" + "0e" * 20}),)),
    SeededCase("v2-proof-disclosure", "the highest voucher is disclosed only to a request proving it holds the "
               "channel (UA1): not to an unpaid request, not to a stranger, to the payer's own voucher above settled",
               (V("challenge", "UA1", paths={"UA1": "reject"}),
                V("voucher", "UA1", "V5", amount=245_000, paths={"UA1": "accept"}),
                V("voucher", "UA1", "V2", amount=245_000, signer="stranger"))),
    SeededCase("v2-public-voucher", "a settled voucher is public (UA2): it buys no content, HEAD still answers it "
               "(V6), and requiredCumulative is the smallest advance above settled",
               (V("challenge", "UA2", "S-H2", paths={"UA2": "accept"}), V("voucher", "UA2", amount=250_000),
                V("voucher", "UA2", "V6", "C1", amount=250_000, method="HEAD"),
                V("voucher", "UA2", "C1", amount=260_000)), seed={"settled": 250_000}),
)


def _v2_wire_refusal(payload: dict, source: str) -> Optional[str]:
    """The problem the model's wire boundary gives a v2 voucher payload before model.server.handle sees it
    (wire/headers.py parse_authorization and check_credential_protocol: rules W2 and E7; the descriptor check
    of the model server over the wire, conformance.model_impl.descriptor_ok: E1b and E8); None: it passes."""
    req = wire.SessionRequest(amount=V2_DEPLOYMENT["price"], currency=V2_DEPLOYMENT["currency"],
                              recipient=address_of(PAYEE_KEY),
                              method_details=wire.MethodDetails(escrow_contract=V2_DEPLOYMENT["escrow"],
                                                                chain_id=V2_DEPLOYMENT["chainId"]))
    challenge = wire.Challenge.issue(b"vectors", realm=V2_DEPLOYMENT["realm"], request=req,
                                     expires=V2_DEPLOYMENT["expires"])
    try:
        cred = wire.check_credential_protocol(wire.parse_authorization(bind(payload, source, challenge)), "v2")
    except wire.WireError:
        return "malformed-credential"
    ok = descriptor_ok(cred.payload, address_of(PAYEE_KEY).lower(), V2_DEPLOYMENT["currency"],
                       V2_DEPLOYMENT["escrow"], V2_DEPLOYMENT["chainId"])
    return None if ok else "verification-failed"


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
        out["hints"] = None if h is None else hints_json(h)
    return out


def generate_v2(case: SeededCase) -> dict:
    """Play a seeded v2 case on model.server.handle; the vector document."""
    descriptor = v2_descriptor()
    cid = v2_channel_id(descriptor)
    domain = v2_domain()
    payer = address_of(PAYER_KEY)
    seed, chain, server = _seeded_state(case, cid)
    highest_sig = sign_voucher(PAYER_KEY, domain, cid, seed["acceptedCumulative"])
    cfg = msv.ServerConfig(payee=address_of(PAYEE_KEY), price=V2_DEPLOYMENT["price"], hinted=True,
                           hint_encoding="snapshot", min_voucher_delta=case.min_voucher_delta)
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
            own = {**descriptor, **(step.get("descriptor") or {})}
            if step.get("channel") == "unknown":  # a well-formed descriptor of a channel nobody opened
                own = {**descriptor, "salt": "0x" + "ff" * 32}
            target = v2_channel_id(own) if step.get("channel") == "unknown" else cid
            key = STRANGER_KEY if step.get("signer") == "stranger" else PAYER_KEY
            sig = sign_voucher(key, domain, target, step["amount"])
            if step.get("signer") == "high-s":
                sig = to_high_s(sig)
            payload = {"action": "voucher", "channelId": target, "descriptor": own,
                       "cumulativeAmount": str(step["amount"]), "signature": sig, **step.get("tamper", {})}
            if step.get("descriptor") is None and "descriptor" in step:
                del payload["descriptor"]  # rule W2: a v2 credential without its descriptor
            source = f"did:pkh:eip155:{V2_DEPLOYMENT['chainId']}:{payer.lower()}"
            refused = _v2_wire_refusal(payload, source)
            if refused is not None:  # the wire rules (W2, E7, E1b, E8) refuse it before model.server.handle
                ch = msv.author_challenge(cfg, server, chain, payer, content)
                resp = MResponse(status=402, problem=refused, challenge=ch)
            else:
                voucher = Voucher(target, step["amount"], _recover(target, step["amount"], sig))
                mreq = MRequest(payer, content, MCredential("voucher", target, voucher), step.get("key"))
                server, chain, resp = msv.handle(cfg, server, chain, mreq)
            headers = {"Payment-Session": cid}
            if step.get("key"):
                headers[IDEMPOTENCY_HEADER] = step["key"]
            out["request"] = {"method": method, "path": PAID_PATH, "headers": headers}
            out["credential"] = {"source": source, "payload": payload}
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
        out["paths"] = paths(step, out)
        steps.append(out)
    dep = {**V2_DEPLOYMENT, "voucherDomain": {"version": "v2", "name": "TIP20 Channel Reserve"},
           "minVoucherDelta": case.min_voucher_delta, **_hint_fields("snapshot"), "hinted": True,
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
