"""The API descriptions: the AsyncAPI document of the WebSocket protocol
(``GET {url_prefix}/asyncapi.json``) and the realtime routes in sanic-ext's OpenAPI
document (``/docs``), checked against the official schemas and against real traffic."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_openapi
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from sanic import Sanic
from sanic.response import text
from sanic_ext.extensions.openapi.builders import OperationStore, SpecificationBuilder

from sanic_realtime.config import parse_config
from sanic_realtime.exceptions import BadMessage, ConfigError
from sanic_realtime.protocol import decode_client_message
from sanic_realtime.protocol import server as messages

from .conftest import BASE, LiveServer, make_realtime, recv_json
from .rawclient import RawClient
from .tokens import SECRET, jwt_realtime, token

SCHEMAS = Path(__file__).parent / "schemas"
ASYNCAPI_SCHEMA = json.loads((SCHEMAS / "asyncapi-3.0.0.json").read_text())

#: BASE's channels plus a throttled one (``interval``) and a channel-specific hook.
CHANNELS: dict[str, Any] = {
    **BASE["channels"],
    "gateway": {
        "filters": {"provider_id": {"op": "min", "order": ["a", "b"]}},
        "throttle": {"min": "1s", "max": "30s", "key": "window"},
    },
}
JWT_AUTH = {"mode": "jwt", "jwt_secret": SECRET}


@pytest.fixture(autouse=True)
def fresh_openapi() -> Iterator[None]:
    """sanic-ext keeps one OpenAPI builder per process: start each test from an empty one
    (as a process with one app has), so earlier tests' apps leave no paths behind."""
    OperationStore.reset()
    SpecificationBuilder.reset()
    yield
    OperationStore.reset()
    SpecificationBuilder.reset()


def asyncapi_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(ASYNCAPI_SCHEMA)


def payload_validator(document: dict[str, Any], message: str) -> jsonschema.Draft7Validator:
    """A validator for ``components.messages[message]``'s payload, its ``$ref`` s resolved
    inside the served document."""
    uri = "urn:sanic-realtime:asyncapi"
    registry: Registry[Any] = Registry().with_resource(
        uri, Resource.from_contents(document, default_specification=DRAFT7)
    )
    payload = document["components"]["messages"][message]["payload"]
    schema = {"$ref": uri + payload["$ref"]}
    return jsonschema.Draft7Validator(schema, registry=registry)


def declared_keys(document: dict[str, Any], ref: str) -> set[str]:
    name = ref.rsplit("/", 1)[-1]
    return set(document["components"]["schemas"][name]["properties"])


