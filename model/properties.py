"""The numbered properties. Each traces to SPEC_NOTES.md (same ids).

State properties look at one `System` and the checker's ghosts there (`model.ghosts`); step properties look
at a transition (previous state, the ghosts before the step, what happened, next state). `applies(cfg)` says in which
deployments a property is claimed: e.g. the one-price exposure bound is claimed
for hinted clients behind a fully hinted fleet, not for a legacy fleet.
"""
from __future__ import annotations

from typing import Callable

import attrs

from .base import fm_get
from .ghosts import Ghosts, recharged_keys
from .system import Config, StepInfo, System

Violation = str


@attrs.frozen
class Property:
    id: str
    title: str
    source: str
    applies: Callable[[Config], bool]
    state: Callable[[Config, System, Ghosts], Violation | None] | None = None
    step: Callable[[Config, System, Ghosts, StepInfo, System], Violation | None] | None = None


def _always(cfg: Config) -> bool:
    return True


def _all_hinted(cfg: Config) -> bool:
    return cfg.fleet == "hinted" and all(c.hinted for c in cfg.clients) and not cfg.lying_server


def _honest(cfg: Config) -> bool:
    return not cfg.lying_server


def _fault_free(cfg: Config) -> bool:
    return (cfg.faults == ("none",) and not cfg.restarts and not cfg.duplicates and not cfg.late_responses
            and not cfg.lying_server and not cfg.forced_close and len(set(cfg.payers)) == len(cfg.clients))


def _proof_available(cfg: Config) -> bool:
    return cfg.server.hint_encoding == "snapshot" or all(c.persist for c in cfg.clients)


def _live_records(s: System):
    for cid, rec in s.server.channels:
        yield cid, rec, s.chain.channel(cid)


# --- safety ------------------------------------------------------------------

def s1_monotone(cfg, prev: System, g: Ghosts, info: StepInfo, nxt: System):
    for cid, rec in prev.server.channels:
        new = nxt.server.record(cid)
        if new is None:
            return f"S1: record of {cid} disappeared"
        if new.accepted < rec.accepted or new.spent < rec.spent:
            return f"S1: {cid} went from accepted={rec.accepted}, spent={rec.spent} to accepted={new.accepted}, spent={new.spent}"
    for cid, ch in prev.chain.channels:
        if cid.startswith("__"):
            continue
        new = nxt.chain.channel(cid)
        if new.settled < ch.settled:
            return f"S1: settled of {cid} decreased {ch.settled} -> {new.settled}"
    return None


def s2_bounds(cfg, s: System, g: Ghosts):
    for cid, rec, ch in _live_records(s):
        if not rec.spent <= rec.accepted:
            return f"S2: {cid} spent={rec.spent} > accepted={rec.accepted}"
        if ch is not None and rec.accepted > ch.deposit:
            return f"S2: {cid} accepted={rec.accepted} > deposit={ch.deposit}"
    return None


def s3_settled(cfg, s: System, g: Ghosts):
    for cid, rec, ch in _live_records(s):
        if ch is not None and ch.settled > max(rec.accepted, rec.spent):
            return f"S3: {cid} settled={ch.settled} > accepted={rec.accepted}"
    return None


def s4_highest(cfg, s: System, g: Ghosts):
    for cid, rec, ch in _live_records(s):
        v = rec.highest
        if v.amount != rec.accepted or v.channel_id != cid or ch is None or v.signer != ch.signer:
            return f"S4: {cid} stored voucher {v} does not prove accepted={rec.accepted}"
    return None


def s5_conservation(cfg, s: System, g: Ghosts):
    total = cfg.wallet * len(cfg.payers)
    if s.chain.total_tokens() != total:
        return f"S5: tokens on chain {s.chain.total_tokens()} != minted {total}"
    return None


def s6_spent_is_served(cfg, s: System, g: Ghosts):
    for cid, rec, _ in _live_records(s):
        served = fm_get(g.served_value, cid, 0)
        if rec.spent != served:
            return f"S6: {cid} spent={rec.spent} but content served is worth {served}"
    return None


