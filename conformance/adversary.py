"""Machines (b) and (c): inputs a normal peer never sends.

(b) `AdversarySession`: the server under test faces model clients plus an adversary holding
    the payer's key. Adversary steps craft vouchers (lower, replayed, above the deposit,
    forged, high-s, signed for another channel, keyless advances, HEAD advances) and probes
    (unpaid challenges). Each verdict is compared with `model.server.handle` applied to the
    twin on the same input (property SV), each probe's hints with `author_challenge` (SH).
(c) `LyingServerSession`: the client under test faces the model server behind a liar that
    rewrites its answers (inflated or stale hints, hints for another channel, receipts going
    backwards, ... `model/system.py` LIES; and CRAFTED_LIES: a forged highestVoucher proof, targets at
    and one price above the trust bound). HB, CM, the hint rule H3 and RM (the view never decreases)
    are checked.
"""
from __future__ import annotations

import hashlib
from typing import Optional

import attrs
import httpx

from model import ghosts as mghosts
from model import server as msv
from wire.crypto import address_of, sign_voucher, to_high_s
from model.messages import Credential as MCredential
from model.messages import Request as MRequest
from model.records import Voucher
from model.properties import b1_other_mode
from model.system import LIE_PRICE_FACTOR, LIES, OTHER_CHANNEL, Act, Exchange, StepInfo, StepRun
import wire
from wire.profiles import method_details_with_hints

from .harness import RunConfig, Session, StepResult, keyed_charges, wire_form_violations
from .interface import BASE_URL, IDEMPOTENCY_HEADER, PAID_PATH, PAYER_HEADER
from .network import LIE_HEADER, decode_credential
from .wire_form import WF_PROPERTIES
from .model_impl import ModelServer, challenge_from_response, wire_descriptor

THIRD_PARTY_KINDS = ("thirdparty_replay", "thirdparty_close", "forged_close")
ADVERSARY_KINDS = ("lower", "replay", "above_deposit", "forged", "high_s", "other_channel", "advance_nokey",
                   "head_advance", "lower_after_advance", "keyed_retry", "probe_after_advance",
                   "forged_above_deposit", "forged_replay") + THIRD_PARTY_KINDS
# The union with the attacks of mppx's former dedicated machines: `compact` is the variant same:compact,
# `idem_replay` is keyed_retry's retry; `forged_above_deposit` (another key's signature on an amount above the
# deposit: refused either way; strict compares which check speaks first, SPEC_NOTES "order of the voucher
# checks") is here.
# The third party (rule UA, SPEC_NOTES 4b; model/system.py ATTACKER): holds no payer key and sees what is
# public: the challenge the server gives anyone who names the victim in `Payment-Payer` (with its hints and any
# highestVoucher signature), and the vouchers the chain published (`Session.public_vouchers`, from the settle
# transactions). It replays the best voucher it holds on the victim's channel as a content request (TP1: never
# served, nothing charged) or as a cooperative close (TP2: nothing closes or changes), reading every answer
# for more (a refusal that discloses a higher voucher is tried again). `forged_close` needs no loot: the third
# party signs a close voucher for the channel's whole (public, on-chain) deposit with its own key; a server that
# checks a close's amount but not its signer (X1) finalizes the payer's channel for it (TP2).
# `forged_replay` (issue 9 item 9): unspent authorization (head_advance, the payer's), then a voucher at exactly
# acceptedCumulative signed by another key, with a fresh Idempotency-Key: the equal-voucher path (V6) and the
# idempotency path (I1) must verify the signer like an advance (V2), else the forgery buys content (SV).
# Lies of machine (c) beyond the model's LIES (issue 9 items 5/6), each on the first challenge of a request:
#   forged_proof  inflate's hints (the whole deposit accepted, spent, required) with a highestVoucher for that
#                 amount signed by another key (rule H3/H4: a proof counts only if it recovers to the payer's
#                 signer on this channel; a client that reads its amount unchecked signs the deposit: HB)
#   edge_at       accepted = required = exactly the trust bound (proven floor + price + allowance, rule H4), no
#                 proof: the most a hint may make a client sign, which it signs
#   edge_over     the same, one price above the bound: a client whose bound is one price loose signs it (HB)
# The twin is told each as the model's `stale_402` lie carrying the very challenge the liar sends (Act.stale: the
# model's "the first challenge is this one"), built from the twin's own honest challenge, so both lie alike
# without a rule of its own in the model (a forged proof is no proof to the spec's client: `verified_proof`).
CRAFTED_LIES = ("forged_proof", "edge_at", "edge_over")
CLIENT_LIES = LIES + CRAFTED_LIES  # what machine (c)'s `lie` op draws

VARIANT_KINDS = ("same:upper_hex", "same:key_order", "same:whitespace", "same:foreign_source", "same:compact",
                 "same:leading_zeros", "either:empty_post", "either:padded",
                 "not:chain_id", "not:escrow", "not:amount")

