"""Dedicated v2 machines for mppx@0.11.0 (the generic machines drive our v1 escrow; mppx is v2 only).

mppx-server  (a) mppx's server against a model-driven v2 client (model/client.py signing with the v2
                 voucher domain on seeded channels) plus an adversary holding the payer's key: lower,
                 equal replay, above the deposit, forged, high-s, compact (EIP-2098), another channel's
                 signature, Idempotency-Key replay, HEAD advance; honest HEAD, close, settle, on-chain topUp,
                 server restart, unpaid probes. Before every exchange the model twin is set to what mppx
                 holds (its record, the fake chain), `model.server.handle` gets the same input (the
                 signature mapped to its recovered signer) and the verdicts are compared (SV); probes
                 compare mppx's snapshot with `author_challenge` (SH: requiredCumulative is rule S-H2).
                 After every step S1-S4, S6, S7 and D3 are checked on mppx's records and the fake chain.
mppx-client  (b) mppx's client against the model server over v2 (model/server.py rules, sessionSnapshot
                 challenges with the highest voucher as proof) that also lies: inflated hints without
                 proof, stale hints, hints for another payer's channel, receipts going backwards.
                 HB, CM and HT are checked on every voucher mppx signs.
mppx-pair        (b) without lies: mppx's client against the honest model server, plus B2 (every
                 affordable request completes).

Every violation is classified by `classify`: a known finding (FINDINGS.md, F1-F12) or unexpected. Known
findings listed for the pair in conformance/expectations.py are recorded (first occurrence, shrunk by
replay, saved as a steps file) and exploration goes on; anything else stops the run like a failure.
Steps are plain dicts; `python -m conformance replay FILE` runs a saved file again (runner.replay
dispatches "mppx-*" machines here).
"""
from __future__ import annotations

import datetime

import hashlib
import json
import os
import time
import traceback
from typing import Callable, Optional

import attrs
import httpx
from hypothesis import HealthCheck, Phase, settings, strategies as st
from hypothesis import seed as hseed
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from model import chain as mchain
from model import client as mcl
from model import server as msv
from wire import codec as wire
from model.base import Rejected, fm_set
from wire.crypto import address_of, sign_voucher, to_compact, to_high_s
from model.messages import Challenge as MChallenge
from model.messages import Credential as MCredential
from model.messages import Receipt as MReceipt
from model.messages import Request as MRequest
from model.records import Hints, Voucher

from .harness import RunConfig, StepResult
from .interface import ClientParams, Env, PAYER_HEADER
from .bridge_spec import (CLIENT_ESSENTIAL, MACHINE_OPS, SERVER_ESSENTIAL, BridgeSpecError, impl_name,
                          is_bridge, manifest_path, missing)
from .mppx_impl import (CHAIN_ID, ESCROW, SESSION_HEADER, TOKEN, MppxClient, MppxServer, MppxUnavailable, domain,
                        get_adapter, problem_of, recover_v2)
from .mppx_impl import capabilities as adapter_capabilities
from .network import Wire
from .trace import describe_step, describe_wire, render_mermaid

PRICE = 1
TOP_UP = 2
ZERO = "0x" + "00" * 20
# Seeded channels (payer i): deposit, spent, highest voucher (signed by the payer).
SEEDS = ({"deposit": 8, "spent": 1, "highest": 2}, {"deposit": 6, "spent": 1, "highest": 1})
PROFILES = {"quick": (6, 15), "ci": (20, 25), "deep": (150, 40), "mutants": (12, 20)}
ADVERSARY_KINDS = ("lower", "replay", "above_deposit", "forged", "high_s", "compact", "other_channel",
                   "head_advance", "idem_replay", "forged_above_deposit")
LIES = ("inflate", "stale", "other_channel", "backwards_receipt")

EXTRA = {
    "SV": "mppx's verdict on every credential equals model.server.handle's on the same input (strict: status, "
          "problem type, requiredTopUp and the resulting (accepted, spent))",
    "SH": "mppx's snapshot equals model.server.author_challenge's hints (strict and must: S-H2 requiredCumulative)",
    "SR": "a receipt carries the record's (acceptedCumulative, spent) after the request (S-R1); strict: units "
          "consumed by this request",
    "HX": "strict: lowercase hex on the wire (draft 'Hexadecimal Values')",
    "HT": "a hinted client signs at least the requiredCumulative hinted for its channel (honest hints)",
    "RM": "a hinted client's view never decreases",
    "HD": "a client never sends a voucher above the on-chain deposit: it tops up first or refuses (rule H5)",
}


def render_steps(results) -> str:
    """Numbered steps; each exchange with mppx's answer and, where the model was asked too, its answer."""
    lines = []
    for r in results:
        lines.append(f"{r.n}. {describe_step(r.step)} -> {r.outcome}")
        for w in r.wires:
            lines.append(f"     {describe_wire(w)}" + (f"   ({w.note})" if w.note else ""))
        for p, m in r.violations:
            lines.append(f"     !! {p}: {m}")
    return "\n".join(lines)


def _key(tag: str, seed: int) -> bytes:
    return hashlib.sha256(f"conformance:mppx:{tag}:{seed}".encode()).digest()


def _short(cid: Optional[str]) -> str:
    return cid[:10] if cid else "-"


# ------------------------------------------------------------------------------------------ classification


def classify(prop: str, ctx: dict) -> Optional[str]:
    """The finding (FINDINGS.md) a violation is an instance of, or None (unexpected)."""
    kind = ctx.get("kind")
    if prop == "SV":
        real_ok, model_ok = ctx.get("real_ok"), ctx.get("model_ok")
        rp, mp = ctx.get("real_problem"), ctx.get("model_problem")
        if ctx.get("what") == "requiredTopUp":
            return "F9"
        if kind == "high_s" and real_ok and not model_ok:
            return "F1"
        if kind == "compact" and not real_ok and model_ok:
            return "F5"
        settled_equal = ctx.get("settled") == ctx.get("amount") == ctx.get("accepted")
        if not real_ok and rp == "verification-failed" and settled_equal and mp != "verification-failed":
            return "F2"
        if ctx.get("key_replay") and model_ok and (not real_ok or ctx.get("what") == "record"):
            return "F8"  # the model answers the stored response; mppx handles the duplicate as a new request
        if ctx.get("what") == "record":
            if ctx.get("key_replay"):
                return "F8"
            if kind == "high_s":
                return "F1"
            if ctx.get("settled") == ctx.get("amount") == ctx.get("accepted"):
                return "F2"
            return None
        if not real_ok and not model_ok:
            if mp == "signer-mismatch" and rp == "invalid-signature":
                return "F7"
            if rp == "amount-exceeds-deposit" and mp in ("signer-mismatch", "invalid-signature"):
                return "F12"
        return None
    if prop == "S4":
        return "F1" if ctx.get("high_s") else None
    if prop == "D3":
        return "F8"
    if prop == "SR":
        return "F6" if ctx.get("what") == "units" else None
    if prop == "HX":
        return "F10"
    if prop == "SH":
        if ctx.get("stale_chain"):
            return "F13"
        return "F11" if ctx.get("only_required") and ctx.get("real_required") == ctx.get("spent_plus_price") else None
    if prop == "HB":
        return "F3" if ctx.get("unproven") else None
    if prop == "HT":
        return "F15" if ctx.get("had_store") else None
    if prop in ("B2", "HD"):
        return "F14" if prop == "HD" or ctx.get("over_deposit") else None
    return None


# ------------------------------------------------------------------------------------------ sessions


