"""``python -m example_app [--host H] [--port P]``: run the demo in one process."""

from __future__ import annotations

import argparse

from .app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description="sanic-realtime demo (in-memory backplane)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app = create_app()
    print(f"demo: open http://{args.host}:{args.port}/ for the WebSocket URLs to try")
    app.run(host=args.host, port=args.port, single_process=True, access_log=False)


if __name__ == "__main__":
    main()