# Wire variance (draft "Encoding Conventions", httpauth "Credentials"): adversary kinds too (op "variant" of the
# server machine). An honest advance by one price, written
# differently. `same:*` means the same credential: the verdict must equal the canonical form's (the model's).
# Mixed-case hex is a SHOULD-accept and the 64-byte EIP-2098 signature a format the draft lists, so those two
# count in `strict` only; JSON key order, whitespace and the informational `source` count always. `not:*` echoes a
# challenge whose request was altered (another chainId, escrow or price): never the same challenge, so the
# server must refuse it and change nothing (httpauth "Challenge Binding").
# `same:leading_zeros` writes cumulativeAmount "00<n>": the schema's `^[0-9]+$` admits it and we read it as n
# (SPEC_NOTES section 5, item 7), but "Encoding Conventions" shows canonical decimals, so refusing it is a strict
# deviation only. `either:empty_post` sends the advance as a POST with an empty body and `Content-Length: 0`. The
# drafts allow voucher updates "via any HTTP method" and name HEAD for pure top-ups, so two readings conform: a
# content request (served and charged like the GET: the reference server) or a voucher update (accepted, charged
# nothing, a 2xx with no content: mppx's 204). The twin follows the reading the answer shows; what neither reading
# allows is content delivered for nothing (a 2xx with a body and no charge); refusing it changes nothing and is a
# strict deviation only ("Servers SHOULD support voucher updates via any HTTP method"). `either:padded` pads the
# token with "=": the grammar is base64url-nopad ("Credentials"), a client MUST NOT send it, and no rule says a
# server must refuse it: either a refusal that changes nothing or the canonical verdict passes, in both strengths.
STRICT_ONLY_VARIANTS = ("same:upper_hex", "same:compact", "same:leading_zeros")
PAYER_SIGNED_KINDS = ("lower", "replay", "above_deposit", "advance_nokey", "head_advance", "lower_after_advance",
                      "keyed_retry", "keyed_advance", "probe_after_advance",
                      "forged_replay")  # the adversary holds the payer's key for these (but for a FORGED_NOTE wire)
FORGED_NOTE = "forged"  # the note of an adversary wire signed by another key (not the payer's: it authorizes nothing)

EXTRA_PROPERTIES = {
    "SV": "the server's verdict on any credential equals model.server.handle's (voucher rule V1-V7, charge C1-C3)",
    "SH": "the server's hints equal model.server.author_challenge's (S-H1..S-H3); its deposit not below the one it verified",
    "HT": "a hinted client signs at least the requiredCumulative hinted for its channel (seed: sign the server target)",
    "RM": "a hinted client's view (accepted, spent) of a channel never decreases (receipts reconcile by max)",
    "WM": "a client's highest voucher per channel, read from the wire, never decreases while it keeps its memory",
    "HF": "following an honest hint a client signs at most max(requiredCumulative, its proven floor) + allowance",
    "CX": "a cooperative close captures exactly max(spent, settled)",
    "LV": "a request or HEAD the model completes from the same state (no fault, no lie) the implementation completes",
    "TP1": "a third party (no payer key; sees challenges, receipts and the chain) is never served on a payer's funds",
    "TP2": "a third party cannot close, freeze or drain a payer's channel (record and chain unchanged)",
    "LZ": "every concurrent history is linearizable: some real-time-respecting order of its requests, applied one at a "
          "time to model.server, gives every observed verdict and the observed records and chain",
    "XP": "one logical request signs at most PRICES_PER_REQUEST agreed prices above what the payer had authorized (wire)",
    "DM": "a client never answers a challenge naming another escrow contract or chainId (wire)",
    "LL": "after a lie, the client's next honest request is served within MAX_ROUND_TRIPS when the model's is",
    "ST": "every channel a client opened that the chain still escrows stays known to it (no stranded deposit)",
    "TU": "a client's accepted topUp covers the voucher it then sends for the same request (top-up >= shortfall)",
    "CR": "after a crash between an open's broadcast and its record's commit, an authentic credential naming the "
          "channel leaves the server holding its record (no orphaned deposit; conformance/crash.py)",
    **WF_PROPERTIES,  # strict: the server's wire form (conformance/wire_form.py)
}


def _mapped_back(s: Session, real_cid: str) -> Optional[str]:
    for t, r in s.map.items():
        if r == real_cid:
            return t
    return None



def _ok(status) -> bool:
    """Accepted: any 2xx (the draft names no status for management; mppx answers a HEAD voucher 204 No Content)."""
    return status is not None and 200 <= status < 300

