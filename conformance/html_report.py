"""One self-contained HTML page per run (`--html out.html` on `run` and `matrix`).

The page holds the matrix as a coloured table (one row per pair x machine, one cell per property) and every
failure as a rendered sequence diagram, its numbered steps and its replay command. It loads nothing from the
network: mermaid (pinned below) is taken from its npm tarball, checked against the registry's integrity hash,
cached, and inlined into the page. Once mermaid has drawn every diagram the page sets
`data-mermaid-rendered="N"` on <body> (N = the number of SVGs), or `data-mermaid-error` when it could not;
tests read that marker from the DOM.
"""
from __future__ import annotations

import base64
import hashlib
import html
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Iterable, Optional

from .runner import PairReport

MERMAID_VERSION = "11.9.0"
# dist.integrity of mermaid@11.9.0 on the npm registry: a tarball that does not match is never used.
MERMAID_INTEGRITY = "sha512-YdPXn9slEwO0omQfQIsW6vS84weVQftIyyTGAZCwM//MGhPzL1+l6vO6bkf0wnP4tHigH1alZ5Ooy3HXI2gOag=="
_MERMAID_MEMBER = "package/dist/mermaid.min.js"


class MermaidUnavailable(RuntimeError):
    """The pinned mermaid bundle is not cached and cannot be fetched with npm (the reason says why)."""


