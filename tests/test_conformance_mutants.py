"""Every known-bad implementation in conformance/mutants is killed by the quick profile, on a v1 deployment (the
memory escrow) and on a v2 deployment (memory-v2), on seed 0 or, failing that, seed 1. The quick budget is a
regression guard for `make test`: which steps Hypothesis draws moves whenever a rule or weight is added, so a
mutant whose kill needs one rare step may need the second seed; the budget the issue sets (every mutant on seeds
0-4 with `--profile ci`) is measured by `python -m conformance mutants --profile ci --seed N`."""
from __future__ import annotations

import pytest

from conformance.__main__ import main
from conformance.mutants import MUTANTS


@pytest.mark.parametrize("chain", ["memory", "memory-v2"])
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_killed(name, chain, capsys, tmp_path):
    outs = []
    for seed in ("0", "1"):
        code = main(["mutants", "--profile", "quick", "--chain", chain, "--seed", seed, "--only", name,
                     "--trace-dir", str(tmp_path)])
        out = capsys.readouterr().out
        outs.append(out)
        if code == 0 and "killed" in out and "SURVIVED" not in out:
            return
    raise AssertionError("\n".join(outs))


def test_mutant_kill_names_the_broken_property(tmp_path):
    from conformance.harness import RunConfig
    from conformance.runner import run_pair

    r = run_pair(RunConfig(client="model", server="mutant:server-accepts-above-deposit"), "mutants", "server",
                 trace_dir=str(tmp_path), shrink=False)
    assert not r.ok
    assert r.properties["S2"] == "VIOLATED"
