"""Split the wire codec by job (issue 11 item 4: "`wire.py` alone does five jobs in 1,000 lines"):

    wire/codec.py -> wire/errors.py    (WireError and its kinds, where each was found)
                     wire/scalars.py   (decimal, hex, timestamp, base64url-nopad field types; WireModel)
                     wire/jcs.py       (JCS canonical JSON out, strict JSON objects in)
                     wire/schema.py    (the pydantic models of requests, challenges, payloads, receipts)
                     wire/problems.py  (problem types)
                     wire/headers.py   (request/opaque codecs, challenge ids, each header's codec)

`wire/__init__.py` exports every public name of those six, so `import wire; wire.parse_receipt(...)` is the
ordinary spelling. This script rewrites the imports and paths that name the old module; the split itself was
done once (commit "wire: the codec split by job"). Idempotent and re-runnable on a tree that has gained files
(a branch merged after the split): `from wire.codec import a, _b` becomes `from wire import a` plus
`from wire.<module> import _b`; `from wire import codec as wire` becomes `import wire`.

    python -m tools.renames.codec_split [--check]
"""
from __future__ import annotations

import re
import sys

from ._common import ROOT, run

MODULES = ("errors", "scalars", "jcs", "schema", "problems", "headers")


def _home() -> dict[str, str]:
    """name -> the module that defines it (private names included)."""
    import ast
    home = {}
    for m in MODULES:
        for node in ast.parse((ROOT / "wire" / f"{m}.py").read_text()).body:
            names = []
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            for n in names:
                home.setdefault(n, m)
    return home


HOME: dict[str, str] = {}
_FROM = re.compile(r"^(?P<indent>[ \t]*)from wire\.codec import (?P<names>\([^)]*\)|[^\n]*)", re.M)
_FROM_REL = re.compile(r"^(?P<indent>[ \t]*)from \.codec import (?P<names>\([^)]*\)|[^\n]*)", re.M)
_DOCS = {  # prose that named the old file, by what it points at
    "wire/codec.py check_credential_protocol": "wire/headers.py check_credential_protocol",
    "wire/codec.py parse_authorization": "wire/headers.py parse_authorization",
    "(wire in `wire/codec.py`)": "(schema in `wire/schema.py`, headers in `wire/headers.py`)",
    "`wire/codec.py` holds the pydantic models": "`wire/schema.py` holds the pydantic models",
    "(`codec.py`, pydantic)": "(`schema.py`, pydantic; `headers.py`, `problems.py`, `scalars.py`, `jcs.py`, "
                              "`errors.py`)",
    "wire/codec.py headers": "wire/headers.py",
    "wire.codec's": "wire.problems'",
    "`wire/codec.py`, ": "`wire/` (schema, headers, problems), ",
    "wire/codec.py": "wire/headers.py",
}


def _imports(indent: str, names: str, package: str) -> str:
    parsed = [n.strip() for n in names.strip("()").replace("\n", " ").split(",") if n.strip()]
    public, private = [], {}
    for n in parsed:
        base = n.split(" as ")[0].strip()
        if base not in HOME:
            sys.exit(f"{base!r} is imported from wire.codec but defined in none of wire/{{{','.join(MODULES)}}}.py")
        if base.startswith("_") or package == ".":
            private.setdefault(HOME[base], []).append(n)
        else:
            public.append(n)
    lines = []
    if public:
        lines.append(_wrap(f"{indent}from wire import ", public, indent))
    for mod in MODULES:
        if mod in private:
            src = f".{mod}" if package == "." else f"wire.{mod}"
            lines.append(_wrap(f"{indent}from {src} import ", private[mod], indent))
    return "\n".join(lines)


def _wrap(head: str, names: list[str], indent: str) -> str:
    one = head + ", ".join(names)
    if len(one) <= 118:
        return one
    return head + "(\n" + "".join(f"{indent}    {n},\n" for n in names) + f"{indent})"


def rewrite(path, text: str) -> str:
    if path.suffix == ".py":
        text = _FROM.sub(lambda m: _imports(m["indent"], m["names"], "wire"), text)
        if path.parent.name == "wire":
            text = _FROM_REL.sub(lambda m: _imports(m["indent"], m["names"], "."), text)
        text = re.sub(r"^([ \t]*)from wire import codec as wire$", r"\1import wire", text, flags=re.M)
        # `from wire import crypto, codec as wire`: the other names stay, the codec alias becomes the package.
        text = re.sub(r"^([ \t]*)from wire import ((?:\w+, )*)codec as wire((?:, \w+)*)$",
                      lambda m: f"{m[1]}import wire\n{m[1]}from wire import {(m[2] + m[3].lstrip(', ')).rstrip(', ')}",
                      text, flags=re.M)
        text = re.sub(r"^([ \t]*)from wire import codec$", r"\1import wire as codec", text, flags=re.M)
    for old, new in _DOCS.items():
        text = text.replace(old, new)
    return text


if __name__ == "__main__":
    if (ROOT / "wire" / "codec.py").exists():
        sys.exit("wire/codec.py exists again (a branch merged after the split edited it): move its changes into "
                 "wire/{errors,scalars,jcs,schema,problems,headers}.py, delete it, and run again")
    HOME.update(_home())
    sys.exit(run(__doc__.split("\n")[0], rewrite, (".py", ".md", ".mjs", ".toml")))
