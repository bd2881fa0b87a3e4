"""Authentication, roles, targeting and abuse limits through a real server, real
`websockets` clients and httpx."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from websockets.exceptions import InvalidStatus

from .conftest import make_realtime, no_message, recv_json, recv_until
from .test_liveness import closed_with
from .tokens import bearer, jwt_realtime, token


async def refusal(server: Any, path: str, **kwargs: Any) -> tuple[int, dict[str, Any], Any]:
    """Status, error body and headers of a refused handshake."""
    with pytest.raises(InvalidStatus) as info:
        async with server.connect(path, **kwargs):
            pass
    response = info.value.response
    return response.status_code, json.loads(response.body)["error"], response.headers


async def established(ws: Any) -> dict[str, Any]:
    message = await recv_json(ws)
    assert message["type"] == "connection_established", message
    data: dict[str, Any] = message["data"]
    return data


async def get_ticket(server: Any, tok: str) -> str:
    response = await server.http.post("/ws/ticket", headers=bearer(tok))
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    ticket: str = response.json()["ticket"]
    return ticket


# --------------------------------------------------------------------------- token sources


async def test_every_token_source_connects_as_the_tokens_user(serve: Any) -> None:
    """Header, bearer subprotocol, ?token= and ?ticket= each authenticate; the welcome
    carries the user, the primary role, all roles and the expiry."""
    server = await serve(jwt_realtime())
    tok = token("alice", ["ops", "admin"], exp_in=600)
    exp = jwt.decode(tok, options={"verify_signature": False})["exp"]
    ways = [
        ("/ws/logs", {"additional_headers": bearer(tok)}),
        ("/ws/logs", {"subprotocols": ["bearer", tok]}),
        (f"/ws/logs?token={tok}", {}),
        (f"/ws/logs?ticket={await get_ticket(server, tok)}", {}),
    ]
    for path, kwargs in ways:
        async with server.connect(path, **kwargs) as ws:
            data = await established(ws)
            assert (data["user_id"], data["role"], data["roles"]) == (
                "alice",
                "ops",
                ["ops", "admin"],
            ), path
            assert data["expires_at"].startswith(
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(exp))
            )
            # The browser form negotiates "bearer", never the token.
            assert ws.subprotocol == ("bearer" if "subprotocols" in kwargs else None)
    # Without auth the welcome says so.
    plain = await serve(make_realtime())
    async with plain.connect("/ws/logs", subprotocols=["bearer", tok]) as ws:
        data = await established(ws)
        assert (data["user_id"], data["role"], data["roles"], data["expires_at"]) == (
            None,
            None,
            [],
            None,
        )
        assert ws.subprotocol == "bearer"  # a browser client built for auth still connects


async def test_missing_bad_and_expired_tokens_are_401_with_a_challenge(serve: Any) -> None:
    server = await serve(jwt_realtime())
    status, error, headers = await refusal(server, "/ws/logs")
    assert (status, error["code"]) == (401, "unauthorized")
    assert headers["WWW-Authenticate"] == 'Bearer realm="sanic-realtime"'
    assert "Authorization: Bearer" in error["message"]
    cases = [
        (f"/ws/logs?token={token(key='z' * 40)}", {}, "invalid_token"),
        (f"/ws/logs?token={token(exp_in=-10)}", {}, "token_expired"),
        ("/ws/logs", {"subprotocols": ["bearer", "garbage"]}, "invalid_token"),
        ("/ws/logs?ticket=forged", {}, "invalid_ticket"),
        # The first source present is used: a bad header is not rescued by a good query.
        (f"/ws/logs?token={token()}", {"additional_headers": bearer("bad")}, "invalid_token"),
    ]
    for path, kwargs, code in cases:
        status, error, headers = await refusal(server, path, **kwargs)
        assert (status, error["code"]) == (401, code), path
        assert headers["WWW-Authenticate"] == 'Bearer realm="sanic-realtime", error="invalid_token"'
    assert server.realtime.stats()["total_clients"] == 0


async def test_tickets_are_single_use_short_lived_and_need_a_token(serve: Any) -> None:
    server = await serve(jwt_realtime(auth={"ticket_ttl": "300ms"}))
    response = await server.http.post("/ws/ticket")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    response = await server.http.post("/ws/ticket", headers=bearer(token(exp_in=-5)))
    assert response.json()["error"]["code"] == "token_expired"

    ticket = await get_ticket(server, token("bob", "user"))
    async with server.connect(f"/ws/logs?ticket={ticket}") as ws:
        assert (await established(ws))["user_id"] == "bob"
    status, error, _ = await refusal(server, f"/ws/logs?ticket={ticket}")
    assert (status, error["code"]) == (401, "invalid_ticket")  # used

    stale = await get_ticket(server, token("bob"))
    await asyncio.sleep(0.4)
    status, error, _ = await refusal(server, f"/ws/logs?ticket={stale}")
    assert (status, error["code"]) == (401, "invalid_ticket")  # expired

    # Never longer than the token behind it.
    response = await server.http.post("/ws/ticket", headers=bearer(token(exp_in=2)))
    assert response.json()["expires_in"] <= 2

    # Without auth there is nothing to mint.
    plain = await serve(make_realtime())
    response = await plain.http.post("/ws/ticket", headers=bearer(token()))
    assert response.status_code == 404 and response.json()["error"]["code"] == "auth_disabled"


# --------------------------------------------------------------------------- roles


async def test_channel_roles_refuse_before_the_upgrade(serve: Any) -> None:
    """alerts lists roles: [admin]."""
    server = await serve(jwt_realtime())
    user = token("u1", "user")
    for path in (f"/ws/alerts?token={user}", f"/ws?channels=logs,alerts&token={user}"):
        status, error, _ = await refusal(server, path)
        assert (status, error["code"]) == (403, "forbidden"), path
        assert "admin" in error["message"]
    async with server.connect(f"/ws/alerts?token={token('a1', 'admin')}") as ws:
        assert (await established(ws))["channels"] == ["alerts"]
    # "all" is every channel this client may see.
    async with server.connect(f"/ws?channels=all&token={user}") as ws:
        assert (await established(ws))["channels"] == ["logs", "stats", "requests"]


async def test_subscribing_to_a_forbidden_channel_is_an_error_and_no_subscription(
    serve: Any,
) -> None:
    server = await serve(jwt_realtime())
    async with server.connect(f"/ws?token={token('u1', 'user')}") as ws:
        await established(ws)
        await ws.send(json.dumps({"type": "subscribe", "channels": ["logs", "alerts"]}))
        error = await recv_json(ws)
        assert (error["type"], error["data"]["code"]) == ("error", "forbidden")
        await server.realtime.publish("alerts", "alert", {"severity": "high"})
        await server.realtime.publish("logs", "log", {"level": "info"})
        await no_message(ws)  # the whole message was refused: not even logs
        await ws.send(json.dumps({"type": "subscribe", "channels": ["all"]}))
        reply = await recv_json(ws)
        assert reply["data"]["channels"] == ["logs", "stats", "requests"]
        assert server.realtime.stats()["by_channel"].get("alerts", 0) == 0


async def test_anonymous_connections_see_only_public_channels_and_events(serve: Any) -> None:
    """auth.anonymous: no credential at all = a connection with no user and no roles."""
    server = await serve(jwt_realtime({"anonymous": True}))
    rt = server.realtime
    async with server.connect("/ws/logs") as anon:
        welcome = await established(anon)
        assert (welcome["user_id"], welcome["role"], welcome["roles"]) == (None, None, [])
        # Targeted events are not for it; untargeted ones are.
        assert (await rt.publish("logs", "to_alice", {}, user_id="alice")).recipients == 0
        assert (await rt.publish("logs", "to_users", {}, role="user")).recipients == 0
        assert (await rt.publish("logs", "all", {})).recipients == 1
        assert (await recv_json(anon))["type"] == "all"
        # Channels with roles are refused, in a message as before the upgrade.
        await anon.send(json.dumps({"type": "subscribe", "channels": ["alerts"]}))
        error = await recv_json(anon)
        assert (error["type"], error["data"]["code"]) == ("error", "forbidden")
        # It cannot turn into a user on the same connection.
        await anon.send(json.dumps({"type": "refresh", "token": token("alice", "admin")}))
        error = await recv_json(anon)
        assert error["data"]["code"] == "anonymous"
        assert "reconnect" in error["data"]["message"]
        assert rt.stats()["total_users"] == 0
    status, error, _ = await refusal(server, "/ws/alerts")
    assert (status, error["code"]) == (403, "forbidden")
    async with server.connect("/ws?channels=all") as anon:
        assert (await established(anon))["channels"] == ["logs", "stats", "requests"]
    # A credential that is present must be valid: anonymous is not a fallback.
    for path in ("/ws/logs?token=garbage", f"/ws/logs?token={token('a', exp_in=-10)}"):
        status, error, _ = await refusal(server, path)
        assert status == 401, path
    async with server.connect(f"/ws/alerts?token={token('root', 'admin')}") as ws:
        assert (await established(ws))["user_id"] == "root"
    # Without anonymous, the same request is refused.
    other = await serve(jwt_realtime())
    status, error, _ = await refusal(other, "/ws/logs")
    assert (status, error["code"]) == (401, "unauthorized")


# --------------------------------------------------------------------------- expiry, refresh


def exp_of(tok: str) -> float:
    return float(jwt.decode(tok, options={"verify_signature": False})["exp"])


async def test_a_live_connection_closes_1008_at_its_tokens_exp(serve: Any) -> None:
    server = await serve(jwt_realtime())
    tok = token("alice", exp_in=2)
    async with server.connect("/ws/logs", additional_headers=bearer(tok)) as ws:
        await established(ws)
        code, reason = await closed_with(ws, timeout=5)
        closed_at = time.time()
    assert (code, reason) == (1008, "token expired")
    assert exp_of(tok) - 0.05 <= closed_at <= exp_of(tok) + 1.0
    await asyncio.sleep(0.05)
    assert server.realtime.stats()["total_clients"] == 0


async def test_refresh_keeps_the_connection_past_the_old_exp(serve: Any) -> None:
    server = await serve(jwt_realtime())
    first = token("alice", "user", exp_in=2)
    async with server.connect(f"/ws/logs?token={first}") as ws:
        await established(ws)
        # A bad refresh is an error; the old token still counts.
        await ws.send(json.dumps({"type": "refresh", "token": token("alice", key="k" * 40)}))
        error = await recv_json(ws)
        assert error["data"]["code"] == "invalid_token"
        assert error["data"]["message"].startswith("refresh refused:")
        newer = token("alice", ["user", "ops"], exp_in=600)
        await ws.send(json.dumps({"type": "refresh", "token": newer}))
        reply = await recv_until(ws, "refreshed")
        assert reply["data"]["roles"] == ["user", "ops"]
        assert reply["data"]["expires_at"] is not None
        await asyncio.sleep(max(0.0, exp_of(first) + 1.2 - time.time()))
        await server.realtime.publish("logs", "log", {"level": "info"})
        assert (await recv_json(ws))["type"] == "log"  # still open past the first exp
        assert server.realtime.stats()["by_role"] == {"user": 1, "ops": 1}


async def test_refresh_with_another_users_token_closes_1008(serve: Any) -> None:
    server = await serve(jwt_realtime())
    async with server.connect(f"/ws/logs?token={token('alice')}") as ws:
        await established(ws)
        await ws.send(json.dumps({"type": "refresh", "token": token("mallory")}))
        assert await closed_with(ws) == (1008, "refresh token belongs to another user")


async def test_refresh_that_drops_a_role_leaves_the_channels_it_guarded(serve: Any) -> None:
    server = await serve(jwt_realtime())
    async with server.connect(f"/ws?channels=logs,alerts&token={token('a', 'admin')}") as ws:
        await established(ws)
        await ws.send(json.dumps({"type": "refresh", "token": token("a", "user")}))
        assert (await recv_json(ws))["type"] == "refreshed"
        left = await recv_json(ws)
        assert left == {**left, "type": "unsubscribed"}
        assert left["data"] == {"channels": ["alerts"], "reason": "forbidden"}
        assert (await server.realtime.publish("alerts", "alert", {})).recipients == 0
        assert (await server.realtime.publish("logs", "log", {})).recipients == 1


async def test_refresh_without_auth_is_an_error(serve: Any) -> None:
    server = await serve(make_realtime())
    async with server.connect("/ws") as ws:
        await established(ws)
        await ws.send(json.dumps({"type": "refresh", "token": token()}))
        assert (await recv_json(ws))["data"]["code"] == "auth_disabled"


# --------------------------------------------------------------------------- targeting


async def test_targeted_delivery_reaches_exactly_the_user_or_role(serve: Any) -> None:
    server = await serve(jwt_realtime(admin={"token": "machine-" + "t" * 30}))
    rt = server.realtime
    who = [("alice", "user"), ("alice", "user"), ("bob", "user"), ("carol", ["admin", "ops"])]
    sockets = []
    for user, role in who:
        ws = await server.connect(f"/ws/logs?token={token(user, role)}").__aenter__()
        await established(ws)
        sockets.append(ws)
    try:
        alice1, alice2, bob, carol = sockets

        async def got(ws: Any) -> str | None:
            try:
                return str((await recv_json(ws, 0.3))["type"])
            except TimeoutError:
                return None

        async def received(*expected: Any) -> list[str | None]:
            return list(await asyncio.gather(*(got(ws) for ws in sockets)))

        assert (await rt.publish("logs", "to_alice", {}, user_id="alice")).recipients == 2
        assert await received() == ["to_alice", "to_alice", None, None]
        assert (await rt.publish("logs", "to_ops", {}, role="ops")).recipients == 1
        assert await received() == [None, None, None, "to_ops"]
        assert (await rt.publish("logs", "either", {}, user_id="bob", role="admin")).recipients == 2
        assert await received() == [None, None, "either", "either"]
        assert (await rt.publish("logs", "all", {})).recipients == 4
        assert await received() == ["all"] * 4

        # The admin broadcast route targets the same way and counts the same way.
        admin = bearer(token("carol", "admin"))
        body = {"channel": "logs", "type": "b", "data": {}, "target": {"user_id": "alice"}}
        response = await server.http.post("/admin/ws/broadcast", json=body, headers=admin)
        assert response.json()["recipients"] == 2
        assert await received() == ["b", "b", None, None]
        body["target"] = {"role": "user"}
        response = await server.http.post(
            "/admin/ws/broadcast", json=body, headers=bearer("machine-" + "t" * 30)
        )
        assert response.json()["recipients"] == 3

        stats = (await server.http.get("/admin/ws/stats", headers=admin)).json()
        assert stats["by_role"] == {"user": 3, "admin": 1, "ops": 1}
        assert stats["total_users"] == 3 and stats["total_clients"] == 4
        del alice1, alice2, bob, carol
    finally:
        for ws in sockets:
            await ws.close()


async def test_channel_roles_bound_targeted_delivery(serve: Any) -> None:
    """Only subscribers can receive, and only allowed roles can subscribe."""
    server = await serve(jwt_realtime())
    async with server.connect(f"/ws/alerts?token={token('root', 'admin')}") as ws:
        await established(ws)
        assert (await server.realtime.publish("alerts", "a", {}, role="user")).recipients == 0
        assert (await server.realtime.publish("alerts", "a", {}, user_id="root")).recipients == 1


async def test_disconnect_closes_every_connection_of_a_user(serve: Any) -> None:
    server = await serve(jwt_realtime())
    async with (
        server.connect(f"/ws/logs?token={token('alice')}") as a1,
        server.connect(f"/ws/stats?token={token('alice')}") as a2,
        server.connect(f"/ws/logs?token={token('bob')}") as b,
    ):
        for ws in (a1, a2, b):
            await established(ws)
        assert await server.realtime.disconnect(user_id="alice", reason="account deleted") == 2
        assert await closed_with(a1) == (1008, "account deleted")
        assert await closed_with(a2) == (1008, "account deleted")
        await b.send(json.dumps({"type": "ping"}))
        assert (await recv_json(b))["type"] == "pong"


# --------------------------------------------------------------------------- admin routes


async def test_admin_routes_need_the_admin_role_or_the_static_token(serve: Any) -> None:
    static = "static-admin-" + "s" * 30
    server = await serve(jwt_realtime(admin={"token": static}))
    body = {"channel": "logs", "type": "x"}
    cases = [
        ({}, 401, "unauthorized"),
        (bearer("nonsense"), 401, "invalid_token"),
        (bearer(token("u", "user")), 403, "forbidden"),
        (bearer(token("u", ["user", "admin"])), 200, None),
        (bearer(static), 200, None),
    ]
    for headers, status, code in cases:
        for response in (
            await server.http.post("/admin/ws/broadcast", json=body, headers=headers),
            await server.http.get("/admin/ws/stats", headers=headers),
        ):
            assert response.status_code == status, (headers, response.text)
            if code is not None:
                assert response.json()["error"]["code"] == code
            if status == 401:
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # A query token is not an admin credential.
    response = await server.http.get(f"/admin/ws/stats?token={token('u', 'admin')}")
    assert response.status_code == 401


# --------------------------------------------------------------------------- abuse limits


async def test_connect_rate_limit_per_ip_is_429_with_retry_after(serve: Any) -> None:
    server = await serve(make_realtime(connect_rate_limit={"connections": 3, "per": "10s"}))
    status, _, _ = await refusal(server, "/ws/nope")  # refused attempts count too
    assert status == 404
    for _ in range(2):
        async with server.connect("/ws/logs") as ws:
            await established(ws)
    status, error, headers = await refusal(server, "/ws/logs")
    assert (status, error["code"]) == (429, "rate_limited")
    assert 1 <= int(headers["Retry-After"]) <= 4
    assert "127.0.0.1" in error["message"]


async def test_subscriptions_per_connection(serve: Any) -> None:
    server = await serve(make_realtime(max_subscriptions=2))
    status, error, _ = await refusal(server, "/ws?channels=logs,stats,requests")
    assert (status, error["code"]) == (400, "too_many_subscriptions")
    async with server.connect("/ws?channels=logs,stats") as ws:
        await established(ws)
        await ws.send(json.dumps({"type": "subscribe", "channels": ["requests"]}))
        error = (await recv_json(ws))["data"]
        assert error["code"] == "too_many_subscriptions" and "at most 2" in error["message"]
        # Re-subscribing to a held channel (a new filter) is not a new subscription.
        await ws.send(json.dumps({"type": "subscribe", "channels": ["logs"], "filter": {}}))
        assert (await recv_json(ws))["type"] == "subscribed"
        await ws.send(json.dumps({"type": "unsubscribe", "channels": ["stats"]}))
        await recv_json(ws)
        await ws.send(json.dumps({"type": "subscribe", "channels": ["requests"]}))
        assert (await recv_json(ws))["type"] == "subscribed"


async def test_connections_per_user(serve: Any) -> None:
    server = await serve(jwt_realtime(max_connections_per_user=2))
    alice = f"/ws/logs?token={token('alice')}"
    async with server.connect(alice) as a1:
        await established(a1)
        async with server.connect(alice) as a2:
            await established(a2)
            status, error, _ = await refusal(server, alice)
            assert (status, error["code"]) == (429, "too_many_connections")
            async with server.connect(f"/ws/logs?token={token('bob')}") as b:  # others: fine
                await established(b)
        await asyncio.sleep(0.05)
        async with server.connect(alice) as again:  # a slot freed
            await established(again)


async def test_origin_patterns_before_the_upgrade(serve: Any) -> None:
    server = await serve(make_realtime(allowed_origins=["https://*.example.com"]))
    async with server.connect("/ws/logs", origin="https://ops.eu.example.com") as ws:
        await established(ws)
    others = ("https://example.com", "https://example.com.evil.io", "http://a.example.com")
    # ... and origins no browser sends, which the pattern's suffix match let through.
    odd = ("https://evil.com#.example.com", "https://x@a.example.com", "https://a..example.com")
    odd += ("https://evil.com\\.example.com", "https://evil.com?.example.com")
    for origin in others + odd:
        status, error, _ = await refusal(server, "/ws/logs", origin=origin)
        assert (status, error["code"]) == (403, "origin_not_allowed"), origin
    response = await server.http.post(
        "/ws/ticket", headers={"Origin": "https://evil.io", **bearer(token())}
    )
    assert response.status_code == 403  # checked before anything else, auth or not


# --------------------------------------------------------------------------- logs


#: The test's own clients log what they send (their token included); not the server's logs.
_CLIENT_LOGGERS = ("websockets.client", "httpx", "httpcore")


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_CLIENT_LOGGERS):
            return
        self.records.append(record)
        self.lines.append(self.format(record))
        self.lines.extend(str(v) for v in record.__dict__.values() if isinstance(v, str))


@pytest.fixture
def captured() -> Iterator[_Capture]:
    """Every record of every logger at DEBUG, seen as a handler on the logger itself.
    Call ``captured.arm()`` after the server started: Sanic's start-up resets log levels."""
    names = ["", "sanic.access", "sanic.error", "sanic.root", "sanic.server", "sanic.websockets"]
    names += ["websockets", "websockets.server", "sanic_realtime"]
    handler = _Capture()
    saved: list[tuple[logging.Logger, int, bool]] = []

    def arm() -> None:
        for name in names:
            logger = logging.getLogger(name)
            saved.append((logger, logger.level, logger.propagate))
            logger.setLevel(logging.DEBUG)
            logger.addHandler(handler)
            logger.propagate = False  # each record reaches the handler once

    handler.arm = arm  # type: ignore[attr-defined]
    yield handler
    for logger, level, propagate in saved:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


