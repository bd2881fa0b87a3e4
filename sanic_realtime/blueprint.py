"""The Sanic blueprint: WebSocket routes, admin routes, health, listeners.

Refusals happen in request middleware, before the upgrade, as plain HTTP with a
JSON body ``{"error": {"code", "message"}}``: a handler runs only after the
handshake, which is too late to answer with a status.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

# A runtime import: sanic-ext (dependency injection, OpenAPI) evaluates handler type hints.
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets import http11
from websockets.datastructures import Headers as WSHeaders
from websockets.server import ServerProtocol

from . import redact
from .apidocs.routes import register_api_docs
from .assets import CLIENT_ASSETS, Asset
from .auth import BEARER_SUBPROTOCOL, Identity, parse_subprotocols
from .bodies import BroadcastRequest, BroadcastTarget
from .config import RealtimeConfig
from .events import utc_timestamp
from .exceptions import (
    BadSince,
    ClientError,
    ConfigError,
    ServerUnavailable,
    TooManyRequests,
    Unauthorized,
    UnknownFilter,
)
from .filters import FilterParam
from .hub import Connection, Reply
from .log import connection_logger, logger
from .protocol import (
    MAX_JSON_DEPTH,
    NESTED_TOO_DEEPLY,
    CloseCode,
    ConnectionEstablished,
    ConnectionEstablishedData,
    too_deep,
)
from .session import Session
from .subscriptions import (
    SubRequest,
    check_subscription_limit,
    plan_subscription,
    resolve_channels,
)
from .transport import SanicSocket

if TYPE_CHECKING:
    from .extension import Realtime

__all__ = ["build_blueprint"]

_encoder = msgspec.json.Encoder()

#: websockets logs every refused handshake with its traceback; the connection log's
#: "refused" line says what was wrong (docs/reference/logging.md).
_handshake_logger = logging.getLogger("sanic_realtime.handshake")
_handshake_logger.addHandler(logging.NullHandler())
_handshake_logger.propagate = False


#: Query parameters read by authentication, never filters.
_AUTH_PARAMS = frozenset({"token", "ticket"})


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> HTTPResponse:
    return HTTPResponse(
        _encoder.encode(body),
        status=status,
        headers=dict(headers or {}),
        content_type="application/json",
    )


def error_response(error: ClientError) -> HTTPResponse:
    headers = {}
    if isinstance(error, Unauthorized):
        # RFC 6750 section 3: no error attribute when no credentials were sent.
        challenge = 'Bearer realm="sanic-realtime"'
        if error.code in ("invalid_token", "token_expired", "invalid_ticket"):
            challenge += ', error="invalid_token"'
        headers["WWW-Authenticate"] = challenge
    elif isinstance(error, TooManyRequests) and error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return json_response({"error": error.to_dict()}, error.status, headers)


def client_ip(request: Request) -> str:
    """The proxy-aware address when Sanic is told about proxies (``REAL_IP_HEADER``,
    ``PROXIES_COUNT``, ``FORWARDED_SECRET``), else the peer's."""
    return str(request.remote_addr or request.ip)


class _BearerIfOffered:
    """The subprotocols a WebSocket route supports, decided per request.

    A browser sends its token as ``new WebSocket(url, ["bearer", token])``, and fails the
    connection unless the server selects one of the offered subprotocols. Declaring
    ``["bearer"]`` statically would make websockets refuse every client that offers none
    (HTTP 400), so Sanic's handshake, which iterates this object, sees ``bearer`` only
    when the current request offers it. The token itself is never selected or echoed.
    """

    def __iter__(self) -> Iterator[str]:
        try:
            request = Request.get_current()
        except Exception:  # no request context: offer nothing
            return iter(())
        offered = parse_subprotocols(request.headers.getall("sec-websocket-protocol", []))
        return iter((BEARER_SUBPROTOCOL,) if BEARER_SUBPROTOCOL in offered else ())


def _welcome(
    conn: Connection, identity: Identity | None
) -> Callable[[Reply], ConnectionEstablished]:
    """The builder of ``connection_established`` (docs/protocol.md)."""
    expires_at = identity.expires_at if identity is not None else None
    client_id, user_id, role = conn.id, conn.user_id, conn.role
    roles = list(identity.roles) if identity is not None else []

    def build(reply: Reply) -> ConnectionEstablished:
        data = ConnectionEstablishedData(
            status="connected",
            client_id=client_id,
            user_id=user_id,
            role=role,
            roles=roles,
            expires_at=None if expires_at is None else utc_timestamp(expires_at),
            channels=reply.channels,
            recovered=reply.recovered,
        )
        return ConnectionEstablished(timestamp=reply.timestamp, data=data)

    return build


