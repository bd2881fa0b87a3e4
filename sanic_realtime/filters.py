"""Subscription filters: compiled once per subscription from query parameters or a
``subscribe`` message, then matched against events. Pure: no I/O, no event loop.

Semantics (see docs/protocol.md):

- filters of one subscription combine with AND; an event without the filtered field
  does not match that filter;
- ``eq``: exact, case-sensitive; ``a,b`` means any of; numbers and booleans in the
  event compare by their JSON text (``3`` matches ``"3"``, ``true`` matches ``"true"``);
- ``min``: the event's value must be in ``order`` at or after the client's value;
- ``flag``: ``true/false/1/0/yes/no``; when true, the field must equal the declared
  ``equals`` (default ``true``); when false the filter is off;
- ``types`` (built in, every channel): the event's type is one of the given types;
- ``interval`` (built in, channels with ``throttle``): not a match condition but a rate:
  the subscription gets at most one event per ``throttle.key`` value per interval, the
  latest (the hub applies it; see docs/protocol.md#throttling).

A compiled :class:`Filter` has a hashable ``key``: subscriptions with equal keys are
grouped so that a filter is evaluated once per event per distinct filter, not once
per subscriber. A filter with an ``eq`` term also has an :meth:`Filter.index_term`: the
room files its group under each of that term's values (compared as :func:`field_text`
reads the event), so an event finds those groups by its value instead of testing every
one of them; the rest of the filter (:meth:`Filter.matches_rest`) is still evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .config import ChannelConfig, FilterSpec, ThrottleConfig, parse_duration
from .exceptions import BadFilterValue, UnknownFilter

__all__ = [
    "Filter",
    "FilterKey",
    "IndexTerm",
    "compile_filter",
    "field_text",
    "split_filter_params",
]

FilterKey = tuple[Any, ...]
#: An ``eq`` term a room can index: the field's path and the texts it accepts.
IndexTerm = tuple[tuple[str, ...], frozenset[str]]
FilterParam = str | int | float | bool | Sequence[str | int | float | bool]

_MISSING: Any = object()
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
TYPES = "types"
INTERVAL = "interval"


def _as_text(value: Any) -> str | None:
    """The text an event value or a filter value compares by; None if it has none."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if isinstance(data, Mapping):
            data = data.get(part, _MISSING)
        else:
            data = getattr(data, part, _MISSING)
        if data is _MISSING:
            return _MISSING
    return data


def field_text(data: Any, path: tuple[str, ...]) -> str | None:
    """The text an ``eq`` filter compares the event's field at ``path`` by (None: the
    field is missing or is not a string, number or boolean, so no ``eq`` term matches).
    An ``eq`` term matches exactly when this text is one of its values."""
    return _as_text(_get(data, path))


