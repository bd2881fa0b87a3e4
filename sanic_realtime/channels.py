"""Channel names: static channels, templates (``orders.{order_id}``) and their instances
(``orders.42``). Pure: no I/O.

A template is dot-separated segments, each a literal or a whole ``{param}``. A name
resolves to at most one channel: a static channel by its exact name, else the one
template of the same shape (segment count and literals); then each parameter must match
its pattern (anchored), or the name is ``invalid_channel``. Start-up refuses a config in
which two templates, or a template and a static channel, could match one name
(:func:`overlap_problem`), so resolution never has to choose.

:class:`Instances` is what a process keeps of the instances in use: when each was last
used, to bound them (``max_channels``), forget the idle ones, and count them per template.
"""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from .config.schema import DEFAULT_PARAM_PATTERN, ChannelConfig, HistoryConfig
from .exceptions import InvalidChannel, TooManyChannels, UnknownChannel

__all__ = [
    "MAX_NAME_LENGTH",
    "Catalog",
    "Histories",
    "Instances",
    "Resolved",
    "Template",
    "overlap_problem",
]

#: The longest channel name a client may send (a template instance included).
MAX_NAME_LENGTH = 200
_PARAM_RE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def is_template(name: str) -> bool:
    return "{" in name or "}" in name


@dataclass(frozen=True)
class Template:
    """``orders.{order_id}``: its segments (a literal, or None for a parameter), its
    parameters in order, and their compiled patterns."""

    key: str
    segments: tuple[str | None, ...]
    params: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def parse(cls, key: str, patterns: Mapping[str, str]) -> Template:
        """Raises ValueError saying what is wrong with ``key`` or a pattern."""
        segments: list[str | None] = []
        params: list[str] = []
        for segment in key.split("."):
            if not is_template(segment):
                segments.append(segment)
                continue
            m = _PARAM_RE.match(segment)
            if m is None:
                raise ValueError(
                    f"invalid template {key!r}: a parameter is a whole segment between dots, "
                    f"written {{name}} (got {segment!r})"
                )
            if m.group(1) in params:
                raise ValueError(f"invalid template {key!r}: parameter {m.group(1)!r} twice")
            segments.append(None)
            params.append(m.group(1))
        unknown = sorted(set(patterns) - set(params))
        if unknown:
            raise ValueError(f"params names {', '.join(unknown)}, which {key!r} does not have")
        compiled = []
        for param in params:
            pattern = patterns.get(param, DEFAULT_PARAM_PATTERN)
            try:
                compiled.append(re.compile(pattern))
            except re.error as e:
                raise ValueError(
                    f"the pattern of {param!r} is not a regular expression: {e}"
                ) from None
        return cls(key, tuple(segments), tuple(params), tuple(compiled))

    def shape_matches(self, parts: list[str]) -> bool:
        return len(parts) == len(self.segments) and all(
            s is None or s == p for s, p in zip(self.segments, parts, strict=True)
        )

    def bind(self, name: str, parts: list[str]) -> dict[str, str]:
        """The parameters of ``name`` (whose shape matches); raises InvalidChannel."""
        values: dict[str, str] = {}
        i = 0
        for segment, part in zip(self.segments, parts, strict=True):
            if segment is not None:
                continue
            param, pattern = self.params[i], self.patterns[i]
            i += 1
            if pattern.fullmatch(part) is None:
                raise InvalidChannel(
                    name,
                    param,
                    f"channel {name!r}: parameter {param!r} of {self.key!r} must match "
                    f"{pattern.pattern!r} (got {part[:64]!r})",
                )
            values[param] = part
        return values


def overlap_problem(a: Template, b: Template) -> bool:
    """Whether one name could have the shapes of both."""
    return len(a.segments) == len(b.segments) and all(
        x is None or y is None or x == y for x, y in zip(a.segments, b.segments, strict=True)
    )


@dataclass(frozen=True)
class Resolved:
    """A channel name, resolved: ``key`` is the config key (the name itself for a static
    channel, the template for an instance), ``spec`` its settings."""

    name: str
    key: str
    spec: ChannelConfig
    params: Mapping[str, str]

    @property
    def is_instance(self) -> bool:
        return self.key != self.name


class Catalog:
    """The channels of a config, compiled: static names and templates."""

    #: names kept resolved
    CACHE = 10_000

    def __init__(self, channels: Mapping[str, ChannelConfig]) -> None:
        self.static: dict[str, ChannelConfig] = {}
        self.templates: dict[str, Template] = {}
        self.specs: dict[str, ChannelConfig] = dict(channels)
        for key, spec in channels.items():
            if is_template(key):
                patterns = {p: s.pattern for p, s in spec.params.items()}
                self.templates[key] = Template.parse(key, patterns)
            else:
                self.static[key] = spec
        self._resolved: dict[str, Resolved] = {}
        #: templates by segment count, the only ones a name of that length can match
        self._by_length: dict[int, list[Template]] = {}
        for template in self.templates.values():
            self._by_length.setdefault(len(template.segments), []).append(template)

    def resolve(self, name: str) -> Resolved:
        """Raises UnknownChannel (404) or InvalidChannel (400). Names that resolved are
        kept (at most CACHE, then the cache starts afresh): a publish or subscription to
        an instance in use matches no pattern again."""
        found = self._resolved.get(name)
        if found is not None:
            return found
        spec = self.static.get(name)
        if spec is not None:
            found = Resolved(name, name, spec, {})
            self._resolved[name] = found  # as many as the config has
            return found
        found = self._match(name)
        if len(self._resolved) >= self.CACHE + len(self.static):
            self._resolved.clear()
        self._resolved[name] = found
        return found

    def _match(self, name: str) -> Resolved:
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidChannel(
                name[:64], "", f"channel names are at most {MAX_NAME_LENGTH} characters"
            )
        parts = name.split(".")
        for template in self._by_length.get(len(parts), ()):
            if template.shape_matches(parts):
                params = template.bind(name, parts)
                return Resolved(name, template.key, self.specs[template.key], params)
        raise UnknownChannel(name[:MAX_NAME_LENGTH], self.known())

    def key_of(self, name: str) -> str:
        """The config key of a name already resolved once (static or template)."""
        if name in self.static:
            return name
        try:
            return self.resolve(name).key
        except (UnknownChannel, InvalidChannel):
            return name

    def known(self) -> list[str]:
        return list(self.specs)

    def problems(self) -> Iterable[str]:
        """Names that two channels could both match (start-up refuses them)."""
        keys = list(self.templates.values())
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                if overlap_problem(a, b):
                    yield f"the templates {a.key!r} and {b.key!r} can match the same names"
        for name in self.static:
            for template in self.templates.values():
                parts = name.split(".")
                if template.shape_matches(parts):
                    try:
                        template.bind(name, parts)
                    except InvalidChannel:
                        continue
                    yield f"the channel {name!r} is also an instance of {template.key!r}"


