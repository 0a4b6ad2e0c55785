"""Run one client x server pair and report: properties, steps, time, the minimal failing trace."""
from __future__ import annotations

import json
import os
import re
import time
import traceback
from typing import Optional
from xml.sax.saxutils import escape

import attrs

from model.properties import PROPERTIES

from .harness import RunConfig, Session
from .machines import new_session as _session, run_machine
from .trace import render_mermaid, render_steps, steps_file, write_steps



def _rank(status: str) -> int:
    if status.startswith("VIOLATED"):
        return 5
    if status.startswith("known"):
        return 3
    if status.startswith("skipped"):
        return 2
    if status == "held":
        return 1
    return 0


def merge_tables(sessions: list[Session], rc: RunConfig) -> dict:
    from .harness import property_table

    table: dict = {}
    for s in sessions:
        t = property_table(s.results, rc, s.cfg, s.skipped, s.extra_claims())
        for k, v in t.items():
            if k not in table or _rank(v) > _rank(table[k]):
                table[k] = v
    return table


@attrs.define
class PairReport:
    client: str
    server: str
    machine: str
    strength: str
    profile: str
    chain: str
    seed: int
    ok: bool = True
    steps: int = 0
    examples: int = 0
    seconds: float = 0.0
    properties: dict = attrs.Factory(dict)
    failure: Optional[str] = None
    mermaid: Optional[str] = None
    trace_file: Optional[str] = None
    error: Optional[str] = None
    skipped: Optional[str] = None  # the pair could not run here (why); never counted as passed
    findings: dict = attrs.Factory(dict)  # mppx: finding id -> {property, message, trace_file, steps}
    unexpected: list = attrs.Factory(list)  # violations that are not an expected finding of the pair
    drives: str = ""  # which named adapters the machine really drove (harness.drives)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict:
        d = attrs.asdict(self)
        d["steps_per_second"] = round(self.steps_per_second, 1)
        return d


def run_pair(rc: RunConfig, profile: str = "ci", machine: str = "pair", progress=None,
             trace_dir: Optional[str] = None, shrink: bool = True, shrink_budget: float = 30.0) -> PairReport:
    from .bridge_spec import is_bridge
    from .harness import drives

    rep = PairReport(rc.client, rc.server, machine, rc.strength, profile, rc.chain, rc.seed)
    rep.drives = drives(rc, machine)

    # mppx (or any bridge:PATH adapter): the generic machines, on the harness's own chain and network, on a
    # deployment its release speaks (v2 releases on memory-v2, v1-only releases on memory); anything else is
    # SKIPPED with the reason, never passed
    if is_bridge(rc.client) or is_bridge(rc.server):
        try:
            why = bridge_gap(rc, machine)
        except Exception as exc:  # a built adapter that does not start: a failure, never a pass
            rep.ok = False
            rep.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            rep.failure = traceback.format_exc()
            return rep
        if why is not None:
            rep.skipped = why
            return rep
    why = generic_v2_gap(rc, machine)
    if why is not None:
        rep.skipped = why
        return rep
    if (is_bridge(rc.client) or is_bridge(rc.server)) and rc.shared:
        # mppx keeps a channel per client instance and its server hints only the channel a client names
        # (Payment-Session), never a payer's: two devices of one payer sharing a channel is a capability it lacks
        rc = attrs.evolve(rc, shared=False)
        rep.drives += " (clients are two payers: mppx shares no channel between devices of one payer)"
    t0 = time.monotonic()
    known = (lambda sess, bad: known_finding(rc, machine, sess, bad)) if (is_bridge(rc.client) or
                                                                            is_bridge(rc.server)) else None
    try:
        col = run_machine(rc, profile, machine, progress, known=known)
    except Exception as exc:  # an adapter crashed: that is a failure, never a pass
        rep.ok = False
        rep.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        rep.failure = traceback.format_exc()
        rep.seconds = time.monotonic() - t0
        return rep
    rep.seconds = time.monotonic() - t0
    rep.steps, rep.examples = col.steps, len(col.sessions)
    rep.properties = merge_tables(col.sessions, rc)
    if col.failing is not None:
        rep.ok = False
        s = col.failing
        if shrink:
            s = minimize(s, machine, budget=shrink_budget)
        rep.failure = render_steps(s.results)
        rep.mermaid = render_mermaid(s.results, rc.n_clients)
        d = trace_dir or os.getcwd()
        os.makedirs(d, exist_ok=True)
        name = f"trace-{machine}-{rc.client}-{rc.server}-{rc.strength}.json".replace(":", "_").replace("/", "_")
        rep.trace_file = os.path.join(d, name)
        write_steps(rep.trace_file, s.rc, s.steps, machine)
        # the shrunk trace, the one the exploration found, and the sessions of the known findings it went past
        _classify(rep, rc, machine, [s, col.failing] + list(col.found.values()))
    if col.found:
        rep.ok = False  # known findings are reported (AS EXPECTED), never passed
    for fid, s in sorted(col.found.items()):  # the known findings the exploration met and went past
        if fid in rep.findings:
            continue
        d = trace_dir or os.getcwd()
        os.makedirs(d, exist_ok=True)
        name = f"trace-{machine}-{rc.client}-{rc.server}-{rc.strength}-{fid}.json".replace(":", "_").replace("/", "_")
        path = os.path.join(d, name)
        data = steps_file(s.rc, s.steps, machine)
        data["finding"] = fid
        with open(path, "w") as f:
            json.dump(data, f, indent=1)
        last = next((r for r in reversed(s.results) if r.violations or r.mismatches), s.results[-1])
        pid = (last.violations or [("EQ", "")])[0][0]
        rep.findings[fid] = {"property": pid, "trace_file": path, "steps": render_steps(s.results),
                             "message": f"{pid} violated: {fid} (its pattern is in the trace)"}
    return rep


