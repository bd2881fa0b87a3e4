"""The Redis backplane: every worker and host shares ids, history, tickets and figures.

The only module that imports ``redis`` (``pip install sanic-realtime[redis]``; redis-py
uses hiredis to parse replies when it is installed).

Keys and pub/sub channels, all under ``redis.prefix`` (default ``realtime``):

- ``{prefix}:{channel}:meta``   hash: ``e`` the epoch, ``s`` the last offset given out;
- ``{prefix}:{channel}:stream`` stream: the history, entry id ``<offset>-0``, field ``d``;
- ``{prefix}:ch:{channel}``     pub/sub: live events of one channel, subscribed by a
  worker only while it has subscribers of that channel;
- ``{prefix}:control``          pub/sub: cluster-wide commands (disconnect);
- ``{prefix}:node:{node}``      string: one worker's figures, refreshed every few seconds;
- ``{prefix}:ticket:{ticket}``  string: a one-time ticket, with its TTL.

One Lua script assigns the offset (and, for a new history, the epoch), appends to the
stream and publishes, atomically: ids are strictly increasing across all publishers and
pub/sub carries events in id order. Each message is ``<header JSON>\\n<envelope>``; the
header names the publishing worker (``o``) and its publish number (``n``), so a worker
never delivers its own event twice and can count its own recipients.

A worker tracks the last id it delivered per channel. A live event that is not the next
one (pub/sub lost messages, e.g. while the listener reconnected) makes it read the missing
events from the stream and deliver them first; what the stream no longer has is reported
to the channel's subscribers (``messages_dropped``). A changed epoch (Redis lost its data)
is reported the same way. Loss is never silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ..config import HistoryConfig
from ..events import Event, EventId, encode_event_parts, utc_timestamp
from ..exceptions import ServerUnavailable
from ..log import logger
from .base import Backplane
from .memory import new_epoch

__all__ = ["Publication", "RedisBackplane", "merge_stats"]


#: How long a history's epoch and offset counter outlive the channel's last publish.
#: While they live, a client can resume a quiet channel (``recovered: true``, nothing
#: missed); once they expire, ids start again under a new epoch.
META_TTL = 30 * 24 * 3600.0
#: How often each worker writes its figures (they expire after three periods).
STATS_INTERVAL = 2.0
#: Listener reconnect backoff: full jitter, from BACKOFF_BASE doubling up to BACKOFF_CAP.
BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0
#: Times stop() cancels a backplane task that is still running, 0.5 s apart.
STOP_RETRIES = 20
#: The listener pings Redis after this long without traffic, and gives the connection up
#: (and reconnects) after DEAD_AFTER without any reply.
PING_INTERVAL = 5.0
DEAD_AFTER = 15.0
#: How long publish() waits for its own event to come back through pub/sub when events
#: published before it are still in flight (to deliver in order and count recipients).
OWN_EVENT_TIMEOUT = 2.0
#: How long a new subscription waits for Redis to confirm the pub/sub subscription.
READY_TIMEOUT = 5.0
#: ``initial: last`` reads the newest events in pages: a first small one (the newest
#: events usually match), then pages of LAST_PAGE, up to ``history.initial_scan`` events.
LAST_FIRST_PAGE = 10
LAST_PAGE = 100

# KEYS: meta, stream. ARGV: new epoch, history size, history ttl (ms), meta ttl (ms),
# pub/sub channel, header, envelope before the id, envelope after the id.
# The history's run field is the run_id of the Redis process that started its epoch. A
# Redis that restarted (even from a snapshot or AOF, which may be older than what clients
# have seen) starts a new epoch at the first publish, so an id is never given out twice.
_RUN_ID = "string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')"

_PUBLISH = f"""
local run = {_RUN_ID}
local meta = redis.call('HMGET', KEYS[1], 'e', 'r')
local epoch = meta[1]
if not epoch or meta[2] ~= run then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0, 'r', run)
end
local offset = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local msg = ARGV[6] .. '\\n' .. ARGV[7] .. epoch .. ':' .. string.format('%d', offset) .. ARGV[8]
if tonumber(ARGV[2]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], string.format('%d-0', offset), 'd', msg)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('PUBLISH', ARGV[5], msg)
return {{epoch, offset}}
"""

# KEYS: meta, stream. ARGV: the id's epoch, its offset, the oldest publish time still
# resumable (Unix seconds: now - history.ttl). Everything is checked before the events
# are read, so a resume that cannot succeed reads (and sends back) none of them. Returns
# false (a nil reply) when the events after the id cannot all be given: no history of
# this Redis process, another epoch, an offset beyond the newest, or the first event
# after the id trimmed (size) or expired (ttl); else {last offset, the entries after the
# id up to it}. The header of a message is [origin, number, time, ...] (see _Head).
_SINCE = f"""
local meta = redis.call('HMGET', KEYS[1], 'e', 's', 'r')
if not meta[1] or meta[3] ~= {_RUN_ID} or meta[1] ~= ARGV[1] then
  return false
