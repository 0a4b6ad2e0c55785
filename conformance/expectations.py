"""The matrix: which pairs run, with which strength, and what each is expected to show.

Properties the model itself breaks on the same trace are reported by the harness as
"known limit" and never fail a pair (model/scenarios.py K1-K4 are of that kind). The
entries of KNOWN are violations a pair MAY show, each with its reason; a pair is as
expected when every violated property is listed for it. Remove an entry once fixed.
"""
from __future__ import annotations

BUNDLED = ("reference", "legacy", "model")

MATRIX = [(c, s, "pair", "must") for c in BUNDLED for s in BUNDLED] + [
    ("model", "model", "pair", "strict"),
    ("reference", "reference", "pair", "strict"),
    ("model", "reference", "server", "must"),
    ("model", "legacy", "server", "must"),
    ("reference", "model", "client", "must"),
    ("legacy", "model", "client", "must"),
]

_CLOSE = ("EQ", "divergence (reported): the reference SessionClient.close() follows the hinted channel of its "
                "payer even when this client has no current channel; the model's close_credential "
                "(model/client.py) closes only the client's own current entry")
_OPEN_UNFUNDED = ("R2", "bug (reported): the reference client opens a channel its payer cannot fund (no balance "
                        "check before open), so the request ends failed:verification-failed instead of "
                        "refused:deposit-exhausted (model/client.py next_credential checks the balance)")

# (client, server, machine, strength) -> ((property, reason), ...)
KNOWN: dict = {
}


def _names(client: str, server: str) -> tuple:
    """Expectations are keyed by implementation name: a subprocess adapter (`mppx`, `bridge:PATH`) by its
    manifest's `name`, never by its path (an adapter with another name has no expected findings)."""
    from .bridge_spec import impl_name

    return impl_name(client), impl_name(server)


def _driven(client: str, server: str, machine: str) -> tuple:
    """The names a bridge adapter's run is keyed by: what the machine drove (the server machine drives model
    clients, the client machine the model server), so `--client reference --server mppx --machine server` has
    mppx's server findings."""
    from .bridge_spec import is_bridge

    client, server = _names(client, server)
    if is_bridge(client) or is_bridge(server) or "mppx" in (client, server):
        if machine == "server":
            client = "model"
        elif machine == "client":
            server = "model"
    return client, server


def expected_for(client: str, server: str, machine: str, strength: str = "must") -> tuple:
    client, server = _driven(client, server, machine)
    return KNOWN.get((client, server, machine, strength), ())


# ---------------------------------------------------------------------------------------------- mppx@0.11.0
# Findings of the real mppx (FINDINGS.md has each with its classification, the rule it breaks and a replayable
# trace). The generic machines classify every violation by the pattern its trace shows (runner._which_finding); a
# violation that is not one of the findings listed for its pair fails the run.

