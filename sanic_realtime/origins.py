"""Which browser origins may connect. Pure.

``allowed_origins`` holds ``"*"``, exact origins (``https://ops.example.com``) and
patterns whose first host label is ``*`` (``https://*.example.com``): ``*`` stands for
one or more labels, so the pattern admits ``https://a.example.com`` and
``https://a.b.example.com`` but not ``https://example.com``, ``http://a.example.com`` or
``https://a.example.com:8443``. Scheme and host compare case-insensitively; the port
must match exactly. A request without an ``Origin`` header is not from a browser and is
allowed (the browser is what enforces origins; other clients can send anything).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["OriginPolicy"]


class OriginPolicy:
    __slots__ = ("_any", "_exact", "_patterns")

    def __init__(self, allowed: Iterable[str]) -> None:
        self._any = False
        self._exact: set[str] = set()
        #: (scheme + "://", "." + domain, ":port" or "")
        self._patterns: list[tuple[str, str, str]] = []
        for origin in allowed:
            if origin == "*":
                self._any = True
                continue
            origin = origin.lower()
            scheme, _, rest = origin.partition("://")
            if rest.startswith("*."):
                host, _, port = rest[2:].partition(":")
                self._patterns.append((scheme + "://", "." + host, ":" + port if port else ""))
            else:
                self._exact.add(origin)

    def allows(self, origin: str | None) -> bool:
        if origin is None or self._any:
            return True
        origin = origin.lower()
        if origin in self._exact:
            return True
        for scheme, domain, port in self._patterns:
            if not origin.startswith(scheme):
                continue
            hostport = origin[len(scheme) :]
            host, sep, rest = hostport.partition(":")
            if (":" + rest if sep else "") != port:
                continue
            if host.endswith(domain) and len(host) > len(domain) and "/" not in host:
                label = host[: -len(domain)]
                if not label.startswith(".") and ".." not in label:
                    return True
        return False
