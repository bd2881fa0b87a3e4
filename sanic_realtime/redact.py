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

__all__ = ["LOGGERS", "RedactSecrets", "install", "redact"]

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

_PATTERNS = (
    # ?token=... &ticket=... in URLs and query strings
    re.compile(r"(?i)((?:[?&;]|\b)(?:token|ticket|access_token)=)[^&\s#'\"]+"),
    # "token": "..." in JSON frames
    re.compile(r"(?i)(\"(?:token|ticket|access_token)\"\s*:\s*\")[^\"]*"),
    # Authorization: Bearer ...
    re.compile(r"(?i)(bearer[\s,]+)[A-Za-z0-9._~+/=-]{8,}"),
)
# Any JWT (header.payload.signature, base64url of a JSON object), wherever it appears.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
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
