"""The optimized explorer gives the plain explorer's answers (as EELS checks optimized
code against the spec): same states, transitions, verdicts and shortest counterexamples."""
import attrs
import pytest

from model import check, fastcheck
from model import first_draft as fd
from model.client import ClientRules
from model.scenarios import default_scenarios

SCENARIOS = {s.name: s for s in default_scenarios()}
DEPTH = 4  # small: the plain explorer is the slow anchor


def same_answer(cfg, depth):
    plain, fast = check.explore(cfg, depth), fastcheck.explore(cfg, depth)
    assert (fast.states, fast.transitions, fast.depth, fast.max_round_trips) == \
           (plain.states, plain.transitions, plain.depth, plain.max_round_trips)
    if plain.counterexample is None:
        assert fast.counterexample is None
    else:
        a, b = plain.counterexample, fast.counterexample
        assert b is not None and (b.property_id, b.message) == (a.property_id, a.message)
        assert b.trace == a.trace  # the replayed trace is the plain explorer's, step for step
    return plain


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_answer_on_every_scenario(name):
    same_answer(SCENARIOS[name].config, min(SCENARIOS[name].depth, DEPTH))


def with_clients(name, **kw):
    sc = SCENARIOS[name]
    return attrs.evolve(sc.config, clients=tuple(attrs.evolve(c, **kw) for c in sc.config.clients))


@pytest.mark.parametrize("cfg, depth", [
    (with_clients("rollout mix p=1", rules=ClientRules(amount=fd.sign_exactly_required)), 6),
    (with_clients("snapshot hints, lifecycle p=1", rules=ClientRules(follows_hints=fd.chain_after_restart)), 6),
    (with_clients("lying server p=1", rules=ClientRules(bound=fd.no_trust_bound)), 4),
], ids=["CM", "R2", "HB"])
def test_same_counterexample_for_planted_bugs(cfg, depth):
    plain = same_answer(cfg, depth)
    assert plain.counterexample is not None  # the comparison covers a violation, not only clean runs


def test_cli_runs_either_explorer(capsys):
    assert check.main(["--depth", "2", "--scenario", "pair hinted client x hinted", "--jobs", "1", "--quiet"]) == 0
    fast = capsys.readouterr().out
    assert check.main(["--depth", "2", "--scenario", "pair hinted client x hinted", "--jobs", "1", "--quiet",
                       "--plain"]) == 0
    plain = capsys.readouterr().out
    counts = lambda out: [line.split("states/s")[0].rsplit("transitions", 1)[0] for line in out.splitlines()[:2]]
    assert counts(fast) == counts(plain)


def test_transitions_are_reused(monkeypatch):
    """The optimized explorer applies the rules fewer times than it explores transitions (the memo is
    used), and still gives the plain explorer's counts (test_same_answer_on_every_scenario)."""
    calls = []
    real = fastcheck.transition
    monkeypatch.setattr(fastcheck, "transition", lambda *a: calls.append(1) or real(*a))
    res = fastcheck.explore(SCENARIOS["rollout mix p=1"].config, 4)
    assert 0 < len(calls) < res.transitions


def test_canonical_test_agrees_with_the_reduction():
    """symmetry.is_canonical (what fastcheck tests per component) says 'nothing to renumber' exactly when
    canonical_keys leaves a raw successor (and its ghosts) as it is."""
    from model import ghosts
    from model import symmetry as sym
    from model.system import actions, transition

    cfg = SCENARIOS["snapshot hints, faults p=1"].config
    names = tuple(c.name for c in cfg.clients)
    level, seen, renumbered = [check.start(cfg)], set(), 0
    for _ in range(3):
        nxt = []
        for s, g in level:
            for act in actions(cfg, s):
                raw, info = transition(cfg, s, act)
                rg = ghosts.observe(g, info)
                live = sym.live_keys([sym.server_keys(raw.server, set(names)), sym.charged_keys(rg.charged_keys, set(names))]
                                     + [sym.net_keys(n, set(names)) for n in raw.net])
                canon = sym.canonical_keys(raw, rg, names)
                unchanged = canon[0] is raw and canon[1] is rg
                assert sym.is_canonical(live, raw.clients, names) == unchanged
                renumbered += not unchanged
                if canon not in seen:
                    seen.add(canon)
                    nxt.append(canon)
        level = nxt
    assert renumbered  # the comparison covers states the reduction changes


def test_component_renaming_is_the_reduction():
    """fastcheck renames a state component by component (cached per renaming); the result is the encoding of
    symmetry.canonical_keys of the whole state, on every state that needs renumbering within depth 4."""
    from model import symmetry as sym

    cfg = SCENARIOS["snapshot hints, faults p=1"].config
    space = fastcheck._Space(cfg)
    level, checked = [space.encode(*check.start(cfg))], 0
    for _ in range(4):
        nxt = []
        for e in level:
            s, g = space.decode(e)
            for act in fastcheck.actions(cfg, s):
                (ns, ng), ne, _ = space.successor(s, e, act)
                nxt.append(ne)
        for raw in list(space.canonical):
            want = space.encode(*sym.canonical_keys(*space.decode(raw), space.names))
            assert space.canonical_encoding(raw) == want
            checked += 1
        level = list(dict.fromkeys(nxt))
    assert checked  # states the reduction renumbers were compared