async def fetch_asyncapi(server: LiveServer, **headers: str) -> dict[str, Any]:
    assert server.http is not None
    response = await server.http.get("/ws/asyncapi.json", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = msgspec.json.decode(response.content)
    return document


# --------------------------------------------------------------------------- AsyncAPI


@pytest.mark.parametrize("auth", [{}, JWT_AUTH, {**JWT_AUTH, "anonymous": True}])
async def test_asyncapi_document_is_valid_asyncapi_3(serve: Any, auth: dict[str, Any]) -> None:
    """The served document validates against the official AsyncAPI 3.0.0 JSON Schema,
    with and without authentication."""
    server = await serve(make_realtime(channels=CHANNELS, auth=auth or {"mode": "none"}))
    document = await fetch_asyncapi(server)
    assert document["asyncapi"] == "3.0.0"
    errors = list(asyncapi_validator().iter_errors(document))
    assert errors == [], [e.message for e in errors[:3]]


async def test_a_broken_asyncapi_document_is_rejected(serve: Any) -> None:
    """The validation can fail: copies of the document with one mistake each are refused."""
    server = await serve(make_realtime(channels=CHANNELS))
    document = await fetch_asyncapi(server)
    validator = asyncapi_validator()
    assert validator.is_valid(document)

    def broken(change: Any) -> dict[str, Any]:
        copied = copy.deepcopy(document)
        change(copied)
        return copied

    mistakes = [
        lambda d: d["operations"]["logs.send"].update(action="publish"),  # AsyncAPI 2's word
        lambda d: d["channels"]["logs"]["bindings"]["ws"].update(method="PUT"),
        lambda d: d["channels"]["logs"].update(roles=["admin"]),  # not an x- extension
        lambda d: d["components"]["messages"]["Pong"].update(payload={"type": 5}),
        lambda d: d.update(asyncapi="2.6.0"),
        lambda d: d["servers"]["realtime"].pop("protocol"),
    ]
    for mistake in mistakes:
        assert not validator.is_valid(broken(mistake))


def test_the_vendored_schema_is_the_one_named_in_its_readme() -> None:
    """tests/schemas/asyncapi-3.0.0.json is the unchanged file whose checksum the README gives."""
    digest = hashlib.sha256((SCHEMAS / "asyncapi-3.0.0.json").read_bytes()).hexdigest()
    assert digest in (SCHEMAS / "README.md").read_text()
    assert ASYNCAPI_SCHEMA["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"


async def test_every_channel_filter_and_role_appears(serve: Any) -> None:
    """One AsyncAPI channel per route, each configured filter a query parameter with its
    allowed values, interval where throttled, roles noted; server from the request."""
    server = await serve(make_realtime(channels=CHANNELS))
    document = await fetch_asyncapi(server)
    channels = document["channels"]
    assert set(channels) == {*CHANNELS, "all"}
    for name in CHANNELS:
        assert channels[name]["address"] == f"/ws/{name}"
    assert channels["all"]["address"] == "/ws"
    query = {name: c["bindings"]["ws"]["query"]["properties"] for name, c in channels.items()}

    assert query["logs"]["level"]["enum"] == ["debug", "info", "warn", "error", "critical"]
    assert "enum" not in query["logs"]["component"]  # eq: any value
    assert set(query["logs"]) == {"level", "component", "provider_id", "types", "since"}
    assert query["alerts"]["severity"]["enum"] == ["low", "medium", "high", "critical"]
    assert query["requests"]["only_errors"]["enum"] == ["true", "false", "1", "0", "yes", "no"]
    assert set(query["stats"]) == {"types", "since"}
    assert query["gateway"]["provider_id"]["enum"] == ["a", "b"]
    assert "1s to 30s" in query["gateway"]["interval"]["description"]
    assert all("interval" not in q for name, q in query.items() if name not in ("gateway", "all"))
    for name in ("logs", "stats", "alerts", "requests", "gateway"):
        assert f"since.{name}" in query["all"]
    for fname in ("level", "component", "severity", "only_errors", "model_id", "interval"):
        assert fname in query["all"]
    # provider_id means eq on logs and requests, min on gateway: each channel's way is said.
    assert "On logs:" in query["all"]["provider_id"]["description"]
    assert "(a, b)" in query["all"]["provider_id"]["description"]
    assert all(
        c["bindings"]["ws"]["query"]["additionalProperties"] is False for c in channels.values()
    )

    assert channels["alerts"]["x-roles"] == ["admin"]
    assert "x-roles" not in channels["logs"]
    assert "roles: admin" in channels["all"]["description"]
    # auth.mode: none: no credentials to describe.
    assert "securitySchemes" not in document["components"]
    assert "token" not in query["logs"] and "headers" not in channels["logs"]["bindings"]["ws"]
    assert document["servers"]["realtime"]["host"] == f"127.0.0.1:{server.port}"
    assert document["servers"]["realtime"]["protocol"] == "ws"
    # stats has initial: last; without jwt there is no refresh.
    assert "initial_state" in channels["stats"]["messages"]
    assert "refresh" not in channels["stats"]["messages"]
    operations = document["operations"]
    assert set(operations) == {
        f"{name}.{action}" for name in channels for action in ("send", "receive")
    }
    send = [m["$ref"] for m in operations["logs.send"]["messages"]]
    assert "#/channels/logs/messages/event" in send and "#/channels/logs/messages/pong" in send
    receive = [m["$ref"].rsplit("/", 1)[-1] for m in operations["logs.receive"]["messages"]]
    assert receive == ["subscribe", "unsubscribe", "ping", "presence_query", "publish"]
    in_band = document["components"]["schemas"]["ErrorData"]["properties"]["code"]["enum"]
    assert set(in_band) == set(messages.IN_BAND_ERROR_CODES)


async def test_jwt_adds_credentials_and_roles_are_enforced(serve: Any) -> None:
    """With auth.mode: jwt, the security schemes (header, bearer subprotocol, ?token=,
    ?ticket=), the credential parameters and refresh appear; behind a proxy the server
    is the proxy's host and wss."""

    def trust_proxy(app: Sanic) -> None:
        app.config.PROXIES_COUNT = 1
        app.config.REAL_IP_HEADER = "x-forwarded-for"

    server = await serve(jwt_realtime(channels=CHANNELS), trust_proxy)
    document = await fetch_asyncapi(
        server,
        **{
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "rt.example.com",
            "X-Forwarded-For": "203.0.113.7",
        },
    )
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert (schemes["bearerSubprotocol"]["in"], schemes["bearerSubprotocol"]["name"]) == (
        "header",
        "Sec-WebSocket-Protocol",
    )
    assert (schemes["token"]["in"], schemes["token"]["name"]) == ("query", "token")
    assert (schemes["ticket"]["in"], schemes["ticket"]["name"]) == ("query", "ticket")
    server_entry = document["servers"]["realtime"]
    assert (server_entry["host"], server_entry["protocol"]) == ("rt.example.com", "wss")
    assert len(server_entry["security"]) == 4
    logs = document["channels"]["logs"]
    assert {"token", "ticket"} <= set(logs["bindings"]["ws"]["query"]["properties"])
    assert "Authorization" in logs["bindings"]["ws"]["headers"]["properties"]
    assert {"refresh", "refreshed"} <= set(logs["messages"])
    assert (
        "Only connections holding one of the roles admin"
        in document["channels"]["alerts"]["description"]
    )


# --------------------------------------------------------------------------- real traffic


def check_message(document: dict[str, Any], message: dict[str, Any]) -> str:
    """Validate one received message against its payload schema in ``document``; every
    field it carries (and every field of its data) is declared. Returns the message key."""
    control = {
        str(m.__struct_config__.tag): m.__name__
        for m in messages.SERVER_MESSAGES
        if m.__struct_config__.tag is not None
    }
    name = control.get(message["type"], "EventEnvelope")
    errors = list(payload_validator(document, name).iter_errors(message))
    assert errors == [], (message, [e.message for e in errors])
    schema = document["components"]["schemas"][name]
    assert set(message) <= set(schema["properties"]), message
    data_ref = schema["properties"]["data"].get("$ref")
    if data_ref is not None:
        assert set(message["data"]) <= declared_keys(document, data_ref), message
    # The Structs of sanic_realtime.protocol decode it too (strict types).
    struct = getattr(messages, name)
    msgspec.json.decode(msgspec.json.encode(message), type=struct)
    return str(message["type"]) if name != "EventEnvelope" else "event"


async def test_real_messages_match_their_schemas(serve: Any) -> None:
    """Every kind of server message, recorded from live sessions, validates against the
    payload schema of the served document: connection_established (with recovered),
    initial_state, subscribed (recovered, positions), events, pong, unsubscribed, an
    in-band error, refreshed, and messages_dropped from a slow drop_oldest client."""
    realtime = jwt_realtime(
        channels=CHANNELS, buffer_size=16, slow_client="drop_oldest", auth={"anonymous": True}
    )
    server = await serve(realtime)
    document = await fetch_asyncapi(server)
    await realtime.publish("stats", "stats_update", {"cpu": 0.5})
    first = await realtime.publish("logs", "log_update", {"level": "info", "n": 1})
    await realtime.publish("logs", "log_update", {"level": "error", "n": 2})
    received: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {token('alice', ['admin', 'ops'])}"}
    async with server.connect("/ws/stats?since=zzzz:1", additional_headers=headers) as ws:
        for _ in range(2):  # connection_established (recovered: false), initial_state
            received.append(await recv_json(ws))
        frames: list[dict[str, Any]] = [
            {
                "type": "subscribe",
                "channels": ["logs"],
                "since": {"logs": str(first.id)},
                "positions": True,
            },
            {"type": "ping", "data": {"any": "thing"}},
            {"type": "unsubscribe", "channels": ["logs"]},
            {"type": "subscribe", "channels": ["nope"]},
            {"type": "refresh", "token": token("alice", "viewer")},
        ]
        for frame in frames:
            await ws.send(msgspec.json.encode(frame).decode())
        for _ in range(6):  # subscribed, the replayed event, pong, unsubscribed, error, refreshed
            received.append(await recv_json(ws))
    kinds = [check_message(document, m) for m in received]
    assert kinds == [
        "connection_established",
        "initial_state",
        "subscribed",
        "event",
        "pong",
        "unsubscribed",
        "error",
        "refreshed",
    ]
    by_kind = {kind: m for kind, m in zip(kinds, received, strict=True)}
    assert by_kind["connection_established"]["data"]["recovered"] == {"stats": False}
    assert by_kind["subscribed"]["data"]["recovered"] == {"logs": True}
    assert set(by_kind["subscribed"]["data"]["positions"]) == {"logs"}
    assert by_kind["error"]["data"]["code"] == "unknown_channel"
    assert by_kind["refreshed"]["data"]["roles"] == ["viewer"]

    slow = await RawClient.connect(server.port, "/ws/logs", rcvbuf=4096)  # anonymous
    try:
        payload = "x" * 1000
        for i in range(4000):
            await realtime.publish("logs", "log", {"i": i, "p": payload})
            if i % 50 == 0:
                await asyncio.sleep(0)
        await slow.read_for(1.0)
        slow_kinds = {check_message(document, m) for m in slow.messages()}
    finally:
        slow.close()
    assert {"connection_established", "messages_dropped", "event"} <= slow_kinds
    assert sorted({*kinds, *slow_kinds}) == sorted(
        {
            "connection_established",
            "initial_state",
            "subscribed",
            "event",
            "pong",
            "unsubscribed",
            "error",
            "refreshed",
            "messages_dropped",
        }
    )


@pytest.mark.parametrize(
    "frame",
    [
        {
            "type": "subscribe",
            "channels": ["logs", "alerts"],
            "filter": {"level": "warn", "component": ["db", 3, True]},
        },
        {"type": "subscribe", "channels": ["all"], "since": {"logs": "k3x9:40"}, "positions": True},
        {"type": "unsubscribe", "channels": ["all"]},
        {"type": "ping"},
        {"type": "ping", "data": [1, 2]},
        {"type": "refresh", "token": "eyJ.x.y"},
    ],
)
async def test_client_messages_the_server_accepts_match_their_schemas(
    serve: Any, frame: dict[str, Any]
) -> None:
    """What events.py accepts from a client validates against the document's client
    message schema of its type."""
    server = await serve(jwt_realtime(channels=CHANNELS))
    document = await fetch_asyncapi(server)
    decode_client_message(msgspec.json.encode(frame))
    name = {
        "subscribe": "Subscribe",
        "unsubscribe": "Unsubscribe",
        "ping": "Ping",
        "refresh": "Refresh",
    }
    assert payload_validator(document, name[frame["type"]]).is_valid(frame)


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "subscribe", "channels": ["logs"], "extra": 1},
        {"type": "subscribe", "channels": "logs"},
        {"type": "unsubscribe"},
        {"type": "refresh", "token": 5},
    ],
)
async def test_client_messages_the_server_refuses_fail_their_schemas(
    serve: Any, frame: dict[str, Any]
) -> None:
    """The schemas are as strict as the server: a message it refuses fails them."""
    server = await serve(jwt_realtime(channels=CHANNELS))
    document = await fetch_asyncapi(server)
    with pytest.raises(BadMessage):
        decode_client_message(msgspec.json.encode(frame))
    name = {"subscribe": "Subscribe", "unsubscribe": "Unsubscribe", "refresh": "Refresh"}
    assert not payload_validator(document, name[frame["type"]]).is_valid(frame)


