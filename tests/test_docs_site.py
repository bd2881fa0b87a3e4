"""The built docs site in a real browser (Debian's Chromium, driven by Playwright), at a
common desktop width and a narrow one: configuration key names break only after a dot,
never inside a word, and no line of code is hidden without a way to see it and a sign
that it goes on.

The site is built with ``mkdocs build --strict`` into a temporary directory and served
by ``python -m http.server`` on a free port. Chromium comes from tests/test_browser.py's
``chromium`` fixture.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from .doc_commands import ROOT, free_port
from .test_browser import WAIT_MS, chromium, headless_page

if TYPE_CHECKING:
    from playwright.async_api import Page

__all__ = ["chromium"]  # the fixture, imported so that pytest finds it here

pytestmark = pytest.mark.timeout(300, func_only=True)

#: A common desktop width, and a narrow one (a small laptop window, a tablet).
WIDTHS = (1280, 800)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of the site, built with --strict and served on a free port."""
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stderr[-3000:]}"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=out,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, f"http.server exited ({server.returncode})"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base, timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "http.server did not answer within 30 s"
            time.sleep(0.1)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


def site_pages() -> list[str]:
    """Every page of the built site, as a path under the base URL."""
    docs = ROOT / "docs"
    found = []
    for md in sorted(docs.rglob("*.md")):
        rel = md.relative_to(docs).with_suffix("")
        if rel.parts[0] == "hooks":
            continue
        path = "" if rel.name == "index" else f"{rel.as_posix()}/"
        found.append(path)
    return found


@pytest.fixture
async def page(chromium: str) -> AsyncIterator[Page]:
    async with headless_page(chromium) as page:
        page.set_default_timeout(WAIT_MS * 4)
        yield page


async def open_at(page: Page, url: str, width: int) -> None:
    await page.set_viewport_size({"width": width, "height": 900})
    await page.goto(url, wait_until="load")
    # Layout is final once fonts (system ones: font: false) are ready and material's script
    # has wrapped the tables (.md-typeset__scrollwrap).
    await page.evaluate("document.fonts.ready.then(() => true)")
    await page.wait_for_function(
        "() => !document.querySelector('.md-content table:not([class])')"
        " || !!document.querySelector('.md-typeset__scrollwrap')"
    )


# --------------------------------------------------------------------------- key names

#: For every key cell (a table cell, or a heading, holding one <code> name) of the page:
#: the text of each line box the name is laid out on, and whether it stays in its cell.
KEY_LINES = r"""
() => {
  const out = [];
  const cells = [...document.querySelectorAll('.md-content td, .md-content h2, .md-content h3')];
  for (const cell of cells) {
    const codes = [...cell.children].filter(e => e.tagName === 'CODE');
    if (codes.length !== 1) continue;
    const code = codes[0];
    const name = code.textContent;
    if (!/^[A-Za-z_<][\w<>\[\]]*(\.[\w<>\[\]]+)*$/.test(name)) continue;  // key names
    if (cell.tagName === 'TD' && cell.textContent.trim() !== name) continue;
    const lines = [];
    let top = null, overflow = false;
    const box = cell.getBoundingClientRect();
    const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (let i = 0; i < node.length; i++) {
        const range = document.createRange();
        range.setStart(node, i);
        range.setEnd(node, i + 1);
        const rect = range.getClientRects()[0];
        if (!rect) continue;
        if (rect.right > box.right + 0.5) overflow = true;
        if (top === null || rect.top > top + rect.height / 2) { lines.push(''); top = rect.top; }
        lines[lines.length - 1] += node.data[i];
      }
    }
    out.push({name, lines, overflow, where: cell.tagName.toLowerCase()});
  }
  return out;
}
"""


@pytest.mark.parametrize("width", WIDTHS)
async def test_config_key_names_break_only_after_dots(site: str, page: Page, width: int) -> None:
    """In the generated reference's tables and headings, and in the configuration page's
    tables, a key name that does not fit on one line breaks right after a dot: every line
    but the last ends with '.', and the name stays inside its cell."""
    problems = []
    wrapped = 0
    for path in ("reference/config-keys/", "configuration/"):
        await open_at(page, site + path, width)
        keys = await page.evaluate(KEY_LINES)
        assert len(keys) > 40, (path, len(keys))
        for key in keys:
            lines = key["lines"]
            wrapped += len(lines) > 1
            if any(not line.endswith(".") for line in lines[:-1]):
                shown = " | ".join(lines)
                problems.append(f"{path} ({key['where']}): {key['name']} is laid out as {shown}")
            if key["overflow"]:
                problems.append(f"{path} ({key['where']}): {key['name']} overflows its cell")
    assert not problems, (
        f"at {width} px, key names break inside words:\n"
        + "\n".join(problems[:20])
        + (f"\n... and {len(problems) - 20} more" if len(problems) > 20 else "")
    )
    if width == min(WIDTHS):
        assert wrapped, "no key name needed two lines: this width checks nothing"


# --------------------------------------------------------------------------- code blocks

