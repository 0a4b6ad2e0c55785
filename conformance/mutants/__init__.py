"""Known-bad implementations, kept so that the suite proves it catches each bug.

Server mutants subclass the reference server (adapters/reference/server.py) and change one
rule; client mutants plant one of the first draft's bugs through the model client's
swappable rules (model/client.py ClientRules). Each names the property it breaks.
`python -m conformance mutants` must kill every one of them.
"""
from __future__ import annotations

from typing import Callable

import attrs

from .clients import (chain_after_restart_client, deposit_drain_client, forgets_live_channel_client,
                      ignores_domain_client, keeps_paying_client, overwrite_view_client, pays_any_price_client,
                      refuses_head_client, signs_ahead_client, signs_below_own_client, sulks_after_gone_client,
                      tops_up_short_client)
from .servers import (accepts_above_deposit_server, accepts_high_s_server, accepts_lower_server,
                      accepts_while_closing_server, charges_head_server, close_captures_settled_server,
                      close_captures_voucher_server, discloses_proof_server, settled_voucher_spends_server,
                      free_replay_server, hints_closing_server, ignores_idempotency_key_server,
                      racy_charge_server, racy_close_server, racy_idempotency_server,
                      required_spent_plus_price_server, skips_challenge_binding_server, trusts_source_server)
from .servers import adopt_trusts_credential_server, legacy_refuses_equal_server, loses_orphan_server
from .servers import settle_not_mirrored_server, topup_not_mirrored_server
from .servers import close_no_signer_check_server, replay_skips_signer_server
from .servers import bodiless_post_free_server
from .clients import bound_extra_price_client, proof_signer_unchecked_client


@attrs.frozen
class Mutant:
    name: str
    side: str  # "server" | "client"
    breaks: str  # the property it is expected to break
    why: str
    make: Callable
    partner: str  # the bundled implementation on the other side
    machines: tuple = ("pair",)
    hinted: bool = True
    # the strength whose properties the bug breaks: "strict" for a deviation from the model's reading that no
    # draft MUST forbids (SPEC_NOTES "stale hints"); the mutants command runs it in that strength
    strength: str = "must"