class V2Session:
    machine = "mppx-server"

    def __init__(self, rc: RunConfig):
        self.rc = rc
        self.steps: list = []
        self.results: list[StepResult] = []
        self.findings: dict = {}  # finding -> (step number, property, message)
        self.unexpected: list = []  # (step number, property, message)
        self.skipped: dict = {}
        self.found: set = set()  # (property, finding)
        self.violations: list = []  # (step number, property, message, finding or None), every one
        self.dropped: dict = {}  # optional op the adapter lacks -> (steps not run, what is not checked)
        self.impl = impl_name(rc.server if self.machine == "mppx-server" else rc.client)  # the adapter's name
        self.n = 0

    # bookkeeping shared by the machines
    def _violation(self, out: list, prop: str, msg: str, ctx: Optional[dict] = None) -> None:
        fid = classify(prop, ctx or {})
        if self.impl != "mppx":  # the messages name the implementation under test
            msg = msg.replace("mppx's", f"{self.impl}'s").replace("mppx ", f"{self.impl} ")
        out.append((prop, f"[{fid}] {msg}" if fid else msg, fid))

    def do(self, step: dict) -> StepResult:
        self.n = len(self.steps) + 1
        self.steps.append(step)
        wires: list = []
        viols: list = []
        outcome = self._apply(step, wires, viols)
        res = StepResult(self.n, step, outcome, outcome, [(p, m) for p, m, _ in viols], [], [], wires)
        self.last_findings = list(viols)
        for p, m, f in viols:
            self.violations.append((self.n, p, m, f))
            if f is None:
                self.unexpected.append((self.n, p, m))
            else:
                self.findings.setdefault(f, (self.n, p, m))
                self.found.add((p, f))
        self.results.append(res)
        return res

    def _apply(self, step, wires, viols) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def property_table(self) -> dict:
        raise NotImplementedError


def _hints_of(raw_challenge: Optional[dict]) -> Optional[dict]:
    if not raw_challenge:
        return None
    snap = (raw_challenge.get("request", {}).get("methodDetails") or {}).get("sessionSnapshot")
    if not snap:
        return {}
    out = {"channel": snap["channelId"].lower(), "accepted": int(snap["acceptedCumulative"]),
           "spent": int(snap["spent"]), "required": int(snap["requiredCumulative"]), "deposit": int(snap["deposit"])}
    if snap.get("highestVoucher"):
        out["proof"] = int(snap["highestVoucher"]["cumulativeAmount"])
    return out


def _model_hints(raw_challenge: dict) -> Optional[Hints]:
    snap = (raw_challenge.get("request", {}).get("methodDetails") or {}).get("sessionSnapshot")
    if not snap:
        return None
    proof = None
    hv = snap.get("highestVoucher")
    if hv:
        pc = hv["channelId"].lower()
        proof = Voucher(pc, int(hv["cumulativeAmount"]), recover_v2(pc, int(hv["cumulativeAmount"]), hv["signature"]))
    return Hints(channel_id=snap["channelId"].lower(), accepted=int(snap["acceptedCumulative"]),
                 spent=int(snap["spent"]), deposit=int(snap["deposit"]), required=int(snap["requiredCumulative"]),
                 settled=int(snap["settled"]), proof=proof)


def _escrow_channel(cid: str, ch: Optional[dict]) -> Optional[mchain.EscrowChannel]:
    if ch is None:
        return None
    signer = ch.get("authorizedSigner") or ZERO
    payer = ch["payer"].lower()
    return mchain.EscrowChannel(cid, payer, ch["payee"].lower(), payer if signer.lower() == ZERO else signer.lower(),
                                int(ch["deposit"]), int(ch["settled"]), int(ch.get("closeRequestedAt") or 0),
                                bool(ch.get("finalized")))