#: Every <pre><code> block of the page (in tables and admonitions too) whose text goes past
#: its visible box (``overflow``, in px): how it could still be read, or why not.
CODE_BLOCKS = r"""
() => {
  const vw = document.documentElement.clientWidth;
  const out = [];
  document.querySelectorAll('pre > code').forEach((code, index) => {
    const cs = getComputedStyle(code);
    const box = code.getBoundingClientRect();
    const range = document.createRange();
    range.selectNodeContents(code);
    const text = range.getBoundingClientRect();
    const inner = box.left + code.clientLeft + code.clientWidth;
    const entry = {index, text: code.textContent.slice(0, 60), hidden: null,
                   wraps: ['pre-wrap', 'break-spaces'].includes(cs.whiteSpace),
                   overflow: Math.round(text.right - inner), scrolls: false};
    if (box.right > vw + 0.5 || box.left < -0.5) {
      const [left, right] = [Math.round(box.left), Math.round(box.right)];
      entry.hidden = `the block spans ${left}..${right} px, past the window`;
    }
    if (entry.overflow > 0 && !entry.wraps) {
      // The scroller: this element or an ancestor that scrolls; none may clip it before.
      for (let el = code; el && el !== document.body; el = el.parentElement) {
        const ox = getComputedStyle(el).overflowX;
        if (ox === 'auto' || ox === 'scroll') { entry.scrolls = true; break; }
        if ((ox === 'hidden' || ox === 'clip') && el !== code) {
          const name = `${el.tagName.toLowerCase()}.${el.className}`;
          entry.hidden = `clipped by ${name} (overflow-x ${ox})`;
          break;
        }
      }
      if (!entry.scrolls && !entry.hidden)
        entry.hidden = `${entry.overflow} px of its lines are cut off (overflow-x ${cs.overflowX})`;
    }
    if (entry.overflow > 0 || entry.hidden) out.push(entry);
  });
  return out;
}
"""


@pytest.mark.parametrize("width", WIDTHS)
async def test_no_code_is_hidden(site: str, page: Page, width: int) -> None:
    """On every page, each code block's lines fit, wrap, or scroll inside the block (no
    box that hides overflow cuts them off, and the block stays in the window)."""
    problems = []
    overflowing = 0
    for path in site_pages():
        await open_at(page, site + path, width)
        for block in await page.evaluate(CODE_BLOCKS):
            overflowing += block["overflow"] > 0
            if block["hidden"]:
                problems.append(
                    f"{path or '/'} block {block['index'] + 1} {block['text']!r}: {block['hidden']}"
                )
    assert not problems, f"at {width} px, code that cannot be seen:\n" + "\n".join(problems)
    assert overflowing, "no block is too wide at this width: this test checks nothing"


# The pages of the user's report, and the one with the most wide blocks.
CUE_PAGES = ("quickstart/", "tutorial/", "how-to/nginx/", "how-to/redis-workers/", "configuration/")

#: Text and buttons out of the way, so what remains at a block's edges is its background.
BLANK_TEXT = """
.md-typeset pre > code, .md-typeset pre > code * { color: transparent !important; }
.md-clipboard, .md-code__nav, .md-code__button { display: none !important; }
"""


def png_pixels(data: bytes) -> list[list[tuple[int, int, int]]]:
    """The RGB rows of an 8-bit RGB or RGBA PNG (what Chromium's screenshots are)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and not interlace, (depth, color, interlace)
    step = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * step
    rows: list[list[tuple[int, int, int]]] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - step] if x >= step else 0
            b = previous[x]
            c = previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[x] = (line[x] + pred) & 0xFF
        rows.append([(line[x], line[x + 1], line[x + 2]) for x in range(0, stride, step)])
        previous = line
    return rows


async def edges(page: Page, index: int) -> tuple[float, float]:
    """How far the left and right edge strips of block ``index`` (its inner 6 px on each
    side, with the text hidden) are from its background colour, at its current scroll:
    0 for the same colour, up to 765."""
    box: dict[str, float] = await page.evaluate(
        """(i) => {
          const code = document.querySelectorAll('pre > code')[i];
          code.scrollIntoView({block: 'center'});
          const r = code.getBoundingClientRect();
          const band = Math.min(40, code.clientHeight);
          const top = r.top + code.clientTop + (code.clientHeight - band) / 2;
          return {x: r.left + code.clientLeft, y: top, width: code.clientWidth, height: band};
        }""",
        index,
    )
    clip: Any = box
    rows = png_pixels(await page.screenshot(clip=clip, style=BLANK_TEXT, animations="disabled"))
    background = rows[len(rows) // 2][len(rows[0]) // 2]  # the block's middle: no shading

    def distance(strip: slice) -> float:
        values = [
            sum(abs(p - q) for p, q in zip(px, background, strict=True))
            for row in rows
            for px in row[strip]
        ]
        return sum(values) / len(values)

    return distance(slice(1, 7)), distance(slice(-7, -1))


@pytest.mark.parametrize("width", WIDTHS)
async def test_a_block_that_scrolls_shows_it(site: str, page: Page, width: int) -> None:
    """Where scrollbars are hidden (macOS, phones, headless Chromium), a block whose lines
    go on past its right edge still shows it: that edge is shaded while text is hidden
    there, and the left edge once the block is scrolled to its end."""
    problems = []
    checked = 0
    for path in CUE_PAGES:
        await open_at(page, site + path, width)
        for block in await page.evaluate(CODE_BLOCKS):
            if block["overflow"] <= 0 or block["wraps"]:
                continue
            checked += 1
            where = f"{path} block {block['index'] + 1} {block['text']!r}"
            left, right = await edges(page, block["index"])
            if right < 20 or left > 8:
                problems.append(
                    f"{where}: {block['overflow']} px hidden on the right, but its right "
                    f"edge differs from its background by {right:.0f} (left edge {left:.0f})"
                )
                continue
            await page.evaluate(
                "(i) => { const c = document.querySelectorAll('pre > code')[i];"
                " c.scrollLeft = c.scrollWidth; }",
                block["index"],
            )
            left, right = await edges(page, block["index"])
            if left < 20 or right > 8:
                problems.append(
                    f"{where}: scrolled to its end, its left edge differs from its background "
                    f"by {left:.0f} and its right edge by {right:.0f}"
                )
    assert checked, "no block is too wide on these pages: this test checks nothing"
    assert not problems, f"at {width} px, wide blocks that look cut off:\n" + "\n".join(problems)
