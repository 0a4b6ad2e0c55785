"""The optimized explorer: the same breadth-first search as `model.check.explore`,
with the work of the hot loop shared between transitions. It explores exactly the
same states in the same order, so state counts, transition counts, verdicts and the
shortest counterexample are the plain explorer's (tests/test_fastcheck.py checks
this against `model.check.explore`, the executable statement of the search, on
every scenario at small depths and on planted bugs).

Why a separate module and not a faster `explore`: the plain explorer stays the
obvious reading of the search, the anchor of `make bench` and of the test; this
one is what `python -m model.check` runs. The rules (`model/server.py`,
`model/client.py`, `model/system.py`) are not touched by any of this.

What the profile showed (cProfile, `rollout mix p=1`, depth 4, 6,309 transitions):
70% of the time is `check.step`, i.e. the rules (`attrs.evolve` 25%,
`server.handle` twice per delivery for B1 22%, the symmetry reduction 17%), then
deep hashing of `System` (151,562 `hash` calls for 6,310 look-ups, 9%) and the
property checks. Counting inputs (depth 5): 43,520 `server.handle` calls had only
710 distinct (server, chain, request, hint mode) arguments, and 34,440 transitions
only 13,563 distinct projections (chain, server, the acting client's state, its
network slot, the action; then also its own-signed ghost and the shared ghosts):
a client's action never reads another client's state, and no rule reads a ghost
(`model.ghosts`: they are advanced from the StepInfo, once per distinct report). So:

- **compact canonical encoding**: an explored state (System, Ghosts) is a tuple of
  small ints, one per component (chain, server, the third party's loot, each client,
  each network slot, each own-signed ghost, the shared ghosts), each component
  interned once by value (`_Interner`);
  the visited set hashes int tuples, not nested records, and a component carried
  over unchanged from the parent is found by identity, never re-hashed;
- **transition memo**: a client's action is applied once per distinct projection;
  other states with the same projection reuse the result (the other clients'
  components are taken from the state at hand). Actions of no client (settle,
  time, server restart, the third party's replays) run every time;
- **server memo**: `server.handle` (including the second call property B1 makes)
  is answered once per distinct (server, chain, request, hint mode);
- the properties that apply to the deployment are chosen once, not per transition;
  a state keeps only its parent's number and the action that reached it (the trace
  is rebuilt on a violation by replaying the actions: `step` is a pure function).

The symmetry reduction (`model.symmetry.canonical_keys`) is applied to every
successor exactly as `model.check.step` applies it. Partial-order reduction is not
used: it would change the state and transition counts this module must reproduce.
"""
from __future__ import annotations

import time

from . import ghosts
from . import server as sv
from .check import Counterexample, Result, start, step
from .ghosts import Ghosts
from .properties import PROPERTIES, b1_other_mode
from . import symmetry as sym
from .system import Act, Config, System, actions, transition


def _applicable(cfg: Config, props) -> tuple[list, list]:
    """(state checks, step checks) of the properties claimed for this deployment, as (id, fn)."""
    state = [(p.id, p.state) for p in props if p.state is not None and p.applies(cfg)]
    steps = [(p.id, p.step) for p in props if p.step is not None and p.applies(cfg)]
    return state, steps


def _replay(cfg: Config, acts: list[Act]) -> tuple:
    """The trace (act, StepInfo) of a path of actions from the initial state."""
    (s, g), out = start(cfg), []
    for act in acts:
        s, g, info = step(cfg, s, g, act)
        out.append((act, info))
    return tuple(out)


class _Interner:
    """Numbers values: equal values get one number and one canonical object. Canonical
    objects are also found by identity (the common case: a component carried over
    unchanged), so they are hashed once, when first seen."""

    def __init__(self) -> None:
        self.by_value: dict = {}
        self.by_id: dict[int, int] = {}
        self.objects: list = []

    def number(self, obj) -> int:
        n = self.by_id.get(id(obj))
        if n is not None:
            return n
        n = self.by_value.get(obj)
        if n is None:
            n = len(self.objects)
            self.by_value[obj] = n
            self.objects.append(obj)  # kept alive, so its id stays its own
            self.by_id[id(obj)] = n
        return n


