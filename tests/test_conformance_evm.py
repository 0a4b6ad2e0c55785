"""A short conformance run on the EVM chain (our Solidity escrow on py-evm): the same
properties as on the memory chain, with real transactions and on-chain signature checks."""
from __future__ import annotations

import pytest

from conformance.__main__ import main


@pytest.mark.parametrize("client,server,machine", [
    ("reference", "reference", "pair"),
    ("legacy", "reference", "pair"),
    ("model", "reference", "server"),
])
def test_short_evm_run(client, server, machine, tmp_path, capsys):
    code = main(["run", "--client", client, "--server", server, "--chain", "evm", "--profile", "quick",
                 "--machine", machine, "--trace-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS" in out
