"""Give properties their own id namespace (issue 11: "H1, C1, R1, H3 and H5 each name both a rule and a
property"). The rules keep their ids (SPEC_NOTES section 1, cited by the model and by the vectors); the five
properties that shared one are renamed:

    H1 -> HB  no hint makes a client sign above its trust bound (rule H4)
    C1 -> CM  a client's vouchers are monotone: never below what it signed (rule H3b)
    R1 -> RV  after a fresh receipt a hinted client's view equals the server's record (rule R1)
    H3 -> HT  a hinted client signs at least the hinted target (rule H3)
    H5 -> HD  a client never sends a voucher above the on-chain deposit (rule H5)

Where an id is a property's, and so rewritten:
- Python under `model/properties.py`, `conformance/` and `tests/` (not the vectors, whose ids are rules:
  `conformance/vectors.py`, `tests/test_vectors.py`, `tests/test_mppx_vectors.py`): a quoted id ("H1", 'H1'),
  a quoted message prefix ("H1: ...", f"H1: ..."), and the words "property H1" / "properties H1, C1";
- Markdown: rows of the property tables (SPEC_NOTES section 3), "property H1" / "properties H1 and C1",
  "violates H1", "breaks H1", a transcript line "!! H1:" and the property column of FINDINGS' table.
A rule id ("rule H1", a vector's rule list) is never touched.

    python -m tools.renames.property_ids [--check]
"""
from __future__ import annotations

import re
import sys

from ._common import ROOT, run

RENAMES = {"H1": "HB", "C1": "CM", "R1": "RV", "H3": "HT", "H5": "HD"}
IDS = "|".join(RENAMES)
RULE_FILES = {"conformance/vectors.py", "tests/test_vectors.py", "tests/test_mppx_vectors.py"}
PY_DIRS = ("conformance/", "tests/")
PY_FILES = {"model/properties.py"}

QUOTED = re.compile(r"""(?P<q>["'])(?P<id>""" + IDS + r""")(?P<end>["']|: )""")
# "property H1", "properties H1, C1 and H3", "violates H1", "breaks H1" (each id of a list)
LIST = r"(?:" + IDS + r")(?![A-Za-z0-9_-])(?:(?:,\s*|\s+and\s+|\s+or\s+|/)(?:" + IDS + r")(?![A-Za-z0-9_-]))*"
WORDED = re.compile(r"(?P<lead>\b(?:[Pp]ropert(?:y|ies)|violates|violated|breaks|broke|break)\s+`?)(?P<list>" + LIST + r")")
ONE = re.compile(r"(?<![A-Za-z0-9_-])(" + IDS + r")(?![A-Za-z0-9_-])")
TRANSCRIPT = re.compile(r"(!! )(" + IDS + r")(:)")


def _list(m: re.Match) -> str:
    return m.group("lead") + ONE.sub(lambda n: RENAMES[n.group(1)], m.group("list"))


def _prose(text: str) -> str:
    text = WORDED.sub(_list, text)
    return TRANSCRIPT.sub(lambda m: m.group(1) + RENAMES[m.group(2)] + m.group(3), text)


def _python(text: str) -> str:
    text = QUOTED.sub(lambda m: m.group("q") + RENAMES[m.group("id")] + m.group("end"), text)
    return _prose(text)


def _spec_notes(text: str) -> str:
    """SPEC_NOTES: the property tables of section 3 by row, and property prose everywhere."""
    parts = re.split(r"(?m)^(?=## )", text)
    out = []
    for part in parts:
        if part.startswith("## 3. Properties"):
            part = re.sub(r"(?m)^\| (" + IDS + r") \|", lambda m: f"| {RENAMES[m.group(1)]} |", part)
        out.append(part)
    return _prose("".join(out))


def _findings(text: str) -> str:
    """FINDINGS: its table's property column (the third), and property prose."""
    lines = []
    for line in text.split("\n"):
        cells = line.split(" | ")
        if line.startswith("| F") and len(cells) > 3:
            cells[2] = ONE.sub(lambda m: RENAMES[m.group(1)], cells[2])
            line = " | ".join(cells)
        lines.append(line)
    return _prose("\n".join(lines))


def rewrite(path, text: str) -> str:
    rel = path.relative_to(ROOT).as_posix()
    if rel in RULE_FILES:
        return text
    if rel.endswith(".py"):
        if rel in PY_FILES or rel.startswith(PY_DIRS):
            return _python(text)
        return text
    if rel == "SPEC_NOTES.md":
        return _spec_notes(text)
    if rel == "FINDINGS.md":
        return _findings(text)
    if rel.endswith(".md") and not rel.startswith("vectors/"):
        return _prose(text)
    return text


if __name__ == "__main__":
    sys.exit(run(__doc__.splitlines()[0], rewrite, (".py", ".md")))