class _Check:
    __slots__ = ("path",)

    def __init__(self, path: tuple[str, ...]) -> None:
        self.path = path

    def __call__(self, data: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


class _Eq(_Check):
    __slots__ = ("values",)

    def __init__(self, path: tuple[str, ...], values: frozenset[str]) -> None:
        super().__init__(path)
        self.values = values

    def __call__(self, data: Any) -> bool:
        return field_text(data, self.path) in self.values


class _Min(_Check):
    __slots__ = ("rank", "threshold")

    def __init__(self, path: tuple[str, ...], rank: dict[str, int], threshold: int) -> None:
        super().__init__(path)
        self.rank = rank
        self.threshold = threshold

    def __call__(self, data: Any) -> bool:
        value = _get(data, self.path)
        if not isinstance(value, str):
            return False
        position = self.rank.get(value)
        return position is not None and position >= self.threshold


class _Flag(_Check):
    __slots__ = ("equals",)

    def __init__(self, path: tuple[str, ...], equals: Any) -> None:
        super().__init__(path)
        self.equals = equals

    def __call__(self, data: Any) -> bool:
        value = _get(data, self.path)
        # Booleans only equal booleans: 1 is not true and 0 is not false, either way.
        return (
            value is not _MISSING
            and value == self.equals
            and isinstance(value, bool) == isinstance(self.equals, bool)
        )


class Filter:
    """A compiled subscription filter. ``matches(type, data)`` is pure.

    ``interval`` (seconds, 0: none) and ``throttle_key`` describe the subscription's
    throttling; they are part of ``key``, so throttled subscribers form groups of their own.

    ``index_terms()`` are the ``eq`` terms a room may look events up by (the preferred
    first: the fewest values, then ``checks`` order), and ``matches_rest(type, data,
    term)`` is ``matches`` without term number ``term``, for an event already known to
    satisfy it.
    """

    __slots__ = ("_eqs", "_rests", "checks", "interval", "key", "throttle_key", "types")

    def __init__(
        self,
        key: FilterKey,
        types: frozenset[str] | None,
        checks: tuple[_Check, ...],
        interval: float = 0.0,
        throttle_key: tuple[str, ...] | None = None,
    ):
        self.key = key
        self.types = types
        self.checks = checks
        self.interval = interval
        self.throttle_key = throttle_key
        eqs = sorted(
            (
                (len(check.values), i, check)
                for i, check in enumerate(checks)
                if isinstance(check, _Eq)
            ),
            key=lambda e: e[:2],
        )
        self._eqs = tuple(check for _, _, check in eqs)
        self._rests = tuple(tuple(c for j, c in enumerate(checks) if j != i) for _, i, _ in eqs)

    def matches(self, event_type: str, data: Any) -> bool:
        if self.types is not None and event_type not in self.types:
            return False
        return all(check(data) for check in self.checks)

    def index_terms(self) -> tuple[IndexTerm, ...]:
        """Each ``eq`` term as (the field's path, the texts it accepts), the preferred
        first (the fewest values, then ``checks`` order); empty without an ``eq`` term."""
        return tuple((check.path, check.values) for check in self._eqs)

    def index_term(self) -> IndexTerm | None:
        """The preferred ``eq`` term to index this filter by, or None."""
        return (self._eqs[0].path, self._eqs[0].values) if self._eqs else None

    def has_rest(self, term: int = 0) -> bool:
        """False when ``eq`` term number ``term`` is the whole filter: an event that
        satisfies it matches (``matches_rest`` would always be true)."""
        return self.types is not None or bool(self._rests[term])

    def matches_rest(self, event_type: str, data: Any, term: int = 0) -> bool:
        """``matches`` for an event whose field already satisfies ``eq`` term number
        ``term`` of ``index_terms()``: the types and every other check."""
        if self.types is not None and event_type not in self.types:
            return False
        return all(check(data) for check in self._rests[term])

    def conflation_key(self, data: Any) -> Any:
        """What a throttled event replaces: the pending event with the same key value
        (None for every event when the channel has no ``throttle.key``, or when the
        event lacks the field or holds an unhashable value there)."""
        if self.throttle_key is None:
            return None
        value = _get(data, self.throttle_key)
        if value is _MISSING or not isinstance(value, (str, int, float, bool)):
            return None
        return value

    def __repr__(self) -> str:
        return f"Filter({self.key!r})"


def _text_values(name: str, value: FilterParam) -> frozenset[str]:
    items: Iterable[Any]
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        items = [value]
    out: set[str] = set()
    for item in items:
        text = _as_text(item)
        if text is None:
            raise BadFilterValue(name, f"filter {name!r} takes strings, got {item!r}")
        text = text.strip() if isinstance(item, str) else text
        if text:
            out.add(text)
    if not out:
        raise BadFilterValue(name, f"filter {name!r} needs at least one value")
    return frozenset(out)


def _flag_value(name: str, value: FilterParam) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise BadFilterValue(
        name, f"filter {name!r} is a flag: use true/false/1/0/yes/no, got {value!r}"
    )


def _interval_value(channel: str, throttle: ThrottleConfig, value: FilterParam) -> float:
    """``5s``, ``500ms``, ``1m``, or a number of seconds (``5``, ``"2.5"``), within the
    channel's ``throttle.min`` .. ``throttle.max``."""
    bounds = f"between {throttle.min:g}s and {throttle.max:g}s"
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                seconds = float(parse_duration(text))
            except ValueError:
                seconds = None
    if seconds is None or seconds != seconds:  # not a duration, or NaN
        raise BadFilterValue(
            INTERVAL,
            f"filter 'interval' is a duration (e.g. 5s, 500ms, or seconds) {bounds} "
            f"for channel {channel!r}, got {value!r}",
        )
    if not throttle.min <= seconds <= throttle.max:
        raise BadFilterValue(
            INTERVAL, f"filter 'interval' must be {bounds} for channel {channel!r}, got {value!r}"
        )
    return seconds


def compile_filter(
    channel: str,
    specs: Mapping[str, FilterSpec],
    params: Mapping[str, FilterParam],
    throttle: ThrottleConfig | None = None,
) -> Filter | None:
    """Compile the client's ``params`` against the channel's declared ``specs`` (and
    ``throttle``, which allows the ``interval`` parameter).

    Returns None when nothing filters (every event matches, at once). Raises
    ``UnknownFilter`` or ``BadFilterValue`` naming the parameter.
    """
    key: list[Any] = []
    checks: list[_Check] = []
    types: frozenset[str] | None = None
    interval = float(throttle.default) if throttle is not None else 0.0
    for name in sorted(params):
        value = params[name]
        if name == TYPES:
            types = _text_values(name, value)
            key.append((TYPES, types))
            continue
        if name == INTERVAL and throttle is not None:
            interval = _interval_value(channel, throttle, value)
            continue
        spec = specs.get(name)
        if spec is None:
            extra = [INTERVAL] if throttle is not None else []
            known = ", ".join(sorted([*specs, TYPES, *extra]))
            raise UnknownFilter(
                name, f"unknown filter {name!r} for channel {channel!r} (known: {known})"
            )
        path = tuple((spec.field or name).split("."))
        if spec.op == "eq":
            values = _text_values(name, value)
            checks.append(_Eq(path, values))
            key.append((name, "eq", values))
        elif spec.op == "min":
            order = spec.order or []
            text = value if isinstance(value, str) else _as_text(value)
            if text is None or text.strip() not in order:
                raise BadFilterValue(
                    name, f"filter {name!r} must be one of {', '.join(order)} (got {value!r})"
                )
            rank = {v: i for i, v in enumerate(order)}
            threshold = rank[text.strip()]
            checks.append(_Min(path, rank, threshold))
            key.append((name, "min", threshold))
        else:  # flag
            if _flag_value(name, value):
                equals = True if spec.equals is None else spec.equals
                checks.append(_Flag(path, equals))
                key.append((name, "flag"))
    throttle_key: tuple[str, ...] | None = None
    if interval:
        assert throttle is not None
        throttle_key = tuple(throttle.key.split(".")) if throttle.key is not None else None
        key.append((INTERVAL, interval, throttle_key))
    if not key or (not checks and types is None and not interval):
        return None
    return Filter(tuple(key), types, tuple(checks), interval, throttle_key)


def split_filter_params(
    channels: Mapping[str, ChannelConfig], params: Mapping[str, FilterParam]
) -> dict[str, dict[str, FilterParam]]:
    """For a subscription to several channels: each parameter goes to the channels that
    declare it (``types`` to all). A parameter that none of them declares is an error."""
    out: dict[str, dict[str, FilterParam]] = {name: {} for name in channels}
    for param, value in params.items():
        takers = [
            name
            for name, cfg in channels.items()
            if param == TYPES
            or param in cfg.filters
            or (param == INTERVAL and cfg.throttle is not None)
        ]
        if not takers:
            declared = sorted(
                {f for cfg in channels.values() for f in cfg.filters}
                | {TYPES}
                | ({INTERVAL} if any(cfg.throttle for cfg in channels.values()) else set())
            )
            raise UnknownFilter(
                param,
                f"unknown filter {param!r} for channels {', '.join(channels)} "
                f"(known: {', '.join(declared)})",
            )
        for name in takers:
            out[name][param] = value
    return out