class AdversarySession(Session):
    """Machine (b): the server under test against model clients (hinted or legacy as the client named by
    --client is) plus the adversary; the client named by --client is not driven (see `drives`)."""

    b1_shadow = True  # B1 on the implementation: its other configuration side by side (conformance/b1.py)

    def __init__(self, rc: RunConfig, workdir=None):
        super().__init__(rc, workdir)
        self.other_key = hashlib.sha256(b"conformance:mallory:" + str(rc.seed).encode()).digest()
        self.adv_n = 0
        self.verified_deposit: dict = {}  # real channel id -> its deposit after the server last accepted on it

    def do(self, step: dict) -> StepResult:
        if step["op"] not in ("adversary", "probe"):
            res = super().do(step)
            self._note_verified(res.wires)
            return res
        n = len(self.steps) + 1
        self.steps.append(step)
        self.net.step = n
        start = len(self.net.log)
        prev_real, prev_twin = self.project(), self.twin
        prev_g, prev_tg = self.ghosts(), self.twin_ghosts
        act = Act("duplicate", step.get("client", 0))  # a server-only delivery, like a duplicate
        extra = self._probe(step) if step["op"] == "probe" else self._attack(step)
        outcome = "done"
        wires = self.net.log[start:]
        closes = self._ghosts(wires, prev_real)
        for w in wires:  # the adversary holds the payer's key: its valid vouchers are the payer's
            payers_voucher = step.get("kind") in PAYER_SIGNED_KINDS or (
                str(step.get("kind")).startswith(("same:", "either:")) and _ok(w.status))  # a refused variant authorizes nothing
            if w.origin == "adversary" and w.amount is not None and payers_voucher and w.note != FORGED_NOTE:
                self.signed[w.channel_id] = max(self.signed.get(w.channel_id, 0), w.amount)
        nxt = self.project()
        info = StepInfo(act=act, outcome=outcome, charged=tuple((w.channel_id, w.charged) for w in wires if w.charged),
                        keyed_charges=keyed_charges(wires), closes=tuple(closes))
        real_v = self._check(prev_real, prev_g, info, nxt, self.ghosts())
        twin_info = self._twin_info
        twin_v = self._check(prev_twin, prev_tg, twin_info, self.twin, self.twin_ghosts)
        tids = {p for p, _ in twin_v}
        extra += wire_form_violations(wires)  # WF1-WF3 (strict only; conformance/wire_form.py)
        res = StepResult(n, step, outcome, outcome, [(p, m) for p, m in real_v if p not in tids] + extra + self.b1_take(),
                         [(p, m) for p, m in real_v if p in tids], [], wires)
        self.results.append(res)
        self._note_verified(wires)
        return res

    def extra_claims(self) -> dict:
        return dict(super().extra_claims(), SV=True, SH=self.server_hinted, TP1=True, TP2=True)

    # -- probes: compare hints

    def _probe(self, step) -> list:
        i = step.get("client", 0)
        self._twin_info = StepInfo(act=Act("duplicate", i), outcome="done")
        payer = self.addrs[i]
        req = httpx.Request("GET", BASE_URL + PAID_PATH, headers={PAYER_HEADER: payer})
        w, resp = self.net.send_raw(req)
        _, real = challenge_from_response(resp, self.domain) if resp is not None else (None, None)
        model = msv.author_challenge(self.cfg.server, self.twin.server, self.twin.chain, payer, True)
        rh, mh = (real.hints if real else None), model.hints

        def norm(h, real_side):
            if h is None:
                return None
            cid = h.channel_id if real_side else self.map.get(h.channel_id, h.channel_id)
            return (cid, h.accepted, h.spent, h.required)

        a, b = norm(rh, True), norm(mh, False)
        if a != b:
            return [("SH", f"hints (channel, accepted, spent, required) for payer {payer[:10]}: server {a}, model {b}")]
        return self._stale_snapshot(rh, mh)

    def _stale_snapshot(self, rh, mh) -> list:
        """SH on the chain mirrors a hint carries (SPEC_NOTES "stale hints"), once the hinted channel agrees.
        must: the hinted deposit is at most the chain's and at least the deposit the chain held after the last
        step in which the server accepted a credential on the channel (it verified the deposit then: draft
        "Accounting State", deposit = "latest verified on-chain deposit"). strict: deposit and settled equal the
        model's, which reads the chain at every challenge. A field the hint does not carry (flat hints: no settled;
        a legacy server: nothing) is not compared."""
        if rh is None or mh is None or rh.channel_id is None:
            return []
        cid = rh.channel_id.lower()
        ch = self.chain.get_channel(cid)
        out = []
        if rh.deposit is not None:
            low = self.verified_deposit.get(cid)
            if rh.deposit > ch.deposit or (low is not None and rh.deposit < low):
                out.append(("SH", f"snapshot deposit {rh.deposit} on {cid[:10]}: the chain holds {ch.deposit}, and "
                                  f"held {low} when the server last accepted a credential on it (stale after a topUp)"))
            elif self.rc.strength == "strict" and rh.deposit != mh.deposit:
                out.append(("SH", f"snapshot deposit {rh.deposit} on {cid[:10]}: model {mh.deposit} (the chain's)"))
        if rh.settled is not None and self.rc.strength == "strict" and rh.settled != mh.settled:
            out.append(("SH", f"snapshot settled {rh.settled} on {cid[:10]}: model {mh.settled} (the chain's; "
                              f"stale after a settle)"))
        # strict, the state behind the hint: only the payee settles (rule E3), so after its own settle the server's
        # record knows the settled amount (draft "Accounting State" settledOnChain, "last cumulative amount settled
        # on-chain"); this is what shows a stale settled where the hints cannot carry it (flat hints). The record's
        # deposit is not compared: a topUp made behind the server's back may lag until its next request.
        rec = self.server.record(cid) if self.rc.strength == "strict" else None
        if rec is not None and not rec.finalized and rec.settled != ch.settled:
            out.append(("SH", f"snapshot record of {cid[:10]}: settled {rec.settled}, model {ch.settled} (the chain's; "
                              f"stale after a settle)"))
        return out

    def _note_verified(self, wires) -> None:
        """The deposit each channel has on chain after a step in which the server accepted a credential on it
        (an open, voucher, topUp or close it answered 2xx): the floor of the hinted deposit in `must`."""
        for w in wires:
            if w.channel_id and w.action is not None and _ok(w.status):
                ch = self.chain.get_channel(w.channel_id)
                if ch.exists:
                    self.verified_deposit[w.channel_id.lower()] = ch.deposit

    # -- attacks: compare verdicts

    @staticmethod
    def _rewrite(kind: str, cred: "wire.Credential") -> str:
        """The Authorization value of `cred` written in the variant `kind` (see ADVERSARY_KINDS)."""
        import base64
        import json

        from wire.crypto import parse_signature, to_compact

        obj = cred.to_wire()
        pl = obj["payload"]
        if kind == "same:upper_hex":
            pl["channelId"] = "0x" + pl["channelId"][2:].upper()
            pl["signature"] = "0x" + pl["signature"][2:].upper()
        elif kind == "same:compact":
            pl["signature"] = to_compact(pl["signature"])
        elif kind == "same:foreign_source":
            obj["source"] = "did:pkh:eip155:1:0x" + "5e" * 20
        elif kind == "same:leading_zeros":
            pl["cumulativeAmount"] = "00" + str(pl["cumulativeAmount"])
        elif kind.startswith("not:"):
            req = json.loads(wire.b64url_decode(obj["challenge"]["request"]))
            md = req.setdefault("methodDetails", {})
            if kind == "not:chain_id":
                md["chainId"] = int(md.get("chainId") or 0) + 1
            elif kind == "not:escrow":
                md["escrowContract"] = "0x" + "e5" * 20
            else:
                req["amount"] = "0"
            obj["challenge"]["request"] = wire.b64url_encode(wire.canonical_json(req))
        if kind == "same:key_order":
            text = json.dumps({k: obj[k] for k in reversed(list(obj))}, separators=(",", ":"))
        elif kind == "same:whitespace":
            text = json.dumps(obj, indent=2)
        else:
            text = json.dumps(obj, separators=(",", ":"), sort_keys=True)
        if kind == "either:padded" and len(text.encode()) % 3 == 0:
            text += " "  # a length that base64 pads (JSON allows the trailing whitespace)
        token = base64.urlsafe_b64encode(text.encode()).decode()
        return "Payment " + (token if kind == "either:padded" else token.rstrip("="))

    # -- the third party: TP1, TP2

    def _overheard(self, resp, loot: dict) -> None:
        """Any highestVoucher signature in a 402 the third party received joins what it holds."""
        wc, _ = challenge_from_response(resp, self.domain) if resp is not None else (None, None)
        if wc is None:
            return
        try:
            snap = wc.decoded_request().method_details.session_snapshot
        except wire.WireError:
            return
        hv = snap.highest_voucher if snap is not None else None
        if hv is not None and hv.cumulative_amount > loot.get(hv.channel_id, (-1, ""))[0]:
            loot[hv.channel_id] = (hv.cumulative_amount, hv.signature)

    def _third_party(self, step) -> list:
        i, kind = step.get("client", 0), step["kind"]
        self._twin_info = StepInfo(act=Act("duplicate", i), outcome="noop")
        victim = self.addrs[i]
        method = "GET" if kind == "thirdparty_replay" else "HEAD"
        loot = dict(self.public_vouchers)
        _, resp = self.net.send_raw(httpx.Request(method, BASE_URL + PAID_PATH, headers={PAYER_HEADER: victim}))
        self._overheard(resp, loot)
        out, tried = [], set()
        for _ in range(3):
            live = [(amount, cid, sig) for cid, (amount, sig) in loot.items()
                    if (cid, amount) not in tried and self.server.record(cid) is not None
                    and not self.chain.get_channel(cid).finalized]
            if not live:
                break
            amount, cid, sig = max(live)
            tried.add((cid, amount))
            _, unpaid = self.net.send_raw(httpx.Request(method, BASE_URL + PAID_PATH, headers={PAYER_HEADER: victim}))
            wc, _ = challenge_from_response(unpaid, self.domain) if unpaid is not None else (None, None)
            if wc is None:
                break
            kind_cls = wire.VoucherPayload if method == "GET" else wire.ClosePayload
            # on v2 the descriptor is public too (the chain's record of the channel)
            payload = kind_cls(channel_id=cid, cumulative_amount=amount, signature=sig,
                               descriptor=wire_descriptor(self.deployment.descriptor(cid)))
            auth = wire.encode_authorization(wire.Credential(challenge=wc, payload=payload))
            resp, out = self._third_party_send(kind, method, payload, auth, victim, "a voucher it saw in public")
            if out:
                break
            self._overheard(resp, loot)
        return out

    def _third_party_send(self, kind, method, payload, auth, victim, whose) -> tuple:
        """Send one third-party credential; (response, TP1/TP2 violations): served, charged, or anything changed
        in the record (accepted, spent, finalized) or on chain (finalized, settled, deposit)."""
        cid, amount = payload.channel_id, payload.cumulative_amount
        before, chain_before = self.server.record(cid), self.chain.get_channel(cid)
        w, resp = self.net.send_raw(httpx.Request(method, BASE_URL + PAID_PATH,
                                                  headers={PAYER_HEADER: victim, "Authorization": auth}))
        after, chain_after = self.server.record(cid), self.chain.get_channel(cid)
        status = resp.status_code if resp is not None else None
        said = (f"{kind}: the third party sent {method} {payload.action} cumulative={amount} on {cid[:10]} "
                f"({whose}) and got {status} {w.problem}")
        out = []
        if method == "GET" and (_ok(status) or after.spent != before.spent):
            out.append(("TP1", f"{said}; spent {before.spent} -> {after.spent}"))
        changed = ((after.accepted, after.spent, after.finalized) != (before.accepted, before.spent, before.finalized)
                   or (chain_after.finalized, chain_after.settled, chain_after.deposit)
                   != (chain_before.finalized, chain_before.settled, chain_before.deposit))
        if changed or (method == "HEAD" and _ok(status)):
            out.append(("TP2", f"{said}; record (accepted, spent, finalized) {before.accepted}, {before.spent}, "
                               f"{before.finalized} -> {after.accepted}, {after.spent}, {after.finalized}; chain "
                               f"finalized {chain_before.finalized} -> {chain_after.finalized}"))
        return resp, out

    def _forged_close(self, step) -> list:
        """The third party closes the victim's channel with a voucher it signed itself (no loot needed): for the
        channel's whole on-chain deposit (public; it covers max(spent, settled) and is above settled, so only the
        signer check of rule X1 refuses it). The channel is the one the victim's challenge hints (public, rule
        S-H3), else the victim's current one (the chain shows every channel and its payer)."""
        i, kind = step.get("client", 0), step["kind"]
        self._twin_info = StepInfo(act=Act("duplicate", i), outcome="noop")
        victim = self.addrs[i]
        _, unpaid = self.net.send_raw(httpx.Request("HEAD", BASE_URL + PAID_PATH, headers={PAYER_HEADER: victim}))
        wc, ch = challenge_from_response(unpaid, self.domain) if unpaid is not None else (None, None)
        if wc is None:
            return []
        cid = ch.hints.channel_id if ch is not None and ch.hints is not None else None
        if cid is None:
            e = self.twin.clients[i].entry
            cid = self.map.get(e.channel_id) if e is not None else None
        chain_ch = self.chain.get_channel(cid) if cid is not None else None
        if (chain_ch is None or not chain_ch.exists or chain_ch.finalized or chain_ch.deposit <= chain_ch.settled
                or self.server.record(cid) is None):
            return []  # nothing a cooperative close could take
        amount = chain_ch.deposit
        sig = sign_voucher(self.other_key, self.domain, cid, amount)
        payload = wire.ClosePayload(channel_id=cid, cumulative_amount=amount, signature=sig,
                                    descriptor=wire_descriptor(self.deployment.descriptor(cid)))
        auth = wire.encode_authorization(wire.Credential(challenge=wc, payload=payload))
        _, out = self._third_party_send(kind, "HEAD", payload, auth, victim, "signed by its own key")
        return out

    def _attack(self, step) -> list:
        if step["kind"] == "forged_close":
            return self._forged_close(step)
        if step["kind"] in THIRD_PARTY_KINDS:
            return self._third_party(step)
        if step["kind"] == "forged_replay":  # unspent authorization, then another key's voucher at accepted
            return (self._attack(dict(step, kind="head_advance"))
                    + self._attack(dict(step, kind="forged_at_accepted")))
        if step["kind"] == "lower_after_advance":  # unspent authorization, then a lower voucher
            return (self._attack(dict(step, kind="head_advance"))
                    + self._attack(dict(step, kind="lower")))
        if step["kind"] == "probe_after_advance":  # unspent authorization, then the hints for it (S-H2's max)
            out = self._attack(dict(step, kind="head_advance"))
            info = self._twin_info
            out += self._probe(step)
            self._twin_info = info  # the step's twin effects are the advance's
            return out
        if step["kind"] == "keyed_retry":  # a keyed request leaving unspent authorization, then its retry
            return self._attack(dict(step, kind="keyed_advance")) + self._retry_last()
        i, kind = step.get("client", 0), step["kind"]
        act = Act("duplicate", i)
        self._twin_info = StepInfo(act=act, outcome="noop")
        e = self.twin.clients[i].entry
        if e is None or e.channel_id not in self.map:
            return []
        tcid, rcid = e.channel_id, self.map[e.channel_id]
        trec = self.twin.server.record(tcid)
        tch = self.twin.chain.channel(tcid)
        if trec is None or tch is None:
            return []
        price = self.rc.price
        # head_advance authorizes two prices ahead without buying anything: unspent authorization,
        # the state where "lower" vouchers and requiredCumulative = max(accepted, spent + price) matter
        amount = {"lower": trec.accepted - price, "replay": trec.accepted, "forged_at_accepted": trec.accepted,
                  "above_deposit": tch.deposit + price,
                  "forged_above_deposit": tch.deposit + price, "head_advance": trec.accepted + 2 * price,
                  "keyed_advance": trec.accepted + 2 * price}.get(kind, trec.accepted + price)
        if amount < 0 or amount > self.deployment.max_amount:
            return []  # no voucher of the deployment's type can say it (above 2^96-1 on v2): nothing to send
        key_bytes, signer = self.keys[i], self.addrs[i]
        sig_cid = rcid
        forged = kind in ("forged", "forged_above_deposit", "forged_at_accepted")
        if forged:
            key_bytes, signer = self.other_key, address_of(self.other_key)
        if kind == "other_channel":
            sig_cid = "0x" + hashlib.sha256(rcid.encode()).hexdigest()
            signer = "0x" + "de" * 20  # whatever it recovers to, it is not the channel's signer
        sig = sign_voucher(key_bytes, self.domain, sig_cid, amount)
        if kind == "high_s":
            sig, signer = to_high_s(sig), None
        method = {"head_advance": "HEAD", "either:empty_post": "POST"}.get(kind, "GET")
        self.adv_n += 1
        key = None if kind in ("replay", "advance_nokey", "lower", "head_advance") else f"adv{self.adv_n}"
        # a fresh challenge to echo
        unpaid = httpx.Request(method, BASE_URL + PAID_PATH, headers={PAYER_HEADER: self.addrs[i]})
        _, resp = self.net.send_raw(unpaid)
        wc, _ = challenge_from_response(resp, self.domain) if resp is not None else (None, None)
        if wc is None:
            return [("SV", "the server's 402 carried no decodable session challenge")]
        payload = wire.VoucherPayload(channel_id=rcid, cumulative_amount=amount, signature=sig,
                                      descriptor=wire_descriptor(self.deployment.descriptor(rcid)))
        # the payer's DID as `source`, as honest clients send it (httpauth: optional; mppx requires it to name the
        # channel's payer or signer, and `same:foreign_source` tests a foreign one)
        cred = wire.Credential(challenge=wc, payload=payload,
                               source=f"did:pkh:eip155:{self.deployment.chain_id}:{self.addrs[i]}")
        variant = kind.startswith(("same:", "not:", "either:"))
        auth = self._rewrite(kind, cred) if variant else wire.encode_authorization(cred)
        headers = {PAYER_HEADER: self.addrs[i], "Authorization": auth}
        if key:
            headers[IDEMPOTENCY_HEADER] = key
        before = self.server.record(rcid)
        if method == "POST":  # an empty body, said explicitly (either:empty_post)
            headers["Content-Length"] = "0"
        w, resp = self.net.send_raw(httpx.Request(method, BASE_URL + PAID_PATH, headers=headers,
                                                  content=b"" if method == "POST" else None))
        if forged:
            w.note = FORGED_NOTE  # not the payer's voucher: it raises nothing the payer signed
        self._last_attack = (i, method, headers, rcid, key, w.status == 200)
        if kind.startswith("not:"):  # a challenge the server never issued: refused, nothing changes
            after = self.server.record(rcid)
            status = resp.status_code if resp is not None else None
            if _ok(status) or (before and after and (after.accepted, after.spent) != (before.accepted, before.spent)):
                return [("SV", f"{kind}: a credential echoing an altered challenge request was answered {status} "
                               f"{w.problem}; (accepted, spent) {before and (before.accepted, before.spent)} -> "
                               f"{after and (after.accepted, after.spent)}")]
            return []
        real_status = resp.status_code if resp is not None else None
        content = method != "HEAD"
        if kind == "either:empty_post" and _ok(real_status) and not w.charged:  # the voucher-update reading
            if resp is not None and resp.content:
                return [("SV", f"{kind}: a POST with an empty body was answered {real_status} with a "
                               f"{len(resp.content)}-byte body and charged nothing (content delivered for free; a "
                               f"voucher update answers without content)")]
            content = False
        lenient = kind == "either:padded" or (kind == "either:empty_post" and self.rc.strength != "strict")
        if lenient and not _ok(real_status):  # refusing it (a SHOULD for POST): nothing may change
            after = self.server.record(rcid)
            if before and after and (after.accepted, after.spent) != (before.accepted, before.spent):
                return [("SV", f"{kind}: a refused credential ({real_status} {w.problem}) changed (accepted, spent) "
                               f"{(before.accepted, before.spent)} -> {(after.accepted, after.spent)}")]
            return []  # the twin does not advance either
        strict_only = kind in STRICT_ONLY_VARIANTS
        if strict_only and self.rc.strength != "strict" and not _ok(real_status):
            return []  # refusing a SHOULD-accept form is a strict deviation; the twin does not advance either
        # the twin: model.server.handle on the same input
        r = StepRun(self.cfg, self.twin, act, shadow=b1_other_mode)
        mreq = MRequest(self.addrs[i], content, MCredential("voucher", tcid, Voucher(tcid, amount, signer)), key)
        if signer == self.addrs[i]:
            r.note_signature(i, mreq.credential)
        mresp = r.deliver(mreq, self.cfg.fleet == "hinted")
        r.exchanges.append(Exchange(mreq, mresp))
        self.twin = r.freeze()
        self.twin_ghosts = mghosts.observe(self.twin_ghosts, r)
        self._twin_info = StepInfo(act=act, exchanges=tuple(r.exchanges), outcome="done", charged=tuple(r.charged),
                                   keyed_charges=tuple(r.keyed_charges))
        out = []
        said = (f"{kind}: {method} voucher cumulative={amount} on {rcid[:10]}: server answered "
                f"{real_status} {w.problem}, model {mresp.status} {mresp.problem}")
        if _ok(real_status) != (mresp.status == 200) and (not strict_only or self.rc.strength == "strict"):
            out.append(("SV", said))  # must: the same verdict, accepted or refused
        elif self.rc.strength == "strict" and (200 if _ok(real_status) else real_status, w.problem) != (mresp.status, mresp.problem):
            out.append(("SV", said))  # strict: the same status and problem type
        return out


    def _retry_last(self) -> list:
        """The same request again, byte for byte (a client retrying after a lost response).
        With an Idempotency-Key the server must answer from its store and charge nothing (D3). Only a served
        original is retried: a refused one (e.g. above the deposit, before a topUp) charged nothing, and its
        retry may be served and charged once."""
        last = getattr(self, "_last_attack", None)
        if last is None or last[4] is None:
            return []
        i, method, headers, rcid, key, served = last
        if not served:
            return []  # nothing to retry: a retry of a refused request is a new request (the twin never saw it)
        before = self.server.record(rcid)
        self.net.send_raw(httpx.Request(method, BASE_URL + PAID_PATH, headers=headers))
        after = self.server.record(rcid)
        if before is not None and after is not None and after.spent != before.spent:
            return [("D3", f"a retry with Idempotency-Key {key} on {rcid[:10]} was charged again: "
                           f"spent {before.spent} -> {after.spent}")]
        return []