def known_finding(rc: RunConfig, machine: str, session, bad: list) -> Optional[str]:
    """The known finding of a bridge adapter's pair (expectations.MPPX_KNOWN) that a step's violations are,
    by the finding's pattern in the session's trace; None when any violated property is none of them."""
    from .expectations import MPPX_KNOWN, _driven

    known = MPPX_KNOWN.get(_driven(rc.client, rc.server, machine) + (machine, rc.strength), {})
    fid = None
    for pid in {p for p, _ in bad}:
        if pid not in known:
            return None
        f = _which_finding(session, known[pid])
        if f is None:
            return None
        fid = fid or f
    return fid


def _classify(rep: PairReport, rc: RunConfig, machine: str, failing: Optional[list] = None) -> None:
    """A bridge adapter's violations as its known findings (conformance/expectations.py MPPX_KNOWN, keyed by the
    manifest's name): `findings` holds the ids a violated property may be, `unexpected` the violated properties
    that are none of its findings."""
    from .bridge_spec import is_bridge
    from .expectations import MPPX_KNOWN, _driven

    if not (is_bridge(rc.client) or is_bridge(rc.server)):
        return
    driven = _driven(rc.client, rc.server, machine)  # what the machine drove (server: model clients, ...)
    known = MPPX_KNOWN.get(driven + (machine, rc.strength), {})
    for pid, status in rep.properties.items():
        if not status.startswith("VIOLATED"):
            continue
        if pid not in known:
            rep.unexpected.append(f"{pid} (no known finding of {driven[0]} x {driven[1]})")
            continue
        fid = next((f for sess in failing or [] if (f := _which_finding(sess, known[pid])) is not None), None)
        if fid is None:
            rep.unexpected.append(f"{pid} (none of the findings {', '.join(known[pid])} seen in the failing trace)")
            continue
        rep.findings.setdefault(fid, {"property": pid, "trace_file": rep.trace_file, "steps": rep.failure or "",
                                      "message": f"{pid} violated: {fid} (its pattern is in the failing trace)"})


