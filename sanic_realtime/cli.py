"""``sanic-realtime``: tail or watch channels and publish events from a shell (no Sanic
imported).

    sanic-realtime tail http://127.0.0.1:8000 --channel logs --filter level=error
    sanic-realtime top http://127.0.0.1:8000
    sanic-realtime presence http://127.0.0.1:8000 rooms.lobby
    sanic-realtime publish http://127.0.0.1:8000 --channel logs --type log_update \\
        --data '{"level": "error", "message": "db down"}'

Exit status: 0 when done (Ctrl-C, ``--count`` events seen, the presence printed), 1 when
the connection or the request failed (the message says why, with the HTTP status of a
refusal or the server's error code), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import urllib.error
from collections.abc import Sequence
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import msgspec
from rich.console import Console
from rich.text import Text

from . import __version__
from .client import (
    ConnectionStatus,
    Event,
    PresenceData,
    RealtimeClient,
    RealtimeClientError,
    Refused,
    RequestFailed,
    publish,
)
from .console import event_line, note_of, presence_lines

__all__ = ["main"]

_encoder = msgspec.json.Encoder()


class UsageError(Exception):
    """A bad argument: exit 2 with the message."""


def websocket_url(url: str, default_path: str = "/ws") -> str:
    """``http(s)://host:port`` -> ``ws(s)://host:port/ws``; a ws(s) URL or one with a path
    is kept as given (its scheme made ws/wss)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise UsageError(f"expected a URL like http://127.0.0.1:8000 or ws://host/ws, got {url!r}")
    path = parts.path if parts.path not in ("", "/") else default_path
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def parse_filters(items: Sequence[str]) -> dict[str, str]:
    """``["level=error", "component=db,cache"]`` -> ``{"level": "error", ...}``."""
    filters: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--filter expects NAME=VALUE, got {item!r}")
        filters[name] = value
    return filters


class Output:
    """Where ``tail`` writes: events to stdout (lines, or JSON lines with ``--json``),
    connection changes to stderr in ``--json`` mode and inline otherwise."""

    def __init__(self, *, json_lines: bool, out: TextIO, err: TextIO) -> None:
        self.json_lines = json_lines
        self.out = out
        self.console = Console(file=out, highlight=False, soft_wrap=True)
        self.notes = Console(file=err if json_lines else out, highlight=False, soft_wrap=True)

    def event(self, event: Event) -> None:
        if self.json_lines:
            self.out.write(_encoder.encode(event).decode() + "\n")
            self.out.flush()
            return
        note = note_of(event)
        if note is not None:
            self.note(note, "bold yellow")
            return
        self.console.print(event_line(event))

    def note(self, message: str, style: str = "dim") -> None:
        self.notes.print(Text(message, style))

    def status(self, status: ConnectionStatus, url: str) -> None:
        if status.state == "connecting":
            self.note(f"connecting to {url} ...")
        elif status.state == "connected":
            who = f", user {status.user_id}" if status.user_id else ""
            self.note(f"* connected ({status.client_id}{who})", "bold green")
        elif status.state == "reconnecting":
            self.note(
                f"o {status.last_error or 'connection lost'}; reconnecting in "
                f"{status.next_retry_in or 0:.1f}s (attempt {status.attempt})",
                "yellow",
            )

    def error(self, message: str) -> None:
        print_error(message)


def print_error(message: str) -> None:
    """``error: message`` on stderr (bold red on a terminal)."""
    Console(file=sys.stderr, highlight=False, soft_wrap=True).print(
        Text(f"error: {message}", "bold red")
    )


def client_for(args: argparse.Namespace, url: str) -> RealtimeClient:
    """The client ``tail`` and ``top`` read with, from their common arguments."""
    filters = parse_filters(args.filter or [])
    # No -c and no -f: the URL decides. A channel URL (ws://host/ws/logs?level=error)
    # subscribes by itself and the client keeps it; on the general route, every channel.
    channels = args.channel or (["all"] if filters else None)
    return RealtimeClient(
        url,
        channels=channels,
        filters=filters or None,
        token=token_of(args),
        max_reconnect_attempts=args.max_reconnect_attempts,
        reconnect=not getattr(args, "no_reconnect", False),
    )


