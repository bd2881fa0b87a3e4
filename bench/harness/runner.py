"""Rows of a table and how they are measured: targets started side by side, one untimed
warm-up burst of E/4 events per row, then the timed bursts of all the rows interleaved,
in an order rotated each round, so that a slow stretch of the machine hits every row
alike (the targets not being measured are idle). Each row reports the median of its
runs, and their min..max."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from . import report
from .target import Run, Target


@dataclass
class Row:
    """One line of a table: a server (``key``: the script's name for it), a client count,
    an event count per burst, a yield setting (K), and the timed runs."""

    key: str
    label: str
    clients: int
    events: int
    yield_every: int
    k: str = ""  # K as printed ("-" where it does not apply)
    runs: list[Run] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)  # peak RSS of each server process
    per_worker: list[int] = field(default_factory=list)  # clients per worker, largest first
    concurrency: int = 1  # publishing tasks in the server (redis_fanout.py's C)

    def __post_init__(self) -> None:
        self.k = self.k or str(self.yield_every)

    @property
    def rates(self) -> list[float]:
        return [r.rate for r in self.runs]

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.runs else 0.0


async def start(targets: list[Target]) -> None:
    """Connect each target's clients, one target after the other; a target that fails to
    start keeps the reason in its ``problems``."""
    for target in targets:
        try:
            await target.start()
        except Exception as e:
            target.problems.append(f"start: {type(e).__name__}: {e}")
            if target.server.proc.poll() is not None:
                target.problems.append(f"server log tail:\n{target.server.tail()}")


async def check(targets: list[Target]) -> None:
    for target in targets:
        if not target.problems:
            try:
                await target.check()
            except Exception as e:
                target.problems.append(f"check: {type(e).__name__}: {e}")


@contextlib.asynccontextmanager
async def serving(
    targets: list[Target], record: list[Target], *, connect: bool = True
) -> AsyncIterator[list[Target]]:
    """Targets added to ``record`` (for the checks report), started (unless ``connect``
    is false: the caller does it), checked at the end, and always stopped."""
    record.extend(targets)
    try:
        if connect:
            await start(targets)
        yield targets
        await check(targets)
    finally:
        for target in targets:
            await target.stop()


async def warm_up(pairs: list[tuple[Row, Target]]) -> list[tuple[Row, Target, Run]]:
    """One untimed burst of E/4 events per row; the rows that passed, with that burst."""
    live = []
    for row, target in pairs:
        if target.problems:
            row.problems.append("server did not start")
            continue
        warm = await target.burst(max(1, row.events // 4), row.yield_every, row.concurrency)
        if isinstance(warm, str):
            row.problems.append(f"warm-up: {warm}")
            continue
        live.append((row, target, warm))
    return live


async def interleaved(
    pairs: list[tuple[Row, Target]],
    runs: int,
    *,
    phase: str = "",
    after: Callable[[Row, Target, Run], Awaitable[None]] | None = None,
    note: Callable[[Run], str] | None = None,
) -> None:
    """``runs`` timed bursts per row, one row after the other in an order rotated each
    round. ``after`` runs after each timed burst (its failure is the row's problem, the
    run still counts); ``note`` adds to the printed line."""
    width = max([20, *(len(r.label) for r, _ in pairs)])
    for i in range(runs):
        shift = i % len(pairs) if pairs else 0
        for row, target in pairs[shift:] + pairs[:shift]:
            if row.problems:
                continue
            outcome = await target.burst(row.events, row.yield_every, row.concurrency)
            if isinstance(outcome, str):
                row.problems.append(f"run {i + 1}: {outcome}")
                continue
            if after is not None:
                try:
                    await after(row, target, outcome)
                except Exception as e:
                    row.problems.append(f"run {i + 1}: {e!r}")
            row.runs.append(outcome)
            extra = note(outcome) if note else ""
            print(report.run_line(row, i + 1, outcome, phase, width) + extra, flush=True)


async def measure(
    pairs: list[tuple[Row, Target]],
    runs: int,
    *,
    phase: str = "",
    fit: Callable[[Row, Run], None] | None = None,
    after: Callable[[Row, Target, Run], Awaitable[None]] | None = None,
    note: Callable[[Run], str] | None = None,
) -> None:
    """Warm-up, then the interleaved timed bursts. ``fit(row, warm)`` may change the
    row's events after its warm-up burst."""
    live = await warm_up(pairs)
    if fit is not None:
        for row, _, warm in live:
            fit(row, warm)
    await interleaved([(r, t) for r, t, _ in live], runs, phase=phase, after=after, note=note)