def _which_finding(session, candidates: tuple) -> Optional[str]:
    """Which of a property's candidate findings the failing trace shows, by the pattern each leaves on the wire
    (FINDINGS.md): F14 a voucher refused amount-exceeds-deposit; F16 an open whose response was dropped, then
    another open by the same client; F17 a forced close request, then channel-finalized; F15 a voucher on the
    channel a 402 hinted that is not the hint's requiredCumulative (local + amount), or a HEAD carrying one."""
    wires = [w for r in session.results for w in r.wires if w.origin == "client"]
    ops = [r.step.get("op") for r in session.results]
    seen = set()
    hint: dict = {}
    for w in wires:  # F15: a voucher on the hinted channel that is not the hint's requiredCumulative
        if w.action == "voucher" and w.client in hint and hint[w.client].get("channel") == w.channel_id \
                and w.amount != hint[w.client]["required"]:
            seen.add("F15")
        if w.status == 402 and w.hints and "required" in w.hints:
            hint[w.client] = w.hints
    for i, w in enumerate(wires):
        if w.action == "voucher" and w.problem == "amount-exceeds-deposit":
            seen.add("F14")
        if w.action == "open" and w.fate == "response-dropped" and any(
                v.action == "open" and v.client == w.client for v in wires[i + 1:]):
            seen.add("F16")
        if w.method == "HEAD" and w.action in ("open", "voucher") and w.status != 402:
            seen.add("F15")  # a HEAD (free) carrying a voucher that advanced: local + amount, not the hint
        if w.method == "HEAD" and w.action == "open" and w.problem == "verification-failed":
            seen.add("F20")
    for j, r in enumerate(session.results):  # F16 too: the client lost its store, then opened another channel
        if r.step.get("op") == "restart_client" and r.step.get("keep") is False and any(
                w.action == "open" and w.origin == "client" and w.client == r.step.get("client")
                for later in session.results[j + 1:] for w in later.wires):
            seen.add("F16")
    if "request_close" in ops and any(w.problem == "channel-finalized" for w in wires):
        seen.add("F17")
    settled_at = next((j for j, r in enumerate(session.results) if r.step.get("op") == "settle"), None)
    for r in session.results[settled_at + 1:] if settled_at is not None else ():
        hint = None  # F2: after a settle, the voucher at the settled highest (the hint's acceptedCumulative) is refused
        for w in (w for w in r.wires if w.origin == "client"):
            if w.action == "voucher" and w.problem == "verification-failed" and hint \
                    and hint.get("channel") == w.channel_id and w.amount == hint.get("accepted"):
                seen.add("F2")
            if w.status == 402 and w.hints and "accepted" in w.hints:
                hint = w.hints
    if settled_at is not None:  # F2 too, with no hint (mppx hints no channel it does not resolve): the voucher refused
        top: dict = {}  # is the highest one the client had sent on that channel before the settle
        for r in session.results[:settled_at]:
            for w in r.wires:
                if w.origin == "client" and w.amount is not None and w.channel_id:
                    top[w.channel_id] = max(top.get(w.channel_id, 0), w.amount)
        if any(w.origin == "client" and w.action == "voucher" and w.problem == "verification-failed"
               and w.amount is not None and w.amount == top.get(w.channel_id)
               for r in session.results[settled_at + 1:] for w in r.wires):
            seen.add("F2")
    lost = set()  # F23: after losing its store, refused for the deposit on a hint of its channel above the deposit
    for r in session.results:
        if r.step.get("op") == "restart_client" and r.step.get("keep") is False:
            lost.add(r.step.get("client"))
        hints = [w.hints for w in r.wires if w.origin == "client" and w.status == 402 and w.hints
                 and "required" in w.hints and "deposit" in w.hints]
        if r.step.get("client") in lost and str(r.outcome).startswith("refused:deposit") and hints \
                and hints[-1]["required"] > hints[-1]["deposit"]:
            seen.add("F23")
    for r in session.results:  # F15 too: refused for the deposit although the hint's requiredCumulative fits it
        hints = [w.hints for w in r.wires if w.origin == "client" and w.status == 402 and w.hints
                 and "required" in w.hints and "deposit" in w.hints]
        if str(r.outcome).startswith("refused:deposit") and hints and hints[-1]["required"] <= hints[-1]["deposit"]:
            seen.add("F15")
    for r in session.results:  # the server findings, by the adversary attack (or property) that failed
        props = {p for p, _ in r.violations}
        kind = str(r.step.get("kind", "")) if r.step.get("op") == "adversary" else ""
        if props & {"SV", "S4"} and kind == "high_s":
            seen.add("F1")
        if "SV" in props and kind == "same:compact":
            seen.add("F5")
        if props & {"TP1", "TP2"} and kind.startswith("thirdparty_"):
            published = getattr(session, "public_vouchers", {})
            if any(w.origin == "adversary" and w.action == "close" and w.status is not None and 200 <= w.status < 300
                   and w.amount is not None and w.amount <= published.get(w.channel_id, (-1, ""))[0]
                   for w in r.wires):
                seen.add("F137")  # it closed the payer's channel with the voucher a settle transaction published
            else:
                seen.add("F19")  # the third party is served on, or closes, the payer's channel with a disclosed voucher
        if "SV" in props and kind == "same:foreign_source":
            seen.add("F21")
        if "SV" in props and kind == "forged_above_deposit" and any(
                w.problem == "amount-exceeds-deposit" for w in r.wires if w.origin == "adversary"):
            seen.add("F12")
        if "D3" in props:
            seen.add("F8")
        if props & {"XP", "HB"} and r.step.get("lie") == "price":
            seen.add("F22")  # it paid a lied price above the agreed one (mppx's client has no price bound)
        if "HB" in props and r.step.get("lie") == "inflate":
            seen.add("F3")  # it signed an unproven inflated snapshot (H1's bound: what the payer had authorized)
        for pid, fid in (("WF1", "F6"), ("WF2", "F9"), ("WF3", "F10")):  # the wire form (strict)
            if pid in props:
                seen.add(fid)
        for p, msg in r.violations:
            if p == "SV" and "answered 402 invalid-signature, model 402 signer-mismatch" in msg:
                seen.add("F7")
            if p == "SV" and "answered 402 amount-exceeds-deposit, model 402" in msg and (
                    "signer-mismatch" in msg or "invalid-signature" in msg):
                seen.add("F12")
        if "request_close" in ops and any(p == "SH" and msg.endswith("model None") for p, msg in r.violations):
            seen.add("F13")  # its cached channel state misses the pending forced close: it still hints the channel
        if any(p == "SH" and msg.startswith("snapshot ") and "(the chain's" in msg for p, msg in r.violations):
            seen.add("F13")  # strict: its snapshot's deposit/settled are cached copies, stale until the next voucher
        for p, msg in r.violations:  # F11: the server's requiredCumulative is spent + price, below accepted
            m = re.search(r"server \('0x[0-9a-f]+', (\d+), (\d+), (\d+)\)", msg) if p == "SH" else None
            if m and int(m.group(3)) == int(m.group(2)) + session.rc.price < int(m.group(1)):
                seen.add("F11")
            n = re.search(r"model \('0x[0-9a-f]+', (\d+), (\d+), (\d+)\)", msg) if m else None
            if n and int(m.group(2)) == int(n.group(2)) and int(m.group(1)) > int(n.group(1)) \
                    and int(m.group(1)) == int(m.group(2)) + session.rc.price:
                seen.add("F25")  # the hinted acceptedCumulative is spent + price, above what was accepted
        if "DM" in props and r.step.get("lie") == "other_escrow":
            seen.add("F26")
        if props & {"LV", "R2"} and str(r.outcome) == "refused:hint-bound-exceeded":
            hinted = [w.hints for w in r.wires if w.origin == "client" and w.status == 402 and w.hints
                      and "accepted" in w.hints]
            if hinted and all(h.get("proof") is None for h in hinted):
                seen.add("F138")  # the snapshot carries no highestVoucher: nothing lets the client trust its hint
    for i, w in enumerate(wires):  # F19: a challenge to a request without a credential discloses the highest
        # voucher (rule UA1), and the client pays on it at once: the twin's server discloses nothing there, so its
        # client authenticates first (UA3) and the records part (a later SH compares hints of different states)
        if w.action is None and w.status == 402 and w.hints and w.hints.get("proof") is not None:
            nxt = next((v for v in wires[i + 1:] if v.client == w.client), None)
            if nxt is not None and nxt.action == "voucher" and (nxt.amount or 0) > w.hints["proof"]:
                seen.add("F19")
    for r in session.results:  # F24: an open's content request served and not charged (S6 on that step)
        if any(p == "S6" for p, _ in r.violations) and any(
                w.action == "open" and w.method == "GET" and w.status == 200 and not w.charged for w in r.wires):
            seen.add("F24")
    keyed = [(w.channel_id, w.key) for r in session.results for w in r.wires if w.charged and w.key]
    if len(keyed) != len(set(keyed)):  # one Idempotency-Key charged twice (S6 and D3 follow from it)
        seen.add("F8")
    return next((f for f in candidates if f in seen), None)