MPPX_FINDINGS = {
    "F1": ("MUST violation", "high-s voucher signatures accepted and stored as the highest voucher",
           "draft 'Signature Malleability', 'Voucher Verification' 3"),
    "F2": ("MUST violation", "a settled highest voucher is refused even on a cost-free request (HEAD), and hinted as requiredCumulative",
           "draft 'Idempotency'"),
    "F3": ("project rule (H4), no draft MUST", "the client signs an unproven snapshot's amounts (up to the deposit)",
           "SPEC_NOTES H4 / property HB; seed security review"),
    "F4": ("strict deviation (MUST in the draft's encoding section)", "Payment-Session-Snapshot in padded base64",
           "draft 'Session Snapshot'"),
    "F5": ("strict deviation (draft lists the format as accepted)", "EIP-2098 compact signatures refused",
           "draft 'Signature Malleability' / payload table"),
    "F6": ("strict deviation", "receipt units is the channel's running count", "draft 'Receipt Generation'"),
    "F7": ("strict deviation", "no signer-mismatch problem (invalid-signature instead)",
           "draft 'Rejection and Error Responses'"),
    "F8": ("MUST violation (or undocumented SHOULD)", "Idempotency-Key ignored: a duplicate is charged again",
           "draft 'Request Idempotency'"),
    "F9": ("strict deviation", "insufficient-balance without requiredTopUp", "draft 'Per-Request Processing' 2"),
    "F10": ("MUST violation (wire form)", "checksummed (mixed-case) addresses on the wire",
            "draft 'Hexadecimal Values'"),
    "F11": ("strict deviation (project Decision 1)", "requiredCumulative = spent + amount even below acceptedCumulative",
            "SPEC_NOTES S-H2 / Decision 1; draft 'Session Snapshot' requiredCumulative"),
    "F12": ("strict deviation", "the deposit check precedes signature verification (problem type of a forged voucher "
                                "above the deposit)", "SPEC_NOTES 'order of the voucher checks'"),
    # WITHDRAWN for mppx >= 0.8.14 (FINDINGS.md): its fetch client tops up first; still shown by 0.7.0 - 0.8.12,
    # so the entries stay for runs of those releases (python -m conformance versions mppx).
    "F14": ("MUST violation (draft's MUST stated for payment-need-voucher; project rule H5); WITHDRAWN for "
            "mppx >= 0.8.14", "with a stored channel the client signs above the on-chain deposit (no top-up, no "
            "deposit read) and raises its local cumulative on every refused attempt (mppx <= 0.8.12)",
            "draft 'payment-need-voucher'; SPEC_NOTES H5"),
    "F15": ("strict deviation (project rule H3; seed 'sign exact server target')",
            "with a stored channel the client ignores the challenge's snapshot and signs local + amount, below "
            "requiredCumulative after another device advanced the channel (one extra round trip)",
            "seed 'Client Control Flow'; SPEC_NOTES H3"),
    "F16": ("project property R2 (liveness after a fault), no draft MUST", "after a lost open response the fetch "
            "client forgets the channel it opened and opens another; the first deposit stays locked, unknown to "
            "the client, and the request fails once the wallet cannot fund the second open",
            "SPEC_NOTES R2; seed 'Client Control Flow' (persist before sending)"),
    "F17": ("project property LV / R2, no draft MUST", "after a forced close request on chain the client keeps "
            "paying on the closing channel (410 channel-finalized) and never opens a new one",
            "draft 'Voucher Verification' 5 (the server side, which mppx honours); SPEC_NOTES LV"),
    "F19": ("against the draft and mppx (security; rule UA)", "anyone who knows a channelId gets the highest "
            "voucher's signature in the snapshot, is served on the payer's unspent authorization with it, and closes "
            "the channel with it", "SPEC_NOTES 4b (UA1, UA2); draft 'Cross-Session Replay Prevention', 'Session Snapshot'"),
    "F137": ("against the draft and mppx (security: griefing; rule UA2)", "after the payee settles (mppx's own "
             "tempo.settle), anyone closes the payer's channel with the voucher the settle transaction published: "
             "a cooperative close at cumulative = settled is accepted (204, channel finalized, the rest refunded)",
             "SPEC_NOTES 4b (UA2: a close voucher must be above settled); draft 'Cooperative Close' (covers "
             "max(spent, settled)), 'Settlement' (close with the settled amount)"),
    "F138": ("project property LV / R2 (no draft MUST; the draft's snapshot table has no highestVoucher)",
             "the snapshot carries no highestVoucher (0.7.0): a client that lost its store sees acceptedCumulative "
             "above anything it can prove, cannot follow the hint within its trust bound (rule H4) and stops "
             "(refused:hint-bound-exceeded), where the model server proves the amount to the authenticated payer",
             "SPEC_NOTES H4, UA1/UA3, section 5 item 4; draft 'Session Snapshot'"),
    "F21": ("deviation from httpauth 'Credentials' (source is optional, a payer identifier; no draft MUST)",
            "a credential whose `source` is absent or names another DID is refused (verification-failed, 'credential "
            "source does not match channel'): mppx binds the optional source to the channel's payer or signer",
            "httpauth 'Credentials' (source: not required); SPEC_NOTES, the server machine's variants"),
    "F20": ("project rule C1 (HEAD costs nothing), no draft MUST", "an open sent on HEAD is refused unless its "
            "voucher covers the route's price (verification-failed, 'voucher amount is less than request amount'): "
            "a client that opens on a free HEAD with cumulative 0 never gets a channel",
            "SPEC_NOTES C1; draft 'Voucher Submission Transport'"),
    "F22": ("project property XP (per-request exposure), no draft MUST", "the client pays a challenge's price "
            "whatever it is: after a challenge asking a multiple of the agreed price it tops up and signs it (mppx's "
            "session client has no price bound; maxDeposit caps only the deposit)",
            "SPEC_NOTES XP (PRICES_PER_REQUEST); httpauth 'Challenge' (the client decides whether to pay)"),
    "F23": ("project property LV / R2 (liveness), no draft MUST", "after a restart that lost its channel store, "
            "a challenge hinting the payer's channel with requiredCumulative above its deposit ends the request "
            "(deposit-exhausted): the client neither tops up the hinted channel nor opens another",
            "SPEC_NOTES LV, R2; draft 'Session Snapshot' (a client MAY use it), 'payment-need-voucher' (top up)"),
    "F24": ("MUST violation (payee side)", "the open's request is served without being charged: the receipt says "
            "acceptedCumulative 1 price, spent 0, and the channel's spent stays 0 (old v1 releases)",
            "draft 'Per-Request Processing' (deduct the request's cost); property S6"),
    "F25": ("against the draft's definition (no MUST)", "the snapshot's acceptedCumulative is above the highest voucher "
            "the server holds (spent + amount after the open; 0.7.0 - 0.8.12, formerly N1): a client trusting it "
            "without proof signs more than was accepted", "draft 'Session Snapshot' (acceptedCumulative: the highest "
            "voucher accepted); SPEC_NOTES S-H2"),
    "F26": ("project property DM (no draft MUST)", "the client answers a challenge naming another escrow contract "
            "(signs an open for it): 0.7.0 has no escrow pin", "draft 'Session Snapshot' (check escrow, chainId); "
            "SPEC_NOTES DM"),
    "F13": ("strict deviation", "snapshot deposit/settled are the server's cached copies, stale after on-chain "
                                "top-ups or settlements until the next voucher", "draft 'Session Snapshot' table"),
}

