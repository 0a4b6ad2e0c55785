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
    (with_clients("hinted-v2 lifecycle p=1", rules=ClientRules(follows_hints=fd.chain_after_restart)), 6),
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
