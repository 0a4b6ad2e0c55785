"""Long conformance campaigns under HypoFuzz: the conformance machines as Hypothesis tests on one shared database.

    hypothesis fuzz -n 4 --no-dashboard -- conformance/fuzz.py      # runs until stopped (make fuzz: 60 s)
    python -m conformance.fuzz report                              # examples, steps/s, workers, failures
    TEMPO_FUZZ_REPLAY_ONLY=1 python -m pytest conformance/fuzz.py  # replay every failure in the database

Each `Test*` class below is `conformance.machines.build_machine(rc, collector, machine).TestCase`, the same
machine `python -m conformance run` explores. Every worker (and every machine pointing at the same place)
uses one Hypothesis example database, so a failure found by one worker replays everywhere:

  TEMPO_FUZZ_REDIS=redis://host:6379/0   a Redis database (needs the `redis` package), shared across machines
  TEMPO_FUZZ_DB=DIR                      else a directory (default .conformance/fuzz-db)
  TEMPO_FUZZ_CLIENT / TEMPO_FUZZ_SERVER  the pair under test (default reference x reference), any spec `run`
                                         takes; TEMPO_FUZZ_CHAIN memory|evm

Importing this module loads the Hypothesis settings profile "tempo-fuzz" (that database) for the whole
process: HypoFuzz fuzzes only tests whose database is the default one. Import it only in a fuzz process.

Each worker writes its figures to <stats>/<pid>.json (TEMPO_FUZZ_STATS, default .conformance/fuzz-stats) as it
goes, and every failure as a steps file beside them that `python -m conformance replay` runs again.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from .harness import RunConfig, Session
from .machines import Collector, build_machine
from .trace import render_steps, write_steps

STEPS_PER_EXAMPLE = 25  # the ci profile's (conformance/machines.py PROFILES)


def campaign_database() -> ExampleDatabase:
    """The one example database every worker of a campaign shares (Redis when a URL is given)."""
    url = os.environ.get("TEMPO_FUZZ_REDIS")
    if url:
        try:
            import redis
        except ImportError:
            sys.exit("TEMPO_FUZZ_REDIS is set but the `redis` package is not installed (pip install redis)")
        from hypothesis.extra.redis import RedisExampleDatabase

        return RedisExampleDatabase(redis.Redis.from_url(url))
    return DirectoryBasedExampleDatabase(os.environ.get("TEMPO_FUZZ_DB", ".conformance/fuzz-db"))


def stats_dir() -> Path:
    return Path(os.environ.get("TEMPO_FUZZ_STATS", ".conformance/fuzz-stats"))


# HypoFuzz skips a test that suppresses nested_given; the machines are slow by Hypothesis's measure.
_SUPPRESSED = [h for h in HealthCheck if h.name != "nested_given"]
# TEMPO_FUZZ_REPLAY_ONLY=1: run only what the database holds (another worker's or machine's failures).
_PHASES = ([Phase.explicit, Phase.reuse] if os.environ.get("TEMPO_FUZZ_REPLAY_ONLY") == "1"
           else [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink])
settings.register_profile("tempo-fuzz", database=campaign_database(), deadline=None,
                          stateful_step_count=STEPS_PER_EXAMPLE, suppress_health_check=_SUPPRESSED,
                          phases=_PHASES, print_blob=True)
settings.load_profile("tempo-fuzz")


class CampaignCollector(Collector):
    """Counts what a worker ran without keeping its sessions (a campaign runs for hours), writes the figures
    to the stats directory, and saves every failing session as a replayable steps file."""

    def __init__(self, machine: str):
        super().__init__(None)
        self.machine = machine
        self.examples = 0
        self.failures = 0
        self._failing: Optional[Session] = None
        self._written = 0.0

    def add(self, s: Session) -> None:
        self.examples += 1
        if time.monotonic() - self._written > 2:  # often enough for a campaign stopped by a signal
            self.write()

    @property
    def failing(self) -> Optional[Session]:
        return self._failing

    @failing.setter
    def failing(self, s: Optional[Session]) -> None:
        self._failing = s
        if s is None:
            return
        self.failures += 1
        d = stats_dir()
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"failure-{self.machine}-{os.getpid()}-{self.failures}.json"
        write_steps(str(path), s.rc, s.steps, self.machine)
        (path.with_suffix(".txt")).write_text(render_steps(s.results) + "\n")
        self.write()

    def write(self) -> None:
        d = stats_dir()
        d.mkdir(parents=True, exist_ok=True)
        self._written = time.monotonic()
        tmp = d / f".{os.getpid()}-{self.machine}.tmp"
        tmp.write_text(json.dumps({"pid": os.getpid(), "machine": self.machine, "examples": self.examples,
                                   "steps": self.steps, "failures": self.failures,
                                   "seconds": time.monotonic() - self.t0}))
        tmp.replace(d / f"{os.getpid()}-{self.machine}.json")  # a reader never sees half a file


def _pair() -> RunConfig:
    return RunConfig(client=os.environ.get("TEMPO_FUZZ_CLIENT", "reference"),
                     server=os.environ.get("TEMPO_FUZZ_SERVER", "reference"),
                     chain=os.environ.get("TEMPO_FUZZ_CHAIN", "memory"))


def _test_case(machine: str):
    case = build_machine(_pair(), CampaignCollector(machine), machine).TestCase
    case.settings = settings()  # the campaign profile, so HypoFuzz fuzzes it on the shared database
    return case


TestPairMachine = _test_case("pair")
TestServerMachine = _test_case("server")
TestClientMachine = _test_case("client")


def report(directory: Optional[Path] = None) -> dict:
    """The campaign's figures summed over its workers' stats files."""
    d = directory or stats_dir()
    rows = [json.loads(p.read_text()) for p in sorted(d.glob("*.json")) if not p.name.startswith("failure-")]
    workers = {r["pid"] for r in rows}
    examples, steps = sum(r["examples"] for r in rows), sum(r["steps"] for r in rows)
    seconds = {pid: max(r["seconds"] for r in rows if r["pid"] == pid) for pid in workers}
    worker_seconds = sum(seconds.values())
    return {"workers": len(workers), "examples": examples, "steps": steps,
            "steps_per_second": round(steps / max(seconds.values()), 1) if seconds else 0.0,
            "steps_per_worker_second": round(steps / worker_seconds, 1) if worker_seconds else 0.0,
            "failures": sorted(str(p) for p in d.glob("failure-*.json")),
            "by_machine": {m: sum(r["examples"] for r in rows if r["machine"] == m)
                           for m in sorted({r["machine"] for r in rows})}}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["report"]:
        print(__doc__)
        return 2
    r = report()
    print(f"fuzz campaign: {r['workers']} workers, {r['examples']} examples ({r['by_machine']}), {r['steps']} steps,"
          f" {r['steps_per_second']} steps/s ({r['steps_per_worker_second']} per worker)")
    for f in r["failures"]:
        print(f"failure: python -m conformance replay {f}")
    print(f"{len(r['failures'])} failures")
    return 1 if r["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
