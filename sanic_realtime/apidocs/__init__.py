"""Machine-readable descriptions of the realtime routes, for client teams and their tools.

- ``asyncapi``: the AsyncAPI 3.0.0 document of the WebSocket protocol (pure: config -> dict);
  served at ``GET {url_prefix}/asyncapi.json``.
- ``openapi``: what sanic-ext's OpenAPI document (``/docs``) says about each HTTP and
  WebSocket route of the blueprint (pure: config -> dicts).
- ``schemas``: JSON Schemas derived from the Structs of :mod:`sanic_realtime.protocol`,
  :mod:`sanic_realtime.events` and :mod:`sanic_realtime.bodies`.
- ``routes``: the Sanic glue (the asyncapi.json route; the OpenAPI descriptions applied
  when the app is extended by sanic-ext).

See docs/reference/api-descriptions.md.
"""
