"""The checker's symmetry reduction (not a rule: no party runs it).

Idempotency-Keys are opaque names, so two states that differ only in the names of
the live keys are one state: `canonical_keys` renumbers each client's live keys
1..k in order of issue (and its request counter to k). `model.system.step` applies
it after every transition (`model.system.transition`), so the plain explorer, the
optimized one and the harness's model twin all see the same canonical states.
"""
from __future__ import annotations

import attrs


def canonical_keys(s, client_names: tuple[str, ...]):
    """Symmetry reduction: Idempotency-Keys are opaque names, so renumber each client's
    live keys 1..k in order of issue. Two states that differ only in key names are one."""
    live: dict[str, set[int]] = {}
    names = set(client_names)

    def parse(key):
        """(client name, number) for the keys the model's clients issue; None for any other key."""
        if key is None or "#" not in key:
            return None
        name, n = key.rsplit("#", 1)
        return (name, int(n)) if name in names and n.isdigit() else None

    def note(key):
        p = parse(key)
        if p is not None:
            live.setdefault(p[0], set()).add(p[1])

    for (_, key), _ in s.server.idempotency:
        note(key)
    for _, key in s.charged_keys:
        note(key)
    for n in s.net:
        for req in (n.last, n.held_request):
            if req is not None:
                note(req.key)
    ren = {name: {old: new for new, old in enumerate(sorted(ns), 1)} for name, ns in live.items()}

    def rk(key):
        p = parse(key)
        return key if p is None else f"{p[0]}#{ren[p[0]][p[1]]}"

    def rreq(req):
        return req if req is None or req.key is None else attrs.evolve(req, key=rk(req.key))

    keys_ok = all(max(ns) == len(ns) for ns in live.values())
    order = client_names
    counts = {name: len(ns) for name, ns in live.items()}
    if keys_ok and all(st.requests == counts.get(name, 0) for st, name in zip(s.clients, order)):
        return s
    clients = tuple(st if st.requests == counts.get(name, 0) else attrs.evolve(st, requests=counts.get(name, 0))
                    for st, name in zip(s.clients, order))
    server = s.server
    if not keys_ok:
        idem = tuple(sorted((((cid, rk(k)), v) for (cid, k), v in server.idempotency), key=lambda kv: kv[0]))
        server = attrs.evolve(server, idempotency=idem)
    net = tuple(attrs.evolve(n, last=rreq(n.last) if n.last and n.last.key else n.last,
                             held_request=rreq(n.held_request) if n.held_request and n.held_request.key
                             else n.held_request) for n in s.net)
    charged = frozenset((cid, rk(k)) for cid, k in s.charged_keys)
    return attrs.evolve(s, server=server, net=net, clients=clients, charged_keys=charged)