class _Instance:
    __slots__ = ("key", "used")

    def __init__(self, key: str, used: float) -> None:
        self.key = key
        self.used = used


class Instances:
    """The template instances a process keeps, oldest use first.

    :meth:`use` records a publish or subscription (refusing a new instance past
    ``limit``); :meth:`sweep` forgets instances idle for longer than their ``idle(key)``
    seconds and not ``in_use`` (e.g. with local subscribers), looking at a bounded number
    per call, and calls ``forget(name)`` for each.
    """

    #: instances looked at per ordinary sweep
    SWEEP = 64
    #: instances looked at, at most once a second, when the table is full
    FULL_SWEEP = 4096

    def __init__(
        self,
        limit: int,
        idle: Callable[[str], float],
        *,
        in_use: Callable[[str], bool] = lambda name: False,
        forget: Callable[[str], None] = lambda name: None,
    ) -> None:
        self.limit = limit
        self._idle = idle
        self._in_use = in_use
        self._forget = forget
        self._items: OrderedDict[str, _Instance] = OrderedDict()
        self._counts: dict[str, int] = {}
        self._next_full = 0.0

    def use(self, resolved: Resolved, now: float) -> None:
        """Raises TooManyChannels for a new instance past the limit."""
        name = resolved.name
        item = self._items.get(name)
        if item is not None:
            item.used = now
            self._items.move_to_end(name)
            return
        self.sweep(now)
        if len(self._items) >= self.limit:
            self.sweep(now, everything=True)
            if len(self._items) >= self.limit:
                raise TooManyChannels(
                    f"channel {name!r}: this server keeps at most {self.limit} channel "
                    "instances (max_channels), all in use"
                )
        self._items[name] = _Instance(resolved.key, now)
        self._counts[resolved.key] = self._counts.get(resolved.key, 0) + 1

    def sweep(self, now: float, *, everything: bool = False) -> int:
        """Forget idle instances from the oldest use; returns how many.

        Normally it stops at the first instance used too recently, after at most SWEEP.
        With ``everything`` (the limit is reached) it looks at up to FULL_SWEEP of them
        whatever their use (templates idle for different times), at most once a second,
        so that a client asking for new instances of a full server costs little."""
        if everything:
            if now < self._next_full:
                return 0
            self._next_full = now + 1.0
            # At most FULL_SWEEP a second (a few ms, not one loop stall per 100,000):
            # the ones looked at and kept go to the back, so the next full sweep looks
            # at others.
            candidates = list(itertools.islice(self._items.items(), self.FULL_SWEEP))
        else:
            candidates = []
            for name, item in self._items.items():
                if len(candidates) >= self.SWEEP or now - item.used < self._idle(item.key):
                    break
                candidates.append((name, item))
        forgotten = 0
        for name, item in candidates:
            if now - item.used < self._idle(item.key):
                if everything:
                    self._items.move_to_end(name)
                continue
            if self._in_use(name):
                item.used = now
                self._items.move_to_end(name)
                continue
            del self._items[name]
            left = self._counts[item.key] - 1
            if left:
                self._counts[item.key] = left
            else:
                del self._counts[item.key]
            self._forget(name)
            forgotten += 1
        return forgotten

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def key_of(self, name: str) -> str | None:
        """The template of an instance kept here; None for any other name."""
        item = self._items.get(name)
        return item.key if item is not None else None

    def __len__(self) -> int:
        return len(self._items)

    def counts(self) -> dict[str, int]:
        """Instances per template."""
        return dict(self._counts)


class Histories(Mapping[str, HistoryConfig]):
    """The history settings of every channel name, for the backplanes: a static
    channel's, or its template's for an instance (``KeyError`` for an unknown name).
    Iterating gives the static channels (which exist before any use)."""

    def __init__(self, catalog: Catalog, default: HistoryConfig) -> None:
        self._catalog = catalog
        self._default = default

    def __getitem__(self, name: str) -> HistoryConfig:
        try:
            spec = self._catalog.resolve(name).spec
        except (UnknownChannel, InvalidChannel):
            raise KeyError(name) from None
        return spec.history if spec.history is not None else self._default

    def __iter__(self) -> Iterator[str]:
        return iter(self._catalog.static)

    def __len__(self) -> int:
        return len(self._catalog.static)
