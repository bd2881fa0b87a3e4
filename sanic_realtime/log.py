"""The package's loggers: children of Sanic's, so Sanic's logging configuration (level,
handlers, format) applies to them. See docs/reference/logging.md.

- ``sanic.websockets.realtime``: one INFO line per connection opened and closed (client
  id, user, channels, close code and reason, duration) and per refusal before the
  upgrade (status, code, reason). Each record also carries these as ``extra`` fields
  (``realtime_event``, ``client_id``, ``user_id``, ``channels``, ...) for JSON formatters.
- ``sanic.root.realtime``: everything else (backplane state, failing hooks, errors).

Neither ever carries a token or a ticket: messages name the path, not the query string,
and :mod:`sanic_realtime.redact` filters both loggers as a second line of defence.
"""

from __future__ import annotations

import logging

__all__ = ["CONNECTION_LOGGER", "LOGGER", "connection_logger", "logger"]

CONNECTION_LOGGER = "sanic.websockets.realtime"
LOGGER = "sanic.root.realtime"

connection_logger = logging.getLogger(CONNECTION_LOGGER)
logger = logging.getLogger(LOGGER)
