"""The executable spec is pure (issue 11; EELS's import lint): no module of `model/` imports the wire boundary
(`wire/`: pydantic schema, codecs, voucher crypto), a wire or crypto library, or anything that does I/O; the spec's
own modules (all but the checker's command line) also import no clock, randomness, process or thread."""
from __future__ import annotations

import ast
import pathlib

MODEL = pathlib.Path(__file__).resolve().parents[1] / "model"
NEVER = {  # not in any module of model/
    "wire", "pydantic", "pydantic_core", "httpx", "coincurve", "eth_keys", "eth_account", "rfc8785", "web3",
    "socket", "ssl", "http", "urllib", "requests", "sqlite3", "subprocess", "asyncio", "shutil", "tempfile",
    "adapters", "conformance",
}
CHECKER = {"check.py", "fastcheck.py"}  # the checker's command line: may read the clock, count CPUs, fork workers
NOT_IN_SPEC = {"os", "sys", "time", "datetime", "random", "secrets", "multiprocessing", "threading", "io",
               "pathlib", "argparse", "uuid"}


def imports(path: pathlib.Path) -> set[str]:
    """The top-level names of every module `path` imports (relative imports are model's own)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_model_is_only_the_spec():
    files = sorted(MODEL.glob("*.py"))
    assert {"server.py", "client.py", "chain.py", "system.py"} <= {f.name for f in files}
    bad = {}
    for f in files:
        forbidden = NEVER | (set() if f.name in CHECKER else NOT_IN_SPEC)
        hit = imports(f) & forbidden
        if hit:
            bad[f.name] = sorted(hit)
    assert not bad, f"model/ imports the wire, I/O or a clock: {bad}"


def test_the_wire_modules_live_outside_model():
    assert not {"wire.py", "crypto.py", "profiles.py"} & {f.name for f in MODEL.glob("*.py")}


def test_lint_sees_a_forbidden_import(tmp_path):
    """The lint is not vacuous: it finds an import of the wire package, absolute or nested."""
    f = tmp_path / "bad.py"
    f.write_text("import attrs\n\ndef g():\n    from wire.codec import Challenge\n    import pydantic\n")
    assert imports(f) >= {"wire", "pydantic"}