async def tail(args: argparse.Namespace, output: Output) -> int:
    url = websocket_url(args.url)
    client = client_for(args, url)
    client.on_connection_change(lambda status: output.status(status, url))
    seen = 0
    try:
        await client.connect()
        if not client.channels:
            await client.subscribe("all")
        async for event in client:
            output.event(event)
            if event.is_event:
                seen += 1
                if args.count and seen >= args.count:
                    break
    except Refused as e:
        output.error(f"the server refused the connection: {e}")
        return 1
    except RealtimeClientError as e:
        output.error(str(e))
        return 1
    finally:
        await client.close()
    return 0


def token_of(args: argparse.Namespace) -> str | None:
    return args.token or os.environ.get("REALTIME_TOKEN") or None


async def ask_presence(client: RealtimeClient, channel: str) -> PresenceData:
    """The presence of ``channel``: asked at once when the URL subscribed to it or the
    token has the admin role (then the command is not counted itself); else after
    subscribing to it, as the server asks of anyone else."""
    if channel not in client.channels:
        try:
            return await client.presence(channel)
        except RequestFailed as e:
            if e.code != "forbidden":
                raise
        await client.subscribe(channel)
    return await client.presence(channel)


async def presence(args: argparse.Namespace, out: TextIO) -> int:
    """Connect, print who is on ``args.channel``, exit: 0, or 1 with the reason."""
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be more than 0, got {args.timeout:g}")
    url = websocket_url(args.url)
    client = RealtimeClient(
        url,
        token=token_of(args),
        max_reconnect_attempts=args.max_reconnect_attempts,
        connect_timeout=args.timeout,
        request_timeout=args.timeout,
        ping_interval=None,
    )
    try:
        await client.connect()
        info = await ask_presence(client, args.channel)
    except Refused as e:
        print_error(f"the server refused the connection: {e}")
        return 1
    except RealtimeClientError as e:
        print_error(str(e))
        return 1
    finally:
        await client.close()
    if args.json:
        out.write(_encoder.encode(info).decode() + "\n")
    else:
        out.write("".join(line + "\n" for line in presence_lines(info)))
    out.flush()
    return 0


def do_publish(args: argparse.Namespace, out: TextIO) -> int:
    try:
        data = msgspec.json.decode(args.data) if args.data is not None else None
    except msgspec.DecodeError as e:
        raise UsageError(f"--data is not JSON: {e}") from None
    except RecursionError:
        raise UsageError("--data is not JSON this tool can read: nested too deeply") from None
    token = args.token or os.environ.get("REALTIME_ADMIN_TOKEN") or None
    reply = publish(
        args.url,
        args.channel,
        args.type,
        data,
        token=token,
        user_id=args.user_id,
        role=args.role,
        timeout=args.timeout,
    )
    if args.json:
        out.write(_encoder.encode(reply).decode() + "\n")
    else:
        out.write(f"published {reply['id']} to {args.channel}: {reply['recipients']} recipients\n")
    return 0


def reading_arguments(command: argparse.ArgumentParser) -> None:
    """The arguments ``tail`` and ``top`` share: where, what, and as whom."""
    command.add_argument(
        "url",
        help="the server (http://host:8000), its general route (ws://host/ws), or a channel URL "
        "with its filters (ws://host/ws/logs?level=error)",
    )
    command.add_argument(
        "-c", "--channel", action="append", help="a channel (repeat for more; default: all)"
    )
    command.add_argument(
        "-f", "--filter", action="append", metavar="NAME=VALUE", help="a filter (repeatable)"
    )
    command.add_argument("--token", help="a JWT (default: $REALTIME_TOKEN)")
    command.add_argument(
        "--max-reconnect-attempts", type=int, help="give up after this many failed attempts"
    )


