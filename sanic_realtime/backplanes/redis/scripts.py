"""The Lua scripts, read once from the ``.lua`` files shipped in this package.

- ``publish.lua``: gives an event its id, appends it to the stream and publishes it;
- ``since.lua``: the events after an id, checked before any is read (a resume);
- ``meta.lua``: where a channel's history stands (epoch, last offset, of this Redis run);
- ``presence_*.lua``: presence's joins, leaves, due leaves and dead workers (``presence.py``);
- ``user_slots.lua``: cluster-wide ``max_connections_per_user`` (``limits.py``).

Each file says what its KEYS and ARGV are and what it returns. redis-py sends a script
once (SCRIPT LOAD, or EVAL after a NOSCRIPT) and then calls it by its SHA1 (EVALSHA).
"""

from __future__ import annotations

from importlib.resources import files

__all__ = [
    "META",
    "PRESENCE_ADD",
    "PRESENCE_DUE",
    "PRESENCE_REAP",
    "PRESENCE_REMOVE",
    "PUBLISH",
    "SINCE",
    "USER_SLOTS",
    "load",
]


_PACKAGE = __name__.rpartition(".")[0]


def load(name: str) -> str:
    """The text of ``<name>.lua`` in this package."""
    return files(_PACKAGE).joinpath(f"{name}.lua").read_text(encoding="utf-8")


PUBLISH = load("publish")
SINCE = load("since")
META = load("meta")
PRESENCE_ADD = load("presence_add")
PRESENCE_REMOVE = load("presence_remove")
PRESENCE_DUE = load("presence_due")
PRESENCE_REAP = load("presence_reap")
USER_SLOTS = load("user_slots")
