"""The command-line options the scripts share, and their checks."""

from __future__ import annotations

import argparse


def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers: {text!r}")
    return values


def float_list(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers: {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers: {text!r}")
    return values


def add_bursts(
    parser: argparse.ArgumentParser,
    *,
    clients: list[int],
    deliveries: int,
    timeout: float,
    yield_every: bool = True,
    events: bool = True,
    buffer_size: bool = True,
    quick: bool = True,
) -> None:
    """--clients, --deliveries, --runs, --timeout and, unless turned off, --yield-every,
    --events, --buffer-size and --quick."""
    shown = ",".join(map(str, clients))
    parser.add_argument(
        "--clients",
        type=int_list,
        default=clients,
        help=f"comma-separated client counts (default {shown})",
    )
    if yield_every:
        parser.add_argument(
            "--yield-every",
            type=int_list,
            default=[1],
            help="await asyncio.sleep(0) after every K events, 0 = never; comma-separated "
            "for several (default 1)",
        )
    if events:
        parser.add_argument(
            "--events",
            type=int,
            default=0,
            help="events per timed burst (default: --deliveries / clients)",
        )
    parser.add_argument(
        "--deliveries",
        type=int,
        default=deliveries,
        help=f"deliveries per timed burst (default {deliveries})"
        + (" when --events is not given" if events else ""),
    )
    parser.add_argument("--runs", type=int, default=3, help="timed bursts per row (default 3)")
    if buffer_size:
        parser.add_argument(
            "--buffer-size",
            type=int,
            default=0,
            help="sanic-realtime buffer_size (default: max(4096, 2 x events))",
        )
    parser.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        help=f"seconds to wait for a burst to be delivered (default {timeout:g})",
    )
    if quick:
        parser.add_argument(
            "--quick",
            action="store_true",
            help="smoke run: 200 clients, 100000 deliveries per burst",
        )


def check_bursts(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse what add_bursts' options cannot do; apply --quick."""
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if getattr(args, "quick", False):
        args.clients = [200]
        args.deliveries = 100_000
    events = getattr(args, "events", 0)
    buffer_size = getattr(args, "buffer_size", 0)
    if buffer_size and events > buffer_size:
        parser.error("--events must not exceed --buffer-size (a burst would overflow buffers)")
    if not all(args.clients):
        parser.error("--clients must be at least 1")


def events_for(args: argparse.Namespace, clients: int) -> int:
    """Events per timed burst: --events, or --deliveries / clients (at least 10, at most
    --buffer-size)."""
    if getattr(args, "events", 0):
        return int(args.events)
    events = max(10, round(args.deliveries / clients))
    buffer_size = getattr(args, "buffer_size", 0)
    return min(events, buffer_size) if buffer_size else events


def buffer_for(args: argparse.Namespace, events: int) -> int:
    """sanic-realtime's buffer_size: --buffer-size, or max(4096, 2 x events), so that a
    burst cannot overflow a connection's buffer."""
    return getattr(args, "buffer_size", 0) or max(4096, 2 * events)
