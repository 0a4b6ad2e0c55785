"""Shared plumbing of the rename scripts: walk the tree's text files, rewrite them, report what changed.

Every script is idempotent (a second run changes nothing) and re-runnable on a tree that has gained files,
so the lead can run it again after merging other branches:  python -m tools.renames.<name> [--check]
"""
from __future__ import annotations

import argparse
import pathlib
import re
import subprocess
import sys
from typing import Callable, Iterable

ROOT = pathlib.Path(__file__).resolve().parents[2]
SKIP_PARTS = {".git", ".venv", "node_modules", "__pycache__", ".conformance", ".hypothesis", ".pytest_cache"}


def tracked(suffixes: Iterable[str]) -> list[pathlib.Path]:
    """The repository's files with one of these suffixes (git's list, plus untracked non-ignored files)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split("\n")
    suffixes = tuple(suffixes)
    paths = []
    for rel in out:
        if not rel or not rel.endswith(suffixes) or SKIP_PARTS & set(pathlib.PurePath(rel).parts):
            continue
        if rel.startswith("tools/renames/"):
            continue  # the scripts name the old spellings on purpose
        p = ROOT / rel
        if p.is_file():
            paths.append(p)
    return sorted(paths)


def word(old: str) -> re.Pattern:
    return re.compile(r"(?<![A-Za-z0-9_])" + re.escape(old) + r"(?![A-Za-z0-9_])")


def run(description: str, rewrite: Callable[[pathlib.Path, str], str], suffixes: Iterable[str]) -> int:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    args = ap.parse_args()
    changed = []
    for p in tracked(suffixes):
        text = p.read_text()
        new = rewrite(p, text)
        if new != text:
            changed.append(p.relative_to(ROOT))
            if not args.check:
                p.write_text(new)
    for rel in changed:
        print(("would change " if args.check else "changed ") + str(rel))
    if not changed:
        print("nothing to change")
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(0)
