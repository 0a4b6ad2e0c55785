"""Every known-bad implementation in conformance/mutants is killed by the quick profile, on a v1 deployment (the
memory escrow) and on a v2 deployment (memory-v2)."""
from __future__ import annotations

import pytest

from conformance.__main__ import main
from conformance.mutants import MUTANTS


@pytest.mark.parametrize("chain", ["memory", "memory-v2"])
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_killed(name, chain, capsys, tmp_path):
    code = main(["mutants", "--profile", "quick", "--chain", chain, "--only", name, "--trace-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "killed" in out and "SURVIVED" not in out


def test_mutant_kill_names_the_broken_property(tmp_path):
    from conformance.harness import RunConfig
    from conformance.runner import run_pair

    r = run_pair(RunConfig(client="model", server="mutant:server-accepts-above-deposit"), "mutants", "server",
                 trace_dir=str(tmp_path), shrink=False)
    assert not r.ok
    assert r.properties["S2"] == "VIOLATED"
