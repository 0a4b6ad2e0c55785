"""Rename `model.system._Run` (the mutable scratch of one step) to the public `StepRun`: the harness uses it,
so it is not private (issue 11: "the harness imports the model's private `_Run`").

    python -m tools.renames.step_run [--check]
"""
from __future__ import annotations

import sys

from ._common import run, word

OLD = word("_Run")


def rewrite(path, text: str) -> str:
    return OLD.sub("StepRun", text)


if __name__ == "__main__":
    sys.exit(run(__doc__.splitlines()[0], rewrite, (".py", ".md")))
