"""Keep tokens and tickets out of logs, Sanic's access log included.

A token in a URL (``?token=``, ``?ticket=``) reaches Sanic's access and error logs
through the request URL, and a ``refresh`` message reaches the websockets frame log at
DEBUG level. :func:`install` adds :class:`RedactSecrets` to the loggers that can carry
them; it rewrites the message, string ``extra`` fields and the formatted traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote_plus

__all__ = ["LOGGERS", "SECRET_NAMES", "RedactSecrets", "install", "redact"]

#: Every logger of Sanic, of websockets and of this package that can see a request URL
#: or a client frame.
LOGGERS = (
    "sanic.access",
    "sanic.error",
    "sanic.root",
    "sanic.server",
    "sanic.websockets",
    "websockets.server",
    "websockets.protocol",
    "sanic_realtime",
    # The package's own (sanic_realtime/log.py): a logger's filters do not apply to its
    # children's records, so each one is filtered itself.
    "sanic.root.realtime",
    "sanic.websockets.realtime",
)

REDACTED = "[redacted]"

#: Names whose value is a secret, compared after decoding (``?tick%65t=`` is ``ticket``
#: to Sanic's query parser, ``"\\u0074oken"`` is ``token`` to a JSON decoder).
SECRET_NAMES = frozenset({"token", "ticket", "access_token"})

# name=value in URLs and query strings; the name may be percent-encoded.
_QUERY_PAIR = re.compile(r"(?:(?<=[?&;])|(?<![\w%.+-]))([\w%.+-]+=)([^&\s#'\"]+)")
# "name": "value" in JSON frames (and their repr in a frame log: backslashes doubled).
_JSON_PAIR = re.compile(r'("((?:[^"\\]|\\.){1,200})"\s*:\s*")([^"]*)')
_JSON_ESCAPE = re.compile(r"\\+(?:u([0-9a-fA-F]{4})|(.))")
# Authorization: Bearer ...
_BEARER = re.compile(r"(?i)(bearer[\s,]+)[A-Za-z0-9._~+/=-]{8,}")
# Any JWT (header.payload.signature, base64url of a JSON object), wherever it appears.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _query_name(raw: str) -> str:
    # As Sanic's query parser reads a name (urllib.parse.parse_qsl: "+" is a space).
    return unquote_plus(raw[:-1]).lower()


def _json_name(raw: str) -> str:
    return _JSON_ESCAPE.sub(lambda m: chr(int(m[1], 16)) if m[1] else m[2], raw).lower()


def redact(text: str) -> str:
    text = _QUERY_PAIR.sub(
        lambda m: m[1] + REDACTED if _query_name(m[1]) in SECRET_NAMES else m[0], text
    )
    text = _JSON_PAIR.sub(
        lambda m: m[1] + REDACTED if _json_name(m[2]) in SECRET_NAMES else m[0], text
    )
    text = _BEARER.sub(lambda m: m[1] + REDACTED, text)
    return _JWT.sub(REDACTED, text)


class RedactSecrets(logging.Filter):
    """Rewrites a record so that no token or ticket survives in it. Never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the caller's problem, not ours
            return True
        record.msg, record.args = redact(message), None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                record.__dict__[key] = redact(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_installed = RedactSecrets()


def install(names: Iterable[str] = LOGGERS) -> None:
    """Add the filter to each logger once (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(_installed)