def check_handshake(request: Request) -> None:
    """Refuse an upgrade request that websockets would refuse (no or bad
    ``Sec-WebSocket-Key``, a version other than 13, a missing ``Connection: Upgrade``),
    with websockets' own status and reason, before a slot is reserved for it."""
    ws_request = http11.Request(path=request.path, headers=WSHeaders(request.headers))
    response = ServerProtocol(logger=_handshake_logger).accept(ws_request)
    if response.status_code != 101:
        # The first paragraph: the rest is advice for someone who opened it in a browser.
        body = response.body.decode(errors="replace").split("\n\n")[0].strip()
        reason = body or response.reason_phrase
        raise ClientError(reason, code="invalid_handshake", status=response.status_code)


# --------------------------------------------------------------------------- query -> plan


def _query(request: Request) -> dict[str, str]:
    """Query parameters; a repeated parameter's values are joined with ','.

    Parsed as ``request.get_args`` does, but not cached on the request, which lives as
    long as its WebSocket connection."""
    args = parse_qs(request.query_string, keep_blank_values=True, errors="replace")
    return {key: ",".join(values) for key, values in args.items()}


def channel_plan(
    config: RealtimeConfig,
    channel: str,
    query: Mapping[str, str],
    roles: tuple[str, ...] | None = None,
) -> list[SubRequest]:
    """``GET {prefix}/{channel}?level=warn&types=a,b&since=<id>``."""
    params: dict[str, FilterParam] = {}
    since: dict[str, str] = {}
    for key, value in query.items():
        if key == "since":
            since[channel] = value
        elif key not in _AUTH_PARAMS:
            params[key] = value
    return plan_subscription(
        config, [channel], params, since, since_names={channel: "since"}, roles=roles
    )


def general_plan(
    config: RealtimeConfig, query: Mapping[str, str], roles: tuple[str, ...] | None = None
) -> list[SubRequest]:
    """``GET {prefix}?channels=a,b&level=warn&since.a=<id>``; no channels: subscribe later."""
    channels: list[str] = []
    params: dict[str, FilterParam] = {}
    since: dict[str, str] = {}
    names: dict[str, str] = {}
    bare_since: str | None = None
    for key, value in query.items():
        if key == "channels":
            channels = [c.strip() for c in value.split(",") if c.strip()]
        elif key == "since":
            bare_since = value
        elif key.startswith("since."):
            since[key[6:]] = value
            names[key[6:]] = key
        elif key not in _AUTH_PARAMS:
            params[key] = value
    if not channels:
        if params:
            param = next(iter(params))
            raise UnknownFilter(param, f"filter {param!r} needs ?channels= on the general endpoint")
        if since or bare_since is not None:
            raise BadSince("since", "since needs ?channels= on the general endpoint")
        return []
    if bare_since is not None:
        resolved = resolve_channels(config, channels, roles)
        if len(resolved) != 1:
            raise BadSince("since", "with several channels, write since.<channel>=<id>")
        if since:
            raise BadSince("since", "give since or since.<channel>, not both")
        since, names = {resolved[0]: bare_since}, {resolved[0]: "since"}
    return plan_subscription(config, channels, params, since, since_names=names, roles=roles)


# --------------------------------------------------------------------------- blueprint


