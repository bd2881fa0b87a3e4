"""The broker: publish, the channels in use here (watch, ready), what pub/sub delivers,
and the gap fill from the stream.

A worker tracks the last id it delivered per channel. A live event that is not the next
one (pub/sub lost messages, e.g. while the listener reconnected) makes it read the missing
events from the stream and deliver them first; what the stream no longer has is reported
to the channel's subscribers (``messages_dropped``). A changed epoch (Redis lost its data)
is reported the same way. Loss is never silent.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from ...config import HistoryConfig
from ...events import NO_ID, Event, EventId, encode_event, encode_event_parts, utc_timestamp
from ...exceptions import ServerUnavailable
from ...log import logger
from ...protocol.server import Sender
from ..base import Local
from ..memory import new_epoch
from . import scripts
from .codec import (
    DECODE_ERRORS,
    TRANSIENT,
    Head,
    decode,
    decode_entries,
    head_encoder,
    id_decoder,
)
from .connection import Connection, OnError, Unattached
from .history import History
from .keys import Keys
from .pipeline import Pipeliner
from .presence import ANNOUNCE

__all__ = [
    "COUNT_TIMEOUT",
    "META_TTL",
    "OWN_EVENT_TIMEOUT",
    "READY_TIMEOUT",
    "Broker",
    "Publication",
]

#: How long a history's epoch and offset counter outlive the channel's last publish.
#: While they live, a client can resume a quiet channel (``recovered: true``, nothing
#: missed); once they expire, ids start again under a new epoch. Static channels only: a
#: template instance's keys live as long as its history (``history.ttl``).
META_TTL = 30 * 24 * 3600.0
#: How long publish() waits for its own event to come back through pub/sub when events
#: published before it are still in flight (to deliver in order and count recipients).
OWN_EVENT_TIMEOUT = 2.0
#: How long publish(count="cluster") waits for the other workers' recipient counts.
COUNT_TIMEOUT = 1.0
#: Count answers being sent at most (beyond, a worker does not answer: the asker's count
#: is then marked incomplete).
ANSWERS = 10_000
#: How long a new subscription waits for Redis to confirm the pub/sub subscription.
READY_TIMEOUT = 5.0


class Publication(msgspec.Struct):
    """One prepared publish: the script's keys and arguments (see ``publish.lua``)."""

    seq: int
    time: float
    envelope: tuple[bytes, bytes]
    keys: list[str]
    args: list[Any]


class _Channel:
    """A channel this worker has subscribers of."""

    __slots__ = ("before", "filling", "floor", "last", "last_time", "name", "ready")

    def __init__(self, name: bytes) -> None:
        self.name = name
        #: The id of the last event delivered here (None: none since the subscription).
        self.last: EventId | None = None
        #: When that event was published (wall clock).
        self.last_time = 0.0
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


class _Tally:
    """The other workers' answers to one publish(count="cluster")."""

    __slots__ = ("answered", "done", "expected", "total")

    def __init__(self) -> None:
        self.expected: int | None = None  # known once the script answered
        self.answered = 0
        self.total = 0
        self.done = asyncio.get_running_loop().create_future()

    def check(self) -> None:
        if self.expected is not None and self.answered >= self.expected and not self.done.done():
            self.done.set_result(None)


_answer = msgspec.json.Encoder()
_answer_decoder = msgspec.json.Decoder(tuple[int, int])


