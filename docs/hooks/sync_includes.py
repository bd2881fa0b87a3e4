"""Code blocks of the docs that are copies of tested files, kept equal to them.

A page shows a file (or a named section of one) as an ordinary fenced block, preceded by
an HTML comment that names its source::

    <!-- from: docs/tutorial/orders.py:create -->
    ```python title="orders.py"
    ...the lines of that section...
    ```

The page reads the same on GitHub and in the site (GitHub does not run pymdownx.snippets,
so an ``--8<--`` include line would show there as it is written). The source is a path
from the repository's root, with an optional ``:name``: the lines between
``--8<-- [start:name]`` and ``--8<-- [end:name]`` (the section markers of
pymdownx.snippets, which stay in the files). Marker lines are never shown, so a whole file
is shown without them too.

- ``python docs/hooks/sync_includes.py`` rewrites every block of ``docs/`` from its source;
  ``--check`` changes nothing and exits 1 naming each block that differs.
- As an mkdocs hook (``mkdocs.yml``), a block that differs from its source is a warning,
  which ``mkdocs build --strict`` turns into a failure, and so is an ``--8<--`` include
  line left in a page.
- ``tests/test_docs.py`` fails when any block differs, naming the page, the block and its
  first differing line.

This module imports no mkdocs, so the tests need none.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIX = "python docs/hooks/sync_includes.py"

_FROM = re.compile(r"^(?P<indent>[ ]*)<!-- from: (?P<source>\S+) -->[ ]*$")
_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
# pymdownx.snippets' section marker: ``--8<-- [start:name]`` (in any comment syntax).
_SECTION = re.compile(
    r"-+8<-+[ \t]+\[[ \t]*(?P<type>start|end)[ \t]*:[ \t]*(?P<name>[a-z][-_0-9a-z]*)"
)
# pymdownx.snippets' include line, which nothing expands any more.
_INCLUDE = re.compile(r"^[ ]*-+8<-+[ \t]+[\"']")

log = logging.getLogger("mkdocs.hooks.sync_includes")


class IncludeError(ValueError):
    """A block or source that cannot be read: a comment with no fence, a missing file."""


@dataclass
class Block:
    """One fenced block that names its source."""

    number: int  #: 1 for a page's first such block
    line: int  #: the 1-based line of its ``<!-- from: -->`` comment
    source: str  #: ``path`` or ``path:section``
    indent: str
    fence: str
    start: int  #: 0-based index of the first line of its body in the page's lines
    body: list[str]  #: without the indentation

    def describe(self) -> str:
        return f"block {self.number} (line {self.line}, from {self.source})"


def blocks(text: str) -> list[Block]:
    """The blocks of a page that name their source, in order."""
    lines = text.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FROM.match(lines[i])
        if not m:
            i += 1
            continue
        indent, source = m.group("indent"), m.group("source")
        what = f"line {i + 1} (from {source})"
        opener = lines[i + 1] if i + 1 < len(lines) else ""
        fence = _FENCE.match(opener[len(indent) :]) if opener.startswith(indent) else None
        if fence is None:
            raise IncludeError(f"{what}: the next line must open a fenced block")
        mark = fence.group("fence")
        closing = re.compile(rf"^{re.escape(indent)}{re.escape(mark[0])}{{{len(mark)},}}[ ]*$")
        end = i + 2
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if end == len(lines):
            raise IncludeError(f"{what}: the fenced block is never closed")
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 2 : end]
        ]
        found.append(Block(len(found) + 1, i + 1, source, indent, mark, i + 2, body))
        i = end + 1
    return found


def source_lines(source: str, root: Path = ROOT) -> list[str]:
    """The lines a block must show: the file, or its section, without marker lines."""
    path, _, section = source.partition(":")
    file = root / path
    if not file.is_file():
        raise IncludeError(f"{source}: no file {path}")
    lines = file.read_text(encoding="utf-8").splitlines()
    if not section:
        return [line for line in lines if not _SECTION.search(line)]
    inside: list[str] | None = None
    for line in lines:
        m = _SECTION.search(line)
        if m and m.group("name") == section:
            if m.group("type") == "start" and inside is None:
                inside = []
            elif m.group("type") == "end" and inside is not None:
                return inside
        elif inside is not None and not m:
            inside.append(line)
    state = "never ends" if inside is not None else "is not there"
    raise IncludeError(f"{source}: the section [start:{section}] {state} in {path}")


def difference(block: Block, root: Path = ROOT) -> str | None:
    """None when the block shows its source exactly, else its first differing line."""
    expected = source_lines(block.source, root)
    for n, (shown, wanted) in enumerate(zip(block.body, expected, strict=False), start=1):
        if shown != wanted:
            return f"line {n} of the block is {shown!r}, {block.source} has {wanted!r}"
    if len(block.body) != len(expected):
        n = min(len(block.body), len(expected)) + 1
        if len(block.body) > len(expected):
            return f"line {n} of the block is {block.body[n - 1]!r}, {block.source} ends before it"
        return f"the block ends before line {n}, {block.source} has {expected[n - 1]!r}"
    return None


def synced(text: str, root: Path = ROOT) -> str:
    """The page with every block's body replaced by its source's lines."""
    lines = text.splitlines()
    for block in reversed(blocks(text)):
        body = source_lines(block.source, root)
        if any(line.lstrip().startswith(block.fence) for line in body):
            raise IncludeError(
                f"{block.source} has a line starting with {block.fence}: use a longer fence"
            )
        lines[block.start : block.start + len(block.body)] = [
            (block.indent + line) if line else line for line in body
        ]
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def problems(text: str, page: str, root: Path = ROOT) -> list[str]:
    """What is wrong with one page: blocks that differ from their source (or whose source
    cannot be read), and ``--8<--`` include lines that nothing expands."""
    out = [
        f"{page}: line {n}: {line.strip()!r} is a pymdownx.snippets include, which is not "
        "enabled and shows as it is on GitHub: write the code in a fenced block after "
        "<!-- from: path:section --> instead"
        for n, line in enumerate(text.splitlines(), start=1)
        if _INCLUDE.match(line)
    ]
    try:
        found = blocks(text)
    except IncludeError as e:
        return [*out, f"{page}: {e}"]
    for block in found:
        try:
            problem = difference(block, root)
        except IncludeError as e:
            problem = str(e)
        if problem:
            out.append(f"{page}: {block.describe()}: {problem}. Run {FIX}")
    return out


def pages(root: Path = ROOT) -> list[Path]:
    return sorted((root / "docs").rglob("*.md"))


def check(paths: Iterable[Path] | None = None, root: Path = ROOT) -> list[str]:
    """The problems of every page of ``docs/`` (or of ``paths``)."""
    return [
        problem
        for path in (pages(root) if paths is None else paths)
        for problem in problems(path.read_text(encoding="utf-8"), str(path.relative_to(root)), root)
    ]


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"]):
        print(f"usage: {FIX} [--check]", file=sys.stderr)
        return 2
    if argv:
        found = check()
        for problem in found:
            print(problem)
        return 1 if found else 0
    for path in pages():
        text = path.read_text(encoding="utf-8")
        new = synced(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path.relative_to(ROOT)}")
    return 0


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs hook: a warning (a failure with --strict) for each stale block."""
    root = Path(config["config_file_path"]).resolve().parent
    name = Path(page.file.abs_src_path).resolve().relative_to(root).as_posix()
    for problem in problems(markdown, name, root):
        log.warning(problem)
    return markdown


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
