"""Every id is traced (issue 11): every rule SPEC_NOTES states is cited by the model's code, every id the model
cites as a rule is one SPEC_NOTES states, every property SPEC_NOTES states is checked somewhere (the checker's
`model.properties.PROPERTIES`, or a conformance check), every property a check reports is stated, and rules and
properties are two namespaces (no id names both)."""
from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPEC = ROOT / "model"
RULE_ID = r"(?:S-H\d+|S-R\d+|UA\d+|[A-Z]\d+b?|RS|L)"
RANGE = re.compile(r"(S-H|S-R|UA|[A-Z])(\d+)(?:-|\.\.)(?:S-H|S-R|UA|[A-Z])?(\d+)")
CITE = re.compile(r"\b[Rr]ules?\s+(" + RULE_ID + r"(?:(?:\s*(?:,|and|or|/|-|\.\.)\s*)" + RULE_ID
                  + r")*)(?![A-Za-z0-9])")
REJECTED = re.compile(r"Rejected\(\s*\"[^\"]*\",\s*\"(" + RULE_ID + r")\"")


def expand(token: str) -> list[str]:
    """'O1-O3' -> O1, O2, O3; 'S-H1..S-H3' -> S-H1, S-H2, S-H3; anything else -> itself."""
    m = RANGE.fullmatch(token)
    if m:
        return [f"{m.group(1)}{i}" for i in range(int(m.group(2)), int(m.group(3)) + 1)]
    return [token]


def _sections() -> dict[str, str]:
    text = (ROOT / "SPEC_NOTES.md").read_text()
    return {part.split("\n", 1)[0]: part for part in re.split(r"(?m)^## ", text) if part}


def _first_cells(section: str, header_only: bool) -> list[str]:
    """The first cell of every row of the section's id tables (a table whose header names `id`, or, when not
    `header_only`, any row continuing one)."""
    ids, in_table = [], False
    for line in section.split("\n"):
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if not cells or set(cells[0]) <= {"-"}:
            continue
        if cells[0] == "id":
            in_table = True
            continue
        if in_table or (not header_only and re.fullmatch(r"[A-Z][A-Z0-9-]*", cells[0])):
            ids += expand(cells[0])
    return ids


def spec_rules() -> set[str]:
    secs = _sections()
    out: list[str] = []
    for head, body in secs.items():
        if head.startswith("1. Rules") or head.startswith("4b."):
            out += _first_cells(body, header_only=True)
    return set(out)


def spec_properties() -> set[str]:
    secs = _sections()
    return {i for head, body in secs.items() if head.startswith("3. Properties")
            for i in _first_cells(body, header_only=False)}


def cited_rules() -> dict[str, set[str]]:
    """Rule id -> the spec modules citing it ("rule X", "rules X-Y, Z", or a `Rejected`'s rule)."""
    cited: dict[str, set[str]] = {}
    for f in sorted(SPEC.glob("*.py")):
        src = f.read_text()
        for m in CITE.finditer(src):
            for part in re.split(r"\s*(?:,|and|or|/)\s*", m.group(1)):
                for rid in expand(part.strip()):
                    cited.setdefault(rid, set()).add(f.name)
        for m in REJECTED.finditer(src):
            cited.setdefault(m.group(1), set()).add(f.name)
    return cited


def checked_properties() -> set[str]:
    """Property ids the checks define or report: the checker's PROPERTIES, the conformance registries, and any
    id a conformance check reports (`_violation(.., "X", ..)`, `("X", f"...")`)."""
    from conformance.adversary import EXTRA_PROPERTIES
    from model.properties import PROPERTIES

    ids = {p.id for p in PROPERTIES} | set(EXTRA_PROPERTIES)
    for f in sorted((ROOT / "conformance").rglob("*.py")):
        src = f.read_text()
        ids |= set(re.findall(r"_violation\(\s*\w+,\s*\"([A-Z][A-Z0-9]*)\"", src))
        ids |= set(re.findall(r"\(\s*\"([A-Z][A-Z0-9]*)\",\s*f?\"", src)) & _id_like()
    return ids


def _id_like() -> set[str]:
    return spec_properties() | {"EQ"}


def test_spec_notes_states_rules_and_properties():
    assert {"V1", "S-H2", "UA3", "H2b", "RS", "L"} <= spec_rules()
    assert {"S1", "D1", "TP1", "SV", "XP", "EQ"} <= spec_properties()


def test_rules_and_properties_are_two_namespaces():
    both = spec_rules() & spec_properties()
    assert not both, f"ids naming both a rule and a property: {sorted(both)}"


def test_every_rule_is_cited_by_the_model():
    missing = spec_rules() - set(cited_rules())
    assert not missing, f"rules in SPEC_NOTES that no model code cites: {sorted(missing)}"


def test_every_rule_the_model_cites_is_stated():
    unknown = {r: sorted(files) for r, files in cited_rules().items() if r not in spec_rules()}
    assert not unknown, f"rule ids cited in model/ that SPEC_NOTES does not state: {unknown}"


def test_every_property_is_checked():
    src = "\n".join(f.read_text() for f in [ROOT / "model" / "properties.py", *sorted((ROOT / "conformance").rglob("*.py"))])
    unchecked = {p for p in spec_properties() if f'"{p}"' not in src}
    assert not unchecked, f"properties in SPEC_NOTES that no check names: {sorted(unchecked)}"


def test_every_checked_property_is_stated():
    unknown = checked_properties() - spec_properties()
    assert not unknown, f"property ids the checks report that SPEC_NOTES does not state: {sorted(unknown)}"


def test_where_each_rule_lives_names_real_code():
    """The 'where each rule lives' table of SPEC_NOTES names functions and classes that exist."""
    import importlib

    text = (ROOT / "SPEC_NOTES.md").read_text()
    table = text[text.index("| concept | place |"):text.index("The spec has no bug switch")]
    missing = []
    for module, names in re.findall(r"`model/(\w+)\.py: ([^`]+)`", table):
        mod = importlib.import_module(f"model.{module}")
        missing += [f"model/{module}.py: {n}" for n in re.split(r",\s*", names) if not hasattr(mod, n.strip())]
    assert not missing, f"SPEC_NOTES names code that does not exist: {missing}"
