"""Scenario 4, user management: register, log in (JWT), profiles, roles, and the events
each change sends to whom.

Events go to the ``users`` channel, which only signed-in connections may subscribe to,
and each is targeted (``publish(..., user_id=..., role=...)``: the user, the admins, or
either):

| event | data | to |
|---|---|---|
| ``user.created`` | user_id, username, name | admins |
| ``user.updated`` | user_id, changes, updated_at | the user and admins |
| ``user.deleted`` | user_id, username | admins (the user is disconnected) |
| ``user.role.changed`` | user_id, old_role, new_role, changed_by | the user and admins |
| ``profile.updated`` | user_id, changes | the user |
| ``password.changed`` | user_id, changed_at | the user |

Each user also has a private inbox, ``users.<id>`` (the template ``users.{user_id}``):
an ``authorize`` hook lets only that user, or an admin, subscribe. It gets a
``notification`` (title, message, level, at) on sign-in, registration and a role or
password change; a new subscriber first gets the latest ones (``initial_state``,
``{"notifications": [...]}``, kept in this process's memory).

Users live in SQLite (a file shared by every worker of one host, or in memory for one
process); passwords are hashed with scrypt (standard library).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from typing import Any

import jwt
from sanic import Blueprint, Request
from sanic.exceptions import BadRequest
from sanic.response import HTTPResponse, empty, json

from sanic_realtime import Realtime
from sanic_realtime.auth import Identity

from .common import Emitter, iso

TOKEN_TTL = 3600
INBOX_KEEP = 20
ROLES = ("user", "admin")
_USERNAME_RE = re.compile(r"^[a-z0-9_.-]{3,32}$")
SEED = [
    ("admin", "admin", "Ada Admin", "admin"),
    ("alice", "alice", "Alice", "user"),
    ("bob", "bob", "Bob", "user"),
]


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def refusal(e: Refused) -> HTTPResponse:
    return json({"error": {"code": e.code, "message": e.message}}, e.status)


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    _, salt, digest = stored.split("$")
    return hmac.compare_digest(hash_password(password, bytes.fromhex(salt)).split("$")[2], digest)


class UserStore:
    def __init__(self, path: str = ":memory:") -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.lock = threading.Lock()
        with self.lock:
            if path != ":memory:":
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, username TEXT UNIQUE "
                "NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL DEFAULT '', role TEXT NOT NULL, "
                "password TEXT NOT NULL, updated_at TEXT NOT NULL)"
            )
        for username, password, name, role in SEED:
            if self.by_username(username) is None:
                with contextlib.suppress(Refused):  # another worker seeded it first
                    self.create(username, password, name, role)

    @staticmethod
    def public(row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        return {k: row[k] for k in ("id", "username", "name", "email", "role", "updated_at")}

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        with self.lock:
            row: sqlite3.Row | None = self.db.execute(sql, args).fetchone()
            return row

    def by_username(self, username: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM users WHERE username = ?", username)

    def get(self, user_id: int | str) -> dict[str, Any] | None:
        return self.public(self._one("SELECT * FROM users WHERE id = ?", int(user_id)))

    def all(self) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute("SELECT * FROM users ORDER BY id").fetchall()
        return [u for u in map(self.public, rows) if u is not None]

    def create(self, username: str, password: str, name: str, role: str = "user") -> dict[str, Any]:
        hashed = hash_password(password)
        try:
            with self.lock:
                cur = self.db.execute(
                    "INSERT INTO users (username, name, role, password, updated_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (username, name, role, hashed, iso()),
                )
        except sqlite3.IntegrityError:
            raise Refused(409, "username_taken", f"the username {username!r} is taken") from None
        user = self.get(cur.lastrowid or 0)
        assert user is not None
        return user

    def update(self, user_id: int, **fields: Any) -> dict[str, Any]:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.lock:
            self.db.execute(
                # The keys are this module's own, never the caller's.
                f"UPDATE users SET {sets}, updated_at = ? WHERE id = ?",
                (*fields.values(), iso(), user_id),
            )
        user = self.get(user_id)
        if user is None:
            raise Refused(404, "not_found", f"no user {user_id}")
        return user

    def delete(self, user_id: int) -> None:
        with self.lock:
            self.db.execute("DELETE FROM users WHERE id = ?", (user_id,))


def json_body(request: Request) -> Any:
    """The request's JSON (None without a body); a 400 naming the problem if malformed."""
    if not request.body:
        return None
    try:
        return request.json
    except BadRequest:
        raise Refused(400, "invalid_body", "the body is not valid JSON") from None


