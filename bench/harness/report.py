"""Everything the scripts print: the run header (machine, versions, sources), the per-run
lines, every table (``Col`` + ``table``), the checks per server process, the source guard."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from .runner import Row
    from .target import Run, Target

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: The distributions every header names; scripts add theirs.
VERSIONS = ("sanic-realtime", "sanic", "websockets", "uvloop", "msgspec")
#: Display names of distributions whose import name differs from the usual one.
DISPLAY = {"redis": "redis-py"}

DELIVERIES = (
    "deliveries/s = events x clients / (first publish -> last frame counted by the "
    "generator); median of the runs"
)


# =========================================================================== header


def versions(names: Iterable[str]) -> str:
    """``name version`` of each installed distribution in ``names``."""
    parts = []
    for name in names:
        shown = DISPLAY.get(name, name)
        try:
            parts.append(f"{shown} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{shown} (not installed)")
    return ", ".join(parts)


def source_digest() -> str:
    """A digest of the installed sanic_realtime sources (the package has no release tag
    to name, and it may change between runs)."""
    import sanic_realtime

    root = os.path.dirname(os.path.abspath(sanic_realtime.__file__))
    digest = hashlib.sha256()
    for base, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(base, name)
                digest.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()[:12]


def git() -> str:
    """``; git <commit>[ + uncommitted changes]`` for the package directory (the imported
    ``sanic_realtime``'s checkout: ``PYTHONPATH`` may point at another worktree), if known."""
    import sanic_realtime

    package = os.path.dirname(os.path.abspath(sanic_realtime.__file__))
    where = os.path.dirname(package)
    try:
        head = subprocess.run(
            ["git", "-C", where, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--", "sanic_realtime"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"; git {head}" + (" + uncommitted changes" if dirty else "")


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    return "?"


def header(title: str, *, packages: Sequence[str] = (), pinning: str) -> str:
    """Print the run's header; returns the digest of the sanic_realtime sources (see
    ``sources_changed``)."""
    import uvloop

    print(title)
    print(f"command: {' '.join(['python', *sys.argv])}")
    print(
        f"machine: nproc={os.cpu_count()}, {cpu_model()}, {platform.machine()}, "
        f"Linux {platform.release()}"
    )
    print(f"python {platform.python_version()}; {versions([*VERSIONS, *packages])}")
    source = source_digest()
    import sanic_realtime

    print(f"sanic_realtime sources: sha256 {source} (all .py files of the package){git()}")
    print(f"sanic_realtime imported from {os.path.dirname(sanic_realtime.__file__)}")
    print(f"pinning: {pinning}")
    loop = type(asyncio.get_running_loop()).__module__
    print(f"load generator: raw asyncio.Protocol clients on {loop} {uvloop.__version__}")
    return source


def sources_changed(source: str) -> bool:
    """True, with a warning, if the sanic_realtime sources changed since ``header``."""
    if source_digest() == source:
        return False
    print("WARNING: the sanic_realtime sources changed during this run; rows may have")
    print("measured different code. Run again.")
    return True


# =========================================================================== tables


@dataclass(frozen=True)
class Col(Generic[T_contra]):
    """A table column: its title, width and alignment, the spaces before it, and the text
    of a row's cell."""

    title: str
    width: int
    cell: Callable[[T_contra], str]
    left: bool = False
    gap: int = 0

    def pad(self, text: str) -> str:
        return " " * self.gap + (f"{text:<{self.width}}" if self.left else f"{text:>{self.width}}")


def table(cols: Sequence[Col[T]], rows: Iterable[T]) -> None:
    """A header, a rule as long as it, and one line per row."""
    head = "".join(c.pad(c.title) for c in cols).rstrip()
    print(head)
    print("-" * len(head))
    for row in rows:
        print("".join(c.pad(c.cell(row)) for c in cols).rstrip())


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def spread(values: Sequence[float], fmt: str = ",.0f") -> str:
    return f"{min(values):{fmt}}..{max(values):{fmt}}" if values else ""


def median_of(row: Row, value: Callable[[Run], float | None]) -> float | None:
    """The median of ``value`` over the row's runs (None: no runs, or no values)."""
    values = [v for v in map(value, row.runs) if v is not None]
    return statistics.median(values) if values else None


def run_col(
    title: str, width: int, value: Callable[[Run], float | None], fmt: str, *, gap: int = 0
) -> Col[Row]:
    """A column of the median of ``value`` over a row's runs, formatted with ``fmt``."""

    def cell(row: Row) -> str:
        m = median_of(row, value)
        return "" if m is None else fmt.format(m)

    return Col(title, width, cell, gap=gap)


def label_col(title: str, width: int) -> Col[Row]:
    return Col(title, width, lambda r: r.label, left=True)


def rate_cols(spread_width: int) -> list[Col[Row]]:
    """deliveries/s (the median; FAILED without runs) and min..max."""
    return [
        Col("deliveries/s", 14, lambda r: f"{r.median:,.0f}" if r.runs else "FAILED"),
        Col("min..max", spread_width, lambda r: spread(r.rates), left=True, gap=2),
    ]


ELAPSED = run_col("elapsed", 8, lambda x: x.elapsed, "{:.3f}s")
LOOP = run_col("loop", 8, lambda x: x.publish, "{:.3f}s")
SRV = run_col("srv%", 6, lambda x: x.srv_cpu, "{:.0%}")
GEN = run_col("gen%", 6, lambda x: x.gen_cpu, "{:.0%}")
REDIS = run_col("redis%", 7, lambda x: x.redis_cpu, "{:.0%}")


def lag_col(width: int) -> Col[Row]:
    def cell(row: Row) -> str:
        m = median_of(row, lambda x: x.lag)
        return "" if m is None else f"{round(m * 1000)}ms"

    return Col("lag", width, cell)


def rss_col(title: str, width: int) -> Col[Row]:
    """Peak RSS of each server process, MB, joined with '+'."""
    return Col(title, width, lambda r: "+".join(f"{kb / 1024:.0f}" for kb in r.rss_kb) or "?")


# =========================================================================== lines


def run_line(row: Row, index: int, run: Run, phase: str = "", width: int = 20) -> str:
    """The line printed after each timed burst."""
    cpu = f"srv {run.srv_cpu:.0%}"
    if run.redis_cpu is not None:
        cpu += f", redis {run.redis_cpu:.0%}"
    parts = [
        f"{run.elapsed:.3f} s",
        f"publish loop {run.publish:.3f} s",
        f"{cpu}, gen {run.gen_cpu:.0%}",
    ]
    if run.publisher is not None:
        order = sorted(run.done, key=lambda p: p != run.publisher)
        parts.append(
            f"published by pid {run.publisher} [{run.publisher_clients} clients]; done s: "
            + " / ".join(f"{run.done[pid]:.3f}" for pid in order)
        )
    lead = f"  {phase} " if phase else "  "
    return (
        f"{lead}{row.label:<{width}} N={row.clients:<5} K={row.k:<2} "
        + (f"C={row.concurrency} " if row.concurrency != 1 else "")
        + f"run {index}: "
        f"{run.rate:>11,.0f} deliveries/s  ({'; '.join(parts)})"
    )


def event_loops(targets: Iterable[Target]) -> None:
    loops = {t.label: t.loop for t in targets}
    print("server event loops: " + ", ".join(f"{k}: {v}" for k, v in loops.items()))


def _check_line(t: Target, width: int) -> str:
    c = t.counter
    closes = ",".join(sorted({str(code) for _, code, _ in c.closes})) or "none"
    if not t.order:
        order = "seq order n/a"
    elif list(t.order) == [None]:
        order = f"seq order {t.order[None]}"
    else:
        what = "seq order and ids" if t.check_ids else "seq order"
        order = f"{what}: " + "; ".join(f"pid {pid}: {v}" for pid, v in t.order.items())
    line = (
        f"  {t.label:<{width}} N={t.clients:<5} events published={sum(t.bursts)}: lost frames="
        f"{t.lost} extra={t.extra} close frames={len(c.closes)} (codes {closes}) "
        f"connections lost={t.lost_connections}; {order}"
    )
    if t.frame_size:
        line += f"; first event {t.frame_size} bytes"
    if t.stats is not None:
        s = t.stats
        workers = f"workers={s.get('workers')} total_clients={s.get('total_clients')} "
        line += (
            f"; /admin/ws/stats: {workers if t.per_worker else ''}"
            f"messages_dropped={s.get('messages_dropped')} "
            f"slow_disconnects={s.get('slow_disconnects')} "
            f"messages_sent={s.get('messages_sent')}"
        )
        if t.buffer_size:
            line += f"; buffer_size={t.buffer_size}"
    if t.redis:
        rec = ", ".join(
            f"pid {pid}: {h.get('recovered_from_stream')} (reconnects {h.get('reconnects')})"
            for pid, h in sorted(t.health.items())
        )
        line += f"; recovered_from_stream: {rec or 'n/a'}"
        unreached = [pid for pid in t.groups if pid not in t.health]
        if unreached:
            line += f" (no /ws/health answer from pid {unreached})"
    line += f"; server log warnings/errors: {len(t.log_problems)}"
    if t.server.killed or t.server.leftovers:
        line += "; the server needed SIGKILL"
    return line


def checks(targets: Iterable[Target], rows: Iterable[Row] = (), title: str = "") -> None:
    """One line per server process: lost/extra frames, close frames, lost connections,
    order, the first event's size, sanic-realtime's drop counters; then every problem."""
    print(title or "checks, per server process (all its bursts):")
    targets = list(targets)
    width = max([20, *(len(t.label) for t in targets)])
    for t in targets:
        print(_check_line(t, width))
        for note in t.notes:
            print(f"    NOTE: {note}")
        for p in t.log_problems[:5]:
            print(f"    LOG: {p[:500]}")
        for p in t.problems:
            print(f"    PROBLEM: {p[:2000]}")
    for r in rows:
        for p in r.problems:
            print(f"  PROBLEM {r.label} N={r.clients} K={r.k}: {p[:2000]}")


def failed(rows: Iterable[Row], targets: Iterable[Target]) -> bool:
    return any(r.problems or not r.runs for r in rows) or any(t.failed for t in targets)
