"""The checker's symmetry reduction (not a rule: no party runs it).

Idempotency-Keys are opaque names, so two states that differ only in the names of
the live keys are one state: `canonical_keys` renumbers each client's live keys
1..k in order of issue (and its request counter to k), in the deployment's state and
in the checker's ghosts alike. `model.check.step` applies it after every transition
(`model.system.transition`), so the plain explorer, the optimized one and the
harness's model twin all see the same canonical states.
"""
from __future__ import annotations

import attrs


def parse_key(key, names) -> tuple[str, int] | None:
    """(client name, number) for the keys the model's clients issue (`name#n`); None for any other key."""
    if key is None or "#" not in key:
        return None
    name, n = key.rsplit("#", 1)
    return (name, int(n)) if name in names and n.isdigit() else None


def server_keys(server, names) -> tuple[tuple[str, int], ...]:
    """The clients' keys the server's idempotency table holds."""
    return tuple(p for (_, key), _ in server.idempotency if (p := parse_key(key, names)) is not None)


def charged_keys(charged, names) -> tuple[tuple[str, int], ...]:
    """The clients' keys of the ghost `charged_keys`."""
    return tuple(p for _, key in charged if (p := parse_key(key, names)) is not None)


def net_keys(net, names) -> tuple[tuple[str, int], ...]:
    """The clients' keys of the requests a network slot holds (the last one sent, one held back)."""
    return tuple(p for req in (net.last, net.held_request)
                 if req is not None and (p := parse_key(req.key, names)) is not None)


def live_keys(parts) -> dict[str, set[int]]:
    """name -> the numbers of its live keys, from the keys of each part (server, ghost, network slots)."""
    live: dict[str, set[int]] = {}
    for keys in parts:
        for name, n in keys:
            live.setdefault(name, set()).add(n)
    return live


def is_canonical(live: dict[str, set[int]], clients, client_names) -> bool:
    """Each client's live keys are 1..k and its request counter is k: nothing to renumber."""
    return (all(max(ns) == len(ns) for ns in live.values())
            and all(st.requests == len(live.get(name, ())) for st, name in zip(clients, client_names)))


def renaming(live: dict[str, set[int]]) -> dict[str, dict[int, int]]:
    """name -> {old number: new number}: each client's live keys renumbered 1..k in order of issue."""
    return {name: {old: new for new, old in enumerate(sorted(ns), 1)} for name, ns in live.items()}


def rename_key(key, ren, names):
    p = parse_key(key, names)
    return key if p is None else f"{p[0]}#{ren[p[0]][p[1]]}"


def rename_server(server, ren, names):
    """The server with the clients' keys of its idempotency table renamed."""
    idem = tuple(sorted((((cid, rename_key(k, ren, names)), v) for (cid, k), v in server.idempotency),
                        key=lambda kv: kv[0]))
    return attrs.evolve(server, idempotency=idem)


def rename_net(net, ren, names):
    """A network slot with the keys of the requests it holds renamed."""
    def rreq(req):
        return req if req is None or req.key is None else attrs.evolve(req, key=rename_key(req.key, ren, names))

    return attrs.evolve(net, last=rreq(net.last), held_request=rreq(net.held_request))


def rename_charged(charged, ren, names) -> frozenset:
    """The ghost `charged_keys` with the clients' keys renamed."""
    return frozenset((cid, rename_key(k, ren, names)) for cid, k in charged)


def recount(st, count: int):
    """A client's state with its request counter set to the number of its live keys."""
    return st if st.requests == count else attrs.evolve(st, requests=count)


def canonical_keys(s, g, client_names: tuple[str, ...]):
    """Symmetry reduction of an explored state (System `s`, Ghosts `g`): Idempotency-Keys are opaque names, so
    renumber each client's live keys 1..k in order of issue. Two states that differ only in key names are one."""
    names = set(client_names)
    live = live_keys([server_keys(s.server, names), charged_keys(g.charged_keys, names)]
                     + [net_keys(n, names) for n in s.net])
    if is_canonical(live, s.clients, client_names):
        return s, g
    ren = renaming(live)
    clients = tuple(recount(st, len(live.get(name, ()))) for st, name in zip(s.clients, client_names))
    keys_ok = all(max(ns) == len(ns) for ns in live.values())
    server = s.server if keys_ok else rename_server(s.server, ren, names)
    net = tuple(rename_net(n, ren, names) for n in s.net)
    charged = rename_charged(g.charged_keys, ren, names)
    return attrs.evolve(s, server=server, net=net, clients=clients), attrs.evolve(g, charged_keys=charged)