def s7_capture(cfg, prev, g: Ghosts, info: StepInfo, nxt):
    for cid, capture, spent, settled in info.closes:
        if capture > max(spent, settled):
            return f"S7: close of {cid} captured {capture} > max(spent={spent}, settled={settled})"
    return None


# --- no double-spend -----------------------------------------------------------

def _exposure(s: System, g: Ghosts, cid: str) -> int:
    rec = s.server.record(cid)
    return fm_get(g.signed, cid, 0) - (rec.spent if rec else 0)


def _open_channels(s: System):
    for cid, ch in s.chain.channels:
        if not cid.startswith("__") and not ch.finalized:
            yield cid


def d1_exposure_one_price(cfg, s: System, g: Ghosts):
    for cid in _open_channels(s):
        if _exposure(s, g, cid) > cfg.server.price:
            return f"D1: on {cid} the payer signed {fm_get(g.signed, cid, 0)} but was charged {_exposure_spent(s, cid)} (more than one price ahead)"
    return None


def _exposure_spent(s, cid):
    rec = s.server.record(cid)
    return rec.spent if rec else 0


def d2_exposure_lost(cfg, s: System, g: Ghosts):
    bound = cfg.server.price * (1 + g.lost_requests)
    for cid in _open_channels(s):
        if _exposure(s, g, cid) > bound:
            return f"D2: on {cid} signed {fm_get(g.signed, cid, 0)} - charged {_exposure_spent(s, cid)} > price x (1 + {g.lost_requests} lost requests)"
    return None


def d3_idempotency_key(cfg, prev, g: Ghosts, info: StepInfo, nxt):
    again = recharged_keys(g, info)
    if again:
        return f"D3: a repeated request with the same Idempotency-Key was charged again: {again} ({info.charged})"
    return None


def h1_hint_bound(cfg, prev: System, g: Ghosts, info: StepInfo, nxt):
    for i, cid, amount in info.signatures:
        ch = prev.chain.channel(cid)
        floor = max(fm_get(g.signed, cid, 0), ch.settled if ch else 0)
        limit = floor + cfg.server.price + cfg.clients[i].max_unproven
        if amount > limit:
            return (f"HB: {cfg.clients[i].name} signed {amount} on {cid}; what the payer had already authorized "
                    f"({floor}) + price + allowance is {limit}")
    return None


def c1_client_monotone(cfg, prev: System, g: Ghosts, info: StepInfo, nxt):
    for i, cid, amount in info.signatures:
        before = fm_get(g.own_signed[i], cid, 0)
        if amount < before:
            return f"CM: {cfg.clients[i].name} signed {amount} on {cid} after signing {before}"
    return None


# --- backward compatibility ------------------------------------------------------

def b1_other_mode(handle, server_cfg, server, chain, req, hinted: bool, resp):
    """The checker's shadow of one delivery (model.system.StepRun `shadow`): the same request, from the same
    server and chain, against the other hint mode. (req, hinted answer, legacy answer) for B1 below."""
    _, _, other = handle(server_cfg, server, chain, req, not hinted)
    return (req, resp, other) if hinted else (req, other, resp)


def b1_same_verdict(cfg, prev, g: Ghosts, info: StepInfo, nxt):
    for req, hinted, legacy in info.server_answers:
        if req.credential is None:
            continue
        a = (hinted.status, hinted.receipt, hinted.problem)
        b = (legacy.status, legacy.receipt, legacy.problem)
        if a != b:
            return f"B1: the hinted server answered {a} but the legacy server {b} to {req.credential}"
    return None


def _served_or_exhausted(info: StepInfo) -> bool:
    return info.outcome == "served" or info.outcome == "refused:deposit-exhausted"


