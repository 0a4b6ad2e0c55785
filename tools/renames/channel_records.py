"""Name the two `ChannelRecord`s for what they are (issue 11: "two of them `ChannelRecord`"):

- `conformance/interface.py: ChannelRecord`, what the harness observes of a server's accounting of one
  channel, becomes `AccountingRecord`;
- `adapters/reference/store.py: ChannelRecord`, one stored row of the reference server's `channels`
  table, becomes `StoredChannel`.

A file under `adapters/` means the store's; under `conformance/` the interface's; elsewhere (tests,
docs) the one its imports name (a file importing both is reported and left alone).

    python -m tools.renames.channel_records [--check]
"""
from __future__ import annotations

import re
import sys

from ._common import ROOT, run, word

OLD = word("ChannelRecord")
STORE = "StoredChannel"
OBSERVED = "AccountingRecord"


def which(path, text: str) -> str | None:
    rel = path.relative_to(ROOT).as_posix()
    if rel.startswith("adapters/"):
        return STORE
    if rel.startswith("conformance/"):
        return OBSERVED
    store = bool(re.search(r"from adapters\.reference(\.store)? import[^\n]*ChannelRecord|adapters/reference/store\.py: ChannelRecord", text))
    observed = bool(re.search(r"from conformance(\.interface)? import[^\n(]*(\([^)]*)?ChannelRecord|conformance/interface\.py: ChannelRecord", text))
    if store and observed:
        print(f"both ChannelRecords in {rel}: left alone", file=sys.stderr)
        return None
    return STORE if store else OBSERVED if observed else None


def rewrite(path, text: str) -> str:
    if not OLD.search(text):
        return text
    new = which(path, text)
    if new is None:
        print(f"ChannelRecord in {path.relative_to(ROOT)} names neither record: left alone", file=sys.stderr)
        return text
    return OLD.sub(new, text)


if __name__ == "__main__":
    sys.exit(run(__doc__.splitlines()[0], rewrite, (".py", ".md")))