def spoken_chain(spec: str, family: str = "memory") -> str:
    """The chain backend of `family` (memory or evm) whose deployment a bridge adapter's release speaks (its
    hello `sessions`): v2 -> memory-v2/evm-v2, a v1-only release (mppx <= 0.6.x) -> memory/evm."""
    from .mppx_impl import MppxUnavailable, sessions_of
    from .bridge_spec import manifest_path

    v2 = family.replace("-v2", "") + "-v2"
    try:
        return v2 if "v2" in sessions_of(manifest_path(spec)) else family.replace("-v2", "")
    except MppxUnavailable:
        return v2  # the run reports SKIPPED with the reason either way


def essential_missing(spec: str, side: str) -> Optional[str]:
    """Why every run of a bridge adapter on `side` is SKIPPED (it lacks an essential op, per its hello), or None
    (also None when it is unavailable here: each machine reports that). Starts the adapter."""
    from .bridge_spec import CLIENT_ESSENTIAL, SERVER_ESSENTIAL, impl_name, manifest_path, missing
    from .mppx_impl import MppxUnavailable, capabilities

    try:
        caps = capabilities(manifest_path(spec))
    except MppxUnavailable:
        return None
    gone = missing(caps, SERVER_ESSENTIAL if side == "server" else CLIENT_ESSENTIAL)
    if side == "client" and "client.fetch" in caps and gone == ["client.next_credential"]:
        gone = []  # fetch is the application entry point; either op drives the client
    if not gone:
        return None
    return (f"adapter {impl_name(spec)} ({spec}) lacks the essential {side} op{'s' if len(gone) > 1 else ''} "
            f"{', '.join(gone)} (its hello capabilities): nothing of its {side} can be tested "
            "(adapters/bridge/PROTOCOL.md, 'What the conformance machines need')")