async def test_message_examples_match_their_schemas(serve: Any) -> None:
    """Every example in the document validates against its message's payload schema."""
    server = await serve(jwt_realtime(channels=CHANNELS))
    document = await fetch_asyncapi(server)
    examples = 0
    for name, message in document["components"]["messages"].items():
        for example in message.get("examples", []):
            assert payload_validator(document, name).is_valid(example["payload"]), name
            examples += 1
    assert examples == len(document["components"]["messages"]) == 19


def test_asyncapi_json_is_a_reserved_channel_name() -> None:
    """A channel named asyncapi.json would be hidden by the document's route."""
    with pytest.raises(ConfigError) as info:
        parse_config({"channels": {"asyncapi.json": {}}})
    assert info.value.path == "realtime.channels.asyncapi.json"
    assert "'asyncapi.json' is reserved" in str(info.value)


# --------------------------------------------------------------------------- OpenAPI


def user_routes(app: Sanic) -> None:
    @app.get("/orders/<order_id:int>")
    async def order(request: Any, order_id: int) -> Any:
        """Show one order."""
        return text(str(order_id))

    @app.websocket("/mine/feed")
    async def feed(request: Any, ws: Any) -> None:
        await ws.send("hi")


HTTP_ROUTES = {
    ("/ws/health", "get"),
    ("/ws/ticket", "post"),
    ("/ws/client.js", "get"),
    ("/ws/client.d.ts", "get"),
    ("/ws/asyncapi.json", "get"),
    ("/admin/ws/broadcast", "post"),
    ("/admin/ws/stats", "get"),
    ("/metrics", "get"),
}


