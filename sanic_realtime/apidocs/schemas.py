"""JSON Schemas of Structs, as components that refer to each other by ``$ref``.

Pure: msgspec and the standard library only.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import msgspec

__all__ = ["components", "to_openapi30"]

_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number"}


def components(types: Iterable[Any], ref_prefix: str) -> dict[str, Any]:
    """``{name: schema}`` for ``types`` and every Struct they reach, ``$ref`` s written
    ``{ref_prefix}{name}`` (e.g. ``#/components/schemas/``)."""
    _, defs = msgspec.json.schema_components(list(types), ref_template=ref_prefix + "{name}")
    return {name: _tidy(schema) for name, schema in sorted(defs.items())}


def _tidy(node: Any) -> Any:
    """Docstrings dedented; an ``enum`` of one kind of value gets its ``type`` (msgspec
    writes a ``Literal`` as a bare enum; code generators want the type)."""
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _tidy(value) for key, value in node.items()}
    if isinstance(out.get("description"), str):
        out["description"] = inspect.cleandoc(out["description"])
    enum = out.get("enum")
    if isinstance(enum, list) and enum and "type" not in out:
        kinds = {_JSON_TYPES.get(type(value)) for value in enum}
        if len(kinds) == 1 and None not in kinds:
            out["type"] = kinds.pop()
    return out


def to_openapi30(node: Any) -> Any:
    """A JSON Schema (as msgspec writes it) in the dialect of OpenAPI 3.0's Schema Object:
    ``{"type": "null"}`` in an ``anyOf`` becomes ``nullable: true``, ``examples`` becomes
    ``example``, ``const`` becomes a one-value ``enum``, an empty ``required`` goes."""
    if isinstance(node, list):
        return [to_openapi30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "examples" and isinstance(value, list):
            if value:
                out["example"] = to_openapi30(value[0])
        elif key == "const":
            out["enum"] = [value]
        elif key == "required" and value == []:
            continue  # OpenAPI 3.0: a required list has at least one item
        else:
            out[key] = to_openapi30(value)
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        del out["anyOf"]
        out["nullable"] = True
        if len(rest) == 1 and "$ref" not in rest[0]:
            out = {**rest[0], **out}
        elif len(rest) == 1:
            out["allOf"] = rest  # siblings of a $ref are ignored in OpenAPI 3.0
        else:
            out["anyOf"] = rest
    return out