def bridge_gap(rc: RunConfig, machine: str) -> Optional[str]:
    """Why a pair with a bridge adapter cannot run here (None: it runs): the adapter is unavailable (no node),
    lacks an op the machine needs, or its release does not speak the chain's deployment. Starts the adapter."""
    from .bridge_spec import impl_name, is_bridge, manifest_path
    from .harness import machine_config
    from .mppx_impl import MppxUnavailable, is_v2_chain_name, sessions_of

    for spec, side in ((rc.server, "server"), (rc.client, "client")):  # the whole run: an essential op missing
        if is_bridge(spec):
            why = essential_missing(spec, side)
            if why is not None:
                return why
    mc = machine_config(rc, machine)
    driven = [(s, side) for s, side in ((mc.server, "server"), (mc.client, "client")) if is_bridge(s)]
    if not driven:  # the machine drives only the harness's own sides (machine client of --client reference)
        return None
    proto = "v2" if is_v2_chain_name(rc.chain) else "v1"
    for spec, side in driven:
        try:
            speaks = sessions_of(manifest_path(spec))
        except MppxUnavailable as exc:
            return str(exc)
        if proto not in speaks:
            return (f"adapter {impl_name(spec)} ({spec}) speaks the {'/'.join(speaks)} session protocol and "
                    f"--chain {rc.chain} is a {proto} deployment: run it on --chain {spoken_chain(spec)}")
        if proto == "v1" and rc.chain != "memory":
            return (f"--chain {rc.chain}: only the memory v1 escrow applies a v1 release's own (Tempo 0x76) "
                    "transactions; run it on --chain memory")
    return None


