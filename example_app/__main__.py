"""``python -m example_app``: run the ops console.

    python -m example_app                                        # one process, in memory
    python -m example_app --redis redis://127.0.0.1:6379/0 --workers 4   # scaled out

Options: ``--host`` (127.0.0.1), ``--port`` (8000), ``--speed`` (1: real pace; 5: five
times faster), ``--redis URL`` (the Redis backplane; required with ``--workers`` > 1),
``--workers N``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from functools import partial
from pathlib import Path

from sanic import Sanic
from sanic.worker.loader import AppLoader

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m example_app", description="sanic-realtime demo: the ops console"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--speed", type=float, default=1.0, help="pace of the simulations")
    parser.add_argument(
        "--redis", metavar="URL", help="Redis backplane, e.g. redis://127.0.0.1:6379/0"
    )
    parser.add_argument("--workers", type=int, default=1, help="Sanic worker processes")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.workers > 1 and not args.redis:
        parser.error(
            "--workers > 1 needs --redis URL: with the memory backplane each worker would "
            "reach only its own clients"
        )
    if args.speed <= 0:
        parser.error("--speed must be greater than 0")

    # Every worker builds the app from this environment (workers are new processes).
    os.environ.setdefault("DEMO_JWT_SECRET", secrets.token_urlsafe(48))
    os.environ["DEMO_SPEED"] = str(args.speed)
    if args.redis:
        os.environ["REALTIME_BACKPLANE"] = args.redis
    if args.workers > 1 and "DEMO_DB" not in os.environ:
        # One user database shared by the workers of this host.
        os.environ["DEMO_DB"] = str(Path(tempfile.mkdtemp(prefix="ops-console-")) / "users.db")

    where = f"http://{args.host}:{args.port}/"
    backplane = args.redis or "memory"
    print(
        f"ops console: open {where}  (backplane {backplane}, {args.workers} worker(s))\n"
        "  sign in as admin/admin or alice/alice, or register; the dashboard is public",
        file=sys.stderr,
    )
    loader = AppLoader(factory=partial(create_app, "ops_console"))
    app = loader.load()
    app.prepare(
        host=args.host,
        port=args.port,
        workers=args.workers,
        single_process=args.workers == 1,
        access_log=False,
        motd=False,
    )
    if args.workers == 1:
        Sanic.serve_single(primary=app)
    else:
        Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":
    main()