# ---------------------------------------------------------------------------- (c) lying server


class Liar:
    """Wraps the model server; rewrites its answers during a lying step exactly as the model's lying
    server does (model/system.py LIES): the first, unpaid challenge of a logical request (inflate,
    stale, other_channel, other_escrow), every challenge (price), every receipt (backwards_receipt), or the
    answer to a paid request (gone, take_402, same_challenge: PAID_LIES); and the first challenge of
    CRAFTED_LIES (forged_proof, edge_at, edge_over), which the twin is told through Act.stale. Rewritten
    responses carry LIE_HEADER, so wire checks that assume honest hints (H3) skip them."""

    def __init__(self, inner: ModelServer):
        self.inner = inner
        self.name = "liar"
        self.lie: Optional[str] = None
        self.challenged = False  # the lying step's first challenge was sent (challenge lies are one-shot)
        self.recorded = False  # the step's first unpaid 402 was recorded (stale_402)
        self.paid_lied = False  # the lying step's paid lie (gone, same_challenge) was told
        self.originals: dict = {}  # price lie: id of a lied challenge -> the server's own challenge
        self.last_unpaid: dict = {}  # stale_402: (payer, method) -> the last 402 sent to an unpaid request

    forger_key = hashlib.sha256(b"conformance:liar-forger").digest()  # signs forged_proof's highestVoucher

    def arm(self, lie: Optional[str], edge: Optional[int] = None) -> None:
        """`edge`: the amount edge_at/edge_over hint as accepted and required (LyingServerSession._craft)."""
        self.lie, self.challenged, self.paid_lied, self.recorded = lie, False, False, False
        self.edge = edge

    def __getattr__(self, item):
        return getattr(self.inner, item)

    @staticmethod
    def _credential(request: httpx.Request):
        cred = decode_credential(request)
        return None if cred == "malformed" else cred

    def _marked(self, resp: httpx.Response, lie: str, status: Optional[int] = None, **headers) -> httpx.Response:
        h = dict(resp.headers)
        h.update(headers)
        h[LIE_HEADER] = lie
        return httpx.Response(status or resp.status_code, headers=h, content=resp.content)

    @staticmethod
    def _unpaid_key(request: httpx.Request):
        return (request.headers.get(PAYER_HEADER, "").lower(), request.method.upper())

    def handle(self, request: httpx.Request) -> httpx.Response:
        resp = self._handle(request)
        if resp.status_code == 402 and "authorization" not in request.headers and "www-authenticate" in resp.headers \
                and not self.recorded:  # the first challenge of a step's request: stale_402 replays it later
            self.recorded = True
            self.last_unpaid[self._unpaid_key(request)] = resp
        return resp

    def _handle(self, request: httpx.Request) -> httpx.Response:
        lie = self.lie
        cred = self._credential(request)
        if cred is not None and cred.challenge.id in self.originals:  # the server keeps what it is given
            cred = cred.model_copy(update={"challenge": self.originals[cred.challenge.id]})
            headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "authorization"]
            headers.append(("Authorization", wire.encode_authorization(cred)))
            request = httpx.Request(request.method, request.url, headers=headers, content=request.content)
        if lie is None:
            return self.inner.handle(request)
        action = getattr(cred.payload, "action", None) if cred is not None else None
        if lie == "gone" and not self.paid_lied and action == "voucher":
            self.paid_lied = True
            body = wire.encode_problem(wire.problem("channel-not-found", "no such channel (a lie)"))
            return httpx.Response(410, headers={"content-type": "application/problem+json", LIE_HEADER: lie},
                                  content=body)
        if lie == "same_challenge" and not self.paid_lied and action in ("open", "voucher"):
            self.paid_lied = True
            unpaid = self.inner.handle(self._unpaid(request))
            return self._marked(unpaid, lie, 402, **{"www-authenticate": wire.format_www_authenticate(cred.challenge)})
        if lie == "take_402" and action in ("open", "voucher"):  # it takes every voucher: no idempotent replay
            request = httpx.Request(request.method, request.url, content=request.content, headers=[
                (k, v) for k, v in request.headers.multi_items() if k.lower() != IDEMPOTENCY_HEADER.lower()])
        resp = self.inner.handle(request)
        if lie == "take_402" and action in ("open", "voucher") and resp.status_code == 200:
            return self._marked(self.inner.handle(self._unpaid(request)), lie)
        if resp.status_code == 402 and lie == "gone" and self.paid_lied:
            return self._rewrite_challenge(resp, "gone")
        if resp.status_code == 402 and lie == "price":
            return self._rewrite_challenge(resp, lie)
        first = resp.status_code == 402 and "authorization" not in request.headers and not self.challenged
        if first:
            self.challenged = True
            if lie in ("inflate", "stale", "other_channel", "other_escrow") + CRAFTED_LIES:
                return self._rewrite_challenge(resp, lie)
            if lie == "stale_402" and self._unpaid_key(request) in self.last_unpaid:
                old = self.last_unpaid[self._unpaid_key(request)]
                return self._marked(resp, lie, **{"www-authenticate": old.headers["www-authenticate"]})
        if resp.status_code == 200 and lie == "backwards_receipt" and "payment-receipt" in resp.headers:
            r = wire.parse_receipt(resp.headers["payment-receipt"])
            low = r.model_copy(update={"accepted_cumulative": 0, "spent": 0})
            return self._marked(resp, lie, **{"payment-receipt": wire.encode_receipt(low)})
        return resp

    def _unpaid(self, request: httpx.Request) -> httpx.Request:
        """The same request without its credential, from the same payer (the fresh challenge a server would send)."""
        headers = [(k, v) for k, v in request.headers.multi_items()
                   if k.lower() not in ("authorization", IDEMPOTENCY_HEADER.lower())]
        cred = self._credential(request)
        if PAYER_HEADER not in request.headers and cred is not None:
            rec = self.inner.record(cred.payload.channel_id)
            if rec is not None and rec.payer:
                headers.append((PAYER_HEADER, rec.payer))
        return httpx.Request(request.method, request.url, headers=headers)

    def _hinted_details(self, hints, wc, lie, proof_signature=None):
        """methodDetails carrying `hints` (no voucher proof: a liar has no signature of the payer for what it
        claims; forged_proof's is another key's). The lie keeps the deployment's marks: the protocol, and (same
        channel) the snapshot's descriptor (v2)."""
        srv = self.inner
        orig = wc.decoded_request().method_details
        base = wire.MethodDetails(escrow_contract=srv.chain.escrow, chain_id=srv.chain.chain_id,
                                  session_protocol=orig.session_protocol)
        desc = orig.session_snapshot.descriptor if orig.session_snapshot is not None and lie != "other_channel" else None
        return method_details_with_hints(base, hints, srv.cfg.hint_encoding, chain_id=srv.chain.chain_id,
                                         escrow=srv.chain.escrow, highest_voucher_signature=proof_signature,
                                         descriptor=desc)

    def _rewrite_challenge(self, resp, lie):
        srv = self.inner
        wc, ch = challenge_from_response(resp, srv.domain)
        if wc is None:
            return resp
        req = wc.decoded_request()
        if lie in ("price", "other_escrow", "gone"):
            if lie == "price":  # the price and the target it implies: spent + the lied price
                if ch is not None and ch.hints is not None:
                    h = ch.hints
                    h = attrs.evolve(h, required=max(h.accepted or 0, (h.spent or 0) + req.amount * LIE_PRICE_FACTOR),
                                     proof=None, settled=h.settled if h.settled is not None else 0)
                    req = req.model_copy(update={"method_details": self._hinted_details(h, wc, lie)})
                req = req.model_copy(update={"amount": req.amount * LIE_PRICE_FACTOR})
            elif lie == "other_escrow":
                md = req.method_details.model_copy(update={"escrow_contract": OTHER_ESCROW})
                req = req.model_copy(update={"method_details": md})
            else:  # a server that says the channel is gone hints nothing
                md = req.method_details.model_copy(update={
                    "channel_id": None, "session_snapshot": None, "accepted_cumulative": None, "spent": None,
                    "deposit": None, "required_cumulative": None})
                req = req.model_copy(update={"method_details": md})
            c = wire.Challenge.issue(srv.secret, realm=wc.realm, request=req, expires=wc.expires)
            if lie == "price":
                self.originals[c.id] = wc
            return self._marked(resp, lie, **{"www-authenticate": wire.format_www_authenticate(c)})
        if ch is None or ch.hints is None:
            return resp
        h = ch.hints
        chain_ch = srv.chain.get_channel(h.channel_id)
        proof_signature = None
        if lie in ("inflate", "forged_proof"):
            top = chain_ch.deposit
            h = attrs.evolve(h, accepted=top, required=top, spent=top, deposit=top, proof=None)
            if lie == "forged_proof":
                proof_signature = sign_voucher(self.forger_key, srv.domain, h.channel_id, top)
                h = attrs.evolve(h, proof=Voucher(h.channel_id, top, address_of(self.forger_key)))
        elif lie in ("edge_at", "edge_over"):
            if self.edge is None:
                return resp  # nothing to lie about (the twin is told the honest challenge too)
            h = attrs.evolve(h, accepted=self.edge, required=self.edge, proof=None)
        elif lie == "stale":
            h = attrs.evolve(h, accepted=chain_ch.settled, spent=chain_ch.settled, required=chain_ch.settled,
                             proof=None)
        else:
            h = attrs.evolve(h, channel_id=OTHER_CHANNEL, proof=None)
        if h.settled is None:
            h = attrs.evolve(h, settled=0)
        md = self._hinted_details(h, wc, lie, proof_signature)
        req = wc.decoded_request().model_copy(update={"method_details": md})
        c = wire.Challenge.issue(srv.secret, realm=wc.realm, request=req, expires=wc.expires)
        return self._marked(resp, lie, **{"www-authenticate": wire.format_www_authenticate(c)})


