"""The WebSocket routes: admission before the upgrade, then one session per connection.

Refusals happen in request middleware, before the upgrade, as plain HTTP with a JSON
body ``{"error": {"code", "message"}}``: a handler runs only after the handshake, which
is too late to answer with a status. :mod:`sanic_realtime.admission` decides; this
module reads the request for it and answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, cast
from urllib.parse import parse_qs

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

# A runtime import: sanic-ext (dependency injection, OpenAPI) evaluates handler type hints.
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets import http11
from websockets.datastructures import Headers as WSHeaders
from websockets.server import ServerProtocol

from ..admission import Admission, Admitted, Handshake
from ..auth import BEARER_SUBPROTOCOL, Identity, parse_subprotocols
from ..channels import Resolved
from ..events import utc_timestamp
from ..exceptions import ClientError, ServerUnavailable
from ..hooks import bind_initial
from ..hub import Connection, Reply
from ..log import connection_logger, logger
from ..protocol import CloseCode, ConnectionEstablished, ConnectionEstablishedData
from ..session import Session
from ..transport import SanicSocket
from .http import client_ip, error_response
from .parts import Parts

__all__ = ["add_websocket_routes", "check_handshake"]

#: websockets logs every refused handshake with its traceback; the connection log's
#: "refused" line says what was wrong (docs/reference/logging.md).
_handshake_logger = logging.getLogger("sanic_realtime.handshake")
_handshake_logger.addHandler(logging.NullHandler())
_handshake_logger.propagate = False


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


def _check_handshake_of(request: Request) -> None:
    check_handshake(request)


def _query(request: Request) -> dict[str, str]:
    """Query parameters; a repeated parameter's values are joined with ','.

    Parsed as ``request.get_args`` does, but not cached on the request, which lives as
    long as its WebSocket connection."""
    args = parse_qs(request.query_string, keep_blank_values=True, errors="replace")
    return {key: ",".join(values) for key, values in args.items()}


async def _check_connect(parts: Parts, request: Request, identity: Identity | None) -> None:
    await parts.hooks.check_connect(request, identity, parts.config.authorize_timeout)


async def _authorize(
    parts: Parts, request: Request, identity: Identity | None, target: Resolved
) -> None:
    """The app's ``authorize`` hooks for one channel of this request's connection."""
    await parts.hooks.check_authorized(
        request,
        identity,
        target.name,
        target.key,
        target.params,
        parts.config.authorize_timeout,
    )


def add_websocket_routes(bp: Blueprint, parts: Parts) -> None:
    """``{url_prefix}/{channel}`` and ``{url_prefix}``, with the middleware that admits
    (or refuses) their upgrade requests."""
    config, hub, guard, metrics = parts.config, parts.hub, parts.guard, parts.metrics
    hooks = parts.hooks
    prefix = config.url_prefix
    admission = Admission(config, hub, guard)
    subprotocols = cast(Any, _BearerIfOffered())

    @bp.on_request
    async def admit_before_upgrade(request: Request) -> HTTPResponse | None:
        route = request.route
        kind = getattr(route.ctx, "realtime", None) if route is not None else None
        if kind is None:
            return None
        headers = request.headers
        handshake = Handshake(
            route=kind,
            channel=request.match_info.get("channel"),
            client_ip=client_ip(request),
            origin=headers.get("origin"),
            authorization=headers.get("authorization"),
            subprotocols=parse_subprotocols(headers.getall("sec-websocket-protocol", [])),
            query=_query(request),
            upgrade=headers.get("upgrade"),
            # Looked up at call time: tests switch the check off.
            check_upgrade=partial(_check_handshake_of, request),
            check_connect=partial(_check_connect, parts, request) if hooks.on_connect else None,
            authorize=partial(_authorize, parts, request) if hooks.authorize else None,
        )
        try:
            admitted = await admission.admit(handshake)
        except ClientError as e:
            refused(request, e)
            return error_response(e)
        request.ctx.realtime_admitted = admitted
        # Documented for initial_state hooks (docs/python-api.md).
        request.ctx.realtime_identity = admitted.identity
        return None

    @bp.on_response
    async def release_unused_slot(request: Request, response: HTTPResponse) -> None:
        # The handler takes the reserved slot (hub.register); any other answer (a
        # handshake that websockets still refused, an error) must give it back now, not
        # when the reservation expires.
        admitted: Admitted | None = getattr(request.ctx, "realtime_admitted", None)
        if admitted is not None and response.status != 101:
            request.ctx.realtime_admitted = None
            hub.release(admitted.reservation)

    def refused(request: Request, error: ClientError) -> None:
        if metrics is not None:
            metrics.refused(error.status, error.code)
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
        admitted: Admitted = request.ctx.realtime_admitted
        request.ctx.realtime_admitted = None  # the connection's from here, not the request's
        identity = admitted.identity
        address = client_ip(request)
        conn = hub.register(socket, admitted.reservation, identity, address)
        channels = [sub.channel for sub in admitted.plan]
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
        initial_hooks = {
            ch: bind_initial(hook, request) for ch, hook in parts.initial_state_hooks.items()
        }
        session = Session(
            hub,
            conn,
            socket.recv,
            initial_hooks,
            verifier=guard.verifier,
            authorize=partial(_authorize, parts, request) if parts.hooks.authorize else None,
        )
        socket.gate = session.admit_frame
        try:
            # The builder is not kept in this frame: it lives only as long as the reply.
            await session.run(admitted.plan, _welcome(conn, identity))
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
            code, reason = conn.close_code, conn.close_reason
            hub.unregister(conn)
            if code is not None:
                # The hub chose a close (4008 from a fan-out, say) that it starts on the
                # next loop iteration: start it now, or wait_closed() would say 1000.
                socket.abort(code, reason)
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
