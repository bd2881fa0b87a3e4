"""Where the Redis backplane connects: the ``backplane`` URL parsed and checked, and the
two redis.asyncio clients built from it (see :class:`.connection.Connection`).

Plain URLs (``redis://``, ``rediss://``, ``unix://``) go to ``Redis.from_url`` as they
are. A Sentinel URL names the sentinels and the master's service::

    redis+sentinel://[user:password@]host1:26379,host2:26379/mymaster[/db][?options]
    redis+sentinels://...   (TLS to the sentinels and the master; or ?ssl=true)

The userinfo authenticates to the master (and its replicas); ``sentinel_username`` and
``sentinel_password`` to the sentinels. Options: ``ssl``, ``ssl_cert_reqs``
(``none``, ``optional``, ``required``), ``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile``. Both clients ask the sentinels for the master on every new
connection (redis-py's ``SentinelConnectionPool``), so after a failover the next
connection reaches the promoted replica.

Parsing imports no ``redis``: the configuration check uses it too.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

__all__ = [
    "DEFAULT_SENTINEL_PORT",
    "PLAIN_SCHEMES",
    "SENTINEL_SCHEMES",
    "BadRedisURL",
    "Sentinels",
    "build_clients",
    "parse",
    "redact",
]

PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "redis+sentinels")
DEFAULT_SENTINEL_PORT = 26379
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_CERT_REQS = ("none", "optional", "required")
_SSL_PATHS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_OPTIONS = ("sentinel_username", "sentinel_password", "ssl", "ssl_cert_reqs", *_SSL_PATHS)
_SECRETS = ("sentinel_password",)
_EXAMPLE = "redis+sentinel://host1:26379,host2:26379/mymaster/0"


class BadRedisURL(ValueError):
    """The backplane URL cannot be used; the message says what is wrong with it."""


@dataclasses.dataclass(frozen=True)
class Sentinels:
    """A parsed ``redis+sentinel://`` URL."""

    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    ssl: bool = False
    #: ssl_cert_reqs and the certificate paths, as given (only with ssl).
    ssl_options: tuple[tuple[str, str], ...] = ()


