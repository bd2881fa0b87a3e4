"""``sanic-realtime top``: a full-screen live view of a server's channels (Textual).

- ``model``: what the view shows, without the screen (pure; tests need no terminal)
- ``app``: the Textual app that draws it and reads the keys

Textual is the ``[tui]`` extra: ``pip install 'sanic-realtime[tui]'``.
"""

from __future__ import annotations

from .model import TopModel

__all__ = ["TopModel"]