class Broker:
    """Publishes, and delivers every event of the channels in use here to the hub, once
    and in id order (the listener's :class:`~.connection.Subscriber`)."""

    def __init__(
        self,
        conn: Connection,
        history: History,
        keys: Keys,
        histories: Mapping[str, HistoryConfig],
        *,
        node: str,
        clock: Callable[[], float],
    ) -> None:
        #: The hub (set by ``RedisBackplane.attach``).
        self.local: Local = Unattached()
        self.node = node
        self._conn = conn
        self._history = history
        self._histories = histories
        #: the static channels (iterating ``histories`` gives them); other names are
        #: template instances
        self._static = frozenset(histories)
        self._clock = clock
        self._seq = itertools.count(1)
        self._meta, self._stream, self._pubsub_name = keys.meta, keys.stream, keys.pubsub
        self._publishing_client, self._ok = conn.publishing_client, conn.ok
        self._unavailable = conn.errors(OnError.UNAVAILABLE)
        self._reraise = conn.errors(OnError.RAISE)
        #: The publish script (``publish.lua``), registered on the pool without retries
        #: (for callers that make their own pipelines; its last argument is the run_id).
        self.script: Any = None
        #: Publishes go out through it, pipelined, on a connection of their own.
        self.pipeline = Pipeliner(conn, scripts.PUBLISH)
        self.chans: dict[str, _Channel] = {}
        self.by_name: dict[bytes, str] = {}
        #: publish number -> the future of its local recipient count.
        self._waiters: dict[int, asyncio.Future[int]] = {}
        #: publish number -> the other workers' counts (publish(count="cluster")).
        self._tallies: dict[int, _Tally] = {}
        self._reply_name = keys.reply
        #: This worker's answers channel (the listener subscribes to it).
        self.replies = keys.reply(node)
        #: Events delivered from the stream because pub/sub missed them.
        self.recovered_from_stream = 0

    def start(self) -> None:
        """After the clients are made (a start after a stop may run in a new loop)."""
        self._waiters.clear()
        self._tallies.clear()
        for chan in self.chans.values():
            chan.ready = asyncio.Event()
        self.script = self._conn.unretried.register_script(scripts.PUBLISH)

    # ------------------------------------------------------------------ channels in use

    def watch(self, channel: str) -> bytes | None:
        """Start tracking ``channel``; its pub/sub name to subscribe to, None if it was
        tracked already."""
        if channel in self.chans:
            return None
        name = self._pubsub_name(channel)
        self.chans[channel] = _Channel(name)
        self.by_name[name] = channel
        return name

    def unwatch(self, channel: str) -> bytes | None:
        """Stop tracking ``channel``; its pub/sub name to unsubscribe from, None if it was
        not tracked."""
        chan = self.chans.pop(channel, None)
        if chan is None:
            return None
        del self.by_name[chan.name]
        return chan.name

    async def ready(self, channel: str) -> None:
        chan = self.chans.get(channel)
        if chan is None:
            raise RuntimeError(f"ready({channel!r}) before watch()")
        if chan.ready.is_set():
            return
        try:
            await asyncio.wait_for(chan.ready.wait(), READY_TIMEOUT)
        except TimeoutError:
            raise ServerUnavailable(
                f"the Redis backplane did not confirm the subscription to {channel!r} within "
                f"{READY_TIMEOUT:g}s ({self._conn.last_error or 'no reply'})",
                code="backplane_unavailable",
            ) from None

    async def before_resubscribe(self) -> list[bytes]:
        fresh = [c for c, ch in self.chans.items() if ch.last is None and not ch.floor]
        positions = await asyncio.gather(*(self._history.position_of(c) for c in fresh))
        for channel, position in zip(fresh, positions, strict=True):
            self.chans[channel].before = position
        return [c.name for c in self.chans.values()]

    async def before_subscribe(self, name: bytes) -> None:
        channel = self.by_name.get(name)
        chan = self.chans.get(channel) if channel is not None else None
        if chan is not None and channel is not None:
            # On failure the floor will be inexact: a reconnect reports a gap.
            with self._conn.errors(OnError.IGNORE):
                if chan.last is None and chan.floor is None:
                    chan.before = await self._history.position_of(channel)

    async def on_subscribed(self, name: bytes) -> None:
        channel = self.by_name.get(name)
        chan = self.chans.get(channel) if channel is not None else None
        if chan is None or channel is None:
            return
        if chan.last is None and chan.floor is None:
            # A new subscription: remember where the history stood, so that a reconnect
            # before any event arrives knows what to read from the stream.
            after = await self._history.position_of(channel)
            chan.floor = (after[0], after[1], chan.before == after)
            chan.before = None
        else:
            await self._catch_up(channel, chan)  # events published while not subscribed
        chan.ready.set()

    def on_disconnected(self) -> None:
        for chan in self.chans.values():
            chan.ready.clear()
        self.pipeline.reset()

    # ------------------------------------------------------------------ publish

    def prepare(
        self,
        channel: str,
        type: str,
        data: Any,
        *,
        user_id: str | None,
        role: str | None,
        sender: Sender | None = None,
        exclude: str | None = None,
        count_all: bool = False,
    ) -> Publication:
        """Everything a publish sends to Redis, encoded (``TypeError`` if ``data`` cannot
        be: then nothing reaches Redis and no id is used up)."""
        now = self._clock()
        env_head, env_tail = encode_event_parts(channel, type, utc_timestamp(now), data, sender)
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
                # An instance's keys live as long as its history: Redis memory is
                # bounded by history.ttl however many instances were ever used.
                int((max(META_TTL, history.ttl) if channel in self._static else history.ttl) * 1000)
                or 1,
                self._pubsub_name(channel),
                head_encoder.encode(
                    Head(self.node, seq, now, user_id, role, exclude, 1 if count_all else 0)
                ),
                env_head,
                env_tail,
            ],
        )

    async def transmit(
        self, channel: str, type: str, data: Any, *, sender: Sender, exclude: str | None
    ) -> int:
        """A client message not kept in history: on pub/sub only, no id. Delivered here
        once Redis took it (its pub/sub copy is skipped here)."""
        now = self._clock()
        envelope = encode_event(channel, type, None, utc_timestamp(now), data, sender)
        head = head_encoder.encode(Head(self.node, 0, now, None, None, exclude))
        with self._unavailable:
            await self._publishing_client().publish(
                self._pubsub_name(channel), TRANSIENT + head + b"\n" + envelope
            )
        self._ok()
        if channel not in self.chans:
            return 0
        event = Event(
            channel, type, NO_ID, now, data, payload=envelope, exclude=exclude, sender=sender
        )
        return self.local.deliver(event)

    async def publish(
        self,
        channel: str,
        type: str,
        data: Any,
        *,
        user_id: str | None,
        role: str | None,
        sender: Sender | None = None,
        exclude: str | None = None,
    ) -> tuple[Event, int]:
        pub = self.prepare(
            channel, type, data, user_id=user_id, role=role, sender=sender, exclude=exclude
        )
        waiter = self._wait_for_own(channel, pub.seq)
        return await self._complete(
            channel,
            type,
            data,
            pub,
            self.pipeline.call(pub.keys, pub.args),
            waiter,
            user_id=user_id,
            role=role,
            sender=sender,
            exclude=exclude,
        )

    async def publish_counted(
        self, channel: str, type: str, data: Any, *, user_id: str | None, role: str | None
    ) -> tuple[Event, int, bool]:
        """publish(), counting the recipients of every worker: each worker that got the
        event (PUBLISH says how many) answers with its count, awaited up to
        COUNT_TIMEOUT. Returns the event, the sum, and whether every worker answered."""
        pub = self.prepare(channel, type, data, user_id=user_id, role=role, count_all=True)
        tally = self._tallies[pub.seq] = _Tally()  # answers may come before the script's
        try:
            waiter = self._wait_for_own(channel, pub.seq)
            event, here = await self._complete(
                channel,
                type,
                data,
                pub,
                self.pipeline.call(pub.keys, pub.args),
                waiter,
                user_id=user_id,
                role=role,
                tally=tally,
            )
            try:
                await asyncio.wait_for(asyncio.shield(tally.done), COUNT_TIMEOUT)
                complete = True
            except TimeoutError:
                complete = False
                logger.warning(
                    "publish(count='cluster') of %s on %r: %d of %s workers answered within %gs",
                    event.id,
                    channel,
                    tally.answered,
                    tally.expected,
                    COUNT_TIMEOUT,
                )
            return event, here + tally.total, complete
        finally:
            del self._tallies[pub.seq]

    def on_answer(self, raw: bytes) -> None:
        """Another worker's recipient count of one of our publishes (the listener's)."""
        try:
            seq, count = _answer_decoder.decode(raw)
        except msgspec.DecodeError as e:
            logger.error("ignoring an undecodable count answer: %s", e)
            return
        tally = self._tallies.get(seq)
        if tally is not None:
            tally.answered += 1
            tally.total += count
            tally.check()

    async def publish_many(
        self, channel: str, events: list[tuple[str, Any]], *, user_id: str | None, role: str | None
    ) -> list[tuple[Event, int]]:
        """Publish ``events`` (type, data) in order: all are encoded first (a ``TypeError``
        publishes none), then go out next to each other in the pipeline. If Redis fails
        on the way, the ones before the failure may have gone out: ``ServerUnavailable``
        says how many did."""
        pubs = [self.prepare(channel, t, d, user_id=user_id, role=role) for t, d in events]
        calls = [
            (pub, self._wait_for_own(channel, pub.seq), self.pipeline.call(pub.keys, pub.args))
            for pub in pubs
        ]
        results: list[tuple[Event, int]] = []
        error: ServerUnavailable | None = None
        for (type, data), (pub, waiter, reply) in zip(events, calls, strict=True):
            try:
                results.append(
                    await self._complete(
                        channel, type, data, pub, reply, waiter, user_id=user_id, role=role
                    )
                )
            except ServerUnavailable as e:  # every reply is awaited: no waiter is left
                error = error or e
        if error is not None:
            raise ServerUnavailable(
                f"{len(results)} of {len(events)} events were published: {error.message}",
                code=error.code,
            )
        return results

    def _wait_for_own(self, channel: str, seq: int) -> asyncio.Future[int] | None:
        """A future for publish ``seq``'s local recipient count, if anyone here listens
        to ``channel`` (set when its pub/sub copy is delivered here)."""
        chan = self.chans.get(channel)
        if chan is None or not chan.ready.is_set():
            return None
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[seq] = waiter
        return waiter

    async def _complete(
        self,
        channel: str,
        type: str,
        data: Any,
        pub: Publication,
        reply: asyncio.Future[Any],
        waiter: asyncio.Future[int] | None,
        *,
        user_id: str | None,
        role: str | None,
        sender: Sender | None = None,
        exclude: str | None = None,
        tally: _Tally | None = None,
    ) -> tuple[Event, int]:
        """Await the script's reply (``reply``), then deliver the event here."""
        try:
            with self._unavailable:
                epoch_b, offset, receivers = await reply
            self._ok()
            if tally is not None:  # every worker that got it answers, but this one
                tally.expected = max(0, int(receivers) - (channel in self.chans))
                tally.check()
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
                exclude=exclude,
                sender=sender,
            )
            if waiter is None:
                return event, 0  # nobody here listens to this channel
            if not waiter.done():
                chan = self.chans.get(channel)
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
        chan.last, chan.last_time = event.id, event.time
        return self.local.deliver(event)

    # ------------------------------------------------------------------ what pub/sub brings

    async def on_message(self, name: bytes, raw: bytes) -> None:
        channel = self.by_name.get(name)
        chan = self.chans.get(channel) if channel is not None else None
        if chan is None or channel is None:
            return  # unsubscribed meanwhile
        first = raw[:1]
        if first in (TRANSIENT, ANNOUNCE):
            self._on_transient(channel, raw)
            return
        last = chan.last
        try:
            if last is not None:
                # Our own events come back already delivered: skip them before building
                # their data (msgspec only scans what the small struct does not keep).
                event_id = EventId.parse(id_decoder.decode(raw.partition(b"\n")[2]).id)
                if event_id.epoch == last.epoch and event_id.offset <= last.offset:
                    return
            head, event = decode(raw)
        except DECODE_ERRORS as e:
            logger.error("ignoring an undecodable message on %r: %s", name, e)
            return
        if last is not None and last.epoch == event.id.epoch:
            if event.offset <= last.offset:
                return  # delivered already (our own event, or a fill read it)
            if event.offset > last.offset + 1:
                await self._fill(channel, chan, last.offset, event.offset - 1, event.id.epoch)
        elif last is not None:
            if not self._expired(channel, chan, event):
                self._reset(channel, last.epoch, event.id.epoch)
            chan.last = EventId(event.id.epoch, 0)
            if event.offset > 1:
                await self._fill(channel, chan, 0, event.offset - 1, event.id.epoch)
        self._count_own(head, self._deliver(chan, event))

    def _on_transient(self, channel: str, raw: bytes) -> None:
        """A presence announcement (``?``), or a client message without an id (``!``):
        delivered as it comes, with no offset to check."""
        if raw[:1] == ANNOUNCE:
            self.local.announce(channel, raw[1:])
            return
        try:
            head, event = decode(raw[1:], transient=True)
        except DECODE_ERRORS as e:
            logger.error("ignoring an undecodable client message on %r: %s", channel, e)
            return
        if head.o != self.node:  # our own was delivered when it was sent
            self.local.deliver(event)

    def _count_own(self, head: Head, count: int) -> None:
        """An event was delivered here: if it is our own, its publish() learns its
        recipients; if its publisher asked every worker (``c``), it is told ours."""
        if head.o == self.node:
            waiter = self._waiters.get(head.n)
            if waiter is not None and not waiter.done():
                waiter.set_result(count)
        elif head.c:
            if len(self._conn.tasks) < ANSWERS:
                self._conn.spawn(self._answer(head.o, head.n, count))
            else:
                logger.warning("too many count answers in flight: %s is not told ours", head.o)

    async def _answer(self, node: str, seq: int, count: int) -> None:
        with self._conn.errors(OnError.IGNORE):  # the asker then counts it missing
            await self._conn.redis.publish(self._reply_name(node), _answer.encode((seq, count)))

    def _expired(self, channel: str, chan: _Channel, event: Event) -> bool:
        """A template instance quiet for longer than its history's ttl: its epoch expired
        with its keys, and a new one began with this event; nothing was missed."""
        if channel in self._static:
            return False
        return event.offset == 1 and event.time - chan.last_time > self._histories[channel].ttl

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
            with self._reraise:  # the listener reconnects and catches up from chan.last
                entries = await self._conn.redis.xrange(
                    self._stream(channel), min=f"{after + 1}-0", max=f"{upto}-0"
                )
        finally:
            chan.filling = False
        expected = after + 1
        for head, event in decode_entries(entries):
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
        epoch, top = await self._history.position_of(channel)
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