MUTANTS: dict[str, Mutant] = {m.name: m for m in [
    Mutant("server-accepts-lower-voucher", "server", "SV",
           "answers 200 to a voucher below its acceptedCumulative (voucher rule V5)",
           accepts_lower_server, "model", ("server",)),
    Mutant("server-accepts-above-deposit", "server", "S2",
           "accepts a voucher above the on-chain deposit (V4): acceptedCumulative > deposit",
           accepts_above_deposit_server, "model", ("server",)),
    Mutant("server-charges-head", "server", "S6",
           "charges HEAD / management requests the price (C3)", charges_head_server, "model", ("pair", "server")),
    Mutant("server-free-replay", "server", "S6",
           "serves content without charging when a voucher is replayed without an Idempotency-Key",
           free_replay_server, "model", ("pair", "server")),
    Mutant("server-hints-closing-channel", "server", "SH",
           "hints a channel whose close is pending (S-H1)", hints_closing_server, "model", ("server",)),
    Mutant("server-required-spent-plus-price", "server", "SH",
           "requiredCumulative = spent + price, without max(acceptedCumulative, .) (S-H2)",
           required_spent_plus_price_server, "model", ("server", "pair")),
    Mutant("server-accepts-high-s", "server", "SV",
           "normalizes a high-s signature instead of refusing it (draft Signature Malleability; mppx 0.11)",
           accepts_high_s_server, "model", ("server",)),
    Mutant("server-close-captures-voucher", "server", "S7",
           "close captures the close voucher's whole amount instead of max(spent, settled) (X2)",
           close_captures_voucher_server, "model", ("server", "pair")),
    Mutant("server-accepts-while-closing", "server", "SV",
           "accepts vouchers while a forced close is pending (V3)",
           accepts_while_closing_server, "model", ("server", "pair")),
    Mutant("server-ignores-idempotency-key", "server", "D3",
           "charges a request repeated with the same Idempotency-Key again (I1; mppx 0.11)",
           ignores_idempotency_key_server, "model", ("pair", "server")),
    Mutant("server-discloses-proof-to-anyone", "server", "TP2",
           "gives the highest voucher's signature to whoever names the payer (rule UA1): a third party closes "
           "the channel with it, or is served on unspent authorization", discloses_proof_server, "model", ("server",)),
    Mutant("server-settled-voucher-spends", "server", "TP2",
           "lets a voucher at or below settled (public on chain) close the channel and buy content (rule UA2; "
           "GHSA-mv9j-8jvg-j8mr)", settled_voucher_spends_server, "model", ("server",)),
    Mutant("client-signs-below-own", "client", "CM",
           "signs exactly requiredCumulative even below what it already signed (H3b)",
           signs_below_own_client, "model", ("client", "pair")),
    Mutant("client-overwrites-view", "client", "RM",
           "overwrites its view from a stale lower receipt (R1: reconcile by max)",
           overwrite_view_client, "model", ("client",)),
    Mutant("client-chain-after-restart", "client", "HT",
           "after a restart recovers from chain `settled` although the server hinted (H1-H2)",
           chain_after_restart_client, "reference", ("pair",)),
    Mutant("server-skips-challenge-binding", "server", "SV",
           "accepts a credential whose echoed challenge request was altered (httpauth Challenge Binding)",
           skips_challenge_binding_server, "model", ("server",)),
    Mutant("server-trusts-source", "server", "SV",
           "refuses a valid voucher whose informational `source` names someone else (wire variance)",
           trusts_source_server, "model", ("server",)),
    Mutant("server-bodiless-post-free", "server", "SV",
           "serves a paid POST with an empty body (Content-Length: 0) like a HEAD: accepted, not charged",
           bodiless_post_free_server, "model", ("server",)),
    Mutant("server-close-captures-settled", "server", "CX",
           "close captures only the settled amount, not max(spent, settled) (X2): the payer gets back what it "
           "was served", close_captures_settled_server, "model", ("pair", "server")),
    Mutant("server-racy-charge", "server", "LZ",
           "no per-channel lock and a per-request copy of the record: two charges at once charge from one spent, a "
           "topUp racing a voucher writes the old accounting back (lost updates)",
           racy_charge_server, "model", ("server", "pair")),
    Mutant("server-racy-idempotency", "server", "LZ",
           "no per-channel lock, Idempotency-Key checked only before the write: a retry racing its original is "
           "charged again", racy_idempotency_server, "model", ("server", "pair")),
    Mutant("server-racy-close", "server", "LZ",
           "no per-channel lock: a close captures the spent it read when it began, a charge committed meanwhile is "
           "served and never captured", racy_close_server, "model", ("server", "pair")),
    Mutant("client-signs-ahead", "client", "HF",
           "signs one price above max(requiredCumulative, its floor) (H3): pays ahead of the server's target",
           signs_ahead_client, "model", ("client", "pair")),
    Mutant("client-refuses-head", "client", "LV",
           "never pays for HEAD (it treats HEAD as free): HEAD requests never complete",
           refuses_head_client, "model", ("pair", "client")),
    Mutant("client-deposit-drain", "client", "HB",
           "signs requiredCumulative without the trust bound (H4): a lying server drains the deposit",
           deposit_drain_client, "model", ("client",)),
    Mutant("client-pays-any-price", "client", "XP",
           "pays whatever price a challenge asks (no H6): a lying server's price multiplies what one request signs",
           pays_any_price_client, "model", ("client",)),
    Mutant("client-keeps-paying", "client", "XP",
           "no retry budget: keeps paying a server that takes vouchers and answers 402 (until the deposit is gone)",
           keeps_paying_client, "model", ("client",)),
    Mutant("client-forgets-live-channel", "client", "ST",
           "forgets a channel on a 410 without asking the chain (G1): a lying 410 strands the deposit",
           forgets_live_channel_client, "model", ("client",)),
    Mutant("client-ignores-domain", "client", "DM",
           "signs for a challenge naming another escrow contract or chainId (H7)",
           ignores_domain_client, "model", ("client",)),
    Mutant("client-sulks-after-gone", "client", "LL",
           "after any 410 refuses every later request: never pays the honest server again after a lie",
           sulks_after_gone_client, "model", ("client",)),
    Mutant("client-tops-up-short", "client", "TU",
           "tops up only its configured amount when the charge needs more (H5b): the channel stays short of the "
           "charge the top-up was made for", tops_up_short_client, "model", ("client", "pair")),
    Mutant("server-loses-orphan", "server", "CR",
           "no adopt path: a channel opened on chain while the server crashed before committing its record is "
           "answered 410 channel-not-found ever after (an orphaned deposit)", loses_orphan_server, "model",
           ("server", "pair")),
    Mutant("server-adopt-trusts-credential", "server", "S6",
           "adopts an orphaned channel with the credential's voucher as accepted and spent, instead of the chain's "
           "settled amount: it charges what it never served", adopt_trusts_credential_server, "model",
           ("server", "pair")),
    Mutant("server-legacy-refuses-equal", "server", "B1",
           "its legacy configuration refuses a voucher equal to acceptedCumulative (V6) that its hinted one accepts: "
           "the two modes diverge on one credential", legacy_refuses_equal_server, "model", ("server",)),
    Mutant("server-topup-not-mirrored", "server", "SH",
           "hints the deposit of the open after a topUp, even once it verified vouchers against the larger "
           "deposit (SPEC_NOTES stale hints: a `must`)", topup_not_mirrored_server, "model", ("server",)),
    Mutant("server-settle-not-mirrored", "server", "SH",
           "keeps the settled amount of the open in its record and snapshot after its own settle (SPEC_NOTES "
           "stale hints: `strict` only)", settle_not_mirrored_server, "model", ("server",), strength="strict"),
    Mutant("server-close-no-signer-check", "server", "TP2",
           "checks a close voucher's amount but not its signer (X1) and closes with its own highest voucher: a "
           "third party's close signed by its own key finalizes the payer's channel", close_no_signer_check_server,
           "model", ("server",)),
    Mutant("server-replay-skips-signer", "server", "SV",
           "skips signature verification on a voucher equal to acceptedCumulative (the V6/I1 replay path): a "
           "voucher at accepted signed by another key buys content on unspent authorization",
           replay_skips_signer_server, "model", ("server",)),
    Mutant("client-proof-signer-unchecked", "client", "HB",
           "takes a hint's highestVoucher as proof without recovering its signer (H3/H4): a lying server's proof "
           "signed by another key makes it sign the whole deposit", proof_signer_unchecked_client, "model",
           ("client",)),
    Mutant("client-bound-extra-price", "client", "HB",
           "its trust bound (H4) allows one price more than proven floor + price + allowance: a hint one price "
           "above the bound is signed", bound_extra_price_client, "model", ("client",)),
]}
