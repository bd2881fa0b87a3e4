"""A URL that subscribes by itself (a channel route, ``/ws/logs?level=error``, or the
general route with ``?channels=``), turned into what the client does on every
connection: the general route, those channels, those filters. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["UrlPlan", "plan_from_url"]

#: Query parameters that stay in the URL (credentials), not filters.
_KEPT = ("token", "ticket")


class UrlPlan(NamedTuple):
    #: The general route, with the URL's credentials if it had any.
    url: str
    #: channel -> its filter (None: no filter)
    subs: dict[str, dict[str, Any] | None]
    #: channel -> the id to resume from (the URL's ``since``)
    since: dict[str, str]


def plan_from_url(url: str, channels: Sequence[str]) -> UrlPlan:
    """``url`` subscribed the connection to ``channels`` (the server's welcome says
    which): the plan that does the same on the general route."""
    parts = urlsplit(url)
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    if "channels" in query:  # the general route already
        path = parts.path
        del query["channels"]
    else:  # {url_prefix}/{channel}
        path = parts.path.rstrip("/").rsplit("/", 1)[0] or "/"
    kept = {k: query.pop(k) for k in _KEPT if k in query}
    since: dict[str, str] = {}
    bare = query.pop("since", None)
    if bare is not None and len(channels) == 1:
        since[channels[0]] = bare
    for key in [k for k in query if k.startswith("since.")]:
        since[key[len("since.") :]] = query.pop(key)
    flt = dict(query) or None
    general = urlunsplit((parts.scheme, parts.netloc, path, urlencode(kept), ""))
    return UrlPlan(general, {channel: flt for channel in channels}, since)
