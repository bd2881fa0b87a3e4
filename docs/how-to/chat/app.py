"""A team chat with "who's here" and typing indicators (the presence how-to's app).

Run it from this directory: ``CHAT_JWT_SECRET=... sanic app:app --port 8000``.
"""

import msgspec
from sanic import Sanic, json

from sanic_realtime import BadMessage, Realtime

realtime = Realtime.from_yaml("realtime.yaml")
app = Sanic("chat")
app.blueprint(realtime.blueprint)


# --8<-- [start:authorize]
TEAMS = {"alice": {"ops"}, "bob": {"ops"}, "carol": {"sales"}}  # your user store


@realtime.authorize("rooms.{team}.{room}")
async def own_team(request, identity, params) -> bool:
    # Only the room's team may join (and so see who is here, and talk).
    return identity is not None and params["team"] in TEAMS.get(identity.user_id, set())
    # --8<-- [end:authorize]


# --8<-- [start:handler]
class ChatLine(msgspec.Struct):
    text: str


@realtime.on_message("rooms.{team}.{room}", "chat")
async def on_chat(conn, channel, params, data: ChatLine):
    text = data.text.strip()
    if not text:
        return None  # nothing to say: dropped
    if len(text) > 500:
        raise BadMessage("a chat line has at most 500 characters", code="too_long")
    return {"text": text}
    # --8<-- [end:handler]


# --8<-- [start:route]
@app.get("/rooms/<team>/<room>/here")
async def here(request, team: str, room: str):
    present = await realtime.presence(f"rooms.{team}.{room}")
    return json({"count": present.count, "users": [u.user_id for u in present.users or []]})
    # --8<-- [end:route]
