"""`--html out.html`: one self-contained page with the matrix and every failure drawn as a sequence diagram.

The end-to-end test runs a real mutant (so a real failing trace exists), opens the page in headless Chromium
(Debian's `chromium`, installed by .ci/run), and checks both the DOM marker the page sets once mermaid drew its
SVGs and the pixels of the screenshot (mermaid's actor and note fills, which nothing else on the page uses).
"""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from conformance.__main__ import main
from conformance.html_report import render_html
from conformance.runner import PairReport

MUTANT_RUN = ["run", "--client", "model", "--server", "mutant:server-accepts-above-deposit", "--machine", "server",
              "--profile", "quick"]
ACTOR_FILL = (0xEC, 0xEC, 0xFF)  # mermaid's default theme: participant boxes
NOTE_FILL = (0xFF, 0xF5, 0xAD)  # mermaid's default theme: notes (one per numbered step)


@pytest.fixture(scope="module")
def failing_page(tmp_path_factory):
    d = tmp_path_factory.mktemp("html")
    page = d / "out.html"
    code = main(MUTANT_RUN + ["--trace-dir", str(d), "--html", str(page)])
    assert code == 1  # the mutant breaks S2: a real failure
    return page


def test_page_holds_matrix_failure_steps_and_replay(failing_page):
    text = failing_page.read_text()
    assert '<td class="violated"' in text and '<td class="held"' in text  # the coloured matrix
    assert '<td class="v-FAIL"' in text
    assert '<pre class="mermaid">sequenceDiagram' in text
    assert re.search(r"\b1\. (client \d+|server): \w", text)  # numbered steps
    m = re.search(r"python -m conformance replay (\S+\.json)", text)
    assert m and Path(m.group(1)).exists()
    assert "--html" in text  # the command line that made the page


def test_page_loads_nothing_from_outside(failing_page):
    text = failing_page.read_text()
    markup = re.sub(r"<script>.*?</script>", "", text, flags=re.S)  # the page's own tags, not strings in the JS
    assert markup.count("<pre class=\"mermaid\">") == 1
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", markup)
    # the inlined bundle never ends its own <script> early
    body = text.split("<script>", 1)[1].rsplit("</script>", 2)[0]
    assert "</script" not in body


def test_a_passing_run_needs_no_mermaid():
    r = PairReport("model", "model", "pair", "must", "quick", "memory", 0, properties={"S1": "held"})
    text = render_html([r])
    assert "<script" not in text and "no failures" in text and '<td class="v-PASS"' in text


# ---- the page in a real browser -----------------------------------------------------------------

def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed and could not be (.ci/run runs apt-get install -y chromium as root)")
    return exe


def _browser(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
         "--virtual-time-budget=20000", *args],
        capture_output=True, text=True, timeout=300)


def _png_pixels(path: Path) -> list[tuple[int, int, int]]:
    """RGB of every pixel of an 8-bit non-interlaced RGB/RGBA PNG (what Chromium writes), by the PNG spec."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (n,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and ctype in (2, 6) and interlace == 0
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    raw, stride, prev, out = zlib.decompress(idat), width * bpp, bytearray(width * bpp), []
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += [tuple(line[i:i + 3]) for i in range(0, stride, bpp)]
        prev = line
    return out


def _screenshot(exe: str, page: Path, d: Path) -> list[tuple[int, int, int]]:
    shot = d / "shot.png"
    proc = _browser(exe, d / "profile", "--window-size=1400,1600", f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), proc.stderr[-2000:]
    return _png_pixels(shot)


def test_chromium_renders_the_failure_diagram(failing_page, tmp_path):
    exe = _chromium()
    dom = _browser(exe, tmp_path / "dom-profile", "--dump-dom", failing_page.as_uri()).stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert "data-mermaid-error" not in body, body
    assert int(re.search(r'data-mermaid-rendered="(\d+)"', body).group(1)) == 1  # one failure, one SVG
    assert re.search(r"<svg[^>]*aria-roledescription=\"sequence\"", dom)
    assert "client 0" in dom

    pixels = _screenshot(exe, failing_page, tmp_path / "rendered")
    actors, notes = pixels.count(ACTOR_FILL), pixels.count(NOTE_FILL)
    assert actors > 2000 and notes > 2000, (actors, notes)

    # The same page with mermaid's run call taken out shows the diagram's text only: the pixel check sees it.
    unrendered = tmp_path / "unrendered.html"
    unrendered.write_text(failing_page.read_text().replace('mermaid.run({querySelector: "pre.mermaid"})',
                                                             "Promise.reject(new Error('not drawn'))"))
    bare = _screenshot(exe, unrendered, tmp_path / "bare")
    assert bare.count(ACTOR_FILL) == 0 and bare.count(NOTE_FILL) == 0