class _Space:
    """The encoding of explored states (System, Ghosts) as int tuples:
    (chain, server, shared ghosts, loot, client_0..client_k-1, net_0.., own_0..), where the shared ghosts are
    (signed, served_value, lost_requests, charged_keys) and own_i is client i's own-signed ghost."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.k = len(cfg.clients)
        self.names = tuple(c.name for c in cfg.clients)
        self.parts = _Interner()
        self.memo: dict = {}
        self.handled: dict = {}
        self.observed: dict = {}  # (ghost components, what a step reported) -> the ghost components after it
        self.canonical: dict = {}  # raw successor's encoding -> (canonical successor, its encoding)
        self.canonical_test: dict = {}  # (keys of each component, request counters) -> symmetry.is_canonical
        self.keysets = _Interner()  # the clients' keys a component holds, numbered
        self.request_counts: dict = {}  # client component -> its request counter
        self.renamed: dict = {}  # (kind, component, renaming) -> the renamed component
        self.name_set = set(self.names)
        self.server_keys: dict = {}  # component number -> the clients' keys it holds (model.symmetry)
        self.ghost_keys: dict = {}
        self.net_keys: dict = {}
        self.states: dict = {}  # canonical encoding -> the (System, Ghosts) it decodes to (built once)

    def encode(self, s: System, g: Ghosts) -> tuple[int, ...]:
        n = self.parts.number
        shared, *own = self._encode_ghosts(g)
        return ((n(s.chain), n(s.server), shared, n(s.loot))
                + tuple(n(c) for c in s.clients) + tuple(n(x) for x in s.net) + tuple(own))

    def decode(self, e: tuple[int, ...]) -> tuple[System, Ghosts]:
        o, k = self.parts.objects, self.k
        s = System(o[e[0]], o[e[1]], tuple(o[x] for x in e[4:4 + k]), tuple(o[x] for x in e[4 + k:4 + 2 * k]),
                   o[e[3]])
        return s, self._decode_ghosts(e)

    def _encode_ghosts(self, g: Ghosts) -> tuple[int, ...]:
        """The ghost components: (shared ghosts, own_0, own_1, ...)."""
        n = self.parts.number
        return (n((g.signed, g.served_value, g.lost_requests, g.charged_keys)),) + tuple(n(x) for x in g.own_signed)

    def _decode_ghosts(self, e: tuple[int, ...]) -> Ghosts:
        o = self.parts.objects
        signed, served, lost, charged = o[e[2]]
        return Ghosts(signed, tuple(o[x] for x in e[4 + 2 * self.k:]), served, lost, charged)

    def observe(self, e: tuple[int, ...], info) -> tuple[int, ...]:
        """The ghost components of `e` after a step that reported `info` (`model.ghosts.observe`), once per
        distinct (ghosts, report)."""
        k = self.k
        mine = (e[2],) + e[4 + 2 * k:]
        report = (info.signatures, info.charged, info.keyed_charges, info.held_requests, info.forgot)
        key = (mine, report)
        out = self.observed.get(key)
        if out is None:
            out = self.observed[key] = self._encode_ghosts(ghosts.observe(self._decode_ghosts(e), info))
        return out

    def handle(self, cfg, server, chain, req, hinted):
        """`server.handle`, answered once per distinct input (it is a pure function)."""
        n = self.parts.number
        key = (n(server), n(chain), req, hinted)
        out = self.handled.get(key)
        if out is None:
            new_server, new_chain, resp = sv.handle(cfg, server, chain, req, hinted)
            out = (self.parts.objects[n(new_server)], self.parts.objects[n(new_chain)], resp)
            self.handled[key] = out
        return out

    def _keys(self, table: dict, n: int, of) -> int:
        """The number of the clients' keys component `n` holds (`of` finds them once per component)."""
        ks = table.get(n)
        if ks is None:
            ks = table[n] = self.keysets.number(of(self.parts.objects[n], self.name_set))
        return ks

    def _requests(self, n: int) -> int:
        """The request counter of client component `n`."""
        r = self.request_counts.get(n)
        if r is None:
            r = self.request_counts[n] = self.parts.objects[n].requests
        return r

    def live(self, e: tuple[int, ...]) -> dict:
        """`symmetry.live_keys` of the state `e`, from the clients' keys of each component (found once per
        component)."""
        return sym.live_keys([self.keysets.objects[ks] for ks in self._keysets(e)])

    def _keysets(self, e: tuple[int, ...]) -> list[int]:
        k = self.k
        return ([self._keys(self.server_keys, e[1], sym.server_keys),
                 self._keys(self.ghost_keys, e[2], lambda g, names: sym.charged_keys(g[3], names))]
                + [self._keys(self.net_keys, x, sym.net_keys) for x in e[4 + k:4 + 2 * k]])

    def keys_canonical(self, e: tuple[int, ...]) -> bool:
        """`symmetry.is_canonical` of the state `e`, once per distinct (keys of each component, request
        counters)."""
        k = self.k
        key = tuple(self._keysets(e)) + tuple(self._requests(x) for x in e[4:4 + k])
        ok = self.canonical_test.get(key)
        if ok is None:
            o = self.parts.objects
            ok = self.canonical_test[key] = sym.is_canonical(self.live(e), [o[x] for x in e[4:4 + k]], self.names)
        return ok

    def _renamed(self, kind: str, n: int, ren_id, fn) -> int:
        """Component `n` renamed by a renaming (`ren_id` its frozen form), once per (component, renaming)."""
        key = (kind, n, ren_id)
        out = self.renamed.get(key)
        if out is None:
            out = self.renamed[key] = self.parts.number(fn(self.parts.objects[n]))
        return out

    def canonical_encoding(self, e: tuple[int, ...]) -> tuple[int, ...]:
        """The encoding of `symmetry.canonical_keys` of the state `e`, component by component (each component
        renamed once per renaming; the same functions of model.symmetry)."""
        k, o, names = self.k, self.parts.objects, self.name_set
        live = self.live(e)
        ren = sym.renaming(live)
        rid = tuple(sorted((name, tuple(sorted(m.items()))) for name, m in ren.items()))
        keys_ok = all(max(ns) == len(ns) for ns in live.values())
        server = e[1] if keys_ok else self._renamed("server", e[1], rid, lambda v: sym.rename_server(v, ren, names))
        shared = self._renamed("ghosts", e[2], rid,
                               lambda v: (v[0], v[1], v[2], sym.rename_charged(v[3], ren, names)))
        clients = tuple(self.parts.number(sym.recount(o[x], len(live.get(name, ()))))
                        for x, name in zip(e[4:4 + k], self.names))
        nets = tuple(self._renamed("net", x, rid, lambda v: sym.rename_net(v, ren, names)) for x in e[4 + k:4 + 2 * k])
        return (e[0], server, shared, e[3]) + clients + nets + e[4 + 2 * k:]

    def successor(self, s: System, e: tuple[int, ...], act: Act):
        """(canonical successor (System, Ghosts), its encoding, StepInfo): what `model.check.step` gives.
        The rules never read the ghosts, so a client's action is memoized on its projection without them and
        the ghosts are advanced from the StepInfo."""
        i, k = act.client, self.k
        if i < 0 or act.kind.startswith("attack_"):
            raw, info = transition(self.cfg, s, act, self.handle, b1_other_mode)
            re = self.encode_rules(raw, e)
        else:
            ci, ni = 4 + i, 4 + k + i
            key = (act, e[0], e[1], e[3], e[ci], e[ni])
            hit = self.memo.get(key)
            if hit is None:
                raw, info = transition(self.cfg, s, act, self.handle, b1_other_mode)
                re = self.encode_rules(raw, e)
                if all(re[j] == e[j] for j in range(4, 4 + 2 * k) if j not in (ci, ni)):
                    # the action changed only its projection: reusable on every state with the same projection
                    self.memo[key] = (re[0], re[1], re[3], re[ci], re[ni], info)
            else:
                ch, srv, loot, c, net, info = hit
                re = list(e)
                re[0], re[1], re[3], re[ci], re[ni] = ch, srv, loot, c, net
                re = tuple(re)
        g = self.observe(e, info)
        re = (re[0], re[1], g[0], re[3]) + re[4:4 + 2 * k] + g[1:]
        if self.keys_canonical(re):  # the symmetry reduction would change nothing (the common case)
            nxt = self.states.get(re)
            if nxt is None:
                nxt = self.states[re] = self.decode(re)
            return nxt, re, info
        got = self.canonical.get(re)
        if got is None:  # the symmetry reduction, once per distinct raw successor that needs it
            ne = self.canonical_encoding(re)
            nxt = self.states.get(ne)
            if nxt is None:
                nxt = self.states[ne] = self.decode(ne)
            got = self.canonical[re] = (nxt, ne)
        return got[0], got[1], info

    def encode_rules(self, raw: System, e: tuple[int, ...]) -> tuple[int, ...]:
        """The encoding of a successor's System, with the ghost components of `e` (advanced later)."""
        n, k = self.parts.number, self.k
        return ((n(raw.chain), n(raw.server), e[2], n(raw.loot)) + tuple(n(c) for c in raw.clients)
                + tuple(n(x) for x in raw.net) + e[4 + 2 * k:])