def build_blueprint(realtime: Realtime) -> Blueprint:
    config = realtime.config
    hub = realtime.hub
    guard = realtime.guard
    prefix = config.url_prefix
    bp = Blueprint("sanic_realtime")
    redact.install()  # tokens in URLs must not reach Sanic's access log
    subprotocols = cast(Any, _BearerIfOffered())

    @bp.on_request
    async def refuse_before_upgrade(request: Request) -> HTTPResponse | None:
        route = request.route
        kind = getattr(route.ctx, "realtime", None) if route is not None else None
        if kind is None:
            return None
        try:
            guard.check_rate(client_ip(request))
            guard.check_origin(request.headers.get("origin"))
            query = _query(request)
            identity = await guard.authenticate(
                request.headers.get("authorization"),
                parse_subprotocols(request.headers.getall("sec-websocket-protocol", [])),
                query,
            )
            # None: auth is off (every channel is open); () for an anonymous client.
            roles = identity.roles if identity is not None else guard.anonymous_roles
            if kind == "channel":
                plan = channel_plan(config, request.match_info["channel"], query, roles)
            else:
                plan = general_plan(config, query, roles)
            check_subscription_limit(config, len(plan))
            if request.headers.get("upgrade", "").lower() != "websocket":
                raise ClientError(
                    "this route speaks WebSocket only: send an Upgrade request",
                    code="upgrade_required",
                    status=426,
                )
            check_handshake(request)
            if not hub.backplane.available:
                # It could not replay history or promise live events: the client retries.
                raise ServerUnavailable(
                    "the backplane is unavailable (Redis unreachable); try again shortly",
                    code="backplane_unavailable",
                )
            reservation = hub.reserve(identity.user_id if identity is not None else None)
        except ClientError as e:
            refused(request, e)
            return error_response(e)
        request.ctx.realtime_plan = plan
        request.ctx.realtime_reservation = reservation
        request.ctx.realtime_identity = identity
        return None

    @bp.on_response
    async def release_unused_slot(request: Request, response: HTTPResponse) -> None:
        # The handler takes the reserved slot (hub.register); any other answer (a
        # handshake that websockets still refused, an error) must give it back now, not
        # when the reservation expires.
        reservation = getattr(request.ctx, "realtime_reservation", None)
        if reservation is not None and response.status != 101:
            request.ctx.realtime_reservation = None
            hub.release(reservation)

    def refused(request: Request, error: ClientError) -> None:
        if realtime.metrics is not None:
            realtime.metrics.refused(error.status, error.code)
        # The path only: the query string may hold a token or a ticket.
        address = client_ip(request)
        connection_logger.info(
            "realtime refused %s %s: %d %s: %s",
            address,
            request.path,
            error.status,
            error.code,
            error.message,
            extra={
                "realtime_event": "refused",
                "remote_addr": address,
                "path": request.path,
                "status": error.status,
                "code": error.code,
                "reason": error.message,
            },
        )

    async def serve(request: Request, ws: WebsocketImplProtocol) -> None:
        socket = SanicSocket(ws, config.max_message_size)
        identity = request.ctx.realtime_identity
        conn = hub.register(socket, request.ctx.realtime_reservation, identity)
        channels = [sub.channel for sub in request.ctx.realtime_plan]
        address = client_ip(request)
        connection_logger.info(
            "realtime connect %s %s %s user=%s roles=%s channels=%s",
            conn.id,
            address,
            request.path,
            conn.user_id if conn.user_id is not None else "-",
            ",".join(sorted(conn.roles)) or "-",
            ",".join(channels) or "-",
            extra={
                "realtime_event": "connect",
                "client_id": conn.id,
                "remote_addr": address,
                "path": request.path,
                "user_id": conn.user_id,
                "roles": sorted(conn.roles),
                "channels": channels,
            },
        )
        hooks = {ch: partial(hook, request) for ch, hook in realtime.initial_state_hooks.items()}
        session = Session(hub, conn, socket.recv, hooks, verifier=guard.verifier)
        socket.gate = session.admit_frame
        try:
            # The builder is not kept in this frame: it lives only as long as the reply.
            await session.run(request.ctx.realtime_plan, _welcome(conn, identity))
        except asyncio.CancelledError:
            raise
        except ServerUnavailable as e:  # the backplane went away during the set-up
            logger.warning("realtime connection %s: %s", conn.id, e.message)
            hub.abort(conn, CloseCode.SERVER_ERROR, e.message[:120])
        except Exception:
            # Sanic would close with 1000; an error must say 1011.
            logger.exception("realtime connection %s failed", conn.id)
            hub.abort(conn, CloseCode.SERVER_ERROR, "server error")
        finally:
            hub.unregister(conn)
            # Sanic closes TCP when the handler returns: not before the handshake ends.
            await socket.wait_closed()

    @bp.websocket(
        f"{prefix}/<channel:str>",
        name="channel",
        subprotocols=subprotocols,
        ctx_realtime="channel",
    )
    async def channel_route(request: Request, ws: WebsocketImplProtocol, channel: str) -> None:
        await serve(request, ws)

    @bp.websocket(prefix, name="general", subprotocols=subprotocols, ctx_realtime="general")
    async def general_route(request: Request, ws: WebsocketImplProtocol) -> None:
        await serve(request, ws)

    @bp.get(f"{prefix}/health", name="health")
    async def health(request: Request) -> HTTPResponse:
        backplane = hub.backplane.health()
        accepting = hub.started and not hub.closing
        ok = accepting and bool(backplane.get("ok"))
        body = {
            "status": "ok" if ok else "unavailable",
            "accepting": accepting,
            "clients": len(hub.connections),
            "backplane": backplane,
        }
        return json_response(body, 200 if ok else 503)

    def serve_asset(path: str, asset: Asset) -> None:
        async def handler(request: Request) -> HTTPResponse:
            headers = asset.headers()
            if asset.fresh(request.headers.get("if-none-match")):
                return HTTPResponse(status=304, headers=headers)
            return HTTPResponse(asset.body, headers=headers, content_type=asset.content_type)

        name = "asset_" + path.replace(".", "_")
        bp.add_route(handler, f"{prefix}/{path}", methods=["GET", "HEAD"], name=name)

    for path, (filename, content_type) in CLIENT_ASSETS.items():
        serve_asset(path, Asset(filename, content_type))

    def check_admin(request: Request) -> None:
        # Open when auth is off and no admin.token is set: the docs say to keep the admin
        # routes off public networks then.
        guard.check_admin(request.headers.get("authorization"))

    @bp.post(f"{prefix}/ticket", name="ticket")
    async def ticket(request: Request) -> HTTPResponse:
        try:
            guard.check_rate(client_ip(request))
            guard.check_origin(request.headers.get("origin"))
            value, ttl = await guard.issue_ticket(request.headers.get("authorization"))
        except ClientError as e:
            return error_response(e)
        return json_response(
            {"ticket": value, "expires_in": round(ttl, 3)}, headers={"Cache-Control": "no-store"}
        )

    @bp.post(config.admin.broadcast_path, name="admin_broadcast")
    async def broadcast(request: Request) -> HTTPResponse:
        try:
            check_admin(request)
            try:
                body = msgspec.json.decode(request.body, type=BroadcastRequest)
            except msgspec.ValidationError as e:
                raise ClientError(f"invalid broadcast body: {e}", code="invalid_body") from None
            except msgspec.DecodeError as e:
                raise ClientError(f"the body is not JSON: {e}", code="invalid_json") from None
            except RecursionError:
                deep = f"the body's JSON is {NESTED_TOO_DEEPLY}"
                raise ClientError(deep, code="invalid_json") from None
            # Deep data that one decoder got through might stop a subscriber's (the body
            # itself is one level).
            if too_deep(body.data, MAX_JSON_DEPTH - 1):
                deep = f"the body's JSON is {NESTED_TOO_DEEPLY}"
                raise ClientError(deep, code="invalid_json")
            target = body.target or BroadcastTarget()
            result = await realtime.publish(
                body.channel,
                body.type,
                body.data,
                user_id=None if target.user_id is None else str(target.user_id),
                role=target.role,
            )
        except ClientError as e:
            return error_response(e)
        return json_response({"success": True, "recipients": result.recipients, "id": result.id})

    @bp.get(config.admin.stats_path, name="admin_stats")
    async def stats(request: Request) -> HTTPResponse:
        try:
            check_admin(request)
        except ClientError as e:
            return error_response(e)
        return json_response(await realtime.cluster_stats())

    metrics = realtime.metrics
    if metrics is not None:
        metrics_token = config.metrics.token

        @bp.get(config.metrics.path, name="metrics")
        async def metrics_route(request: Request) -> HTTPResponse:
            if metrics_token:
                try:
                    given = guard.bearer(request.headers.get("authorization"))
                    if not hmac.compare_digest(given.encode(), metrics_token.encode()):
                        raise Unauthorized("invalid metrics token", code="invalid_token")
                except ClientError as e:
                    return error_response(e)
            body, content_type = await metrics.render(request.headers.get("accept"))
            return HTTPResponse(body, content_type=content_type)

    @bp.main_process_start
    async def refuse_several_workers(app: Any) -> None:
        workers = getattr(app.state, "workers", 1)
        if config.backplane == "memory" and workers > 1:
            raise ConfigError(
                f"cannot run {workers} workers on the memory backplane: each worker would "
                "reach only its own clients. Set a Redis URL (backplane: "
                "redis://127.0.0.1:6379/0, with pip install 'sanic-realtime[redis]') or run "
                "one worker",
                "realtime.backplane",
            )

    @bp.main_process_start
    async def share_metrics(app: Any) -> None:
        # Several workers: each writes its metrics to files that a scrape sums. Set before
        # the workers start, which import prometheus_client with it (metrics.py).
        if metrics is not None and getattr(app.state, "workers", 1) > 1:
            from .metrics import make_multiprocess_dir

            app.ctx.realtime_metrics_dir = make_multiprocess_dir()

    @bp.main_process_stop
    async def unshare_metrics(app: Any) -> None:
        path = getattr(app.ctx, "realtime_metrics_dir", None)
        if path is not None:
            from .metrics import remove_multiprocess_dir

            remove_multiprocess_dir(path)

    @bp.before_server_start
    async def start_hub(app: Any) -> None:
        await hub.start()
        if metrics is not None:
            metrics.start()

    @bp.before_server_stop
    async def stop_hub(app: Any) -> None:
        await hub.shutdown()
        if metrics is not None:
            await metrics.stop()

    register_api_docs(bp, realtime)  # GET {prefix}/asyncapi.json; OpenAPI descriptions
    return bp