async def openapi_of(server: LiveServer) -> dict[str, Any]:
    assert server.http is not None
    response = await server.http.get("/docs/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    validate_openapi(spec)
    return spec


@pytest.mark.parametrize("auth", [{"mode": "none"}, {**JWT_AUTH, "anonymous": True}])
async def test_openapi_describes_every_route(serve: Any, auth: dict[str, Any]) -> None:
    """In an auto-extended app, /docs/openapi.json is valid OpenAPI, lists every HTTP
    route of the blueprint with component schemas, and describes the WebSocket routes
    (parameters, 101 and the refusals) instead of functools.partial's docstring."""
    realtime = make_realtime(channels=CHANNELS, auth=auth, metrics={"enabled": True})
    server = await serve(realtime, user_routes, auto_extend=True)
    spec = await openapi_of(server)
    paths = spec["paths"]
    assert {(p, m) for p, ops in paths.items() for m in ops} >= HTTP_ROUTES
    schemas = spec["components"]["schemas"]
    for name in (
        "ErrorBody",
        "HealthReply",
        "BroadcastRequest",
        "BroadcastReply",
        "StatsReply",
        "TicketReply",
    ):
        assert schemas[name]["properties"], name
    for path, method in HTTP_ROUTES:
        for response in paths[path][method]["responses"].values():
            for media in response.get("content", {}).values():
                ref = media["schema"].get("$ref")
                if ref is not None:
                    assert ref.rsplit("/", 1)[-1] in schemas
    health = paths["/ws/health"]["get"]["responses"]
    assert health["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/HealthReply"
    }
    body = paths["/admin/ws/broadcast"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/BroadcastRequest"}
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]

    for path in ("/ws/{channel}", "/ws"):
        operation = paths[path]["get"]
        assert "partial" not in operation["summary"] + operation.get("description", "")
        assert "/ws/asyncapi.json" in operation["description"]
        assert {"101", "400", "403", "404", "426", "429", "503"} <= set(operation["responses"])
        error = operation["responses"]["404"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorBody"}
        params = {p["name"]: p for p in operation["parameters"]}
        assert params["level"]["schema"]["enum"] == ["debug", "info", "warn", "error", "critical"]
        assert params["only_errors"]["schema"]["enum"] == ["true", "false", "1", "0", "yes", "no"]
        assert {"types", "since", "interval"} <= set(params)
        assert ("token" in params) == (auth["mode"] == "jwt")
    channel_params = {p["name"]: p for p in paths["/ws/{channel}"]["get"]["parameters"]}
    assert channel_params["channel"]["in"] == "path"
    assert channel_params["channel"]["schema"]["enum"] == list(CHANNELS)
    general_params = {p["name"] for p in paths["/ws"]["get"]["parameters"]}
    assert {"channels", "since.logs", "since.gateway"} <= general_params
    if auth["mode"] == "jwt":
        assert set(spec["components"]["securitySchemes"]) == {
            "realtimeBearer",
            "realtimeToken",
            "realtimeTicket",
        }
        assert {} in paths["/ws"]["get"]["security"]  # anonymous connections
        assert paths["/ws/ticket"]["post"]["security"] == [{"realtimeBearer": []}]
        assert "401" in paths["/ws/{channel}"]["get"]["responses"]
    else:
        assert "security" not in paths["/ws/ticket"]["post"]

    # The app's own routes are left as sanic-ext describes them.
    order = paths["/orders/{order_id}"]["get"]
    assert order["summary"] == "Show one order."
    assert [p["name"] for p in order["parameters"]] == ["order_id"]
    assert "sanic_realtime" not in order.get("tags", [])
    assert "partial" in paths["/mine/feed"]["get"]["summary"]
    assert "parameters" not in paths["/mine/feed"]["get"]

    assert server.http is not None
    docs = await server.http.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]


async def test_real_http_bodies_match_the_openapi_schemas(serve: Any) -> None:
    """The health, ticket, broadcast, stats and refusal bodies of a live server validate
    against the component schemas of its OpenAPI document."""
    realtime = jwt_realtime(channels=CHANNELS, admin={"token": "admin-secret"})
    server = await serve(realtime, auto_extend=True)
    spec = await openapi_of(server)
    assert server.http is not None

    def check(name: str, body: Any) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        OAS30Validator(schema).validate(body)
        assert set(body) <= set(spec["components"]["schemas"][name]["properties"])

    admin = {"Authorization": "Bearer admin-secret"}
    health = await server.http.get("/ws/health")
    check("HealthReply", health.json())
    ticket = await server.http.post("/ws/ticket", headers={"Authorization": f"Bearer {token()}"})
    check("TicketReply", ticket.json())
    sent = await server.http.post(
        "/admin/ws/broadcast",
        headers=admin,
        json={
            "channel": "logs",
            "type": "log",
            "data": {"level": "error"},
            "target": {"user_id": 7},
        },
    )
    check("BroadcastReply", sent.json())
    check("StatsReply", (await server.http.get("/admin/ws/stats", headers=admin)).json())
    for response in (
        await server.http.get("/admin/ws/stats"),  # 401
        await server.http.post("/admin/ws/broadcast", headers=admin, content=b"{"),  # 400
        await server.http.get("/ws/logs"),  # 401: no token, before the Upgrade check
    ):
        assert response.status_code in (400, 401)
        check("ErrorBody", response.json())
    broken = {"error": {"code": "x"}}
    with pytest.raises(jsonschema.ValidationError):
        OAS30Validator(
            {"$ref": "#/components/schemas/ErrorBody", "components": spec["components"]}
        ).validate(broken)
    with pytest.raises(OpenAPIValidationError):
        validate_openapi({**spec, "paths": {"/ws": {"get": {"responses": {"101": {}}}}}})


async def test_an_app_extended_with_app_extend_before_the_blueprint(serve: Any) -> None:
    """app.extend() first, then app.blueprint(realtime.blueprint): described the same."""
    realtime = make_realtime(channels=CHANNELS)
    app = Sanic("rt_apidocs_extend_first")
    app.extend(config={"oas_ui_default": "swagger"})
    app.blueprint(realtime.blueprint)
    server = await LiveServer(app, realtime).start()
    try:
        spec = await openapi_of(server)
        assert spec["paths"]["/ws"]["get"]["summary"].startswith("WebSocket:")
        assert server.http is not None
        assert (await server.http.get("/docs")).status_code == 200
    finally:
        await server.stop()


async def test_an_app_extended_with_app_extend_after_the_blueprint(serve: Any) -> None:
    """app.blueprint(...) first, then app.extend(): described as well."""
    server = await serve(
        make_realtime(channels=CHANNELS), lambda app: app.extend(), auto_extend=True
    )
    spec = await openapi_of(server)
    operation = spec["paths"]["/ws/{channel}"]["get"]
    assert operation["summary"] == "WebSocket: subscribe to one channel"
    assert operation["parameters"][0]["schema"]["enum"] == list(CHANNELS)


async def test_without_sanic_ext_everything_still_serves(serve: Any) -> None:
    """AUTO_EXTEND=False: no /docs, and the routes, the WebSockets and the AsyncAPI
    document work as before."""
    realtime = make_realtime(channels=CHANNELS)
    server = await serve(realtime)
    assert not getattr(server.app, "_ext", None)
    assert server.http is not None
    assert (await server.http.get("/docs/openapi.json")).status_code == 404
    assert (await server.http.get("/ws/health")).status_code == 200
    document = await fetch_asyncapi(server)
    assert asyncapi_validator().is_valid(document)
    async with server.connect("/ws/logs?level=error") as ws:
        assert (await recv_json(ws))["type"] == "connection_established"
        await realtime.publish("logs", "log", {"level": "error"})
        assert (await recv_json(ws))["type"] == "log"


async def test_the_demo_serves_its_api_descriptions() -> None:
    """The ops console (example_app) is extended by sanic-ext: /docs describes its
    realtime routes beside its own, and /ws/asyncapi.json its channels."""
    from example_app.app import create_app

    app = create_app("demo_apidocs", speed=20.0, seed=7)
    server = await LiveServer(app, app.ctx.realtime).start()
    try:
        spec = await openapi_of(server)
        assert spec["paths"]["/ws/{channel}"]["get"]["summary"].startswith("WebSocket:")
        assert "/api/login" in spec["paths"]
        assert server.http is not None
        assert (await server.http.get("/docs")).status_code == 200
        document = await fetch_asyncapi(server)
        assert asyncapi_validator().is_valid(document)
        # A template's id drops its braces (AsyncAPI ids are [\w.-]+).
        ids = {c.replace("{", "").replace("}", "") for c in app.ctx.realtime.config.channels}
        assert set(document["channels"]) == {*ids, "all"}
    finally:
        await server.stop()
        Sanic._app_registry.clear()


def test_the_docs_snippet_writes_the_document_without_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/reference/api-descriptions.md's Python snippet runs as shown and builds a
    valid document for the host it names."""
    page = (Path(__file__).parent.parent / "docs/reference/api-descriptions.md").read_text()
    snippets = page.split("```python\n")[1:]
    assert len(snippets) == 1
    code = snippets[0].split("```")[0]
    (tmp_path / "realtime.yaml").write_text(msgspec.json.encode({"realtime": BASE}).decode())
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(code, "api-descriptions.md", "exec"), namespace)
    document = namespace["document"]
    assert asyncapi_validator().is_valid(document)
    assert document["servers"]["realtime"] == {
        **document["servers"]["realtime"],
        "host": "ops.example.com",
        "protocol": "wss",
    }


async def test_initial_state_hooks_show_in_the_document(serve: Any) -> None:
    """initial_state is listed only when a channel can send one: a hook registered after
    the document was first served appears in the next one."""
    realtime = make_realtime(channels={"logs": {}})
    server = await serve(realtime)
    before = await fetch_asyncapi(server)
    assert "initial_state" not in before["channels"]["logs"]["messages"]

    @realtime.initial_state("logs")
    async def logs_state(request: Any) -> dict[str, int]:
        return {"open": 0}

    after = await fetch_asyncapi(server)
    assert "initial_state" in after["channels"]["logs"]["messages"]
    assert "initial_state hook" in after["channels"]["logs"]["description"]
    assert asyncapi_validator().is_valid(after)


async def test_a_channel_template_is_a_parameterised_address(serve: Any) -> None:
    """AsyncAPI 3 describes a template as an address with parameters; the document stays
    valid (channel ids are [\\w.-]+, so the id drops the braces)."""
    channels = {
        "logs": {},
        "orders.{order_id}": {"params": {"order_id": {"pattern": "[0-9]{1,12}"}}},
        "rooms.{tenant}.{room}": {},
    }
    server = await serve(make_realtime(channels=channels))
    document = await fetch_asyncapi(server)
    asyncapi_validator().validate(document)
    order = document["channels"]["orders.order_id"]
    assert order["address"] == "/ws/orders.{order_id}"
    assert order["parameters"] == {
        "order_id": {"description": "Matches '[0-9]{1,12}' (the whole value)."}
    }
    room = document["channels"]["rooms.tenant.room"]
    assert set(room["parameters"]) == {"tenant", "room"}
    assert "orders.order_id.send" in document["operations"]
