"""The configuration reference, generated from the config Structs (an mkdocs hook).

Every field of every msgspec Struct reachable from ``RealtimeConfig`` becomes a table row:
its key path (as error messages write it), type, default, and the ``#:`` comment lines
written above it in the source; each Struct's docstring introduces its table. Nothing
here is maintained by hand: a new Struct or field appears in the page by itself.

mkdocs calls :func:`on_page_markdown`; ``tests/test_docs.py`` calls :func:`render`.
This module imports no mkdocs, so the tests need none.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import yaml

#: The line of a page that the generated reference replaces.
MARKER = "<!-- generated: configuration keys -->"


@dataclass
class Section:
    """One Struct at one key path (a Struct reached by two paths gets two sections)."""

    path: str
    cls: type[msgspec.Struct]
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)


REQUIRED = object()


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """``Annotated[T, Meta...]`` -> (T, [metas])."""
    metas: list[Any] = []
    while typing.get_origin(tp) is typing.Annotated:
        tp, *extra = typing.get_args(tp)
        metas.extend(extra)
    return tp, metas


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def rst_to_markdown(text: str) -> str:
    """``x`` -> `x`; :class:`~a.b.C` -> `C`; one paragraph per blank-line block."""
    text = re.sub(r":\w+:`~?(?:[\w.]*\.)?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip())]
    return "\n\n".join(p for p in paragraphs if p)


def format_duration(seconds: float) -> str:
    """600.0 -> 10m, 30.0 -> 30s, 0.25 -> 250ms (what the YAML accepts back)."""
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000, 3):g}ms"


def format_value(value: Any) -> str:
    """A default as YAML flow text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_duration(type(value)):
        return format_duration(float(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # Plain when YAML reads it back as the same string (not "*", "true", "1", "").
        plain = re.fullmatch(r"[A-Za-z0-9_/.:-]+", value) and yaml.safe_load(value) == value
        return value if plain else json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, msgspec.Struct):
        items = [(f.encode_name, getattr(value, f.name)) for f in msgspec.structs.fields(value)]
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in items) + "}"
    return repr(value)


def _is_duration(tp: Any) -> bool:
    return isinstance(tp, type) and tp.__name__ == "Duration" and issubclass(tp, float)


_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def format_type(tp: Any, anchors: dict[type, str]) -> str:
    tp, metas = _unwrap(tp)
    bounds = [
        f"{sign} {getattr(m, name)}"
        for m in metas
        for name, sign in _BOUNDS
        if getattr(m, name, None) is not None
    ]
    if tp is type(None):
        text = "null"
    elif _is_duration(tp):
        text = "duration"
    elif tp in (int, float, str, bool):
        text = {int: "int", float: "number", str: "string", bool: "bool"}[tp]
    elif typing.get_origin(tp) is typing.Literal:
        text = " \\| ".join(f"`{v}`" for v in typing.get_args(tp))
    elif _is_union(tp):
        text = " or ".join(format_type(t, anchors) for t in typing.get_args(tp))
    elif typing.get_origin(tp) in (list, tuple, set, frozenset):
        text = "list of " + format_type(typing.get_args(tp)[0], anchors)
    elif typing.get_origin(tp) is dict:
        text = "map of name to " + format_type(typing.get_args(tp)[1], anchors)
    elif _is_struct(tp):
        anchor = anchors.get(tp)
        text = f"[{tp.__name__}](#{anchor})" if anchor else tp.__name__
    else:
        text = getattr(tp, "__name__", str(tp))
    return text + (" " + ", ".join(bounds) if bounds else "")


def _nested_paths(tp: Any, key: str) -> list[tuple[str, type[msgspec.Struct]]]:
    tp, _ = _unwrap(tp)
    if _is_struct(tp):
        return [(f".{key}", tp)]
    if _is_union(tp):
        return [n for t in typing.get_args(tp) for n in _nested_paths(t, key)]
    if typing.get_origin(tp) is dict:
        placeholder = "<" + (key[:-1] if key.endswith("s") else key) + ">"
        value = typing.get_args(tp)[1]
        return [(f".{key}.{placeholder}{p[len('.x') :]}", s) for p, s in _nested_paths(value, "x")]
    if typing.get_origin(tp) in (list, tuple):
        item = typing.get_args(tp)[0]
        return [(f".{key}[i]{p[len('.x') :]}", s) for p, s in _nested_paths(item, "x")]
    return []


