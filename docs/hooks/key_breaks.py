"""Key names break after a dot, never inside a word (an mkdocs hook).

material lets inline code break anywhere, so a table column of configuration keys read
``realtime.max_c`` / ``lients``. A table cell or a heading that holds one name (a word,
or words joined by dots: ``realtime.channels.<channel>.filters``) gets its ``<code>``
the class ``key-name`` (``docs/stylesheets/extra.css``: no break inside a word) and a
``<wbr>`` after each dot: where the name does not fit, it breaks after a dot.

Only the HTML changes; the text (copied, searched) does not. This module imports no
mkdocs, so the tests need none.
"""

from __future__ import annotations

import html
import re
from typing import Any

#: A name: words of letters, digits and ``_`` (``<channel>`` and ``[i]`` too), joined by dots.
NAME = re.compile(r"[A-Za-z_<][\w<>\[\]]*(?:\.[\w<>\[\]]+)*")

# A cell that is one <code>, or a heading that starts with one (before its permalink).
_CELL = re.compile(r"(?P<open><td[^>]*>)\s*<code>(?P<text>[^<]+)</code>\s*(?P<close></td>)")
_HEADING = re.compile(
    r'(?P<open><h[1-6][^>]*>)<code>(?P<text>[^<]+)</code>(?P<close><a class="headerlink"|</h[1-6]>)'
)


def _name(m: re.Match[str]) -> str:
    text = html.unescape(m.group("text"))
    if not NAME.fullmatch(text):
        return m.group(0)
    parts = "<wbr>".join(html.escape(part, quote=False) for part in re.split(r"(?<=\.)", text))
    return f'{m.group("open")}<code class="key-name">{parts}</code>{m.group("close")}'


def mark_names(content: str) -> str:
    """The page's HTML with its key names marked and given break points after dots."""
    return _HEADING.sub(_name, _CELL.sub(_name, content))


def on_page_content(html_text: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs hook: mark the key names of every page."""
    return mark_names(html_text)
