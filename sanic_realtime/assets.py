"""The browser client's files, served by the blueprint at ``{url_prefix}/client.js`` and
``{url_prefix}/client.d.ts``. No sanic: the glue turns an :class:`Asset` into a response.
"""

from __future__ import annotations

import hashlib
from importlib import resources

__all__ = ["CLIENT_ASSETS", "Asset"]

#: Fresh for ten minutes, then revalidated with the ETag (an unchanged file costs a 304).
CACHE_CONTROL = "public, max-age=600"


class Asset:
    """A file shipped in ``sanic_realtime/static``, read once, with a strong ETag."""

    __slots__ = ("body", "content_type", "etag")

    def __init__(self, filename: str, content_type: str) -> None:
        self.body = resources.files(__package__).joinpath("static").joinpath(filename).read_bytes()
        self.content_type = content_type
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'

    def fresh(self, if_none_match: str | None) -> bool:
        """Whether a request's ``If-None-Match`` names this version (answer 304)."""
        if not if_none_match:
            return False
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or self.etag in tags

    def headers(self) -> dict[str, str]:
        return {
            "ETag": self.etag,
            "Cache-Control": CACHE_CONTROL,
            # A module script loaded by a page of another origin is fetched with CORS.
            "Access-Control-Allow-Origin": "*",
            "X-Content-Type-Options": "nosniff",
        }


#: URL suffix -> (file in sanic_realtime/static, content type)
CLIENT_ASSETS = {
    "client.js": ("realtime.js", "text/javascript; charset=utf-8"),
    "client.d.ts": ("client.d.ts", "application/typescript; charset=utf-8"),
}