end
local top = tonumber(meta[2])
local after = tonumber(ARGV[2])
if after > top then
  return false
end
if after == top then
  return {{meta[2], {{}}}}
end
local first = string.format('%d-0', after + 1)
local head = redis.call('XRANGE', KEYS[2], first, first)
if #head == 0 then
  return false
end
local fields = head[1][2]
for i = 1, #fields - 1, 2 do
  if fields[i] == 'd' then
    local msg = fields[i + 1]
    local nl = string.find(msg, '\\n', 1, true)
    if nl then
      local ok, h = pcall(cjson.decode, string.sub(msg, 1, nl - 1))
      if ok and type(h) == 'table' and type(h[3]) == 'number' and h[3] < tonumber(ARGV[3]) then
        return false
      end
    end
  end
end
return {{meta[2], redis.call('XRANGE', KEYS[2], first, string.format('%d-0', top))}}
"""

# KEYS: meta. Returns {epoch, last offset, 1 if the history is of this Redis process}, or
# {} when there is none.
_META = f"""
local meta = redis.call('HMGET', KEYS[1], 'e', 's', 'r')
if not meta[1] then
  return {{}}
end
return {{meta[1], meta[2], meta[3] == {_RUN_ID} and 1 or 0}}
"""


class _Head(msgspec.Struct, array_like=True):
    """The header of a message: who published it and whom it targets."""

    o: str  # origin: the publishing worker
    n: int  # that worker's publish number
    t: float  # publish time (Unix seconds)
    u: str | None = None  # target user_id
    r: str | None = None  # target role


class _Envelope(msgspec.Struct):
    type: str
    channel: str
    id: str
    data: Any = None


class _IdOnly(msgspec.Struct):
    id: str


class _Control(msgspec.Struct, forbid_unknown_fields=True):
    o: str
    op: str
    user_id: str | None = None
    role: str | None = None
    reason: str = ""


_head_encoder = msgspec.json.Encoder()
_head_decoder = msgspec.json.Decoder(_Head)
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_id_decoder = msgspec.json.Decoder(_IdOnly)
_control_decoder = msgspec.json.Decoder(_Control)
_json = msgspec.json.Encoder()


class Publication(msgspec.Struct):
    """One prepared publish: the script's keys and arguments (see :data:`_PUBLISH`)."""

    seq: int
    time: float
    envelope: tuple[bytes, bytes]
    keys: list[str]
    args: list[Any]


class _Channel:
    """A channel this worker has subscribers of."""

    __slots__ = ("before", "filling", "floor", "last", "name", "ready")

    def __init__(self, name: bytes) -> None:
        self.name = name
        #: The id of the last event delivered here (None: none since the subscription).
        self.last: EventId | None = None
        #: Until an event arrives: where the history stood when the subscription started
        #: (epoch, "" for none; offset; exact: read unchanged before and after SUBSCRIBE).
        #: After a reconnect, what came later is read from the stream.
        self.floor: tuple[str, int, bool] | None = None
        #: The history's position read just before the first SUBSCRIBE.
        self.before: tuple[str, int] | None = None
        #: Set while Redis has confirmed the pub/sub subscription.
        self.ready = asyncio.Event()
        #: True while the listener reads missed events from the stream.
        self.filling = False