def redact(url: str) -> str:
    """``url`` without its password (the userinfo's and ``sentinel_password``'s)."""
    parts = urlsplit(url)
    if parts.password is None and not any(k in _SECRETS for k, _ in parse_qsl(parts.query)):
        return url  # unchanged (urlunsplit would drop an empty netloc's "//")
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{netloc}")
    if parts.query:
        query = [(k, "***" if k in _SECRETS else v) for k, v in parse_qsl(parts.query)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


def parse(url: str) -> Sentinels | None:
    """The Sentinel URL's parts; ``None`` for a plain Redis URL; :class:`BadRedisURL`
    naming what is wrong otherwise."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in PLAIN_SCHEMES:
        return None
    if scheme not in SENTINEL_SCHEMES:
        raise BadRedisURL(f"must be 'memory' or a redis:// URL, got {redact(url)!r}")
    shown = redact(url)
    parts = urlsplit(url)
    hostinfo = parts.netloc.rsplit("@", 1)[-1]
    if not hostinfo:
        raise BadRedisURL(f"names no sentinel host (write {_EXAMPLE}), got {shown!r}")
    hosts = tuple(_host(h, shown) for h in hostinfo.split(","))
    segments = parts.path.split("/")[1:]
    if not segments or not segments[0]:
        raise BadRedisURL(
            f"names no master service (the path's first part, as in {_EXAMPLE}), got {shown!r}"
        )
    if len(segments) > 2 or (len(segments) == 2 and not segments[1]):
        raise BadRedisURL(f"the path must be /<service>[/<db>] (as in {_EXAMPLE}), got {shown!r}")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise BadRedisURL(
                f"bad db {segments[1]!r}: must be a number (0, 1, ...), got {shown!r}"
            )
        db = int(segments[1])
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key not in _OPTIONS:
            raise BadRedisURL(
                f"unknown option {key!r} (known: {', '.join(_OPTIONS)}), got {shown!r}"
            )
        if key in options:
            raise BadRedisURL(f"option {key!r} is given twice, got {shown!r}")
        options[key] = value
    ssl = scheme == "redis+sentinels"
    if "ssl" in options:
        value = options.pop("ssl").lower()
        if value not in _TRUE + _FALSE:
            raise BadRedisURL(f"ssl must be true or false, got {value!r} in {shown!r}")
        ssl = ssl or value in _TRUE
    reqs = options.get("ssl_cert_reqs")
    if reqs is not None and reqs.lower() not in _CERT_REQS:
        raise BadRedisURL(
            f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}, got {reqs!r} in {shown!r}"
        )
    ssl_options = tuple((k, options.pop(k)) for k in ("ssl_cert_reqs", *_SSL_PATHS) if k in options)
    if ssl_options and not ssl:
        raise BadRedisURL(
            f"{ssl_options[0][0]} needs TLS (redis+sentinels:// or ssl=true), got {shown!r}"
        )
    return Sentinels(
        hosts=hosts,
        service=unquote(segments[0]),
        db=db,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password"),
        ssl=ssl,
        ssl_options=ssl_options,
    )


def _host(text: str, shown: str) -> tuple[str, int]:
    if not text:
        raise BadRedisURL(f"has an empty sentinel host (a stray ','), got {shown!r}")
    if text.startswith("["):  # [::1]:26379
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise BadRedisURL(f"bad sentinel host {text!r}, got {shown!r}")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise BadRedisURL(f"sentinel {text!r} has no host name, got {shown!r}")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadRedisURL(
            f"bad port {port_text!r} of sentinel {host!r}: must be 1-65535, got {shown!r}"
        )
    return host, int(port_text)


def build_clients(
    url: str, options: dict[str, Any], retried: Any, unretried: Any
) -> tuple[Any, Any]:
    """The client with ``retried`` (a ``Retry``) and the one with ``unretried``, both
    with ``options`` (socket options, client_name). With Sentinel each has its own
    ``Sentinel`` manager, closed with the client."""
    import redis.asyncio as aioredis

    sentinels = parse(url)
    if sentinels is None:
        return (
            aioredis.Redis.from_url(url, retry=retried, **options),
            aioredis.Redis.from_url(url, retry=unretried, **options),
        )
    return _master(sentinels, options, retried), _master(sentinels, options, unretried)


def _master(sentinels: Sentinels, options: dict[str, Any], retry: Any) -> Any:
    from redis.asyncio.sentinel import Sentinel

    tls: dict[str, Any] = {}
    if sentinels.ssl:
        tls = {"ssl": True, **dict(sentinels.ssl_options)}
        if "ssl_cert_reqs" in tls:
            tls["ssl_cert_reqs"] = tls["ssl_cert_reqs"].lower()
    sentinel_kwargs = {
        **{k: v for k, v in options.items() if k.startswith("socket_")},
        "client_name": options.get("client_name"),
        "username": sentinels.sentinel_username,
        "password": sentinels.sentinel_password,
        **tls,
    }
    manager = Sentinel(list(sentinels.hosts), sentinel_kwargs=sentinel_kwargs)
    return manager.master_for(
        sentinels.service,
        redis_class=_sentinel_redis_class(),
        db=sentinels.db,
        username=sentinels.username,
        password=sentinels.password,
        retry=retry,
        **options,
        **tls,
    )._own(manager)


_CLASS: Any = None


def _sentinel_redis_class() -> Any:
    """A ``Redis`` whose ``aclose`` closes its ``Sentinel`` manager's clients too (made
    on first use: this module imports no redis at import time)."""
    global _CLASS
    if _CLASS is None:
        import redis.asyncio as aioredis

        class SentinelRedis(aioredis.Redis):
            _manager: Any = None

            def _own(self, manager: Any) -> SentinelRedis:
                self._manager = manager
                return self

            async def aclose(self, close_connection_pool: bool | None = None) -> None:
                try:
                    await super().aclose(close_connection_pool)
                finally:
                    if self._manager is not None:
                        await self._manager.aclose()

        _CLASS = SentinelRedis
    return _CLASS