async def test_tokens_and_tickets_never_reach_the_logs(serve: Any, captured: _Capture) -> None:
    server = await serve(jwt_realtime(auth={"audience": "dash"}), access_log=True)
    captured.arm()  # type: ignore[attr-defined]
    good = token("alice", "admin", aud="dash")
    bad = token("alice", aud="other")
    secrets = [good, bad]
    async with server.connect(f"/ws/logs?level=warn&token={good}") as ws:
        await established(ws)
        refreshed = token("alice", "admin", exp_in=900, aud="dash")
        secrets.append(refreshed)
        await ws.send(json.dumps({"type": "refresh", "token": refreshed}))
        await recv_until(ws, "refreshed")
    await refusal(server, f"/ws/logs?token={bad}")
    ticket = await get_ticket(server, good)
    secrets.append(ticket)
    async with server.connect(f"/ws/logs?ticket={ticket}") as ws:
        await established(ws)
    await refusal(server, f"/ws/logs?ticket={ticket}")  # used: refused, and logged
    async with server.connect("/ws/logs", subprotocols=["bearer", good]) as ws:
        await established(ws)
    # Names (and values) as Sanic and msgspec decode them, not as they are written:
    # ?%74oken= is token, ?tick%65t= is ticket, "\u0074oken" is token.
    encoded = token("alice", "admin", exp_in=600, aud="dash")
    secrets.append(encoded[1:])  # the log has the URL as sent: %65yJ...
    async with server.connect(f"/ws/logs?%74oken=%65{encoded[1:]}") as ws:
        await established(ws)
        refreshed = token("alice", "admin", exp_in=800, aud="dash")
        escaped = "\\u0065" + refreshed[1:]
        secrets.append(refreshed[1:])
        await ws.send(f'{{"type": "refresh", "\\u0074oken": "{escaped}"}}')
        await recv_until(ws, "refreshed")
    ticket = await get_ticket(server, good)
    secrets.append(ticket)
    async with server.connect(f"/ws/logs?tick%65t={ticket}") as ws:
        await established(ws)
    await asyncio.sleep(0.1)

    text = "\n".join(captured.lines)
    # The test saw what it is about: access-log lines with the URLs, and the frame log.
    assert any(r.name == "sanic.access" for r in captured.records)
    assert "/ws/logs?level=warn&token=[redacted]" in text
    assert "ticket=[redacted]" in text
    assert "?%74oken=[redacted]" in text and "?tick%65t=[redacted]" in text
    assert 'u0074oken": "[redacted]' in text  # the frame log
    assert '"refresh"' in text
    # ... and the package's own connection log (sanic.websockets.realtime).
    events = {getattr(r, "realtime_event", None) for r in captured.records}
    assert {"connect", "disconnect", "refused"} <= events
    for secret in secrets:
        assert secret not in text
        for part in secret.split("."):  # no fragment of a JWT either
            assert len(part) < 20 or part not in text


async def test_initial_state_hook_sees_the_clients_identity(serve: Any) -> None:
    realtime = jwt_realtime()

    @realtime.initial_state("stats")
    async def per_user(request: Any) -> dict[str, Any]:
        identity = request.ctx.realtime_identity
        return {"for": identity.user_id, "roles": list(identity.roles)}

    server = await serve(realtime)
    async with server.connect(f"/ws/stats?token={token('dana', ['ops'])}") as ws:
        await established(ws)
        state = await recv_json(ws)
        assert (state["type"], state["data"]) == (
            "initial_state",
            {"for": "dana", "roles": ["ops"]},
        )