def top(args: argparse.Namespace) -> int:
    """Run the full-screen view until ``q`` (0) or a refusal / giving up (1)."""
    try:
        from .tui.app import TopApp
    except ImportError as e:
        if e.name is None or not e.name.startswith("textual"):
            raise
        print(
            "error: `top` needs Textual, which is not installed: pip install 'sanic-realtime[tui]'",
            file=sys.stderr,
        )
        return 1
    from .tui import TopModel

    if args.recent < 1:
        raise UsageError(f"--recent must be at least 1, got {args.recent}")
    url = websocket_url(args.url)
    client_for(args, url)  # bad arguments fail here, before the screen is taken
    app = TopApp(lambda: client_for(args, url), url, model=TopModel(recent_size=args.recent))
    app.run()
    if app.error is not None:
        print(f"error: {app.error}", file=sys.stderr)
    return app.return_code or 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="sanic-realtime", description="Tail, watch and publish sanic-realtime events."
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = top.add_subparsers(dest="command", required=True)

    t = commands.add_parser(
        "tail",
        help="show live events",
        description="Show a live, coloured stream of events; reconnects and resumes by itself.",
    )
    reading_arguments(t)
    t.add_argument("--json", action="store_true", help="one JSON envelope per line")
    t.add_argument("-n", "--count", type=int, help="exit after this many events")
    t.add_argument("--no-reconnect", action="store_true", help="exit when the connection ends")

    v = commands.add_parser(
        "top",
        help="a full-screen live view of the channels",
        description="A full-screen live view: connection state and reconnects, each "
        "channel's event rate and latest event, and the recent events (p: pause, /: filter, "
        "c: clear, q: quit). Needs the [tui] extra (Textual).",
    )
    reading_arguments(v)
    v.add_argument(
        "--recent", type=int, default=1000, help="recent events kept for the list (default: 1000)"
    )

    w = commands.add_parser(
        "presence",
        help="who is on a presence channel",
        description="Connect, ask who is subscribed to CHANNEL (a presence channel), print "
        "one line per user (role, connections, since) and a count line, and exit. Without "
        "the admin role it subscribes to CHANNEL first (the server's rule), so it counts "
        "itself.",
    )
    w.add_argument(
        "url",
        help="the server (http://host:8000), its general route (ws://host/ws), or a channel URL",
    )
    w.add_argument("channel", help="the channel, e.g. rooms.lobby")
    w.add_argument("--token", help="a JWT (default: $REALTIME_TOKEN)")
    w.add_argument(
        "--max-reconnect-attempts",
        type=int,
        default=0,
        help="retries of a failed connection (default: 0, fail at once)",
    )
    w.add_argument("--json", action="store_true", help="print the presence data as JSON")
    w.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to connect, and for the reply (default: 10)",
    )

    p = commands.add_parser(
        "publish",
        help="publish an event through the admin broadcast route",
        description="POST to the admin broadcast route and print the recipients.",
    )
    p.add_argument("url", help="the server (http://host:8000) or the broadcast route's URL")
    p.add_argument("--channel", required=True)
    p.add_argument("--type", required=True, help="the event type")
    p.add_argument("--data", help="the event's data, as JSON (default: null)")
    p.add_argument("--token", help="admin token or JWT (default: $REALTIME_ADMIN_TOKEN)")
    p.add_argument("--user-id", help="deliver only to this user's connections")
    p.add_argument("--role", help="deliver only to connections with this role")
    p.add_argument("--json", action="store_true", help="print the server's JSON reply")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default: 10)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "publish":
            return do_publish(args, sys.stdout)
        if args.command == "top":
            return top(args)
        if args.command == "presence":
            with contextlib.suppress(KeyboardInterrupt):
                return asyncio.run(presence(args, sys.stdout))
            return 1
        output = Output(json_lines=args.json, out=sys.stdout, err=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(tail(args, output))
        return 0
    except UsageError as e:
        print(f"sanic-realtime: error: {e}", file=sys.stderr)
        return 2
    except Refused as e:
        print(f"error: the server refused the request: {e}", file=sys.stderr)
        return 1
    except RealtimeClientError as e:  # publish: a reply that is not the route's
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        print(f"error: cannot reach {args.url}: {reason}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"sanic-realtime: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