def generic_v2_gap(rc: RunConfig, machine: str) -> Optional[str]:
    """Why the generic machines cannot run this pair of a bridge adapter on the harness's chain (None: they
    can). A bridge adapter (mppx) meets the harness's own sides (reference, model) only where the backend takes
    and signs Tempo 0x76 transactions (memory-v2, and evm-v2 by relaying them: adapters/chain/tempo_tx.py,
    evm_v2.py): mppx's client signs them and mppx's server requires them. The v1 backends sign only their own
    encoding."""
    from .bridge_spec import is_bridge
    from .harness import machine_config

    if not (is_bridge(rc.client) or is_bridge(rc.server)):
        return None
    mc = machine_config(rc, machine)
    if is_bridge(mc.client) and is_bridge(mc.server):
        return None
    if rc.chain in ("memory-v2", "evm-v2"):
        return None
    other = mc.server if is_bridge(mc.client) else mc.client
    return (f"{machine} machine on {rc.chain}: {other} cannot meet a bridge adapter there (the backend neither "
            "decodes nor signs Tempo 0x76 open/topUp transactions, which mppx signs and its server requires); "
            f"run it on --chain memory-v2 or evm-v2, or --client mppx --server mppx --chain {rc.chain} --machine pair")


def _fails(rc: RunConfig, machine: str, steps: list, want: set):
    """Replay `steps`; the session if it shows one of the `want` failures (stopping at the first), else None."""
    s = _session(rc, machine)
    try:
        for step in steps:
            r = s.do(step)
            bad = {p for p, _ in r.violations} | ({"EQ"} if rc.strength == "strict" and r.mismatches else set())
            if bad & want:
                return s
        return None
    finally:
        s.close()


def minimize(failing: Session, machine: str, budget: float = 30.0) -> Session:
    """Shrink a failing step list by replay (delta debugging: drop chunks, then single steps,
    while the same property still fails), within `budget` seconds. Deterministic."""
    rc = failing.rc
    last = failing.results[-1]
    want = {p for p, _ in last.violations} | ({"EQ"} if last.mismatches else set())
    steps = list(failing.steps)
    best = failing
    deadline = time.monotonic() + budget
    chunk = max(1, len(steps) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i, changed = 0, False
        while i < len(steps) and time.monotonic() < deadline:
            trial = steps[:i] + steps[i + chunk:]
            s = _fails(rc, machine, trial, want) if trial else None
            if s is not None:
                steps, best, changed = s.steps, s, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return best


def replay(path: str, quiet: bool = False) -> tuple[bool, str]:
    """Run a JSON steps file again; (ok, rendered trace)."""
    with open(path) as f:
        data = json.load(f)
    rc = RunConfig.from_json(data["config"])
    machine = data.get("machine", "pair")
    s = _session(rc, machine)
    ok = True
    for step in data["steps"]:
        r = s.do(step)
        if r.violations or (rc.strength == "strict" and r.mismatches):
            ok = False
    s.close()
    text = render_steps(s.results) + "\n\n" + render_mermaid(s.results, rc.n_clients)
    fid = data.get("finding")
    if fid:  # a saved finding of a bridge adapter: does the replay fail with that finding's pattern?
        shows = not ok and _which_finding(s, (fid,)) == fid
        text += f"\n\nfinding {fid}: " + ("reproduces" if shows else "did NOT reproduce")
    return ok, text


def junit(reports: list[PairReport], path: str) -> None:
    cases = []
    for r in reports:
        for pid, status in r.properties.items():
            name = f"{r.machine}:{r.client}x{r.server}:{pid}"
            body = ""
            if status.startswith("VIOLATED"):
                body = f'<failure message="{escape(status)}">{escape(r.failure or "")}</failure>'
            elif status.startswith("skipped") or status.startswith("not claimed"):
                body = f'<skipped message="{escape(status)}"/>'
            cases.append(f'<testcase classname="conformance" name="{escape(name)}">{body}</testcase>')
        if r.error:
            cases.append(f'<testcase classname="conformance" name="{escape(r.machine)}:{escape(r.client)}x'
                         f'{escape(r.server)}:run"><error message="{escape(r.error)}">{escape(r.failure or "")}'
                         f'</error></testcase>')
    fails = sum(c.count("<failure") + c.count("<error") for c in cases)
    skips = sum(c.count("<skipped") for c in cases)
    with open(path, "w") as f:
        f.write(f'<?xml version="1.0"?>\n<testsuite name="tempo-session-conformance" tests="{len(cases)}" '
                f'failures="{fails}" skipped="{skips}">\n' + "\n".join(cases) + "\n</testsuite>\n")


def property_ids() -> list[str]:
    return [p.id for p in PROPERTIES]
