"""pytest plugin (entry point `tempo_session`): conformance tests for your implementation.

    pytest --session-server=mypkg.adapter:make_server [--session-client=mypkg.adapter:make_client]
           [--session-profile quick|ci|deep] [--session-chain memory|evm|memory-v2|evm-v2] [--session-strength must|strict]

One test per machine x property: `conformance[pair-S1]`, `conformance[server-SV]`, ... A property
that held passes; one that does not apply or could not be checked is SKIPPED (never passed);
a known limit of the protocol (the model breaks it too) is XFAIL; a violation fails with the
minimal trace (numbered steps, mermaid sequenceDiagram) and the path of a replayable steps file.
The side you do not give is played by the bundled `model` implementation.
"""
from __future__ import annotations

import pytest

_RUNS: dict = {}
_RAN_IN: dict = {}  # machine -> the xdist worker that really ran it (recorded in the JUnit report)


def pytest_addoption(parser):
    g = parser.getgroup("tempo_session", "Tempo session conformance")
    g.addoption("--session-server", default=None, help="server under test: bundled name or package.module:factory")
    g.addoption("--session-client", default=None, help="client under test: bundled name or package.module:factory")
    g.addoption("--session-profile", default="quick", choices=["quick", "ci", "deep"])
    g.addoption("--session-chain", default="memory", choices=["memory", "evm", "memory-v2", "evm-v2"],
                help="the deployment: v1 (memory, evm) or v2 (memory-v2, evm-v2)")
    g.addoption("--session-strength", default="must", choices=["must", "strict"])
    g.addoption("--session-trace-dir", default=".conformance")


def _machines(server, client):
    out = ["pair"]
    if server:
        out.append("server")
    if client:
        out.append("client")
    return out


def pytest_collection_modifyitems(session, config, items):
    server = config.getoption("--session-server")
    client = config.getoption("--session-client")
    if not server and not client:
        return
    from model.properties import PROPERTIES

    from .adversary import EXTRA_PROPERTIES

    ids = [p.id for p in PROPERTIES] + list(EXTRA_PROPERTIES)
    for machine in _machines(server, client):
        for pid in ids:
            items.append(ConformanceItem.from_parent(session, name=f"conformance[{machine}-{pid}]",
                                                     machine=machine, pid=pid))


def _worker(config) -> str:
    """The pytest-xdist worker id (gw0, gw1, ...), or "main" without xdist."""
    return getattr(config, "workerinput", {}).get("workerid", "main")


def _run(config, machine):
    """The machine's report, run once per test session: under pytest-xdist the items of one machine land on
    several workers, and each running the machine again would repeat the work and write the same trace file
    concurrently. The first worker to ask runs it (under a file lock) and leaves the report for the others."""
    if machine in _RUNS:
        return _RUNS[machine]
    import json
    import os

    from filelock import FileLock

    from .runner import PairReport

    trace_dir = config.getoption("--session-trace-dir")
    uid = getattr(config, "workerinput", {}).get("testrunuid")
    if uid is None:  # not under xdist: nothing to share
        rep = _run_machine(config, machine, trace_dir)
    else:
        shared = os.path.join(trace_dir, ".xdist", uid)
        os.makedirs(shared, exist_ok=True)
        done = os.path.join(shared, f"{machine}.json")
        with FileLock(done + ".lock"):
            if os.path.exists(done):
                with open(done) as f:
                    d = json.load(f)
                d.pop("steps_per_second", None)
                rep, ran_in = PairReport(**{k: v for k, v in d.items() if k != "ran_in"}), d["ran_in"]
            else:
                rep, ran_in = _run_machine(config, machine, trace_dir), _worker(config)
                with open(done, "w") as f:
                    json.dump(dict(rep.to_json(), ran_in=ran_in), f)
        _RAN_IN[machine] = ran_in
    _RUNS[machine] = rep
    return rep


def _run_machine(config, machine, trace_dir):
    from .harness import RunConfig
    from .runner import run_pair

    server = config.getoption("--session-server") or "model"
    client = config.getoption("--session-client") or "model"
    rc = RunConfig(client=client, server=server, chain=config.getoption("--session-chain"),
                   strength=config.getoption("--session-strength"))
    if rc.strength == "strict" and machine == "pair":
        import attrs

        rc = attrs.evolve(rc, faults=False)
    return run_pair(rc, config.getoption("--session-profile"), machine, None, trace_dir)


class ConformanceItem(pytest.Item):
    def __init__(self, *, machine, pid, **kw):
        super().__init__(**kw)
        self.machine, self.pid = machine, pid

    def runtest(self):
        rep = _run(self.config, self.machine)
        self.user_properties.append(("ran_in", _RAN_IN.get(self.machine, _worker(self.config))))
        if rep.error:
            raise ConformanceError(f"the run crashed: {rep.error}\n{rep.failure}")
        status = rep.properties.get(self.pid)
        if status is None:
            pytest.skip(f"{self.pid} is not checked by the {self.machine} machine")
        if status.startswith("VIOLATED"):
            raise ConformanceError(f"{self.pid} violated\n{rep.failure}\n\n{rep.mermaid}\n\n"
                                   f"replay: python -m conformance replay {rep.trace_file}")
        if status.startswith("known"):
            pytest.xfail(status)
        if status != "held":
            pytest.skip(status)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, ConformanceError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return "conformance", None, self.name


class ConformanceError(AssertionError):
    pass