def b2_fault_free_liveness(cfg, prev, g: Ghosts, info: StepInfo, nxt):
    if info.act.kind == "request" and not _served_or_exhausted(info):
        return f"B2: with no faults, a request ended {info.outcome!r}"
    return None


# --- reconciliation ---------------------------------------------------------------

def r1_view_matches(cfg, prev, g: Ghosts, info: StepInfo, nxt: System):
    if not info.fresh_receipt:
        return None
    i = info.act.client
    c, st = cfg.clients[i], nxt.clients[i]
    if not c.hinted or st.entry is None:
        return None
    rec = nxt.server.record(st.entry.channel_id)
    if rec is not None and (st.entry.accepted, st.entry.spent) != (rec.accepted, rec.spent):
        return (f"RV: after a receipt {c.name} sees accepted={st.entry.accepted}, spent={st.entry.spent}; "
                f"the server has accepted={rec.accepted}, spent={rec.spent}")
    return None


# --- the third party (Config.attacker; rule UA) ----------------------------------------

def _attacker(cfg: Config) -> bool:
    return cfg.attacker


def _third_party_step(info: StepInfo) -> bool:
    return info.act.kind.startswith("attack_")


def tp1_never_served(cfg, prev, g: Ghosts, info: StepInfo, nxt):
    if not _third_party_step(info):
        return None
    served = [ex for ex in info.exchanges if ex.request.content and ex.response is not None
              and ex.response.status == 200]
    if served or info.charged:
        return f"TP1: the third party was served on a payer's funds: {info.charged or 'a content 200'}"
    return None


def tp2_cannot_close_freeze_drain(cfg, prev: System, g: Ghosts, info: StepInfo, nxt: System):
    if not _third_party_step(info):
        return None
    if nxt.chain != prev.chain:
        return "TP2: a step of the third party changed the chain (a close, settle or transfer on a payer's channel)"
    for cid, rec in prev.server.channels:
        new = nxt.server.record(cid)
        if (new.accepted, new.spent, new.finalized) != (rec.accepted, rec.spent, rec.finalized):
            return (f"TP2: the third party changed {cid}: accepted/spent/finalized {rec.accepted}/{rec.spent}/"
                    f"{rec.finalized} -> {new.accepted}/{new.spent}/{new.finalized}")
    return None


def tp3_no_abandoned_channel(cfg, prev: System, g: Ghosts, info: StepInfo, nxt: System):
    for i, cid, _ in info.signatures:
        if prev.chain.channel(cid) is not None:
            continue  # not an open
        payer = cfg.clients[i].payer
        for other, ch in prev.chain.channels:
            if ch.payer == payer and not ch.finalized and not ch.close_requested_at:
                return (f"TP3: {cfg.clients[i].name} opened {cid} while its channel {other} was live "
                        f"(deposit {ch.deposit}, settled {ch.settled}): it abandoned a funded channel")
    return None


ROUND_TRIP_BOUND = 5


def r2_liveness(cfg, prev, g: Ghosts, info: StepInfo, nxt):
    if info.act.kind != "request" or info.act.fault != "none":
        return None  # the faulty request itself may end unknown; the next one must complete
    if not _served_or_exhausted(info):
        return f"R2: a hinted client facing a hinted server did not complete a request: {info.outcome!r}"
    if info.outcome == "served" and info.round_trips > ROUND_TRIP_BOUND:
        return f"R2: served after {info.round_trips} round trips (bound {ROUND_TRIP_BOUND})"
    return None


def l1_restart_liveness(cfg, prev, g: Ghosts, info: StepInfo, nxt):
    """Every request completes, restarts included (no network faults)."""
    if info.act.kind == "request" and not _served_or_exhausted(info):
        return f"L1: a request ended {info.outcome!r}"
    return None


def _restart_only(cfg: Config) -> bool:
    return (cfg.faults == ("none",) and not cfg.duplicates and not cfg.late_responses and not cfg.lying_server
            and not cfg.forced_close and cfg.fleet != "mixed")


