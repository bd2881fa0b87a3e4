"""Sanic glue: the AsyncAPI route, and the blueprint's routes described in sanic-ext's
OpenAPI document.

The OpenAPI part runs only in an app extended by sanic-ext (auto-extended, or
``app.extend()``); without it nothing of sanic-ext is imported. It runs in a
``before_server_start`` listener of the blueprint: Sanic wraps a WebSocket handler in a
new ``functools.partial`` when the blueprint is registered, and sanic-ext documents a
route by its handler object, so the descriptions can only be attached after
``app.blueprint(...)``; sanic-ext builds the document in its own ``before_server_start``
listener, at a lower priority (-1000), so after this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from .asyncapi import asyncapi_document
from .openapi import SECURITY_SCHEMES, openapi_components, operations

if TYPE_CHECKING:
    from ..config import RealtimeConfig

__all__ = ["ASYNCAPI_FILE", "register_api_docs"]

#: Served at ``{url_prefix}/asyncapi.json`` (a reserved channel name).
ASYNCAPI_FILE = "asyncapi.json"
_encoder = msgspec.json.Encoder()
_CACHED_DOCUMENTS = 16


def register_api_docs(
    bp: Blueprint, config: RealtimeConfig, initial_state_hooks: Mapping[str, Any]
) -> None:
    """Add ``GET {url_prefix}/asyncapi.json`` to ``bp``, and describe ``bp``'s routes in
    the OpenAPI document of every extended app it is registered in. The document names
    the channels of ``initial_state_hooks`` (read per request: hooks may come later)."""

    # Encoded documents by (host, secure, hooked channels): a few ms each to build. The
    # host comes from the request, so the cache is bounded.
    cache: dict[tuple[str, bool, frozenset[str]], bytes] = {}

    async def asyncapi(request: Request) -> HTTPResponse:
        # request.scheme and request.host follow the proxy headers Sanic is told to trust
        # (FORWARDED_SECRET, REAL_IP_HEADER, PROXIES_COUNT).
        key = (
            request.host or "localhost",
            request.scheme in ("https", "wss"),
            frozenset(initial_state_hooks),
        )
        body = cache.get(key)
        if body is None:
            if len(cache) >= _CACHED_DOCUMENTS:
                cache.clear()
            document = asyncapi_document(
                config, host=key[0], secure=key[1], initial_state_channels=key[2]
            )
            body = cache[key] = _encoder.encode(document)
        return HTTPResponse(body, content_type="application/json")

    bp.add_route(asyncapi, f"{config.url_prefix}/{ASYNCAPI_FILE}", methods=["GET"], name="asyncapi")

    @bp.before_server_start
    async def describe_routes(app: Any) -> None:
        if not getattr(app, "_ext", None) or not app.config.get("OAS", False):
            return  # not extended by sanic-ext (AUTO_EXTEND=False), or OpenAPI is off
        document(app, bp, config)


def document(app: Any, bp: Blueprint, config: RealtimeConfig) -> None:
    """Describe ``bp``'s routes in ``app``'s OpenAPI document (sanic-ext's builders)."""
    from sanic_ext.extensions.openapi import builders, definitions, types

    # sanic-ext has no type hints: its classes are used as Any.
    operation_store: Any = builders.OperationStore
    response_class: Any = definitions.Response
    schema_class: Any = types.Schema

    spec = app.ext.openapi
    for name, schema in openapi_components().items():
        spec.add_component("schemas", name, schema)
    routes = {
        route.name.rsplit(".", 1)[-1]: route
        for route in bp.routes
        if getattr(route, "router", None) is app.router
    }
    described = operations(config, set(routes))
    if any("security" in op for op in described.values()):
        for name, scheme in SECURITY_SCHEMES.items():
            spec.add_component("securitySchemes", name, scheme)
    store = operation_store()
    for name, op in described.items():
        builder = store[routes[name].handler]
        if getattr(builder, "realtime_documented", False):
            continue  # a second start of the same app: already described
        builder.realtime_documented = True
        builder.describe(summary=op["summary"], description=op["description"])
        builder.disable_autodoc()  # a WebSocket handler's docstring is functools.partial's
        for param in op.get("parameters", ()):
            builder.parameter(
                param["name"],
                schema_class(**param["schema"]),
                param["in"],
                description=param["description"],
                required=param["required"],
            )
        if "requestBody" in op:
            # Not openapi.body(): it wraps the handler, and the route keeps the old one.
            body = op["requestBody"]
            builder.body(body["content"], required=body["required"])
        for status, response in op["responses"].items():
            if "content" in response:
                builder.response(int(status), response["content"], response["description"])
            else:
                builder.responses[int(status)] = response_class(description=response["description"])
        for requirement in op.get("security", ()):
            builder.secured(requirement)