class ServerV2Session(V2Session):
    """(a) mppx's server; the model client (and an adversary with the payer's key) on seeded v2 channels."""

    machine = "mppx-server"

    def __init__(self, rc: RunConfig):
        super().__init__(rc)
        self.strict = rc.strength == "strict"
        self.srv = MppxServer(rc.server)
        self.dropped = dropped_ops("mppx-server", rc.server)
        self.srv.reset(Env(chain=None, payee_key=_key("payee", rc.seed), price=PRICE, seed=rc.seed))
        self.a = self.srv.a
        self.payee = self.srv.payee
        self.keys = [_key(f"payer-{i}", rc.seed) for i in range(len(SEEDS))]
        self.addrs = [address_of(k) for k in self.keys]
        self.other_key = _key("mallory", rc.seed)
        self.cids: list = []
        self.desc: dict = {}
        self.base_spent: dict = {}
        self.served: dict = {}
        self.signed: dict = {}
        self.cst: list = []
        self.ccfg: list = []
        for i, sd in enumerate(SEEDS):
            out = self.srv.seed_channel(payerPrivateKey="0x" + self.keys[i].hex(), deposit=str(sd["deposit"]),
                                        spent=str(sd["spent"]), highestVoucher={"cumulativeAmount": str(sd["highest"])})
            cid = out["channelId"].lower()
            self.cids.append(cid)
            self.desc[cid] = out["descriptor"]
            self.base_spent[cid] = sd["spent"]
            self.served[cid] = 0
            self.signed[cid] = sd["highest"]
            cfg = mcl.ClientConfig(name=f"payer{i}", payer=self.addrs[i], hinted=True, deposit=4, top_up=TOP_UP,
                                   persist=True)
            entry = mcl.Entry(cid, sd["deposit"], sd["highest"], sd["spent"], sd["highest"])
            self.ccfg.append(cfg)
            self.cst.append(mcl.ClientState(entry=entry, persisted=entry))
        self.scfg = msv.ServerConfig(payee=self.payee, price=PRICE, hinted=True, profile="v2")
        self.idem: tuple = ()  # the model twin's idempotency cache, carried from step to step
        self.charged_keys: set = set()
        self.last_keyed: dict = {}
        self.req_no = 0
        self.adv_no = 0
        self.obs = self.observe()
        self.skipped = {
            "S5": "the mppx adapter's fake chain keeps no token balances (conservation is not observable)",
            "D1": "not claimed here: the adversary signs with the payer's key (exposure is its own doing)",
            "D2": "not claimed here: the adversary signs with the payer's key",
            "B1": "mppx 0.11.0 has no legacy (hint-less) server mode; SV compares each verdict with the model's",
            "B2": "not claimed here: adversarial steps (the pair machine of the mppx client claims it)",
            "HB": "a client property: machine mppx-client", "CM": "a client property: machine mppx-client",
            "HT": "a client property: machine mppx-client", "RM": "a client property: machine mppx-client",
            "RV": "a client property: machine mppx-client", "R2": "a client property",
            "L1": "a client property",
        }

    # -- observation and the twin

    def observe(self) -> dict:
        return {cid: (self.srv.raw_record(cid), self.srv.chain_state(cid)) for cid in self.cids}

    def twin(self, obs: dict):
        chans, recs = (), ()
        for i, cid in enumerate(self.cids):
            rec, ch = obs[cid]
            ech = _escrow_channel(cid, ch)
            if ech is not None:
                chans = fm_set(chans, cid, ech)
            if rec is not None:
                hv = rec.get("highestVoucher")
                amount = int(rec["acceptedCumulative"])
                highest = (Voucher(cid, int(hv["cumulativeAmount"]), recover_v2(cid, int(hv["cumulativeAmount"]),
                                                                                 hv["signature"]))
                           if hv else Voucher(cid, amount, None))
                recs = fm_set(recs, cid, msv.ServerChannel(
                    cid, (rec.get("payer") or "").lower(), amount, highest, spent=int(rec["spent"]),
                    units=int(rec.get("units") or 0), deposit=int(rec["deposit"]), settled=int(rec["settled"]),
                    close_requested_at=int(rec.get("closeRequestedAt") or 0), finalized=bool(rec["finalized"]),
                    seq=i + 1))
        bals = tuple(sorted((a, 100) for a in set(self.addrs)))
        chain = mchain.Chain(channels=chans, balances=bals)
        return msv.Server(channels=recs, idempotency=self.idem, opened=len(self.cids)), chain

    # -- wire helpers

    def credential(self, i: int, challenge: dict, action: str, cid: str, amount: int, sig: str) -> str:
        payload = {"action": action, "channelId": cid, "descriptor": self.desc[cid],
                   "cumulativeAmount": str(amount), "signature": sig}
        cred = {"challenge": challenge, "payload": payload, "source": f"did:pkh:eip155:{CHAIN_ID}:{self.addrs[i]}"}
        return self.srv.format_credential(cred)

    def unpaid(self, i: int, method: str, cid: Optional[str], wires: list, viols: list, origin="client") -> dict:
        raw = self.srv.challenge(method, cid)
        ch = (raw.get("challenges") or [None])[0]
        wires.append(Wire(self.n, i, origin, method, status=raw["status"], problem=problem_of(raw),
                          hints=_hints_of(ch)))
        if self.strict and ch is not None:
            self._check_hex(ch, viols)
        return raw

    def _check_hex(self, ch: dict, viols: list) -> None:
        rec = ch["request"].get("recipient", "")
        if rec != rec.lower():
            self._violation(viols, "HX", f"challenge request.recipient {rec} is not lowercase hex")

    # -- one exchange, compared with the model

    def exchange(self, i: int, origin: str, method: str, action: str, cid: str, amount: int, sig: str,
                 key: Optional[str], challenge: Optional[dict], wires: list, viols: list, kind: Optional[str] = None,
                 auth: Optional[str] = None, key_replay: bool = False) -> dict:
        content = method == "GET"
        before = self.obs
        twin_server, twin_chain = self.twin(before)
        if auth is None:
            auth = self.credential(i, challenge, action, cid, amount, sig)
        raw = self.srv.handle_raw(method, auth, key, channel_id=cid)
        after = self.obs = self.observe()
        signer = recover_v2(cid, amount, sig)
        mcred = MCredential(action, cid, Voucher(cid, amount, signer))
        s2, c2, mresp = msv.handle(self.scfg, twin_server, twin_chain, MRequest(self.addrs[i], content, mcred, key))
        self.idem = s2.idempotency
        rec_b, ch_b = before[cid]
        rec_a, ch_a = after[cid]
        spent_b = int(rec_b["spent"]) if rec_b else 0
        spent_a = int(rec_a["spent"]) if rec_a else 0
        charged = max(0, spent_a - spent_b)
        status = raw["status"]
        real_ok, model_ok = 200 <= status < 300, mresp.status == 200
        rp = problem_of(raw)
        receipt = raw.get("receipt")
        w = Wire(self.n, i, origin, method, action=action, channel_id=cid, amount=amount, key=key, status=status,
                 problem=rp, charged=charged, spent_before=spent_b,
                 receipt=((receipt["channelId"].lower(), int(receipt["acceptedCumulative"]), int(receipt["spent"]),
                           bool(receipt.get("txHash"))) if real_ok and receipt else None),
                 hints=_hints_of((raw.get("challenges") or [None])[0]) if status == 402 else None,
                 note=f"model: {mresp.status} {mresp.problem or ''}".strip())
        wires.append(w)
        if signer is not None and ch_b is not None and signer == _escrow_channel(cid, ch_b).signer:
            self.signed[cid] = max(self.signed.get(cid, 0), amount)
        accepted_b = int(rec_b["acceptedCumulative"]) if rec_b else None
        settled_b = int(ch_b["settled"]) if ch_b else None
        ctx = {"kind": kind, "real_ok": real_ok, "model_ok": model_ok, "real_problem": rp,
               "model_problem": mresp.problem, "amount": amount, "accepted": accepted_b, "settled": settled_b,
               "key_replay": key_replay}
        said = (f"{kind or 'honest'}: {method} {action} cumulative={amount} on {_short(cid)}: mppx answered {status} "
                f"{rp or ''}, the model {mresp.status} {mresp.problem or ''}")
        if real_ok != model_ok:
            self._violation(viols, "SV", said, ctx)
        elif self.strict and not real_ok and (status, rp) != (mresp.status, mresp.problem):
            self._violation(viols, "SV", said, ctx)
        if self.strict and not real_ok and mresp.problem == "insufficient-balance" and rp == "insufficient-balance":
            body = raw.get("body") or {}
            if str(body.get("requiredTopUp")) != str(mresp.required_top_up):
                self._violation(viols, "SV", f"insufficient-balance without requiredTopUp={mresp.required_top_up} "
                                             f"(problem members: {sorted(body)})", dict(ctx, what="requiredTopUp"))
        if self.strict:
            trec = s2.record(cid)
            a = None if trec is None else (trec.accepted, trec.spent)
            b = None if rec_a is None else (int(rec_a["acceptedCumulative"]), int(rec_a["spent"]))
            if a != b and not (real_ok != model_ok):
                self._violation(viols, "SV", f"{said}; record (accepted, spent) mppx {b}, model {a}",
                                dict(ctx, what="record"))
        # D3: a request repeated with the same Idempotency-Key is charged once
        if key and charged:
            if (cid, key) in self.charged_keys:
                self._violation(viols, "D3", f"the request with Idempotency-Key {key} on {_short(cid)} was charged "
                                             f"again ({charged})", ctx)
            self.charged_keys.add((cid, key))
        if real_ok and content and action == "voucher":
            self.served[cid] = self.served.get(cid, 0) + PRICE
        # S-R1: the receipt carries the record after the request
        if real_ok and receipt and rec_a is not None:
            got = (int(receipt["acceptedCumulative"]), int(receipt["spent"]))
            want = (int(rec_a["acceptedCumulative"]), int(rec_a["spent"]))
            if got != want and action != "close":
                self._violation(viols, "SR", f"receipt (accepted, spent)={got}, record {want}", ctx)
            if self.strict and action != "close":
                units = receipt.get("units")
                want_units = 1 if charged else None
                if units != want_units:
                    self._violation(viols, "SR", f"receipt units={units}, this request consumed "
                                                 f"{want_units or 0} (draft: units consumed this request)",
                                    dict(ctx, what="units"))
        # S7: the payee captures at most max(spent, settled)
        if action == "close" and real_ok and ch_a is not None and ch_a.get("finalized"):
            capture = int(ch_a["settled"])
            bound = max(spent_b, settled_b or 0)
            if capture > bound:
                self._violation(viols, "S7", f"close of {_short(cid)} captured {capture} > max(spent={spent_b}, "
                                             f"settled={settled_b})", ctx)
        return raw

    # -- state properties on mppx's records and the fake chain

    def check_state(self, prev: dict, nxt: dict, viols: list) -> None:
        for cid in self.cids:
            rb, cb = prev[cid]
            ra, ca = nxt[cid]
            if rb is not None:
                if ra is None:
                    self._violation(viols, "S1", f"record of {_short(cid)} disappeared")
                elif int(ra["acceptedCumulative"]) < int(rb["acceptedCumulative"]) or int(ra["spent"]) < int(rb["spent"]):
                    self._violation(viols, "S1", f"{_short(cid)} went from accepted={rb['acceptedCumulative']}, "
                                                 f"spent={rb['spent']} to accepted={ra['acceptedCumulative']}, "
                                                 f"spent={ra['spent']}")
            if cb is not None and ca is not None and int(ca["settled"]) < int(cb["settled"]):
                self._violation(viols, "S1", f"settled of {_short(cid)} decreased")
            if ra is None or ca is None:
                continue
            acc, spent = int(ra["acceptedCumulative"]), int(ra["spent"])
            if not spent <= acc or acc > int(ca["deposit"]):
                self._violation(viols, "S2", f"{_short(cid)} spent={spent} accepted={acc} deposit={ca['deposit']}")
            if int(ca["settled"]) > max(acc, spent):
                self._violation(viols, "S3", f"{_short(cid)} settled={ca['settled']} > accepted={acc}")
            hv = ra.get("highestVoucher")
            signer = _escrow_channel(cid, ca).signer
            if hv:
                amt = int(hv["cumulativeAmount"])
                rec_signer = recover_v2(hv["channelId"].lower(), amt, hv["signature"])
                if amt != acc or hv["channelId"].lower() != cid or rec_signer != signer:
                    high_s = False
                    try:
                        high_s = recover_v2(cid, amt, to_high_s(hv["signature"])) == signer  # its low-s twin verifies
                    except Exception:
                        pass
                    self._violation(viols, "S4", f"{_short(cid)} stores a highest voucher {amt} that does not verify "
                                                 f"(low-s, channel signer) as proof of accepted={acc}",
                                    {"high_s": high_s})
            if spent - self.base_spent[cid] != self.served.get(cid, 0) * PRICE:
                self._violation(viols, "S6", f"{_short(cid)} spent={spent} (seeded {self.base_spent[cid]}) but content "
                                             f"served is worth {self.served.get(cid, 0) * PRICE}")

    # -- steps

    def _apply(self, step, wires, viols) -> str:
        prev = self.obs
        op, i = step["op"], step.get("client", 0)
        if op == "request":
            out = self.client_request(i, "GET", step.get("key", True), wires, viols)
        elif op == "head":
            out = self.client_request(i, "HEAD", False, wires, viols)
        elif op == "adversary":
            out = self.attack(i, step["kind"], wires, viols)
        elif op == "probe":
            out = self.probe(i, wires, viols)
        elif op in ("settle", "top_up_chain") and "chain.set_channel" in self.dropped:
            out = "skipped: the adapter lacks chain.set_channel"
        elif op == "restart_server" and "server.restart" in self.dropped:
            out = "skipped: the adapter lacks server.restart"
        elif op == "settle":
            for cid in self.cids:
                self.srv.settle(cid)
            out = "done"
        elif op == "top_up_chain":
            out = self.top_up(i)
        elif op == "close":
            out = self.close_channel(i, wires, viols)
        elif op == "restart_server":
            self.srv.restart()
            out = "done"
        else:
            raise ValueError(f"unknown step {step}")
        self.obs = self.observe()
        self.check_state(prev, self.obs, viols)
        return out

    def top_up(self, i: int) -> str:
        cid = self.cids[i]
        ch = self.srv.chain_state(cid)
        if ch is None or ch.get("finalized"):
            return "noop"
        self.srv.set_chain(cid, dict(ch, deposit=str(int(ch["deposit"]) + TOP_UP), closeRequestedAt="0"))
        return "done"

    def _model_chain(self) -> mchain.Chain:
        return self.twin(self.obs)[1]

    def client_request(self, i: int, method: str, keyed: bool, wires: list, viols: list) -> str:
        content = method == "GET"
        self.req_no += 1
        key = f"k{self.req_no}" if keyed and content else None
        e = self.cst[i].entry
        raw = self.unpaid(i, method, e.channel_id if e else self.cids[i], wires, viols)
        for _ in range(4):
            ch = (raw.get("challenges") or [None])[0]
            if ch is None:
                return f"failed:{problem_of(raw)}"
            mch = MChallenge(price=int(ch["request"]["amount"]), hints=_model_hints(ch))
            made = mcl.next_credential(self.ccfg[i], self.cst[i], mch, self._model_chain(), content)
            if isinstance(made, mcl.Refused):
                return f"refused:{made.reason}"
            st_, mc = made
            if mc.action == "open":
                return "noop:would-open (opening needs a Tempo transaction; not driven)"
            self.cst[i] = st_
            if mc.action == "topUp":  # the payer's topUp, applied on the fake chain directly
                if "chain.set_channel" in self.dropped:
                    return "noop:would-top-up (the adapter lacks chain.set_channel)"
                self.top_up(i)
                self.obs = self.observe()
                raw = self.unpaid(i, method, mc.channel_id, wires, viols)
                continue
            cid, amount = mc.channel_id, mc.voucher.amount
            sig = sign_voucher(self.keys[i], domain(), cid, amount)
            raw = self.exchange(i, "client", method, "voucher", cid, amount, sig, key, ch, wires, viols)
            if key:
                self.last_keyed[i] = (raw, cid, amount, sig, key, ch)
            if 200 <= raw["status"] < 300:
                r = raw.get("receipt")
                if r:
                    self.cst[i] = mcl.on_response_receipt(self.ccfg[i], self.cst[i], MReceipt(
                        r["channelId"].lower(), int(r["acceptedCumulative"]), int(r["spent"])))
                return "served"
            if raw["status"] == 410:
                self.cst[i] = mcl.drop_channel(self.cst[i], cid)
                return f"failed:{problem_of(raw)}"
            if not raw.get("challenges"):
                return f"failed:{problem_of(raw)}"
        return "failed:gave-up"

    def close_channel(self, i: int, wires: list, viols: list) -> str:
        e = self.cst[i].entry
        if e is None:
            return "noop"
        raw = self.unpaid(i, "POST", e.channel_id, wires, viols)
        ch = (raw.get("challenges") or [None])[0]
        if ch is None:
            return f"failed:{problem_of(raw)}"
        mch = MChallenge(price=int(ch["request"]["amount"]), hints=_model_hints(ch))
        made = mcl.close_credential(self.ccfg[i], self.cst[i], mch, self._model_chain())
        if made is None:
            return "noop"
        if isinstance(made, mcl.Refused):
            return f"refused:{made.reason}"
        self.cst[i], mc = made
        cid, amount = mc.channel_id, mc.voucher.amount
        sig = sign_voucher(self.keys[i], domain(), cid, amount)
        raw = self.exchange(i, "client", "POST", "close", cid, amount, sig, None, ch, wires, viols)
        if 200 <= raw["status"] < 300:
            r = raw.get("receipt") or {}
            self.cst[i] = mcl.on_response_receipt(self.ccfg[i], self.cst[i], MReceipt(
                cid, int(r.get("acceptedCumulative", amount)), int(r.get("spent", 0)), capture=int(r.get("spent", 0))))
            return "done"
        return f"failed:{problem_of(raw)}"

    def probe(self, i: int, wires: list, viols: list) -> str:
        cid = self.cids[i]
        raw = self.unpaid(i, "GET", cid, wires, viols)
        ch = (raw.get("challenges") or [None])[0]
        real = _model_hints(ch) if ch else None
        server, chain = self.twin(self.obs)
        model = msv.author_challenge(self.scfg, server, chain, self.addrs[i], True).hints

        def norm(h):
            return None if h is None else (h.channel_id, h.accepted, h.spent, h.required, h.deposit, h.settled)

        a, b = norm(real), norm(model)
        if a == b:
            return "done"
        if a is None or b is None or a[:3] != b[:3]:
            self._violation(viols, "SH", f"hints (channel, accepted, spent, required, deposit, settled) for "
                                         f"{_short(cid)}: mppx {a}, model {b}", {})
            return "done"
        said = f"snapshot for {_short(cid)} (accepted={a[1]}, spent={a[2]})"
        if a[3] != b[3]:
            self._violation(viols, "SH", f"{said}: requiredCumulative mppx {a[3]}, model {b[3]} "
                                         f"(S-H2: max(accepted, spent + price))",
                            {"only_required": True, "real_required": a[3], "spent_plus_price": a[2] + PRICE})
        if a[4:] != b[4:]:
            rec = self.obs[cid][0] or {}
            cached = (int(rec.get("deposit", -1)), int(rec.get("settled", -1)))
            self._violation(viols, "SH", f"{said}: (deposit, settled) mppx {a[4:]}, on chain {b[4:]} "
                                         f"(mppx's stored copy {cached})", {"stale_chain": a[4:] == cached})
        return "done"

    def attack(self, i: int, kind: str, wires: list, viols: list) -> str:
        cid = self.cids[i]
        rec, ch = self.obs[cid]
        if rec is None or ch is None:
            return "noop"
        if kind == "idem_replay":
            last = self.last_keyed.get(i)
            if last is None:
                return "noop"
            raw0, lcid, amount, sig, key, challenge = last
            auth = self.credential(i, challenge, "voucher", lcid, amount, sig)
            self.exchange(i, "duplicate", "GET", "voucher", lcid, amount, sig, key, challenge, wires, viols,
                          kind=kind, auth=auth, key_replay=True)
            return "done"
        acc, dep = int(rec["acceptedCumulative"]), int(ch["deposit"])
        amount = {"lower": acc - PRICE, "replay": acc, "above_deposit": dep + PRICE, "forged_above_deposit": dep + PRICE,
                  "head_advance": acc + 2 * PRICE}.get(kind, acc + PRICE)
        if amount < 0:
            return "noop"
        key_bytes, sig_cid = self.keys[i], cid
        if kind in ("forged", "forged_above_deposit"):
            key_bytes = self.other_key
        if kind == "other_channel":
            sig_cid = self.cids[(i + 1) % len(self.cids)]
        sig = sign_voucher(key_bytes, domain(), sig_cid, amount)
        if kind == "high_s":
            sig = to_high_s(sig)
        if kind == "compact":
            sig = to_compact(sig)
        method = "HEAD" if kind == "head_advance" else "GET"
        raw = self.unpaid(-1, method, cid, wires, viols, origin="adversary")
        challenge = (raw.get("challenges") or [None])[0]
        if challenge is None:
            return "noop"
        self.exchange(i, "adversary", method, "voucher", cid, amount, sig, None, challenge, wires, viols, kind=kind)
        return "done"

    def property_table(self) -> dict:
        return _table(self, ("S1", "S2", "S3", "S4", "S6", "S7", "D3", "SV", "SH", "SR")
                      + (("HX",) if self.strict else ()))


