"""Which browser origins may connect. Pure.

``allowed_origins`` holds ``"*"``, exact origins (``https://ops.example.com``) and
patterns whose first host label is ``*`` (``https://*.example.com``): ``*`` stands for
one or more labels, so the pattern admits ``https://a.example.com`` and
``https://a.b.example.com`` but not ``https://example.com``, ``http://a.example.com`` or
``https://a.example.com:8443``. Scheme and host compare case-insensitively; the port
must match exactly, a scheme's default port being the same as none (browsers leave it
out: ``https://a.example.com:443`` is ``https://a.example.com``). A request without an
``Origin`` header is not from a browser and is allowed (the browser is what enforces
origins; other clients can send anything).

Both sides are parsed as an origin is serialized (RFC 6454 §6.1): ``scheme://host`` with
an optional ``:port`` and nothing else. The host is DNS labels (letters, digits, ``-``
and ``_``, 1-63 characters, not starting or ending with ``-``) separated by single dots,
or a bracketed IPv6 address. A header that is not such an origin (``#``, ``?``, ``@``,
``/``, ``\\``, empty labels, ``null``) matches nothing but ``"*"``;
:func:`origin_problem` says what is wrong with a configured entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["Origin", "OriginPolicy", "origin_problem", "parse_origin"]

_SCHEME = r"[a-z][a-z0-9+.-]*"
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = rf"{_LABEL}(?:\.{_LABEL})*"
_HOST = rf"(?:{_NAME}|\[[0-9a-f:.]+\])"
_ORIGIN = re.compile(rf"({_SCHEME})://({_HOST})(?::([0-9]{{1,5}}))?", re.ASCII)
_PATTERN = re.compile(rf"({_SCHEME})://\*\.({_NAME})(?::([0-9]{{1,5}}))?", re.ASCII)
_DEFAULT_PORTS = {"http": "80", "ws": "80", "https": "443", "wss": "443"}

#: (scheme, host, port): port "" for none or the scheme's default.
Origin = tuple[str, str, str]


def _origin(match: re.Match[str] | None) -> Origin | None:
    if match is None or len(match[2]) > 253:
        return None
    scheme, host, port = match[1], match[2], match[3] or ""
    if port:
        number = int(port)
        if not 0 < number <= 65535:
            return None
        port = "" if str(number) == _DEFAULT_PORTS.get(scheme) else str(number)
    return scheme, host, port


def parse_origin(text: str) -> Origin | None:
    """``(scheme, host, port)`` of a serialized origin, lower-cased; None if ``text`` is
    not one."""
    return _origin(_ORIGIN.fullmatch(text.lower()))


def _parse_pattern(text: str) -> Origin | None:
    """A ``scheme://*.domain[:port]`` pattern, as ``(scheme, "." + domain, port)``."""
    parsed = _origin(_PATTERN.fullmatch(text.lower()))
    return None if parsed is None else (parsed[0], "." + parsed[1], parsed[2])


def origin_problem(entry: str) -> str | None:
    """Why ``entry`` cannot be in ``allowed_origins``; None when it can."""
    if entry == "*" or parse_origin(entry) is not None or _parse_pattern(entry) is not None:
        return None
    if entry.lower() == "null":
        return (
            "'null' is the origin of sandboxed frames and file:// pages, which any site "
            "can produce: it cannot be allowed"
        )
    return (
        "not an origin: scheme://host[:port] or scheme://*.domain[:port], the host being "
        "DNS labels separated by single dots (or [IPv6]), with no path, query, fragment, "
        f"user or backslash: {entry!r}"
    )


class OriginPolicy:
    __slots__ = ("_any", "_exact", "_patterns")

    def __init__(self, allowed: Iterable[str]) -> None:
        self._any = False
        self._exact: set[Origin] = set()
        #: (scheme, "." + domain, port)
        self._patterns: list[Origin] = []
        for entry in allowed:
            if entry == "*":
                self._any = True
            elif (origin := parse_origin(entry)) is not None:
                self._exact.add(origin)
            elif (pattern := _parse_pattern(entry)) is not None:
                self._patterns.append(pattern)
            else:
                raise ValueError(origin_problem(entry))

    def allows(self, origin: str | None) -> bool:
        if origin is None or self._any:
            return True
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        if parsed in self._exact:
            return True
        scheme, host, port = parsed
        return any(
            scheme == p_scheme and port == p_port and host.endswith(domain)
            for p_scheme, domain, p_port in self._patterns
        )