def _body(request: Request, *required: str) -> dict[str, Any]:
    body = json_body(request)
    if not isinstance(body, dict):
        raise Refused(400, "invalid_body", "expected a JSON object")
    for key in required:
        if not isinstance(body.get(key), str) or not body[key].strip():
            raise Refused(400, "invalid_body", f"{key!r} is required (a non-empty string)")
    return body


class Inbox:
    """The private channels ``users.<id>``: ``notification`` events, the latest kept."""

    def __init__(self, emit: Emitter) -> None:
        self.emit = emit
        self.kept: dict[str, collections.deque[dict[str, Any]]] = {}

    async def notify(
        self, user_id: int | str, title: str, message: str, level: str = "info"
    ) -> None:
        note = {"title": title, "message": message, "level": level, "at": iso()}
        self.kept.setdefault(str(user_id), collections.deque(maxlen=INBOX_KEEP)).append(note)
        await self.emit(f"users.{user_id}", "notification", note)

    def latest(self, user_id: str) -> list[dict[str, Any]]:
        return list(self.kept.get(user_id, ()))


def build_users(realtime: Realtime, store: UserStore, secret: str) -> Blueprint:
    """The ``/api`` routes of user management, and the hooks of the inboxes."""
    bp = Blueprint("demo_users", url_prefix="/api")
    emit = Emitter(realtime)
    inbox = Inbox(emit)

    @realtime.authorize("users.{user_id}")
    async def own_inbox(
        request: Request, identity: Identity | None, params: dict[str, str]
    ) -> bool:
        """users.<id>: that user, or an admin (the yaml's roles already keep anonymous out)."""
        return identity is not None and (
            identity.user_id == params["user_id"] or "admin" in identity.roles
        )

    @realtime.initial_state("users.{user_id}")
    async def inbox_now(request: Request, user_id: str) -> Any:
        return {"notifications": inbox.latest(user_id)}

    def issue(user: dict[str, Any]) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user["id"]),
            "role": user["role"],
            "name": user["name"],
            "iat": now,
            "exp": now + TOKEN_TTL,
        }
        return jwt.encode(claims, secret, algorithm="HS256")

    def session(user: dict[str, Any]) -> dict[str, Any]:
        return {"token": issue(user), "user": user, "expires_in": TOKEN_TTL}

    def caller(request: Request, role: str | None = None) -> dict[str, Any]:
        scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Refused(401, "unauthorized", "this route needs 'Authorization: Bearer <token>'")
        try:
            claims = jwt.decode(
                token.strip(), secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise Refused(401, "token_expired", "the token has expired: log in again") from None
        except jwt.InvalidTokenError as e:
            raise Refused(401, "invalid_token", f"invalid token: {e}") from None
        user = store.get(claims["sub"])
        if user is None:
            raise Refused(401, "invalid_token", "this user no longer exists")
        if role is not None and user["role"] != role:
            raise Refused(403, "forbidden", f"this route needs the role {role!r}")
        return user

    @bp.post("/register")
    async def register(request: Request) -> HTTPResponse:
        body = _body(request, "username", "password")
        username = body["username"].strip().lower()
        if not _USERNAME_RE.match(username):
            raise Refused(
                400, "invalid_username", "a username is 3 to 32 of a-z, 0-9, '_', '.', '-'"
            )
        if len(body["password"]) < 4:
            raise Refused(
                400, "weak_password", "a password has at least 4 characters (it is a demo)"
            )
        name = str(body.get("name") or username).strip()[:64]
        user = store.create(username, body["password"], name)
        await emit(
            "users",
            "user.created",
            {"user_id": user["id"], "username": username, "name": name},
            role="admin",
        )
        await inbox.notify(user["id"], "Welcome", f"Welcome, {name}: your account is ready")
        return json(session(user), 201)

    @bp.post("/login")
    async def login(request: Request) -> HTTPResponse:
        body = _body(request, "username", "password")
        row = store.by_username(body["username"].strip().lower())
        if row is None or not check_password(body["password"], row["password"]):
            raise Refused(401, "bad_credentials", "unknown username or wrong password")
        user = store.public(row)
        assert user is not None
        await inbox.notify(user["id"], "Signed in", f"Welcome back, {user['name']}")
        return json(session(user))

    @bp.get("/me")
    async def me(request: Request) -> HTTPResponse:
        return json({"user": caller(request)})

    @bp.patch("/me")
    async def update_me(request: Request) -> HTTPResponse:
        return json({"user": await update_profile(caller(request)["id"], request, own=True)})

    async def update_profile(user_id: int, request: Request, *, own: bool) -> dict[str, Any]:
        """Change name and/or email; the user and admins are told (``user.updated``), and
        the user also gets ``profile.updated`` when they changed it themselves."""
        body = _body(request)
        changes = {k: str(body[k]).strip()[:120] for k in ("name", "email") if k in body}
        if not changes:
            raise Refused(400, "invalid_body", "nothing to change: send 'name' and/or 'email'")
        user = store.update(user_id, **changes)
        changed = sorted(changes)
        if own:
            await emit(
                "users",
                "profile.updated",
                {"user_id": user_id, "changes": changed},
                user_id=user_id,
            )
        await emit(
            "users",
            "user.updated",
            {"user_id": user_id, "changes": changed, "updated_at": user["updated_at"]},
            user_id=user_id,
            role="admin",
        )
        return user

    @bp.post("/me/password")
    async def change_password(request: Request) -> HTTPResponse:
        user = caller(request)
        body = _body(request, "old_password", "new_password")
        row = store.by_username(user["username"])
        if row is None or not check_password(body["old_password"], row["password"]):
            raise Refused(403, "bad_credentials", "the current password is wrong")
        if len(body["new_password"]) < 4:
            raise Refused(
                400, "weak_password", "a password has at least 4 characters (it is a demo)"
            )
        store.update(user["id"], password=hash_password(body["new_password"]))
        await emit(
            "users",
            "password.changed",
            {"user_id": user["id"], "changed_at": iso()},
            user_id=user["id"],
        )
        await inbox.notify(user["id"], "Password changed", "your password was changed", "medium")
        return empty()

    @bp.get("/users")
    async def list_users(request: Request) -> HTTPResponse:
        caller(request, "admin")
        return json({"users": store.all()})

    def target(user_id: int) -> dict[str, Any]:
        user = store.get(user_id)
        if user is None:
            raise Refused(404, "not_found", f"no user {user_id}")
        return user

    @bp.patch("/users/<user_id:int>")
    async def update_user(request: Request, user_id: int) -> HTTPResponse:
        caller(request, "admin")
        target(user_id)
        return json({"user": await update_profile(user_id, request, own=False)})

    @bp.patch("/users/<user_id:int>/role")
    async def change_role(request: Request, user_id: int) -> HTTPResponse:
        admin = caller(request, "admin")
        old = target(user_id)
        role = _body(request, "role")["role"]
        if role not in ROLES:
            raise Refused(400, "invalid_role", f"role must be one of {', '.join(ROLES)}")
        user = store.update(user_id, role=role)
        await emit(
            "users",
            "user.role.changed",
            {
                "user_id": user_id,
                "old_role": old["role"],
                "new_role": role,
                "changed_by": admin["username"],
            },
            user_id=user_id,
            role="admin",
        )
        await inbox.notify(
            user_id,
            "Role changed",
            f"{admin['username']} made you {role} (from {old['role']}): sign in again for it",
            "medium",
        )
        return json({"user": user})

    @bp.delete("/users/<user_id:int>")
    async def delete_user(request: Request, user_id: int) -> HTTPResponse:
        admin = caller(request, "admin")
        user = target(user_id)
        if user["id"] == admin["id"]:
            raise Refused(400, "self_delete", "an admin cannot delete their own account here")
        store.delete(user_id)
        await emit(
            "users",
            "user.deleted",
            {"user_id": user_id, "username": user["username"]},
            role="admin",
        )
        # Their live connections end now (1008), on every worker; their token no longer works.
        await realtime.disconnect(user_id=user_id, reason="account deleted")
        return empty()

    return bp