class _Source:
    """Docstrings and ``#:`` comments of classes, read from their source files."""

    def __init__(self) -> None:
        self._files: dict[Path, tuple[list[str], ast.Module]] = {}

    def _class(self, cls: type) -> tuple[list[str], ast.ClassDef] | None:
        path = Path(inspect.getsourcefile(cls) or "")
        if path not in self._files:
            text = path.read_text(encoding="utf-8")
            self._files[path] = (text.splitlines(), ast.parse(text))
        lines, module = self._files[path]
        for node in ast.walk(module):
            if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
                return lines, node
        return None

    def docstring(self, cls: type) -> str:
        found = self._class(cls)
        return (ast.get_docstring(found[1]) or "") if found else ""

    def comments(self, cls: type) -> dict[str, str]:
        """field name -> the ``#:`` lines right above it, joined."""
        found = self._class(cls)
        if not found:
            return {}
        lines, node = found
        out: dict[str, str] = {}
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                above: list[str] = []
                i = stmt.lineno - 2  # the line above, 0-based
                while i >= 0 and lines[i].strip().startswith("#:"):
                    above.insert(0, lines[i].strip()[2:].strip())
                    i -= 1
                if above:
                    out[stmt.target.id] = " ".join(above)
        return out


def sections(root: type[msgspec.Struct], root_path: str = "realtime") -> list[Section]:
    """Every Struct reachable from ``root``, depth first in field order, with its rows."""
    source = _Source()
    found: list[Section] = []
    anchors: dict[type, str] = {}

    def walk(path: str, cls: type[msgspec.Struct], seen: tuple[type, ...]) -> None:
        section = Section(path, cls)
        found.append(section)
        anchors.setdefault(cls, anchor(path))
        for f in msgspec.structs.fields(cls):
            for segment, child in _nested_paths(f.type, f.encode_name):
                if child not in seen:  # a Struct that contains itself is shown once
                    walk(path + segment, child, (*seen, child))

    walk(root_path, root, (root,))
    for section in found:
        notes = source.comments(section.cls)
        for f in msgspec.structs.fields(section.cls):
            if f.default is not msgspec.NODEFAULT:
                value = f.default
            elif f.default_factory is not msgspec.NODEFAULT:
                value = f.default_factory()
            else:
                value = REQUIRED
            default = "required" if value is REQUIRED else f"`{format_value(value)}`"
            if isinstance(value, msgspec.Struct) and len(default) > 60:
                default = "each key's default, below"
            section.rows.append(
                (
                    f"{section.path}.{f.encode_name}",
                    format_type(f.type, anchors),
                    default,
                    rst_to_markdown(notes.get(f.name, "")),
                )
            )
    return found


def anchor(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def render(root: type[msgspec.Struct] | None = None) -> str:
    """The Markdown of the reference: one section and table per Struct and key path."""
    if root is None:
        from sanic_realtime.config import RealtimeConfig as root
    source = _Source()
    out: list[str] = []
    for section in sections(root):
        out.append(f"## `{section.path}` {{#{anchor(section.path)}}}\n")
        doc = rst_to_markdown(source.docstring(section.cls))
        out.append(f"Python: `{section.cls.__name__}`. {doc}".rstrip() + "\n")
        out.append("| key | type | default | description |\n|---|---|---|---|")
        for key, type_text, default, note in section.rows:
            cell = note.replace("|", "\\|")
            out.append(f"| `{key}` | {type_text} | {default} | {cell} |")
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs hook: put the generated reference where the page has :data:`MARKER`."""
    if MARKER in markdown:
        return markdown.replace(MARKER, render())
    return markdown
