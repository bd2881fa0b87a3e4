"""Scenario 5, chat rooms: who's here, who is typing, and chat lines, all sent by the
browsers themselves over their WebSocket (no HTTP route).

``rooms.{room}`` (realtime.yaml) is a template with ``presence`` and ``client_messages``:

- presence: the page asks who is here (``{"type": "presence"}``) and follows
  ``presence_join`` / ``presence_leave``; a reload within ``leave_delay`` shows nothing;
- ``typing`` (live only, no id) and ``chat`` (kept in history: replayed on resume), which
  a subscriber publishes (``{"type": "publish", "event": "chat", "data": {"text"}}``).

The handlers here check and complete each message before the server sends it on: a
chat line is a :class:`ChatLine` (``text``, at most :data:`MAX_TEXT` characters),
stripped of control characters and surrounding blanks, refused when nothing is left
(``BadMessage`` code ``empty``); both get the sender's ``username`` from the user store,
so a client cannot pass for another (the server stamps ``from`` too).

A new subscriber first gets the room's ``initial_state``: ``{"room", "users": {id:
username}, "recent": [...]}``, the usernames to show beside the user ids of presence and
the latest :data:`RECENT` lines (kept in this worker's memory, for :data:`ROOMS_KEPT`
rooms at most).
"""

from __future__ import annotations

import collections
import re
from typing import Annotated, Any

import msgspec
from sanic import Request

from sanic_realtime import BadMessage, ConnectionView, Realtime

from .common import iso
from .users import UserStore

#: The rooms the console offers (any name of the template's pattern works).
ROOMS = ("ops", "incidents", "deploys")
MAX_TEXT = 500
RECENT = 50
ROOMS_KEPT = 100
#: Usernames an initial_state lists at most.
DIRECTORY_MAX = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class ChatLine(msgspec.Struct):
    """What a client sends as ``chat``."""

    text: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]


class Typing(msgspec.Struct):
    """What a client sends as ``typing`` (nothing: ``{}``)."""


class Rooms:
    """The latest lines of each room, in this worker's memory."""

    def __init__(self) -> None:
        self.recent: collections.OrderedDict[str, collections.deque[dict[str, Any]]] = (
            collections.OrderedDict()
        )

    def keep(self, room: str, line: dict[str, Any]) -> None:
        lines = self.recent.get(room)
        if lines is None:
            lines = self.recent[room] = collections.deque(maxlen=RECENT)
        self.recent.move_to_end(room)
        lines.append(line)
        while len(self.recent) > ROOMS_KEPT:
            self.recent.popitem(last=False)

    def latest(self, room: str) -> list[dict[str, Any]]:
        return list(self.recent.get(room, ()))


def clean_text(text: str) -> str:
    """A chat line's text without control characters (tabs become spaces) nor surrounding
    blanks; ``BadMessage`` (``empty``) when nothing is left."""
    cleaned = _CONTROL.sub("", text.replace("\t", " ")).strip()
    if not cleaned:
        raise BadMessage("a chat line needs some text", code="empty")
    return cleaned


def build_rooms(realtime: Realtime, store: UserStore) -> Rooms:
    """Register the handlers and the initial state of ``rooms.{room}``."""
    rooms = Rooms()

    def username(conn: ConnectionView) -> str:
        user = store.get(conn.user_id) if conn.user_id and conn.user_id.isdigit() else None
        return user["username"] if user else f"user {conn.user_id}"

    @realtime.on_message("rooms.{room}", "chat")
    async def on_chat(
        conn: ConnectionView, channel: str, params: dict[str, str], data: ChatLine
    ) -> dict[str, Any]:
        line = {"text": clean_text(data.text), "username": username(conn)}
        rooms.keep(params["room"], {**line, "user_id": conn.user_id, "at": iso()})
        return line

    @realtime.on_message("rooms.{room}", "typing")
    async def on_typing(
        conn: ConnectionView, channel: str, params: dict[str, str], data: Typing
    ) -> dict[str, Any]:
        return {"username": username(conn)}

    @realtime.initial_state("rooms.{room}")
    async def room_now(request: Request, room: str) -> Any:
        users = {str(u["id"]): u["username"] for u in store.all()[:DIRECTORY_MAX]}
        return {"room": room, "users": users, "recent": rooms.latest(room)}

    return rooms