PROPERTIES: tuple[Property, ...] = (
    Property("S1", "acceptedCumulative, spent and settled never decrease", "draft Accounting State; Settlement", _always, step=s1_monotone),
    Property("S2", "spent <= acceptedCumulative <= deposit", "draft Per-Request Processing; Voucher Verification 7", _always, state=s2_bounds),
    Property("S3", "settled <= acceptedCumulative", "draft Settlement Procedure", _always, state=s3_settled),
    Property("S4", "the stored highest voucher verifies and equals acceptedCumulative", "draft Voucher Verification 8-9", _always, state=s4_highest),
    Property("S5", "tokens are conserved on chain", "draft Escrow Guarantees", _always, state=s5_conservation),
    Property("S6", "spent equals the prices of the content responses served", "draft Per-Request Processing 3; Crash Safety", _always, state=s6_spent_is_served),
    Property("S7", "the payee never captures more than max(spent, settled)", "draft Cooperative Close", _always, step=s7_capture),
    Property("D1", "hinted x hinted: signed - charged <= one price", "seed Why This Rollout Is Safe; this project", _all_hinted, state=d1_exposure_one_price),
    Property("D2", "any mix: signed - charged <= price x (1 + lost requests)", "seed; this project", _honest, state=d2_exposure_lost),
    Property("D3", "a repeated request with the same Idempotency-Key is charged once", "draft Request Idempotency", _always, step=d3_idempotency_key),
    Property("HB", "no hint makes a client sign above what the payer authorized + price + allowance", "seed security review; this project", _always, step=h1_hint_bound),
    Property("CM", "a client never signs below what it already signed (in its memory)", "draft Terminology: vouchers are monotonically increasing", _always, step=c1_client_monotone),
    Property("B1", "the hinted server gives every credential the legacy verdict", "seed: any valid advancing voucher still works", _always, step=b1_same_verdict),
    Property("B2", "with no faults every client x server pair completes every affordable request", "seed Summary: backward-compatible", _fault_free, step=b2_fault_free_liveness),
    Property("RV", "after a fresh receipt a hinted client's view equals the server's record", "seed: overwrite runtime snapshot from receipt", _always, step=r1_view_matches),
    Property("R2", f"hinted x hinted with proof: after any fault the next request completes within {ROUND_TRIP_BOUND} round trips",
             "seed Proposed flow", lambda c: _all_hinted(c) and _proof_available(c), step=r2_liveness),
    Property("L1", "with restarts (no network faults) every affordable request completes", "seed Current/Proposed flow", _restart_only, step=l1_restart_liveness),
    Property("TP1", "a third party (no payer key, sees all that is public) is never served on a payer's funds", "rules UA1-UA2; draft Cross-Session Replay Prevention", _attacker, step=tp1_never_served),
    Property("TP2", "a third party cannot close, freeze or drain a payer's channel (its steps change no record and no chain state)", "rules UA1-UA2; GHSA-mv9j-8jvg-j8mr", _attacker, step=tp2_cannot_close_freeze_drain),
    Property("TP3", "with a third party about, no client opens a channel while one of its own is live (none is abandoned)", "rule UA; issue 10 item 4", _attacker, step=tp3_no_abandoned_channel),
)

BY_ID = {p.id: p for p in PROPERTIES}


def check_state(cfg: Config, s: System, g: Ghosts, props=PROPERTIES) -> list[tuple[str, str]]:
    out = []
    for p in props:
        if p.state is not None and p.applies(cfg):
            v = p.state(cfg, s, g)
            if v:
                out.append((p.id, v))
    return out


def check_step(cfg: Config, prev: System, g: Ghosts, info: StepInfo, nxt: System,
               props=PROPERTIES) -> list[tuple[str, str]]:
    """The step properties of one transition; `g` is the ghosts before it."""
    out = []
    for p in props:
        if p.step is not None and p.applies(cfg):
            v = p.step(cfg, prev, g, info, nxt)
            if v:
                out.append((p.id, v))
    return out
