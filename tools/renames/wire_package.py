"""Move the wire boundary out of the spec (issue 11: "`model/` is two packages in one folder"):

    model/wire.py     -> wire/codec.py     (pydantic schema, scalars, problems, header codecs, JCS, hint fields)
    model/crypto.py   -> wire/crypto.py    (EIP-712 voucher digests, signing, recovery: coincurve)
    model/profiles.py -> wire/profiles.py  (the v1 flat and v2 sessionSnapshot hint encodings)

and rewrite every import and every path that names them. `model/` never imports `wire/` afterwards
(tests/test_spec_purity.py). Idempotent: a file already moved is not moved again, and the rewrites of a
tree already rewritten change nothing; on a tree that has both the old and the new file (a branch merged
after the move edited the old one) it stops and says so.

    python -m tools.renames.wire_package [--check]
"""
from __future__ import annotations

import re
import subprocess
import sys

from ._common import ROOT, run

MOVES = {"wire": "codec", "crypto": "crypto", "profiles": "profiles"}  # model/<old>.py -> wire/<new>.py
INIT = '''"""The wire boundary: what crosses the network, as bytes and headers (the spec's records are in `model/`).

- `wire.codec`: the pydantic schema of the headers and payloads, scalars, problem types, header codecs, JCS;
- `wire.crypto`: EIP-712 voucher digests, signing and signer recovery;
- `wire.profiles`: the two hint encodings (v1 flat `methodDetails`, v2 `sessionSnapshot`) to and from `model.records.Hints`.

`wire` imports `model` (the records it decodes into); `model` never imports `wire` (tests/test_spec_purity.py).
"""
'''


def move(check: bool) -> list[str]:
    done = []
    for old, new in MOVES.items():
        src, dst = ROOT / "model" / f"{old}.py", ROOT / "wire" / f"{new}.py"
        if src.exists() and dst.exists():
            sys.exit(f"both model/{old}.py and wire/{new}.py exist: merge the old file's changes into the new one, "
                     f"delete the old one, and run again")
        if src.exists():
            done.append(f"model/{old}.py -> wire/{new}.py")
            if not check:
                dst.parent.mkdir(exist_ok=True)
                subprocess.run(["git", "mv", str(src), str(dst)], cwd=ROOT, check=True)
    init = ROOT / "wire" / "__init__.py"
    if not init.exists():
        done.append("wire/__init__.py")
        if not check:
            init.parent.mkdir(exist_ok=True)
            init.write_text(INIT)
    return done


def _split_from_model(m: re.Match) -> str:
    """`from model import a, wire, b as c` -> the spec's names from model, the wire's from wire."""
    indent, names = m.group(1), [n.strip() for n in m.group(2).split(",") if n.strip()]
    spec, wire = [], []
    for n in names:
        name, _, alias = n.partition(" as ")
        name, alias = name.strip(), alias.strip()
        if name in MOVES:
            new = MOVES[name]
            wire.append(new if (alias or name) == new else f"{new} as {alias or name}")
        else:
            spec.append(n)
    lines = []
    if spec:
        lines.append(f"{indent}from model import {', '.join(spec)}")
    if wire:
        lines.append(f"{indent}from wire import {', '.join(wire)}")
    return "\n".join(lines)


def _imports_outside(text: str) -> str:
    text = re.sub(r"(?m)^([ \t]*)from model import ([^\n(#]+?)[ \t]*$", _split_from_model, text)
    for old, new in MOVES.items():
        text = re.sub(rf"(?m)^(\s*)from model\.{old} import ", rf"\1from wire.{new} import ", text)
        text = re.sub(rf"(?m)^(\s*)import model\.{old}\b", rf"\1import wire.{new}", text)
    return text


def _imports_inside(text: str) -> str:
    """Within wire/: the spec's modules by absolute name, the wire's by relative name."""
    for mod in ("base", "records", "messages", "chain"):
        text = re.sub(rf"(?m)^(\s*)from \.{mod} import ", rf"\1from model.{mod} import ", text)
    for old, new in MOVES.items():
        text = re.sub(rf"(?m)^(\s*)from (?:model|\.)\.?{old} import ", rf"\1from .{new} import ", text)
        text = re.sub(rf"(?m)^(\s*)from model import {old}\b", rf"\1from . import {new}", text)
    return text


def _paths(text: str) -> str:
    for old, new in MOVES.items():
        text = re.sub(rf"(?<![\w/.])model/{old}\.py", f"wire/{new}.py", text)
        text = re.sub(rf"(?<![\w.])model\.{old}(?![\w])", f"wire.{new}", text)
    return text


def rewrite(path, text: str) -> str:
    rel = path.relative_to(ROOT).as_posix()
    if rel.endswith(".py"):
        text = _imports_inside(text) if rel.startswith("wire/") else _imports_outside(text)
    if rel == "pyproject.toml":
        return re.sub(r'include = \[("model\*")(?!.*"wire\*")', r'include = [\1, "wire*"', text)
    return _paths(text)


if __name__ == "__main__":
    check = "--check" in sys.argv
    for line in move(check):
        print(("would move " if check else "moved ") + line)
    sys.exit(run(__doc__.splitlines()[0], rewrite, (".py", ".md", ".toml", ".mjs", "Makefile")))
