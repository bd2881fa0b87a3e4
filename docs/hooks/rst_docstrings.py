"""A griffe extension (loaded by mkdocstrings, see mkdocs.yml): the package's docstrings
are written in reStructuredText habits; the site renders Markdown. This rewrites, in
each docstring as it is loaded (the source files are untouched):

- roles, ``:class:`~a.B``` and ``:meth:`x``` -> `B`, `x`;
- a paragraph ending in ``::`` followed by an indented block -> the paragraph ending in
  ``:`` and a fenced code block.

Double backquotes (````x````) are already a Markdown code span.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|attr|data|exc|mod|obj):`~?(?:[\w.]*\.)?([^`]+)`")


def rst_to_markdown(text: str) -> str:
    text = _ROLE.sub(r"`\1`", text)
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and not line.lstrip().startswith(("`", "|")):
            # "text::" -> "text:"; a bare "::" line disappears
            head = line.rstrip()[:-2].rstrip()
            if head:
                out.append(head + ":")
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            block: list[str] = []
            if i < len(lines) and lines[i].startswith((" ", "\t")):
                # the usual literal block: every indented (or blank) line that follows
                while i < len(lines) and (not lines[i].strip() or lines[i][:1] in " \t"):
                    block.append(lines[i])
                    i += 1
            else:
                # a docstring whose only indentation was removed (a summary line ending
                # in "::"): the paragraph that follows
                while i < len(lines) and lines[i].strip():
                    block.append(lines[i])
                    i += 1
            while block and not block[-1].strip():
                block.pop()
            code = textwrap.dedent("\n".join(block)).strip("\n")
            if code:
                out += ["", "```text" if _looks_like_text(code) else "```python", code, "```", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _looks_like_text(code: str) -> bool:
    """A tree drawing or a shell line, not Python."""
    return any(ch in code for ch in "├└│") or code.lstrip().startswith("$")


class RstToMarkdown(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
