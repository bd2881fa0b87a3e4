"""The names of the keys and pub/sub channels, all under ``redis.prefix``."""

from __future__ import annotations

__all__ = ["Keys"]


class Keys:
    """The key layout of one prefix (see the package docstring)."""

    __slots__ = ("control", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        #: The pub/sub channel of cluster-wide commands (disconnect).
        self.control = f"{prefix}:control".encode()

    def meta(self, channel: str) -> str:
        """The hash of a history's epoch (``e``), last offset (``s``) and run (``r``)."""
        return f"{self.prefix}:{channel}:meta"

    def stream(self, channel: str) -> str:
        """The stream of a channel's history: entry id ``<offset>-0``, field ``d``."""
        return f"{self.prefix}:{channel}:stream"

    def pubsub(self, channel: str) -> bytes:
        """The pub/sub channel of a channel's live events."""
        return f"{self.prefix}:ch:{channel}".encode()

    def reply(self, node: str) -> bytes:
        """The pub/sub channel of the answers a worker asked for (``count="cluster"``)."""
        return f"{self.prefix}:reply:{node}".encode()

    def node(self, node: str) -> str:
        """One worker's figures."""
        return f"{self.prefix}:node:{node}"

    def ticket(self, ticket: str) -> str:
        """A one-time ticket."""
        return f"{self.prefix}:ticket:{ticket}"
