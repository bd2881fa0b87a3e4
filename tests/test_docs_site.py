"""The built docs site in a real browser (Debian's Chromium, driven by Playwright), at a
common desktop width and a narrow one: configuration key names break only after a dot,
never inside a word.

The site is built with ``mkdocs build --strict`` into a temporary directory and served
by ``python -m http.server`` on a free port. Chromium comes from tests/test_browser.py's
``chromium`` fixture.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

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
