"""The HTTP routes: health, the browser client's files, tickets, and the admin routes
(broadcast, stats, presence, metrics)."""

from __future__ import annotations

import hmac

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from ..assets import CLIENT_ASSETS, Asset
from ..bodies import BroadcastRequest, BroadcastTarget
from ..exceptions import ClientError, TooManyRequests, Unauthorized
from ..protocol import MAX_JSON_DEPTH, NESTED_TOO_DEEPLY, too_deep
from .http import client_ip, error_response, json_response
from .parts import Parts

__all__ = ["add_admin_routes", "add_public_routes"]


def add_public_routes(bp: Blueprint, parts: Parts) -> None:
    """``{url_prefix}/health``, ``/client.js`` and ``/client.d.ts``, ``/ticket``."""
    config, hub, guard = parts.config, parts.hub, parts.guard
    prefix = config.url_prefix

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


def add_admin_routes(bp: Blueprint, parts: Parts) -> None:
    """The broadcast, stats and presence routes, and metrics when they are on."""
    config, guard, metrics = parts.config, parts.guard, parts.metrics

    def check_admin(request: Request) -> None:
        # Open when auth is off and no admin.token is set: the docs say to keep the admin
        # routes off public networks then.
        guard.check_admin(request.headers.get("authorization"))

    @bp.post(config.admin.broadcast_path, name="admin_broadcast")
    async def broadcast(request: Request) -> HTTPResponse:
        try:
            check_admin(request)
            try:
                guard.check_admin_rate(request.headers.get("authorization"), client_ip(request))
            except TooManyRequests:
                if metrics is not None:
                    metrics.admin_rate_limited.inc()
                raise
            try:
                body = msgspec.json.decode(request.body, type=BroadcastRequest)
            except msgspec.ValidationError as e:
                raise ClientError(f"invalid broadcast body: {e}", code="invalid_body") from None
            except msgspec.DecodeError as e:
                raise ClientError(f"the body is not JSON: {e}", code="invalid_json") from None
            except RecursionError:
                deep = f"the body's JSON is {NESTED_TOO_DEEPLY}"
                raise ClientError(deep, code="invalid_json") from None
            if (body.type is None) == (body.events is None):
                raise ClientError(
                    "invalid broadcast body: give either type (and data) or events, not "
                    + ("both" if body.type is not None else "neither"),
                    code="invalid_body",
                )
            if body.events is not None and body.count != "process":
                raise ClientError(
                    "invalid broadcast body: count is for one event, not events",
                    code="invalid_body",
                )
            if body.events is not None and body.data is not None:
                raise ClientError(
                    "invalid broadcast body: data goes inside each of events",
                    code="invalid_body",
                )
            # Deep data that one decoder got through might stop a subscriber's (the body
            # itself is one level; an event of events two).
            if too_deep(body.data, MAX_JSON_DEPTH - 1) or any(
                too_deep(e.data, MAX_JSON_DEPTH - 3) for e in body.events or ()
            ):
                deep = f"the body's JSON is {NESTED_TOO_DEEPLY}"
                raise ClientError(deep, code="invalid_json")
            target = body.target or BroadcastTarget()
            user_id = None if target.user_id is None else str(target.user_id)
            if body.events is not None:
                results = await parts.hub.publish_many(
                    body.channel,
                    [(e.type, e.data) for e in body.events],
                    user_id=user_id,
                    role=target.role,
                )
                return json_response(
                    {
                        "success": True,
                        "recipients": sum(r.recipients for r in results),
                        "ids": [r.id for r in results],
                    }
                )
            assert body.type is not None
            result = await parts.publish(
                body.channel,
                body.type,
                body.data,
                user_id=user_id,
                role=target.role,
                count=body.count,
            )
        except ClientError as e:
            return error_response(e)
        reply = {"success": True, "recipients": result.recipients, "id": result.id}
        if body.count == "cluster":
            reply["complete"] = result.complete
        return json_response(reply)

    @bp.get(config.admin.stats_path, name="admin_stats")
    async def stats(request: Request) -> HTTPResponse:
        try:
            check_admin(request)
        except ClientError as e:
            return error_response(e)
        return json_response(await parts.cluster_stats())

    @bp.get(f"{config.admin.presence_path}/<channel:str>", name="admin_presence")
    async def presence(request: Request, channel: str) -> HTTPResponse:
        try:
            check_admin(request)
            data = await parts.hub.presence(channel)  # names bounded by the catalog
        except ClientError as e:
            return error_response(e)
        return json_response({"channel": channel, **msgspec.to_builtins(data)})

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