def explore(cfg: Config, depth: int, props=PROPERTIES, stop_at_first: bool = True) -> Result:
    """Breadth-first to `depth`; the same answer as `model.check.explore`."""
    began = time.perf_counter()
    state_checks, step_checks = _applicable(cfg, props)
    space = _Space(cfg)
    e0 = space.encode(*start(cfg))
    s0, g0 = space.decode(e0)  # built from canonical components
    index: dict[tuple, int] = {e0: 0}
    parent: list[int] = [-1]
    via: list[Act | None] = [None]

    def path_to(n: int) -> list[Act]:
        out = []
        while parent[n] >= 0:
            out.append(via[n])
            n = parent[n]
        return out[::-1]

    def first_state_violation(s: System, g: Ghosts):
        for pid, fn in state_checks:
            v = fn(cfg, s, g)
            if v:
                return pid, v
        return None

    bad = first_state_violation(s0, g0)
    if bad:
        return Result(1, 0, time.perf_counter() - began, 0, Counterexample(*bad, ()), 0)
    transitions, max_rt = 0, 0
    level: list[tuple[System, Ghosts, tuple, int]] = [(s0, g0, e0, 0)]
    for d in range(depth):
        nxt_level: list[tuple[System, Ghosts, tuple, int]] = []
        for s, g, e, n in level:
            for act in actions(cfg, s):
                (nxt, ng), ne, info = space.successor(s, e, act)
                transitions += 1
                if info.round_trips > max_rt:
                    max_rt = info.round_trips
                bad = None
                for pid, fn in step_checks:
                    v = fn(cfg, s, g, info, nxt)
                    if v:
                        bad = (pid, v)
                        break
                seen = index.get(ne)
                if bad is None and seen is None:
                    bad = first_state_violation(nxt, ng)
                if bad is not None:
                    trace = _replay(cfg, path_to(n) + [act])
                    return Result(len(index), transitions, time.perf_counter() - began, d + 1,
                                  Counterexample(bad[0], bad[1], trace), max_rt)
                if seen is None:
                    m = len(parent)
                    index[ne] = m
                    parent.append(n)
                    via.append(act)
                    nxt_level.append((nxt, ng, ne, m))
        if not nxt_level:
            break
        level = nxt_level
    return Result(len(index), transitions, time.perf_counter() - began, depth, None, max_rt)