_MPPX_SERVER_MUST = {"TP1": ("F19",), "TP2": ("F19", "F137"), "SV": ("F1", "F2", "F5", "F21", "F8"), "S4": ("F1",), "D3": ("F8",), "S6": ("F8",),
                     "SH": ("F11", "F13", "F20", "F19", "F25"), "LV": ("F20", "F2", "F138"), "R2": ("F20", "F2", "F138"),
                     "D1": ("F138",), "D2": ("F138",)}
_MPPX_SERVER_STRICT = dict(_MPPX_SERVER_MUST, SV=("F1", "F2", "F5", "F7", "F8", "F12", "F21"), WF1=("F6",),
                           WF2=("F9",), WF3=("F10",), EQ=("F20",))
# mppx's client (the generic client machine: mppx against the model server and its liar)
_MPPX_CLIENT = {"DM": ("F26",), "HB": ("F3", "F22"), "XP": ("F22",), "LL": ("F14", "F16", "F17", "F15", "F23"), "HD": ("F14",), "HT": ("F15",), "HF": ("F14", "F15"),
                "R2": ("F14", "F16", "F17", "F15", "F23"), "LV": ("F14", "F16", "F17", "F15", "F23"), "D1": ("F14", "F15"),
                "D2": ("F14", "F15")}
# mppx's client and our reference server in the pair machine, and the reverse (memory-v2: the harness signs and
# decodes Tempo 0x76 transactions); each side's findings
_MPPX_CLIENT_PAIR = {"S6": ("F24",), "R2": ("F14", "F16", "F17", "F15", "F23"), "LV": ("F14", "F16", "F17", "F15", "F23"), "HF": ("F14", "F15"),
                     "D1": ("F14", "F15"), "D2": ("F14", "F15")}
MPPX_KNOWN: dict = {
    ("model", "mppx", "server", "must"): _MPPX_SERVER_MUST,
    ("model", "mppx", "server", "strict"): _MPPX_SERVER_STRICT,
    ("mppx", "model", "client", "must"): _MPPX_CLIENT,
    ("mppx", "model", "client", "strict"): _MPPX_CLIENT,
    ("mppx", "model", "pair", "must"): dict(_MPPX_CLIENT, H1=()),  # the client machine's, without lies (no F3)
    # the generic pair machine on a v2 harness chain (memory-v2): mppx's client and server, mppx opening and
    # topping up its own channels (python -m conformance run --client mppx --server mppx --chain memory-v2)
    # and on the v1 escrow (memory) for the v1-only releases (<= 0.6.x), whose client climbs above the deposit (F14)
    ("mppx", "mppx", "pair", "must"): _MPPX_CLIENT_PAIR,
    ("mppx", "reference", "pair", "must"): _MPPX_CLIENT_PAIR,
    ("reference", "mppx", "pair", "must"): {"D3": ("F8",), "S6": ("F8",), "S4": ("F1",), "LV": ("F20", "F2"),
                                            "R2": ("F20", "F2")},
    # the model client against mppx's server in the pair machine (its server's findings, as with the reference client)
    ("model", "mppx", "pair", "must"): {"D3": ("F8",), "S6": ("F8",), "S4": ("F1",), "LV": ("F20", "F2"),
                                        "R2": ("F20", "F2")},
}

MPPX_MATRIX = [
    ("model", "mppx", "server", "must"),
    ("model", "mppx", "server", "strict"),
    ("mppx", "model", "client", "must"),
    ("mppx", "model", "pair", "must"),
    # mppx against our reference side on memory-v2 (the harness signs and decodes Tempo 0x76 transactions)
    ("mppx", "reference", "pair", "must"),
    ("reference", "mppx", "pair", "must"),
    # mppx@0.6.31 (v1 only) against itself through the generic pair machine on our v1 escrow: it opens its own
    # channel on the harness's chain (conformance/chain_rpc.py); its expectations are mppx's (manifest name)
    ("mppx-v1", "mppx-v1", "pair", "must"),
]
MATRIX += MPPX_MATRIX


def _reason(props: dict) -> tuple:
    return tuple((p, "mppx 0.11.0 " + "; ".join(f"{f} {MPPX_FINDINGS[f][1]} ({MPPX_FINDINGS[f][0]})" for f in fs))
                 for p, fs in props.items())


for _k, _v in MPPX_KNOWN.items():
    KNOWN[_k] = _reason(_v)


def expected_findings(client: str, server: str, machine: str, strength: str = "must") -> set:
    """The finding ids a pair may show (each violation must be one of them)."""
    client, server = _driven(client, server, machine)
    return {f for fs in MPPX_KNOWN.get((client, server, machine, strength), {}).values() for f in fs}