def redact_url(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


_COUNTS = ("total_clients", "total_users", "messages_sent", "messages_dropped", "slow_disconnects")


def merge_stats(figures: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum the figures of several workers: counts add up, ``by_channel`` and ``by_role``
    add up per key, ``uptime_s`` is the oldest worker's. ``total_users`` is a sum too, so a
    user connected to two workers counts twice. ``by_worker``: each worker's clients."""
    total: dict[str, Any] = {
        "total_clients": 0,
        "total_users": 0,
        "by_channel": {},
        "by_role": {},
        "messages_sent": 0,
        "messages_dropped": 0,
        "slow_disconnects": 0,
        "uptime_s": 0.0,
    }
    for f in figures:
        for key in _COUNTS:
            total[key] += int(f.get(key, 0))
        for key in ("by_channel", "by_role"):
            for name, n in dict(f.get(key, {})).items():
                total[key][name] = total[key].get(name, 0) + int(n)
        total["uptime_s"] = max(total["uptime_s"], float(f.get("uptime_s", 0.0)))
    total["workers"] = len(figures)
    total["by_worker"] = {str(f.get("node", "?")): int(f.get("total_clients", 0)) for f in figures}
    return total


def _unavailable(error: BaseException) -> ServerUnavailable:
    return ServerUnavailable(
        f"the Redis backplane is unavailable ({type(error).__name__}: {error})",
        code="backplane_unavailable",
    )


class RedisBackplane(Backplane):
    kind = "redis"

    def __init__(
        self,
        url: str,
        histories: Mapping[str, HistoryConfig],
        *,
        prefix: str = "realtime",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        self._histories = dict(histories)
        self._clock = clock
        #: This worker, as named in message headers and figures.
        self.node = f"{socket.gethostname()}:{os.getpid()}:{new_epoch(4)}"
        self._seq = itertools.count(1)
        self._redis: Any = None
        self._unretried: Any = None
        self._script: Any = None
        self._since_script: Any = None
        self._meta_script: Any = None
        self._chans: dict[str, _Channel] = {}
        self._by_name: dict[bytes, str] = {}
        self._control_name = f"{prefix}:control".encode()
        #: pub/sub (un)subscribe commands sent and not yet confirmed, per name.
        self._unconfirmed: dict[bytes, int] = {}
        self._pubsub: Any = None
        self._pubsub_lock = asyncio.Lock()
        #: publish number -> the future of its local recipient count.
        self._waiters: dict[int, asyncio.Future[int]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._reporter: asyncio.Task[None] | None = None
        self._connected = False  # the listener is subscribed
        self._commands_ok = False  # the last command (or the PING after a failure) succeeded
        self._verifying: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()  # set while the listener is subscribed
        self._last_error: str | None = None
        self.reconnects = 0
        #: Events delivered from the stream because pub/sub missed them.
        self.recovered_from_stream = 0

    # ------------------------------------------------------------------ keys

    def _meta(self, channel: str) -> str:
        return f"{self.prefix}:{channel}:meta"

    def _stream(self, channel: str) -> str:
        return f"{self.prefix}:{channel}:stream"

    def _pubsub_name(self, channel: str) -> bytes:
        return f"{self.prefix}:ch:{channel}".encode()

    def _node_key(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"

    def _ticket_key(self, ticket: str) -> str:
        return f"{self.prefix}:ticket:{ticket}"

    def _publishing_client(self) -> Any:
        self.redis  # noqa: B018 - raises ServerUnavailable when not started
        return self._unretried

    @property
    def redis(self) -> Any:  # redis-py's reply types are too loose to be useful here
        if self._redis is None:
            raise ServerUnavailable(
                "the Redis backplane is not started: it connects when the server starts "
                "(before_server_start), and publish() works from then on",
                code="backplane_unavailable",
            )
        return self._redis

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        # asyncio primitives belong to the loop that first waits on them: a start after a
        # stop may run in a new loop (one test after another), so make them here.
        self._listening = asyncio.Event()
        self._pubsub_lock = asyncio.Lock()
        self._waiters.clear()
        for chan in self._chans.values():
            chan.ready = asyncio.Event()
        options: dict[str, Any] = {
            "socket_connect_timeout": 2.0,
            "socket_timeout": 5.0,
            "socket_keepalive": True,
            # CLIENT LIST shows which worker each connection belongs to.
            "client_name": f"sanic-realtime:{self.prefix}:{self.node}",
        }
        # Reads, tickets and figures are retried once on a broken connection (one that
        # Redis closed while it sat in the pool, e.g. across a Redis restart). Publishes
        # and the pub/sub listener use a pool without retries: a publish fails at once
        # (503), so an event whose reply was lost is not published twice.
        self._redis = aioredis.Redis.from_url(
            self.url, retry=Retry(NoBackoff(), 1, (RedisConnectionError,)), **options
        )
        self._unretried = aioredis.Redis.from_url(self.url, retry=Retry(NoBackoff(), 0), **options)
        self._script = self._unretried.register_script(_PUBLISH)
        self._since_script = self._redis.register_script(_SINCE)
        self._meta_script = self._redis.register_script(_META)
        try:
            await self._redis.ping()
            self._ok()
        except (RedisError, OSError) as e:
            self._fail(e)
            logger.warning(
                "Redis backplane %s unreachable at start-up (%s); retrying in the "
                "background, health answers 503 until it is back",
                redact_url(self.url),
                e,
            )
        self._listener = asyncio.create_task(self._listen_forever(), name="realtime-redis-listener")
        self._reporter = asyncio.create_task(self._report_forever(), name="realtime-redis-stats")
        if self._commands_ok:
            # Redis answers: accept clients once the listener is subscribed too.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listening.wait(), READY_TIMEOUT)

    async def stop(self) -> None:
        tasks = [t for t in (self._listener, self._reporter, self._verifying, *self._tasks) if t]
        for task in tasks:
            task.cancel()
        # A cancellation can be lost inside redis-py (a connect or a close that turns it
        # into a connection error): a task still running after a moment is cancelled
        # again, so that stop() never waits on a listener that went on reconnecting.
        for _ in range(STOP_RETRIES):
            pending = [t for t in tasks if not t.done()]
            if not pending:
                break
            await asyncio.wait(pending, timeout=0.5)
            for task in pending:
                task.cancel()
        else:
            logger.error("Redis backplane: tasks still running at stop: %s", pending)
        for task in tasks:
            if task.done():
                with contextlib.suppress(BaseException):
                    task.result()
        # _verify() resets _verifying itself, but not when cancelled before it ran.
        self._listener = self._reporter = self._verifying = None
        self._connected = False
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.delete(self._node_key(self.node))
            await self._redis.aclose()
            await self._unretried.aclose()
            self._redis = self._unretried = None

    def _ok(self) -> None:
        self._commands_ok = True

    def _fail(self, error: BaseException) -> None:
        """A command failed: Redis counts as unavailable if a PING fails too (one broken
        pooled connection does not turn new clients away)."""
        self._last_error = f"{type(error).__name__}: {error}"
        if self._verifying is None and self._redis is not None:
            self._verifying = asyncio.get_running_loop().create_task(self._verify())

    async def _verify(self) -> None:
        try:
            await self.redis.ping()
            self._ok()
        except (RedisError, OSError, ServerUnavailable):
            self._commands_ok = False
        finally:
            self._verifying = None

    @property
    def available(self) -> bool:
        return self._connected and self._commands_ok

    def health(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ok": self.available,
            "url": redact_url(self.url),
            "node": self.node,
            "listener": "connected" if self._connected else "reconnecting",
            "reconnects": self.reconnects,
            "recovered_from_stream": self.recovered_from_stream,
            "last_error": self._last_error,
            "channels": len(self._chans),
        }

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ channels in use

    def watch(self, channel: str) -> None:
        if channel in self._chans:
            return
        name = self._pubsub_name(channel)
        self._chans[channel] = _Channel(name)
        self._by_name[name] = channel
        if self._pubsub is not None:
            self._spawn(self._command(self._pubsub, "SUBSCRIBE", name))

    def unwatch(self, channel: str) -> None:
        chan = self._chans.pop(channel, None)
        if chan is None:
            return
        del self._by_name[chan.name]
        if self._pubsub is not None:
            self._spawn(self._command(self._pubsub, "UNSUBSCRIBE", chan.name))

    async def _command(self, pubsub: Any, command: str, name: bytes) -> None:
        # The lock is FIFO, so commands go out in the order watch/unwatch asked for them.
        async with self._pubsub_lock:
            if pubsub is not self._pubsub:
                return  # reconnected meanwhile: the new subscription covers it
            channel = self._by_name.get(name)
            chan = self._chans.get(channel) if channel is not None else None
            if command == "SUBSCRIBE" and chan is not None and channel is not None:
                try:
                    if chan.last is None and chan.floor is None:
                        chan.before = await self._position(channel)
                except (RedisError, OSError) as e:
                    self._fail(e)  # the floor will be inexact: a reconnect reports a gap
            try:
                self._unconfirmed[name] = self._unconfirmed.get(name, 0) + 1
                await pubsub.execute_command(command, name)
            except (RedisError, OSError) as e:
                logger.debug("pub/sub %s %r failed: %s (the listener reconnects)", command, name, e)

    async def ready(self, channel: str) -> None:
        chan = self._chans.get(channel)
        if chan is None:
            raise RuntimeError(f"ready({channel!r}) before watch()")
        if chan.ready.is_set():
            return
        try:
            await asyncio.wait_for(chan.ready.wait(), READY_TIMEOUT)
        except TimeoutError:
            raise ServerUnavailable(
                f"the Redis backplane did not confirm the subscription to {channel!r} within "
                f"{READY_TIMEOUT:g}s ({self._last_error or 'no reply'})",
                code="backplane_unavailable",
            ) from None

    # ------------------------------------------------------------------ publish

    def prepare(
        self, channel: str, type: str, data: Any, *, user_id: str | None, role: str | None
    ) -> Publication:
        """Everything a publish sends to Redis, encoded (``TypeError`` if ``data`` cannot
        be: then nothing reaches Redis and no id is used up)."""
        now = self._clock()
        env_head, env_tail = encode_event_parts(channel, type, utc_timestamp(now), data)
        seq = next(self._seq)
        history = self._histories[channel]
        return Publication(
            seq=seq,
            time=now,
            envelope=(env_head, env_tail),
            keys=[self._meta(channel), self._stream(channel)],
            args=[
                new_epoch(6),
                history.size,
                max(1, int(history.ttl * 1000)),
                int(max(META_TTL, history.ttl) * 1000),
                self._pubsub_name(channel),
                _head_encoder.encode(_Head(self.node, seq, now, user_id, role)),
                env_head,
                env_tail,
            ],
        )

    async def publish(
        self, channel: str, type: str, data: Any, *, user_id: str | None, role: str | None
    ) -> tuple[Event, int]:
        pub = self.prepare(channel, type, data, user_id=user_id, role=role)
        chan = self._chans.get(channel)
        waiter: asyncio.Future[int] | None = None
        if chan is not None and chan.ready.is_set():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[pub.seq] = waiter
        try:
            try:
                epoch_b, offset = await self._script(
                    keys=pub.keys, args=pub.args, client=self._publishing_client()
                )
            except (RedisError, OSError) as e:
                self._fail(e)
                raise _unavailable(e) from None
            self._ok()
            epoch = epoch_b.decode() if isinstance(epoch_b, bytes) else str(epoch_b)
            event_id = EventId(epoch, int(offset))
            head, tail = pub.envelope
            event = Event(
                channel,
                type,
                event_id,
                pub.time,
                data,
                user_id=user_id,
                role=role,
                payload=head + str(event_id).encode() + tail,
            )
            if waiter is None:
                return event, 0  # nobody here listens to this channel
            if not waiter.done():
                chan = self._chans.get(channel)
                last = chan.last if chan is not None else None
                if (
                    chan is not None
                    and not chan.filling
                    and last is not None
                    and last.epoch == epoch
                    and last.offset == event_id.offset - 1
                ):
                    # The next event here: deliver now; its pub/sub copy will be a duplicate.
                    return event, self._deliver(chan, event)
            else:
                return event, waiter.result()  # its pub/sub copy came first
            try:
                # Else events published before it are in flight: it is delivered, in
                # order, when its pub/sub copy arrives.
                return event, await asyncio.wait_for(waiter, OWN_EVENT_TIMEOUT)
            except TimeoutError:
                logger.warning(
                    "event %s on %r did not come back through Redis pub/sub within %gs; "
                    "its local recipients are not counted",
                    event_id,
                    channel,
                    OWN_EVENT_TIMEOUT,
                )
                return event, 0
        finally:
            self._waiters.pop(pub.seq, None)

    def _deliver(self, chan: _Channel, event: Event) -> int:
        """Deliver ``event`` here unless it was already; keeps ids increasing."""
        last = chan.last
        if last is not None and last.epoch == event.id.epoch and event.offset <= last.offset:
            return 0
        chan.last = event.id
        return self.local.deliver(event)

    # ------------------------------------------------------------------ history

    def _decode(self, raw: bytes) -> tuple[_Head, Event]:
        header, sep, envelope = raw.partition(b"\n")
        if not sep:
            raise ValueError("no header")
        head = _head_decoder.decode(header)
        env = _envelope_decoder.decode(envelope)
        event = Event(
            env.channel,
            env.type,
            EventId.parse(env.id),
            head.t,
            env.data,
            user_id=head.u,
            role=head.r,
            payload=envelope,
        )
        return head, event

    def _decode_entries(self, entries: list[Any]) -> list[tuple[_Head, Event]]:
        decoded = []
        for _entry_id, fields in entries:
            # XRANGE through redis-py gives a dict; through a script, [field, value, ...].
            if not isinstance(fields, dict):
                fields = dict(zip(fields[::2], fields[1::2], strict=True))
            try:
                decoded.append(self._decode(fields[b"d"]))
            except (KeyError, ValueError, msgspec.DecodeError, TypeError, RecursionError) as e:
                logger.error("skipping an undecodable history entry: %s", e)
        return decoded

    async def since(self, channel: str, since: EventId) -> list[Event] | None:
        horizon = self._clock() - self._histories[channel].ttl
        try:
            reply = await self._since_script(
                keys=[self._meta(channel), self._stream(channel)],
                args=[since.epoch, str(since.offset), repr(horizon)],
                client=self.redis,
            )
        except (RedisError, OSError) as e:
            self._fail(e)
            raise _unavailable(e) from None
        self._ok()
        if reply is None:
            return None  # the script found the events cannot all be given (see _SINCE)
        top_b, entries = reply
        top = int(top_b)
        if since.offset >= top:
            return []
        events = [e for _, e in self._decode_entries(entries) if e.offset <= top]
        want = top - since.offset
        if len(events) != want or events[0].offset != since.offset + 1:
            return None  # trimmed (size) or expired meanwhile, or an entry is undecodable
        if events[0].time < horizon:
            return None  # older than history.ttl, as the memory backplane would say
        return events

    async def position(self, channel: str) -> EventId | None:
        try:
            epoch, top = await self._position(channel)
        except (RedisError, OSError) as e:
            self._fail(e)
            raise _unavailable(e) from None
        self._ok()
        return EventId(epoch, top) if epoch else None

    async def last(self, channel: str, match: Callable[[Event], bool]) -> Event | None:
        history = self._histories[channel]
        horizon = self._clock() - history.ttl
        left = history.initial_scan
        count = min(left, LAST_FIRST_PAGE)
        upper = "+"
        try:
            while count > 0:
                entries = await self.redis.xrevrange(
                    self._stream(channel), max=upper, min="-", count=count
                )
                for _, event in self._decode_entries(entries):
                    if event.time < horizon:
                        return None
                    if match(event):
                        return event
                if len(entries) < count:
                    return None  # the oldest kept event was read
                left -= count
                count = min(left, LAST_PAGE)
                upper = "(" + entries[-1][0].decode()
            return None  # none of the newest initial_scan events matches
        except (RedisError, OSError) as e:
            self._fail(e)
            raise _unavailable(e) from None

    # ------------------------------------------------------------------ tickets

    async def put_ticket(self, ticket: str, value: bytes, ttl: float) -> None:
        try:
            await self.redis.set(self._ticket_key(ticket), value, px=max(1, int(ttl * 1000)))
        except (RedisError, OSError) as e:
            self._fail(e)
            raise _unavailable(e) from None

    async def peek_ticket(self, ticket: str) -> bytes | None:
        try:
            value = await self.redis.get(self._ticket_key(ticket))
        except (RedisError, OSError) as e:
            self._fail(e)
            raise _unavailable(e) from None
        return value if isinstance(value, bytes) else None

    async def take_ticket(self, ticket: str) -> bytes | None:
        try:
            value = await self.redis.getdel(self._ticket_key(ticket))
        except (RedisError, OSError) as e:
            self._fail(e)
            raise _unavailable(e) from None
        return value if isinstance(value, bytes) else None

    # ------------------------------------------------------------------ cluster-wide

    async def disconnect(self, *, user_id: str | None, role: str | None, reason: str) -> int:
        command = _Control(self.node, "disconnect", user_id, role, reason)
        try:
            await self.redis.publish(self._control_name, _json.encode(command))
        except (RedisError, OSError, ServerUnavailable) as e:
            # This process's connections are closed all the same; the caller learns
            # that the other workers were not told.
            closed = await self.local.disconnect(user_id=user_id, role=role, reason=reason)
            if isinstance(e, ServerUnavailable):
                why = e.message
            else:
                self._fail(e)
                why = f"the Redis backplane is unavailable ({type(e).__name__}: {e})"
            raise ServerUnavailable(
                f"closed {closed} connection(s) of this worker, but could not tell the other "
                f"workers: {why}",
                code="backplane_unavailable",
            ) from None
        return await self.local.disconnect(user_id=user_id, role=role, reason=reason)

    def _own_figures(self) -> dict[str, Any]:
        figures = self.local.stats()
        figures["node"] = self.node
        return figures

    async def stats(self) -> dict[str, Any]:
        own = self._own_figures()
        try:
            keys = [k async for k in self.redis.scan_iter(match=self._node_key("*"), count=1000)]
            values = await self.redis.mget(keys) if keys else []
        except (RedisError, OSError) as e:
            self._fail(e)
            merged = merge_stats([own])
            merged["complete"] = False
            merged["error"] = f"other workers' figures are unavailable ({e})"
            return merged
        figures: list[Mapping[str, Any]] = [own]
        for value in values:
            if value is None:
                continue
            try:
                other = msgspec.json.decode(value)
            except msgspec.DecodeError:
                continue
            if isinstance(other, dict) and other.get("node") != self.node:
                figures.append(other)
        merged = merge_stats(figures)
        merged["complete"] = True
        return merged

    async def _report_forever(self) -> None:
        """Write this worker's figures every STATS_INTERVAL (they expire unless renewed);
        doubles as the health probe of the command connection."""
        while True:
            try:
                await self.redis.set(
                    self._node_key(self.node),
                    _json.encode(self._own_figures()),
                    px=int(STATS_INTERVAL * 3000),
                )
                self._ok()
            except (RedisError, OSError) as e:
                self._fail(e)
            await asyncio.sleep(STATS_INTERVAL)

    # ------------------------------------------------------------------ the listener

    async def _listen_forever(self) -> None:
        attempt = 0
        while True:
            # On the pool without retries: redis-py would otherwise reconnect a broken
            # pub/sub connection by itself, without this listener's subscriptions.
            pubsub = self._unretried.pubsub()
            try:
                async with self._pubsub_lock:
                    # Set first: a watch() from now on queues its own SUBSCRIBE behind
                    # this one; the channels watched before are in this one.
                    self._pubsub = pubsub
                    fresh = [c for c, ch in self._chans.items() if ch.last is None and not ch.floor]
                    positions = await asyncio.gather(*(self._position(c) for c in fresh))
                    for channel, position in zip(fresh, positions, strict=True):
                        self._chans[channel].before = position
                    names = [self._control_name] + [c.name for c in self._chans.values()]
                    self._unconfirmed = dict.fromkeys(names, 1)
                    await pubsub.execute_command("SUBSCRIBE", *names)
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # RedisError, OSError, or a bug: reconnect either way
                if self._connected or attempt == 0:
                    logger.warning("Redis backplane listener lost its connection: %s", e)
                self._fail(e)
                # Redis may have restarted: the idle pooled connections are dead too, and
                # a command on one would fail once Redis is back.
                for client in (self._redis, self._unretried):
                    with contextlib.suppress(Exception):
                        await client.connection_pool.disconnect(inuse_connections=False)
            finally:
                if self._connected:
                    attempt = 0  # it worked for a while: start the backoff again
                self._pubsub = None
                self._connected = False
                self._listening.clear()
                for chan in self._chans.values():
                    chan.ready.clear()
                # Exception, not BaseException: a stop() that cancels the listener while
                # it closes a broken connection must end it, not be swallowed here.
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            # Full jitter: a fleet of workers does not come back in lockstep.
            delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))
            attempt = min(attempt + 1, 16)
            self.reconnects += 1
            await asyncio.sleep(delay)

    async def _read(self, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = loop.time()
            if message is None:
                if now - heard > DEAD_AFTER:
                    raise TimeoutError(f"no reply from Redis for {DEAD_AFTER:g}s")
                if now - heard > PING_INTERVAL and not pinged:
                    pinged = True
                    await pubsub.ping()
                continue
            heard, pinged = now, False
            kind = message["type"]
            if kind == "message":
                await self._on_message(message["channel"], message["data"])
            elif kind in ("subscribe", "unsubscribe"):
                await self._on_confirm(kind, message["channel"])

    async def _on_confirm(self, kind: str, name: bytes) -> None:
        left = self._unconfirmed.get(name, 1) - 1
        if left > 0:
            self._unconfirmed[name] = left
            return
        self._unconfirmed.pop(name, None)
        if kind != "subscribe":
            return
        if name == self._control_name:
            if self.reconnects:
                logger.warning("Redis backplane listener (re)connected")
            self._connected = True
            self._listening.set()
            self._ok()
            return
        channel = self._by_name.get(name)
        chan = self._chans.get(channel) if channel is not None else None
        if chan is None or channel is None:
            return
        if chan.last is None and chan.floor is None:
            # A new subscription: remember where the history stood, so that a reconnect
            # before any event arrives knows what to read from the stream.
            after = await self._position(channel)
            chan.floor = (after[0], after[1], chan.before == after)
            chan.before = None
        else:
            await self._catch_up(channel, chan)  # events published while not subscribed
        chan.ready.set()

    async def _on_message(self, name: bytes, raw: bytes) -> None:
        if name == self._control_name:
            self._on_control(raw)
            return
        channel = self._by_name.get(name)
        chan = self._chans.get(channel) if channel is not None else None
        if chan is None or channel is None:
            return  # unsubscribed meanwhile
        last = chan.last
        try:
            if last is not None:
                # Our own events come back already delivered: skip them before building
                # their data (msgspec only scans what the small struct does not keep).
                event_id = EventId.parse(_id_decoder.decode(raw.partition(b"\n")[2]).id)
                if event_id.epoch == last.epoch and event_id.offset <= last.offset:
                    return
            head, event = self._decode(raw)
        except (ValueError, msgspec.DecodeError, TypeError, RecursionError) as e:
            logger.error("ignoring an undecodable message on %r: %s", name, e)
            return
        if last is not None and last.epoch == event.id.epoch:
            if event.offset <= last.offset:
                return  # delivered already (our own event, or a fill read it)
            if event.offset > last.offset + 1:
                await self._fill(channel, chan, last.offset, event.offset - 1, event.id.epoch)
        elif last is not None:
            self._reset(channel, last.epoch, event.id.epoch)
            chan.last = EventId(event.id.epoch, 0)
            if event.offset > 1:
                await self._fill(channel, chan, 0, event.offset - 1, event.id.epoch)
        self._count_own(head, self._deliver(chan, event))

    def _count_own(self, head: _Head, count: int) -> None:
        """Our own event was delivered here: its publish() learns its recipients."""
        if head.o == self.node:
            waiter = self._waiters.get(head.n)
            if waiter is not None and not waiter.done():
                waiter.set_result(count)

    def _reset(self, channel: str, was: str, now: str) -> None:
        """The history restarted (Redis restarted or lost its data, or the channel was
        quiet longer than META_TTL): what was in flight cannot be known."""
        logger.warning("history of %r restarted (epoch %s -> %s)", channel, was, now or "none")
        self.local.report_loss(channel, None, "history_reset")

    async def _fill(self, channel: str, chan: _Channel, after: int, upto: int, epoch: str) -> None:
        """Deliver the events ``after < offset <= upto`` of ``epoch`` from the stream, and
        report those it no longer has."""
        chan.filling = True
        try:
            entries = await self.redis.xrange(
                self._stream(channel), min=f"{after + 1}-0", max=f"{upto}-0"
            )
        except (RedisError, OSError) as e:
            self._fail(e)
            raise  # the listener reconnects and catches up from chan.last
        finally:
            chan.filling = False
        expected = after + 1
        for head, event in self._decode_entries(entries):
            if event.id.epoch != epoch or event.offset < expected:
                continue
            if event.offset > expected:
                self.local.report_loss(channel, event.offset - expected, "backplane_gap")
            last = chan.last
            if last is None or last.epoch != epoch or event.offset > last.offset:
                self._count_own(head, self._deliver(chan, event))
                self.recovered_from_stream += 1
            expected = event.offset + 1
        if expected <= upto:
            self.local.report_loss(channel, upto - expected + 1, "backplane_gap")
            chan.last = EventId(epoch, upto)
        logger.info("caught up %r from the stream (offsets %d..%d)", channel, after + 1, upto)

    async def _position(self, channel: str) -> tuple[str, int]:
        """The channel's (epoch, last offset); ("", 0) when it has no history of this Redis
        process (none yet, or from before Redis restarted: the next publish starts a new
        epoch at offset 1)."""
        reply = await self._meta_script(keys=[self._meta(channel)], args=[], client=self.redis)
        if not reply or not reply[2]:
            return "", 0
        return reply[0].decode(), int(reply[1])

    async def _catch_up(self, channel: str, chan: _Channel) -> None:
        """After a reconnect: deliver what was published while the listener was away,
        and report what cannot be known."""
        if chan.last is not None:
            base = (chan.last.epoch, chan.last.offset, True)
        elif chan.floor is not None:
            base = chan.floor
        else:
            return
        was, offset, exact = base
        epoch, top = await self._position(channel)
        if not epoch:
            # Redis restarted or lost the history: what was in flight cannot be known.
            if was:
                self._reset(channel, was, "")
            chan.last, chan.floor = None, ("", 0, True)
            return
        if was and epoch != was:
            self._reset(channel, was, epoch)
            offset = 0
        elif not was:
            offset = 0  # the history began after the subscription: all of it is new here
        elif not exact:
            # Events published right as the subscription began may not have arrived.
            self.local.report_loss(channel, None, "backplane_gap")
        chan.last = EventId(epoch, offset)
        if top > offset:
            await self._fill(channel, chan, offset, top, epoch)

    def _on_control(self, raw: bytes) -> None:
        try:
            command = _control_decoder.decode(raw)
        except msgspec.DecodeError as e:
            logger.error("ignoring an undecodable control message: %s", e)
            return
        if command.o == self.node:
            return  # done locally when it was sent
        if command.op == "disconnect":
            self._spawn(
                self.local.disconnect(
                    user_id=command.user_id, role=command.role, reason=command.reason
                )
            )