OTHER_ESCROW = "0x" + "e5" * 20  # the escrow contract a lying other_escrow challenge names


class LyingServerSession(Session):
    """Machine (c): the client under test against the model server behind a Liar (the server named by
    --server is not used); the twin is the model's system with the same lie (Act lying_request)."""

    def __init__(self, rc: RunConfig, workdir=None):
        super().__init__(rc, workdir)
        self.liar = Liar(self.server)
        self.net.server = self.liar
        self.twin_unpaid: dict = {}
        self.cfg = attrs.evolve(self.cfg, lying_server=True)

    def do(self, step: dict) -> StepResult:
        self._crafted, edge = self._craft(step) if step.get("lie") in CRAFTED_LIES else (None, None)
        self.liar.arm(step.get("lie"), edge)
        try:
            res = super().do(step)
        finally:
            self.liar.arm(None)
        if step.get("lie") == "backwards_receipt":  # R1 (view == record after a receipt) is about honest receipts
            res.violations = [(p, m) for p, m in res.violations if p != "RV"]
        return res

    def _ghosts(self, wires, prev_real):
        for w in wires:  # take_402 strips the Idempotency-Key before the server sees the request (D3 is not at stake)
            if w.note == "lie:take_402":
                w.key = None
        out = super()._ghosts(wires, prev_real)
        for w in wires:  # take_402: the server served (and charged) what the liar withheld (S6 is the server's)
            if w.note == "lie:take_402" and w.charged:
                self.served[w.channel_id] = self.served.get(w.channel_id, 0) + w.charged
        return out

    def _craft(self, step) -> tuple:
        """(the twin's first challenge, the edge amount) of a crafted lie (CRAFTED_LIES), from the twin before the
        step: its honest first challenge (the model server's, which the liar's server is) with the lie's hints.
        No hints to lie about: the honest challenge and no edge."""
        from model import client as mcl

        i = step.get("client", 0)
        c = self.cfg.clients[i]
        ch = msv.author_challenge(self.cfg.server, self.twin.server, self.twin.chain, c.payer, True, True)
        h = ch.hints
        if h is None or not h.has_values or self.twin.chain.channel(h.channel_id) is None:
            return ch, None
        chain_ch = self.twin.chain.channel(h.channel_id)
        if step["lie"] == "forged_proof":
            top = chain_ch.deposit
            return attrs.evolve(ch, hints=attrs.evolve(h, accepted=top, required=top, spent=top, deposit=top,
                                                       proof=Voucher(h.channel_id, top,
                                                                     address_of(self.liar.forger_key)))), None
        st = self.twin.clients[i]  # the client's memory of the hinted channel (model/client.py _remembered)
        known = next((e for e in (st.entry, st.persisted) + st.kept if e is not None and e.channel_id == h.channel_id),
                     None) or mcl.Entry(h.channel_id)
        bound = mcl.trust_bound(mcl.proven_floor(known, self.twin.chain, None, c.payer), c, ch.price)
        edge = bound + (ch.price if step["lie"] == "edge_over" else 0)
        return attrs.evolve(ch, hints=attrs.evolve(h, accepted=edge, required=edge, proof=None)), edge

    def _act(self, step):
        if step.get("lie") in CRAFTED_LIES:  # the model's hook for "the first challenge is this one" (see above)
            return Act("lying_request", step.get("client", 0), lie="stale_402", stale=self._crafted)
        if step.get("lie"):
            i = step.get("client", 0)
            stale = self.twin_unpaid.get((self.cfg.clients[i].payer, True)) if step["lie"] == "stale_402" else None
            return Act("lying_request", i, lie=step["lie"], stale=stale)
        return super()._act(step)

    def _note_unpaid(self, info: StepInfo) -> None:
        """stale_402: the twin's first challenge of the step's request, per payer and kind (as the Liar records)."""
        for ex in info.exchanges[:1]:
            if ex.request.credential is None and ex.response is not None and ex.response.challenge is not None:
                self.twin_unpaid[(ex.request.payer, ex.request.content)] = ex.response.challenge

    def _twin(self, step, act):
        if act.kind == "lying_request":
            from model.check import step as model_step

            cfg = self.cfg
            if not step.get("key", True):  # a request without an Idempotency-Key, as Session._twin does
                cl = list(cfg.clients)
                cl[act.client] = attrs.evolve(cl[act.client], use_keys=False)
                cfg = attrs.evolve(cfg, clients=tuple(cl))
            self.twin, self.twin_ghosts, info = model_step(cfg, self.twin, self.twin_ghosts, act)
            self._note_unpaid(info)
            return info
        info = super()._twin(step, act)
        self._note_unpaid(info)
        return info