# ------------------------------------------------------------------------------------------ (b) client side


class V2ModelServer:
    """model/server.py over the v2 wire, for mppx's client; `lie` rewrites its answers."""

    def __init__(self, sess: "ClientV2Session"):
        self.s = sess
        self.lie: Optional[str] = None
        self.lied: set = set()  # ids of challenges carrying a lie
        self.issued = 0  # challenges issued (each gets its own expires)
        self.secret = f"model-v2-secret-{sess.rc.seed:08d}-0123456789abcdef"

    def challenge_json(self, mch: MChallenge) -> dict:
        s = self.s
        md: dict = {"chainId": CHAIN_ID, "escrowContract": ESCROW, "sessionProtocol": "v2"}
        h = mch.hints
        lie = self.lie
        if h is not None and h.has_values:
            cid = h.channel_id
            ech = s.chain.channel(cid)
            snap = {"acceptedCumulative": h.accepted, "chainId": CHAIN_ID, "channelId": cid, "deposit": h.deposit,
                    "descriptor": s.desc[cid], "escrow": ESCROW, "requiredCumulative": h.required,
                    "settled": h.settled or 0, "spent": h.spent, "units": 0}
            sig = s.sigs.get((cid, h.proof.amount)) if h.proof is not None else None
            if sig is not None:
                snap["highestVoucher"] = {"channelId": cid, "cumulativeAmount": str(h.proof.amount), "signature": sig}
            if lie == "inflate":
                top = ech.deposit
                snap.update(acceptedCumulative=top, requiredCumulative=top, spent=max(0, top - PRICE))
                snap.pop("highestVoucher", None)
            elif lie == "stale":
                snap.update(acceptedCumulative=ech.settled, requiredCumulative=ech.settled, spent=ech.settled)
                snap.pop("highestVoucher", None)
            elif lie == "other_channel":
                other = s.cids[1]
                och = s.chain.channel(other)
                snap.update(channelId=other, descriptor=s.desc[other], deposit=och.deposit)
                snap.pop("highestVoucher", None)
            snap = {k: (str(v) if isinstance(v, int) and k not in ("chainId", "units") else v) for k, v in snap.items()}
            md["channelId"] = snap["channelId"]
            md["sessionSnapshot"] = snap
        elif h is not None:
            md["channelId"] = h.channel_id
        req = {"amount": str(mch.price), "currency": TOKEN, "recipient": s.payee, "unitType": "request",
               "methodDetails": md}
        if mch.suggested_deposit is not None:
            req["suggestedDeposit"] = str(mch.suggested_deposit)
        # A fresh expires per challenge, as deployed servers (and mppx's default) issue them: mppx's fetch layer
        # reuses its previous credential when a re-challenge serializes identically. Counted, not clocked, so
        # runs stay reproducible.
        self.issued += 1
        expires = (datetime.datetime(2099, 1, 1, tzinfo=datetime.timezone.utc)
                   + datetime.timedelta(seconds=self.issued)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return {"realm": "model.v2", "method": "tempo", "intent": "session", "expires": expires, "request": req}

    def www(self, mch: MChallenge) -> str:
        cj = self.challenge_json(mch)
        header = self.s.a.call("challenge.format", challenge=cj, secretKey=self.secret)["header"]
        if self.lie in ("inflate", "stale", "other_channel") and mch.hints is not None and mch.hints.has_values:
            for c in self.s.a.call("challenge.parse", header=header):
                self.lied.add(c["id"])
        return header

    def problem(self, status: int, slug: str, mch: Optional[MChallenge], **ext) -> httpx.Response:
        headers = {"content-type": "application/problem+json"}
        if mch is not None:
            headers["www-authenticate"] = self.www(mch)
        return httpx.Response(status, headers=headers, content=wire.encode_problem(wire.problem(slug, None, **ext)))

    def handle(self, request: httpx.Request) -> httpx.Response:
        s = self.s
        payer = request.headers.get(PAYER_HEADER, "").lower()
        content = request.method.upper() == "GET"
        key = request.headers.get("idempotency-key")
        auth = request.headers.get("authorization")
        w = Wire(s.n, 0, "client", request.method.upper())
        s.cur_wires.append(w)
        if not auth:
            _, _, resp = msv.handle(s.scfg, s.server, s.chain, MRequest(payer, content))
            w.status, w.problem = 402, "payment-required"
            out = self.problem(402, "payment-required", resp.challenge)
            w.hints = _hints_of(s.a.call("challenge.parse", header=out.headers["www-authenticate"])[0])
            return out
        cred = s.a.call("credential.parse", header=auth)
        p = cred["payload"]
        cid = (p.get("channelId") or "").lower()
        w.action, w.channel_id, w.key = p.get("action"), cid, key
        if p.get("cumulativeAmount") is not None:
            w.amount = int(p["cumulativeAmount"])
        if p.get("action") != "voucher":
            w.status, w.problem = 402, "verification-failed"
            w.note = f"{p.get('action')} not modelled by the v2 model server (needs a Tempo transaction decoder)"
            s.unmodelled += 1
            return self.problem(402, "verification-failed", None, channel_id=cid if len(cid) == 66 else None)
        amount = int(p["cumulativeAmount"])
        signer = recover_v2(cid, amount, p["signature"])
        spent_b = s.server.record(cid).spent if s.server.record(cid) else 0
        server, chain, resp = msv.handle(s.scfg, s.server, s.chain,
                                         MRequest(payer, content, MCredential("voucher", cid, Voucher(cid, amount, signer)),
                                                  key))
        ech = chain.channel(cid)
        if ech is not None and signer == ech.signer:
            s.sigs.setdefault((cid, amount), p["signature"])
        s.server, s.chain = server, chain
        w.status, w.problem = resp.status, resp.problem
        rec = server.record(cid)
        w.charged = (rec.spent - spent_b) if rec else 0
        if resp.status == 200:
            r = resp.receipt
            acc, spent = r.accepted, r.spent
            if self.lie == "backwards_receipt":
                acc, spent = 0, 0
            w.receipt = (r.channel_id, acc, spent, False)
            receipt = wire.Receipt(timestamp="2026-01-01T00:00:00Z", reference=r.channel_id,
                                   challenge_id=cred["challenge"]["id"], channel_id=r.channel_id,
                                   accepted_cumulative=acc, spent=spent, units=1 if content else None)
            return httpx.Response(200, headers={"payment-receipt": wire.encode_receipt(receipt)},
                                  content=b'{"served": true}')
        ext = {"channel_id": cid}
        if resp.required_top_up is not None:
            ext["required_top_up"] = resp.required_top_up
        out = self.problem(resp.status, resp.problem, resp.challenge, **ext)
        if resp.challenge is not None:
            w.hints = _hints_of(s.a.call("challenge.parse", header=out.headers["www-authenticate"])[0])
        return out


class ClientV2Session(V2Session):
    """(b) mppx's client against the v2 model server (lying when the step says so)."""

    machine = "mppx-client"
    lies = True

    def __init__(self, rc: RunConfig):
        super().__init__(rc)
        self.a = get_adapter(manifest_path(rc.client))
        self.a.call("reset")
        payee_key = _key("payee", rc.seed)
        self.payee = address_of(payee_key)
        # channel ids and descriptors derived by mppx (server.configure + seed_channel with onChain: false)
        self.a.call("server.configure", amount=str(PRICE), payeePrivateKey="0x" + payee_key.hex(), chainId=CHAIN_ID,
                    escrowContract=ESCROW, currency=TOKEN)
        self.keys = [_key(f"payer-{i}", rc.seed) for i in range(len(SEEDS))]
        self.addrs = [address_of(k) for k in self.keys]
        self.cids, self.desc, self.sigs = [], {}, {}
        self.signed: dict = {}
        chans, recs, bals = (), (), ()
        for i, sd in enumerate(SEEDS):
            out = self.a.call("server.seed_channel", payerPrivateKey="0x" + self.keys[i].hex(),
                              deposit=str(sd["deposit"]), onChain=False)
            cid = out["channelId"].lower()
            self.cids.append(cid)
            self.desc[cid] = out["descriptor"]
            sig = sign_voucher(self.keys[i], domain(), cid, sd["highest"])
            self.sigs[(cid, sd["highest"])] = sig
            self.signed[cid] = sd["highest"]
            chans = fm_set(chans, cid, mchain.EscrowChannel(cid, self.addrs[i], self.payee, self.addrs[i],
                                                            sd["deposit"]))
            recs = fm_set(recs, cid, msv.ServerChannel(cid, self.addrs[i], sd["highest"],
                                                       Voucher(cid, sd["highest"], self.addrs[i]), spent=sd["spent"],
                                                       deposit=sd["deposit"], seq=i + 1))
            bals = fm_set(bals, self.addrs[i], 100)
        self.chain = mchain.Chain(channels=chans, balances=bals)
        self.server = msv.Server(channels=recs, opened=len(SEEDS))
        self.scfg = msv.ServerConfig(payee=self.payee, price=PRICE, hinted=True, profile="v2", suggested_deposit=4)
        self.liar = V2ModelServer(self)
        self.client = MppxClient(rc.client)
        self.client.reset(Env(chain=None, payee_key=payee_key, price=PRICE, seed=rc.seed),
                          ClientParams("mppx", self.keys[0], True, 4, TOP_UP, 0, False),
                          httpx.MockTransport(self.liar.handle))
        self.client.chain_view = self.chain_view
        self.own: dict = {}
        self.cur_wires: list = []
        self.unmodelled = 0
        self.b2_unchecked = 0  # requests that ended at an action the model server cannot process (B2 not checked)
        self.req_no = 0
        self.skipped = {
            "RM": "mppx's sessionMethod keeps no view of the server (it reads no receipts: client.next_credential "
                  "lists `history` as ignored)",
            "RV": "mppx's sessionMethod keeps no view of the server (receipts are not read)",
            "S5": "the server is the model (server properties: machine mppx-server)",
            "D1": "not claimed: another device of the payer advances the channel (other_device steps)",
            "D2": "not claimed: another device of the payer advances the channel",
            "B1": "a server property", "SV": "a server property", "SH": "a server property",
        }

    def chain_view(self) -> dict:
        out = {}
        for cid, ch in self.chain.channels:
            out[cid] = {"payer": ch.payer, "payee": ch.payee, "token": TOKEN, "authorizedSigner": ZERO,
                        "deposit": str(ch.deposit), "settled": str(ch.settled),
                        "closeRequestedAt": str(ch.close_requested_at), "finalized": ch.finalized}
        return out

    def _apply(self, step, wires, viols) -> str:
        op = step["op"]
        self.cur_wires = wires
        start = len(self.client.log)
        unmodelled = self.unmodelled
        if op == "request":
            self.req_no += 1
            self.liar.lie = step.get("lie")
            try:
                out = self.client.request("GET", "/paid/resource", f"k{self.req_no}" if step.get("key", True) else None)
            finally:
                self.liar.lie = None
            out = out.kind
        elif op == "settle":
            for cid in self.cids:
                done = msv.settle_highest(self.scfg, self.server, self.chain, cid)
                if not isinstance(done, Rejected):
                    self.server, self.chain = done
            out = "done"
        elif op == "top_up_chain":
            done = mchain.top_up(self.chain, self.addrs[0], self.cids[0], TOP_UP)
            out = "noop" if isinstance(done, Rejected) else "done"
            if not isinstance(done, Rejected):
                self.chain = done
        elif op == "restart_client":
            self.client.restart(False)
            self.own = {}
            out = "done"
        elif op == "other_device":  # another device of the same payer buys one request on the channel
            cid = self.cids[0]
            rec = self.server.record(cid)
            amount = max(rec.accepted, rec.spent + PRICE)
            w = Wire(self.n, 1, "client", "GET", action="voucher", channel_id=cid, amount=amount)
            wires.append(w)
            sig = sign_voucher(self.keys[0], domain(), cid, amount)
            server, chain, resp = msv.handle(self.scfg, self.server, self.chain, MRequest(
                self.addrs[0], True, MCredential("voucher", cid, Voucher(cid, amount, self.addrs[0]))))
            if resp.status == 200:
                self.sigs.setdefault((cid, amount), sig)
                self.signed[cid] = max(self.signed.get(cid, 0), amount)
                w.receipt = (cid, resp.receipt.accepted, resp.receipt.spent, False)
            self.server, self.chain = server, chain
            w.status, w.problem = resp.status, resp.problem
            out = "done" if resp.status == 200 else f"failed:{resp.problem}"
        else:
            raise ValueError(f"unknown step {step}")
        # mppx's fetch tops up before signing above the deposit (0.8.14+); the v2 model server cannot process
        # a topUp (no Tempo transaction decoder), so B2 is not checked on a request that ended there.
        self.check_signatures(self.client.log[start:], step, out, viols, b2=self.unmodelled == unmodelled)
        return out

    def check_signatures(self, made: list, step: dict, outcome: str, viols: list, b2: bool = True) -> None:
        over_deposit = False
        had_store = True
        for action, cid, amount, echoed in made:
            if amount is None or action not in ("open", "voucher", "close"):
                continue
            snap = ((echoed or {}).get("request", {}).get("methodDetails") or {}).get("sessionSnapshot")
            ch = self.chain.channel(cid)
            floor = max(self.signed.get(cid, 0), ch.settled if ch else 0)
            proven = False
            if snap and snap.get("highestVoucher"):
                hv = snap["highestVoucher"]
                pa = int(hv["cumulativeAmount"])
                if hv["channelId"].lower() == cid and recover_v2(cid, pa, hv["signature"]) == self.addrs[0]:
                    floor, proven = max(floor, pa), True
            limit = floor + PRICE
            if amount > limit:
                self._violation(viols, "HB", f"mppx signed {amount} on {_short(cid)}; what the payer had authorized "
                                             f"({floor}) + price is {limit}; the challenge's snapshot said "
                                             f"accepted={snap and snap.get('acceptedCumulative')}, "
                                             f"required={snap and snap.get('requiredCumulative')}, "
                                             f"highestVoucher={'yes' if snap and snap.get('highestVoucher') else 'no'}",
                                {"unproven": not (snap and snap.get("highestVoucher"))})
            if action == "voucher" and ch is not None and amount > ch.deposit:
                over_deposit = True
                self._violation(viols, "HD", f"mppx sent a voucher of {amount} on {_short(cid)} above the on-chain "
                                             f"deposit {ch.deposit} (rule H5: top up first, or refuse)", {})
            if amount < self.own.get(cid, 0):
                self._violation(viols, "CM", f"mppx signed {amount} on {_short(cid)} after signing {self.own[cid]}")
            cid_id = (echoed or {}).get("id")
            if snap and cid_id not in self.liar.lied and snap["channelId"].lower() == cid and action == "voucher":
                req = int(snap["requiredCumulative"])
                if amount < req:
                    self._violation(viols, "HT", f"mppx signed {amount} on {_short(cid)} after an honest hint "
                                                 f"requiredCumulative={req}", {"had_store": had_store})
            self.signed[cid] = max(self.signed.get(cid, 0), amount)
            self.own[cid] = max(self.own.get(cid, 0), amount)
        if not b2 and not self.lies and step["op"] == "request" and outcome != "served":
            self.b2_unchecked += 1
        elif not self.lies and step["op"] == "request" and outcome not in ("served", "refused:deposit-exhausted"):
            self._violation(viols, "B2", f"with no faults and no lies, a request ended {outcome!r}",
                            {"over_deposit": over_deposit})

    def property_table(self) -> dict:
        table = _table(self, ("HB", "CM", "HT", "HD") + (("B2",) if not self.lies else ()))
        if self.b2_unchecked and table.get("B2") == "held":
            table["B2"] = (f"held where checked; not checked on {self.b2_unchecked} request(s) that ended at mppx's "
                           "topUp, which the v2 model server cannot process (no Tempo transaction decoder)")
        return table


class PairV2Session(ClientV2Session):
    machine = "mppx-pair"
    lies = False


def _table(sess: V2Session, claimed: tuple) -> dict:
    from model.properties import PROPERTIES

    table = {}
    for p in [p.id for p in PROPERTIES] + list(EXTRA):
        if p in sess.skipped:
            table[p] = f"skipped: {sess.skipped[p]}"
        elif p in claimed:
            table[p] = "held"
        else:
            table[p] = "not claimed for this machine"
    for op, (steps, what) in sess.dropped.items():
        table[f"op {op}"] = f"skipped: the adapter lacks {op}: steps {', '.join(steps)} not run; {what}"
    return table


def dropped_ops(machine: str, spec: str) -> dict:
    """The optional ops of `machine` the adapter of `spec` lacks (its hello capabilities): op -> (steps, what)."""
    _side, _needed, optional = MACHINE_OPS[machine]
    if not optional:
        return {}
    caps = adapter_capabilities(manifest_path(spec))
    return {op: v for op, v in optional.items() if op not in caps}


SESSIONS = {"mppx-server": ServerV2Session, "mppx-client": ClientV2Session, "mppx-pair": PairV2Session}


# ------------------------------------------------------------------------------------------ exploration


def operations(machine: str, dropped: tuple = ()) -> list:
    """The steps explored; `dropped`: steps needing an op the adapter lacks (reported skipped, never run)."""
    if machine == "mppx-server":
        ops = (["request"] * 5 + ["adversary"] * 7 + ["probe"] * 2
               + ["head", "settle", "top_up_chain", "restart_server", "close"])
        return [o for o in ops if o not in dropped]
    ops = ["request"] * 5 + ["settle", "top_up_chain", "restart_client", "restart_client", "other_device"]
    if machine == "mppx-client":
        ops += ["lie"] * 5
    return ops


class _Stop(AssertionError):
    pass


class Collector:
    def __init__(self, progress=None):
        self.sessions: list = []
        self.steps = 0
        self.failing = None  # a session with an unexpected violation
        self.first: dict = {}  # finding -> (session, step number)
        self.progress = progress
        self.t0 = time.monotonic()


def build(rc: RunConfig, machine: str, col: Collector, expected: set, dropped: tuple = ()):
    cls = SESSIONS[machine]
    ops = operations(machine, dropped)
    counter = [0]

    class Machine(RuleBasedStateMachine):
        @initialize()
        def start(self):
            counter[0] += 1
            self.session = cls(attrs.evolve(rc, seed=rc.seed * 10_000 + counter[0]))
            col.sessions.append(self.session)
            if col.progress and len(col.sessions) % 5 == 0:
                col.progress(f"  {len(col.sessions)} examples, {col.steps} steps, {time.monotonic() - col.t0:.1f}s")

        @rule(data=st.data())
        def step(self, data):
            op = data.draw(st.sampled_from(ops), label="op")
            step: dict = {"op": op}
            if op in ("request", "head", "adversary", "probe", "top_up_chain", "close") and machine == "mppx-server":
                step["client"] = data.draw(st.integers(0, len(SEEDS) - 1), label="client")
            if op == "request":
                step["key"] = data.draw(st.booleans().map(lambda b: not b), label="key")
            if op == "adversary":
                step["kind"] = data.draw(st.sampled_from(ADVERSARY_KINDS), label="kind")
            if op == "lie":
                step = {"op": "request", "key": True, "lie": data.draw(st.sampled_from(LIES), label="lie")}
            r = self.session.do(step)
            col.steps += 1
            for p, m, f in self.session.last_findings:
                if f is None or f not in expected:
                    col.failing = self.session
                    raise _Stop(f"{p}: {m}\n" + render_steps(self.session.results))
                if f not in col.first:
                    col.first[f] = (self.session, r.n)

    Machine.__name__ = f"Conformance_{machine.replace('-', '_')}"
    return Machine


def replay_steps(rc: RunConfig, machine: str, steps: list):
    s = SESSIONS[machine](rc)
    for step in steps:
        s.do(step)
    return s


def shrink(rc: RunConfig, machine: str, steps: list, want: Callable, budget: float) -> list:
    """Delta debugging by replay: drop chunks, then single steps, while `want(session)` still holds."""
    deadline = time.monotonic() + budget
    chunk = max(1, len(steps) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i, changed = 0, False
        while i < len(steps) and time.monotonic() < deadline:
            trial = steps[:i] + steps[i + chunk:]
            if trial and want(replay_steps(rc, machine, trial)):
                steps, changed = trial, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return steps


def steps_file(rc: RunConfig, machine: str, steps: list, finding: Optional[str] = None) -> dict:
    d = {"format": "tempo-conformance-trace/1", "machine": machine, "config": rc.to_json(), "steps": steps}
    if finding:
        d["finding"] = finding
    return d


def run(rc: RunConfig, profile: str, machine: str, rep, progress=None, trace_dir: Optional[str] = None,
        shrink_traces: bool = True, shrink_budget: float = 6.0):
    """Fill the PairReport `rep` for one v2 machine run."""
    from .expectations import expected_findings

    expected = expected_findings(rc.client, rc.server, rep.machine, rc.strength)
    side = rc.server if MACHINE_OPS[machine][0] == "server" else rc.client
    dropped = tuple(st_ for steps, _ in dropped_ops(machine, side).values() for st_ in steps)
    examples, nsteps = PROFILES[profile]
    col = Collector(progress)
    t0 = time.monotonic()
    cls = hseed(rc.seed)(build(rc, machine, col, expected, dropped))

    def bad(sess) -> list:  # violations that are not an expected finding of this pair: (n, property, message)
        return [(n, p, m) for n, p, m, f in sess.violations if f is None or f not in expected]

    s = settings(max_examples=examples, stateful_step_count=nsteps, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck), report_multiple_bugs=False, print_blob=False,
                 phases=[Phase.explicit, Phase.generate])
    try:
        run_state_machine_as_test(cls, settings=s)
    except _Stop:
        pass
    rep.seconds = time.monotonic() - t0
    rep.steps, rep.examples = col.steps, len(col.sessions)
    table: dict = {}
    for sess in col.sessions:
        for k, v in sess.property_table().items():
            table.setdefault(k, v)
    found: dict = {}
    name = impl_name(side)
    for sess in col.sessions:
        for n, p, m in sess.unexpected:
            table[p] = "VIOLATED"
        for p, f in sess.found:
            if f in expected:
                found.setdefault(p, set()).add(f)
            elif not table.get(p, "").startswith("VIOLATED"):
                table[p] = f"VIOLATED (the divergence of mppx finding {f}, not an expected finding of {name})"
    for p, fs in found.items():
        if not table.get(p, "").startswith("VIOLATED"):
            table[p] = f"VIOLATED (expected: {', '.join(sorted(fs))})"
    rep.properties = table
    d = trace_dir or os.getcwd()
    os.makedirs(d, exist_ok=True)
    base = f"trace-{rep.machine}-{rc.client}-{rc.server}-{rc.strength}".replace(":", "_").replace("/", "_")
    run_rc = None
    for f, (sess, n) in sorted(col.first.items()):
        steps = sess.steps[:n]
        run_rc = sess.rc
        if shrink_traces:
            steps = shrink(sess.rc, machine, steps, lambda x, f=f: f in x.findings, shrink_budget)
        final = replay_steps(sess.rc, machine, steps)
        path = os.path.join(d, f"{base}-{f}.json")
        with open(path, "w") as fh:
            json.dump(steps_file(sess.rc, machine, steps, f), fh, indent=1)
        n, p, m = final.findings.get(f, (0, "?", "?"))
        rep.findings[f] = {"property": p, "message": m, "trace_file": path,
                           "steps": render_steps(final.results)}
    if col.failing is not None:
        sess = col.failing
        first = bad(sess)
        n = first[0][0]
        steps = sess.steps[:n]
        want = {p for _, p, _ in first}
        if shrink_traces:
            steps = shrink(sess.rc, machine, steps, lambda x: any(p in want for _, p, _ in bad(x)),
                           shrink_budget * 3)
        final = replay_steps(sess.rc, machine, steps)
        rep.unexpected = [f"{p}: {m}" for _, p, m in bad(final)] or [f"{p}: {m}" for _, p, m in first]
        rep.failure = render_steps(final.results)
        rep.mermaid = render_mermaid(final.results, 2)
        rep.trace_file = os.path.join(d, f"{base}.json")
        with open(rep.trace_file, "w") as fh:
            json.dump(steps_file(sess.rc, machine, steps), fh, indent=1)
    elif rep.findings:
        first = sorted(rep.findings)[0]
        rep.trace_file = rep.findings[first]["trace_file"]
    rep.ok = not col.failing and not rep.findings
    return rep


def replay(data: dict) -> tuple[bool, str]:
    rc = RunConfig(**data["config"])
    s = replay_steps(rc, data["machine"], data["steps"])
    ok = not any(r.violations for r in s.results)
    text = render_steps(s.results) + "\n\n" + render_mermaid(s.results, 2)
    if data.get("finding"):
        text += f"\n\nfinding {data['finding']}: " + ("reproduces" if data["finding"] in s.findings else
                                                     "did NOT reproduce")
    return ok, text


# ------------------------------------------------------------------------------------------ which machine runs

REFERENCE_WIRE = (
    "the wire does not allow it: the reference server is a v1 deployment (our escrow TempoStreamChannel, voucher "
    "domain 'Tempo Stream Channel' / uint128, channel ids assigned by our escrow's open, opens as our chain's "
    "transactions), while mppx 0.11.0's client (sessionMethod, the only client the adapter can drive) signs v2 "
    "vouchers (domain 'TIP20 Channel Reserve' / uint96) for descriptor-derived channel ids and opens with Tempo 0x76 "
    "transactions to the precompile interface: every voucher it signs fails the reference server's signature "
    "check (invalid-signature) and neither of our chains can apply its open (FINDINGS.md, 'Not run')")


def _label(spec: str) -> str:
    """How a pair's reasons name an adapter: "mppx 0.11.0" for the bundled mppx, else its name and spec."""
    return "mppx 0.11.0" if spec == "mppx" else f"adapter {impl_name(spec)} ({spec})"


def plan(rc: RunConfig, machine: str) -> tuple[Optional[str], Optional[str]]:
    """(v2 machine, None) or (None, why the pair is SKIPPED). Either side may be a subprocess adapter (`mppx`, or
    `bridge:PATH`): it is driven through the same v2 machines."""
    c, s = rc.client, rc.server
    cb, sb = is_bridge(c), is_bridge(s)
    if cb and sb:
        if c == s == "mppx":
            return None, "mppx against itself is mppx's own suite; the conformance suite pairs it with the model"
        return None, ("two subprocess adapters against each other are not a conformance pair: the v2 machines pair "
                      "one adapter with the model (run --server ADAPTER --client model, --client ADAPTER "
                      "--server model)")
    if sb:
        who = _label(s)
        if machine == "server":
            return "mppx-server", None
        if machine == "pair":
            if c.startswith("model"):
                return None, (f"the model-driven v2 client against the server of {who} is machine `server` (its honest "
                              "rules: requests, HEAD, close, settle, top-ups, restarts); the generic pair machine "
                              "needs the harness's v1 chain")
            return None, (f"client {c} speaks v1 on the harness's chain and the v2 machines drive the server of {who} "
                          "(voucher domain 'TIP20 Channel Reserve', descriptor-derived channel ids)")
        return None, (f"machine `client` tests the client ({c}) against the model's lying server; the server of {who} "
                      "takes no part")
    if cb:
        who = _label(c)
        if machine == "client":
            return "mppx-client", None
        if machine == "pair":
            if s.startswith("model"):
                return "mppx-pair", None
            if s in ("reference", "legacy"):
                if c == "mppx":
                    return None, REFERENCE_WIRE
                return None, (f"the wire does not allow it: the reference server is a v1 deployment (voucher domain "
                              f"'Tempo Stream Channel' / uint128, channel ids assigned by our escrow's open) and the "
                              f"v2 machines drive the client of {who} as a v2 client (domain 'TIP20 Channel Reserve' / "
                              "uint96, descriptor-derived channel ids)")
            return None, f"server {s} is not a v2 deployment the client of {who} can pay"
        return None, (f"machine `server` tests the server ({s}) with the model client; the client of {who} takes no part")
    raise ValueError("not an adapter pair")


def _adapter_or_why(spec: str) -> tuple:
    """(capabilities, None) or (None, a SKIPPED reason); an adapter that is built but does not start raises."""
    try:
        get_adapter(manifest_path(spec))
    except MppxUnavailable as exc:
        return None, str(exc)
    return adapter_capabilities(manifest_path(spec)), None


def essential_missing(spec: str, side: str) -> Optional[str]:
    """Why the whole run of an adapter on `side` is SKIPPED (it lacks an essential op), or None. Starts it."""
    caps, why = _adapter_or_why(spec)
    if caps is None:
        return None  # unavailable here: each machine reports that
    gone = missing(caps, SERVER_ESSENTIAL if side == "server" else CLIENT_ESSENTIAL)
    if not gone:
        return None
    return (f"adapter {impl_name(spec)} ({spec}) lacks the essential {side} op{'s' if len(gone) > 1 else ''} "
            f"{', '.join(gone)} (its hello capabilities): nothing of its {side} can be tested "
            "(adapters/bridge/PROTOCOL.md, 'What the conformance machines need')")


def run_pair_mppx(rc: RunConfig, profile: str, machine: str, rep, progress=None, trace_dir=None, shrink_=True,
                  shrink_budget: float = 30.0):
    t0 = time.monotonic()
    try:
        for spec, side in ((rc.server, "server"), (rc.client, "client")):
            if is_bridge(spec) and not (is_bridge(rc.client) and is_bridge(rc.server)):
                why = essential_missing(spec, side)
                if why is not None:
                    rep.skipped = why
                    return rep
        v2, why = plan(rc, machine)
        if v2 is None:
            rep.skipped = why
            return rep
        side, needed, _optional = MACHINE_OPS[v2]
        spec = rc.server if side == "server" else rc.client
        caps, why = _adapter_or_why(spec)
        if caps is None:
            rep.skipped = why
            return rep
        gone = missing(caps, needed)
        if gone:
            rep.skipped = (f"adapter {impl_name(spec)} ({spec}) lacks {', '.join(gone)}, which machine {v2} needs "
                           "(adapters/bridge/PROTOCOL.md, 'What the conformance machines need')")
            return rep
        return run(rc, profile, v2, rep, progress, trace_dir, shrink_, min(shrink_budget, 6.0))
    except BridgeSpecError:
        raise  # a missing path or an invalid manifest: the CLI exits 2 with the message
    except Exception as exc:  # an adapter crash or a harness bug: a failure, never a pass
        rep.ok = False
        rep.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        rep.failure = traceback.format_exc()
        rep.seconds = time.monotonic() - t0
        return rep
