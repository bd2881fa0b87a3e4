"""The sanic-realtime demo app. Run it with ``python -m example_app``."""
