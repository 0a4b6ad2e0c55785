"""The deployments the checker explores, each with what it claims.

A scenario either claims that every applicable property holds, or it is a
*known limit*: it names the property it is expected to break and why, so the
limit is stated and shown rather than hidden (SPEC_NOTES, "Known limits").
"""
from __future__ import annotations

import attrs

from . import deviations
from .client import ClientConfig
from .server import ServerConfig, ServerRules
from .system import Config

ALICE, BOB = "0xa11ce", "0xb0b"
PAYEE = "0x5e7e"


@attrs.frozen
class Scenario:
    name: str
    config: Config
    depth: int = 8
    expect: str | None = None  # None: no violation; else the property id a known limit breaks
    why: str = ""


def _server(price: int, hinted=True, hint_encoding="snapshot", **kw) -> ServerConfig:
    return ServerConfig(payee=PAYEE, price=price, hinted=hinted, hint_encoding=hint_encoding, **kw)


def _clients(hinted=(True, True), shared=False, persist=False, deposit=4, keys=(True, True),
             max_price=None, **kw) -> tuple[ClientConfig, ...]:
    payers = (ALICE, ALICE) if shared else (ALICE, BOB)
    names = ("alice", "alice2") if shared else ("alice", "bob")
    return tuple(ClientConfig(name=n, payer=p, hinted=h, persist=persist, deposit=deposit, use_keys=k,
                              max_price=max_price, **kw)
                 for n, p, h, k in zip(names, payers, hinted, keys))


ALL_FAULTS = ("none", "hold_request", "hold_response")


def scenarios(price: int) -> list[Scenario]:
    p = price
    out = [
        Scenario(f"snapshot hints, faults p={p}", Config(
            _server(p), _clients(shared=True, keys=(True, False)), fleet="hinted", faults=ALL_FAULTS,
            duplicates=True, late_responses=True, restarts=True)),
        Scenario(f"snapshot hints, lifecycle p={p}", Config(
            _server(p), _clients(shared=True), fleet="hinted", settle=True, top_up=True, close=True,
            forced_close=True, head=True, restarts=True, server_restarts=True)),
        Scenario(f"flat hints, persisted, faults p={p}", Config(
            _server(p, hint_encoding="flat"), _clients(persist=True), fleet="hinted", faults=ALL_FAULTS,
            duplicates=True, late_responses=True, restarts=True, settle=True)),
        Scenario(f"rollout mix p={p}", Config(
            _server(p), _clients(keys=(True, False)), fleet="mixed", faults=ALL_FAULTS, duplicates=True,
            late_responses=True, restarts=True)),
        Scenario(f"lying server p={p}", Config(
            _server(p), _clients(max_price=p), fleet="hinted", lying_server=True, restarts=True)),
        Scenario(f"third party p={p}", Config(
            _server(p), _clients(shared=True), fleet="hinted", attacker=True, settle=True, restarts=True,
            top_up=True, close=True, head=True), depth=7),
        Scenario(f"third party, faults p={p}", Config(
            _server(p), _clients(shared=True, keys=(True, False)), fleet="hinted", attacker=True, settle=True,
            faults=ALL_FAULTS, restarts=True), depth=5),
        Scenario(f"UA1 off: proof to anyone p={p}", Config(
            _server(p, rules=ServerRules(discloses=deviations.discloses_to_anyone)), _clients(shared=True), fleet="hinted", attacker=True),
            expect="TP2", why="a server that gives the highest voucher to whoever names the payer (the draft's "
                              "snapshot, mppx) hands the third party a voucher that closes the channel (and, with "
                              "unspent authorization, buys content)"),
        Scenario(f"UA2 off: settled voucher spends p={p}", Config(
            _server(p, rules=ServerRules(buys_nothing=deviations.nothing_public)), _clients(shared=True), fleet="hinted", attacker=True,
            settle=True),
            expect="TP2", why="a settled voucher is public (the settle transaction carries it); a server that lets "
                              "it close the channel (GHSA-mv9j-8jvg-j8mr) lets anyone finalize the payer's channel"),
    ]
    for ch in (True, False):
        for sh in (True, False):
            out.append(Scenario(
                f"pair {'hinted' if ch else 'legacy'} client x {'hinted' if sh else 'legacy'} server p={p}",
                Config(_server(p, hinted=sh), _clients(hinted=(ch, ch)), fleet="hinted" if sh else "legacy",
                       settle=True, top_up=True)))
    out += [
        Scenario(f"K1 legacy client restart p={p}", Config(
            _server(p, hinted=False), _clients(hinted=(False, False), deposit=6), fleet="legacy", restarts=True,
            wallet=12),
            expect="L1", why="a restarted legacy client recovers from chain `settled`, which lags the server's "
                             "acceptedCumulative; its voucher settled + price is refused (V5) and without hints it cannot learn more"),
        Scenario(f"K2 flat hints without persistence p={p}", Config(
            _server(p, hint_encoding="flat"), _clients(), fleet="hinted", restarts=True),
            expect="L1", why="flat hints carry no voucher proof; after losing its memory the client may trust only "
                             "chain `settled` (H4), so an unsettled acceptedCumulative above settled + price is refused"),
        Scenario(f"K3 shared channel, legacy fleet p={p}", Config(
            _server(p, hinted=False), _clients(hinted=(True, True), shared=True, deposit=6), fleet="legacy",
            wallet=12),
            expect="L1", why="a second device of the same payer sees only channelId and recovers from `settled`, "
                             "behind what the first device had the server accept"),
        Scenario(f"K4 shared channel, flat hints p={p}", Config(
            _server(p, hint_encoding="flat"), _clients(shared=True, persist=True), fleet="hinted"),
            expect="R2", why="flat hints carry no proof: the second device never signed the first device's "
                             "vouchers, so rule H4 refuses to follow an acceptedCumulative it cannot verify (the snapshot's "
                             "highestVoucher, or an allowance max_unproven, lifts this)"),
    ]
    return out


def default_scenarios() -> list[Scenario]:
    return scenarios(1) + scenarios(2)