def cache_dir() -> Path:
    """Where the vendored mermaid bundle is kept: $TEMPO_CONFORMANCE_CACHE, else the user's cache directory."""
    env = os.environ.get("TEMPO_CONFORMANCE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tempo-session-conformance"


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def mermaid_js() -> str:
    """The minified mermaid bundle of the pinned version, fetched once with `npm pack` into the cache."""
    from filelock import FileLock

    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    target = d / f"mermaid-{MERMAID_VERSION}.min.js"
    with FileLock(str(d / "mermaid.lock"), timeout=600):  # xdist workers and parallel runs share the cache
        if not target.exists():
            target.write_bytes(_fetch_mermaid())
    return target.read_text(encoding="utf-8")


def _fetch_mermaid() -> bytes:
    npm = shutil.which("npm")
    if npm is None:
        raise MermaidUnavailable(f"npm is not on PATH: cannot fetch mermaid@{MERMAID_VERSION} for the HTML report")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([npm, "pack", f"mermaid@{MERMAID_VERSION}", "--pack-destination", tmp, "--silent"],
                              cwd=tmp, capture_output=True, text=True, timeout=600)
        tarballs = list(Path(tmp).glob("mermaid-*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise MermaidUnavailable(f"npm pack mermaid@{MERMAID_VERSION} failed (exit {proc.returncode}): "
                                     f"{proc.stderr.strip()[-500:]}")
        data = tarballs[0].read_bytes()
        if _integrity(data) != MERMAID_INTEGRITY:
            raise MermaidUnavailable(f"mermaid@{MERMAID_VERSION} tarball does not match its pinned integrity hash")
        with tarfile.open(tarballs[0]) as tar:
            member = tar.extractfile(_MERMAID_MEMBER)
            if member is None:
                raise MermaidUnavailable(f"mermaid@{MERMAID_VERSION} tarball has no {_MERMAID_MEMBER}")
            return member.read()


def verdict(r: PairReport) -> str:
    """PASS, AS EXPECTED (only expected divergences), FAIL or SKIPPED: the words the CLI prints."""
    from .__main__ import as_expected

    if r.skipped:
        return "SKIPPED"
    if r.ok:
        return "PASS"
    return "AS EXPECTED" if as_expected(r) else "FAIL"


def _status_class(status: str) -> str:
    if status.startswith("VIOLATED"):
        return "violated"
    if status.startswith("known"):
        return "known"
    if status == "held":
        return "held"
    return "skipped"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #111; }
table.matrix { border-collapse: collapse; font-size: 13px; }
table.matrix th, table.matrix td { border: 1px solid #999; padding: 3px 6px; text-align: left; }
td.held { background: #b7e4b0; } td.violated { background: #f4a3a3; font-weight: bold; }
td.known { background: #f7dc8f; } td.skipped { background: #e2e2e2; color: #555; }
td.v-PASS { background: #7fcf73; } td.v-FAIL { background: #e86b6b; } td.v-AS-EXPECTED { background: #f2c94c; }
td.v-SKIPPED { background: #c8c8c8; }
section.failure { border-top: 2px solid #c33; margin-top: 2em; padding-top: .5em; }
pre.steps, pre.cmd { background: #f5f5f5; padding: .6em; overflow-x: auto; font-size: 12px; }
div.diagram { overflow-x: auto; } pre.mermaid { background: #fff; }
"""

# Draws every diagram, then leaves a marker a test (or a person) can read without looking at pixels.
_RENDER = """
mermaid.initialize({startOnLoad: false, securityLevel: "strict", sequence: {useMaxWidth: false}});
mermaid.run({querySelector: "pre.mermaid"}).then(function () {
  document.body.setAttribute("data-mermaid-rendered", String(document.querySelectorAll("pre.mermaid svg").length));
}).catch(function (e) {
  document.body.setAttribute("data-mermaid-error", String(e && e.message || e));
});
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _matrix(reports: list[PairReport]) -> str:
    pids: list[str] = []
    for r in reports:
        pids += [p for p in r.properties if p not in pids]
    head = ["machine", "client", "server", "strength", "chain", "result", "examples", "steps", "steps/s", "sec"] + pids
    rows = ["<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for i, r in enumerate(reports):
        v = verdict(r)
        link = f'<a href="#failure-{i}">{_e(v)}</a>' if _has_failure(r) else _e(v)
        cells = [_e(r.machine), _e(r.client), _e(r.server), _e(r.strength), _e(r.chain)]
        row = "".join(f"<td>{c}</td>" for c in cells)
        row += f'<td class="v-{v.replace(" ", "-")}" title="{_e(r.skipped or r.error or "")}">{link}</td>'
        row += "".join(f"<td>{x}</td>" for x in (r.examples, r.steps, f"{r.steps_per_second:.0f}",
                                                    f"{r.seconds:.1f}"))
        for p in pids:
            s = r.properties.get(p)
            row += (f'<td class="{_status_class(s)}" title="{_e(s)}">{_e(s.split(":")[0].split(" (")[0])}</td>'
                    if s is not None else "<td></td>")
        rows.append(f"<tr>{row}</tr>")
    return '<table class="matrix">\n' + "\n".join(rows) + "\n</table>"


def _has_failure(r: PairReport) -> bool:
    return bool(r.failure or r.findings or r.error)


def _replay(trace_file: Optional[str]) -> str:
    return f'<pre class="cmd">python -m conformance replay {_e(trace_file)}</pre>' if trace_file else ""


def _failure(i: int, r: PairReport) -> str:
    violated = [f"{k}: {v}" for k, v in r.properties.items() if v.startswith("VIOLATED")]
    out = [f'<section class="failure" id="failure-{i}">',
           f"<h2>{_e(verdict(r))}: {_e(r.machine)} machine, client={_e(r.client)} server={_e(r.server)} "
           f"({_e(r.strength)}, chain {_e(r.chain)})</h2>"]
    if violated:
        out.append("<p>violated: " + _e("; ".join(violated)) + "</p>")
    if r.unexpected:
        out.append("<p>unexpected: " + _e("; ".join(r.unexpected)) + "</p>")
    if r.error:
        out.append(f"<p>error: {_e(r.error)}</p>")
    for fid, d in sorted(r.findings.items()):
        out.append(f"<h3>known divergence {_e(fid)} (FINDINGS.md): {_e(d.get('property'))}</h3>"
                   f"<p>{_e(d.get('message'))}</p><pre class=\"steps\">{_e(d.get('steps', ''))}</pre>"
                   + _replay(d.get("trace_file")))
    if r.mermaid:
        out.append(f'<h3>sequence diagram</h3>\n<div class="diagram"><pre class="mermaid">{_e(r.mermaid)}</pre></div>')
    if r.failure:
        out.append(f'<h3>minimal failing trace</h3>\n<pre class="steps">{_e(r.failure)}</pre>')
    if r.trace_file:
        out.append("<h3>replay</h3>" + _replay(r.trace_file))
    out.append("</section>")
    return "\n".join(out)


def render_html(reports: Iterable[PairReport], command: str = "") -> str:
    """The whole page (a string): matrix, then every failure; mermaid inlined only when a diagram needs it."""
    reports = list(reports)
    failures = [_failure(i, r) for i, r in enumerate(reports) if _has_failure(r)]
    needs_mermaid = any(r.mermaid for r in reports)
    # An inline script ends at the first "</script" whatever the JS means by it.
    script = ""
    if needs_mermaid:
        js = mermaid_js().replace("</script", "<\\/script")
        script = f"<script>{js}</script>\n<script>{_RENDER}</script>"
    counts = {}
    for r in reports:
        counts[verdict(r)] = counts.get(verdict(r), 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>tempo session conformance</title><style>{_CSS}</style></head>\n<body>\n"
            f"<h1>tempo session conformance</h1>\n<p>{_e(summary)}</p>\n"
            + (f'<pre class="cmd">{_e(command)}</pre>\n' if command else "")
            + _matrix(reports) + "\n" + ("\n".join(failures) if failures else "<p>no failures</p>")
            + f"\n{script}\n</body></html>\n")


def write_html(reports: Iterable[PairReport], path: str, command: str = "") -> None:
    page = render_html(reports, command)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
