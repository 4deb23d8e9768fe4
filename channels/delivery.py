"""Outbound delivery, shared by every channel: replies leave in order, once, within the channel's limits.

Order per conversation comes from the bus (the outbound topic is partitioned by conversation). A reply
already sent (its id is recorded after the send) is dropped, so a worker that re-publishes after a crash
causes no second message; a reply that takes several API calls repeats none that went out when it is
tried again (:class:`~channels.base.Progress`). A reply, or part of one, that went out while its record
could not be written (Redis away) is remembered in this process and recorded before anything else is done
for it (:class:`~gateway.core.store.effects.SentRecords`): the bus's retry of the handler never sends it
again. A 429 waits for its Retry-After, a 5xx or network error backs off and tries again, a permanent
refusal is dead-lettered with its reason.

A conversation's replies that arrive together (a turn's, published in one go) are handed over together
(:class:`~gateway.core.bus.base.RunHandler`): each is sent as soon as the one before it has gone out, while
the records of those before are written, instead of a Redis round trip between every two replies. Each is
acknowledged only once recorded; if a record cannot be written the run stops at that reply, and the
replies sent after it are recorded, never sent again, when the bus tries them again. The price: a process
killed between a turn's first reply and its replies' records (a round trip to Redis, under way while the
replies go out) can repeat those replies, where one at a time it repeated one.

A reply whose inbound named a ``serve`` instance (``meta["instance"]``: the web chat, whose browser socket
only that process holds) comes on that instance's direct destination of the outbound topic instead of the
shared partitions; the deliverer of that instance consumes both, through the same path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from functools import partial

from channels.base import Channel, Progress, Refused, RetryLater
from channels.ratelimit import RateLimit, RateLimiter
from gateway.core import timeline, tracing
from gateway.core.bus.base import REPLAY_HEADER, Bus, Delivery, RunHandler, RunStopped, Subscription, Topic
from gateway.core.errors import Rejected, SchemaError
from gateway.core.metrics import Metrics
from gateway.core.retry import full_jitter
from gateway.core.schema import parse_reply
from gateway.core.store.base import Store
from gateway.core.store.effects import SentRecords

log = logging.getLogger("gateway.delivery")

SENT_NAMESPACE = "sent"


class Deliverer(RunHandler):
    def __init__(
        self,
        bus: Bus,
        store: Store,
        channels: Mapping[str, Channel],
        metrics: Metrics,
        *,
        dedup_ttl: float = 86400.0,
        max_tries: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        rate_limits: bool = True,
        instance: str | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.channels = dict(channels)
        self.metrics = metrics
        self.dedup_ttl = dedup_ttl
        self.sent = SentRecords(store, SENT_NAMESPACE, dedup_ttl)
        self.max_tries = max_tries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.limiters = {
            name: RateLimiter(channel.rate_limit if rate_limits else RateLimit())
            for name, channel in self.channels.items()
        }
        self.instance = instance  # set: also deliver the replies addressed to this process
        self._subscriptions: list[Subscription] = []
        # Replies sent by a run whose records are still being written, by id: a copy of one of them later in
        # the same run (a worker's re-publish right behind the original) waits for that record first.
        self._recording: dict[str, asyncio.Task[None]] = {}
        # Replies sent by a run that then stopped before them (an earlier record failed): their next try
        # asks the store, since their own record may have been written.
        self._sent_ahead: set[str] = set()

    async def start(self, concurrency: int = 256) -> None:
        self._subscriptions.append(await self.bus.subscribe(Topic.OUTBOUND, self, concurrency=concurrency))
        if self.instance is not None:
            self._subscriptions.append(
                await self.bus.subscribe_direct(Topic.OUTBOUND, self.instance, self, concurrency=concurrency)
            )

    async def stop(self, timeout: float = 10.0) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        await asyncio.gather(*(subscription.stop(timeout) for subscription in subscriptions))

    def _backoff(self, attempt: int) -> float:
        """Exponential with full jitter."""
        return full_jitter(attempt, self.backoff_base, self.backoff_max)

    @staticmethod
    def _may_be_sent(delivery: Delivery) -> bool:
        """Only a re-published reply, or one delivered or tried again, can have been sent before."""
        return delivery.redelivered or delivery.attempt > 1 or REPLAY_HEADER in delivery.envelope.headers

    async def __call__(self, delivery: Delivery) -> None:
        await self.handle(delivery)

    async def handle(self, delivery: Delivery) -> None:
        """Send one reply (unless it went out before), then record it."""
        with tracing.consuming("deliver reply", delivery.envelope):
            sent = await self._send(delivery)
            if sent is not None:
                await self._record(sent)

    async def run(self, deliveries: Sequence[Delivery]) -> None:
        """Replies of one conversation in order, back to back, each one's record written while the next
        ones are sent.

        A reply is finished once its record is written; the run stops at the first that is not
        (:class:`~gateway.core.bus.base.RunStopped`), and the bus tries it, and those after it, again.
        """
        recording: list[tuple[int, str, asyncio.Task[None]]] = []  # sent here, records under way
        stopped: RunStopped | None = None
        for index, delivery in enumerate(deliveries):
            try:
                with tracing.consuming("deliver reply", delivery.envelope):
                    sent = await self._send(delivery)
            except Exception as exc:
                stopped = RunStopped(index, exc)
                break
            if sent is not None:
                recording.append((index, sent, self._record_soon(sent)))
        for position, (index, _, record) in enumerate(recording):
            try:
                await asyncio.shield(record)  # a run cancelled (stopping) still lets the record finish
            except Exception as exc:
                # The later replies went out too; whether or not their records got written, their next try
                # asks the store (and SentRecords keeps those not written): none is sent again.
                self._sent_ahead.update(reply_id for _, reply_id, _ in recording[position + 1 :])
                stopped = RunStopped(index, exc)
                break
        if stopped is not None:
            raise stopped

    def _record_soon(self, reply_id: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._record(reply_id))
        self._recording[reply_id] = task
        task.add_done_callback(partial(self._recorded, reply_id))
        return task

    def _recorded(self, reply_id: str, task: asyncio.Task[None]) -> None:
        if self._recording.get(reply_id) is task:
            del self._recording[reply_id]
        if not task.cancelled():
            task.exception()  # retrieved: a failure is the run's to report, or a later try's to repair

    async def _record(self, reply_id: str) -> None:
        await self.sent.record(reply_id)
        timeline.mark("reply.recorded", reply_id)

    async def _send(self, delivery: Delivery) -> str | None:
        """Send the reply unless it went out before; its id if it was sent now (to be recorded), else None."""
        try:
            reply = parse_reply(delivery.envelope.body)
        except SchemaError as exc:
            raise Rejected(str(exc)) from None
        channel = self.channels.get(reply.channel)
        if channel is None:
            raise Rejected(f"channel {reply.channel!r} is not enabled in this gateway")
        may_be_sent = self._may_be_sent(delivery) or reply.id in self._sent_ahead
        recording = self._recording.get(reply.id)
        if recording is not None:  # sent a moment ago in this run: its record first, then the usual check
            may_be_sent = True
            with contextlib.suppress(Exception):  # if it failed, SentRecords has it: recorded below
                await asyncio.shield(recording)
        recorded_late = self.sent.unrecorded(reply.id)
        if await self.sent.was_sent(reply.id, ask_store=may_be_sent):
            self._sent_ahead.discard(reply.id)
            if recorded_late:
                log.info("reply %s: sent while the store was away, recorded now", reply.id)
            else:
                self.metrics.replies.labels(reply.channel, "duplicate").inc()
                log.info("reply %s was sent before; dropped", reply.id)
            return None
        self._sent_ahead.discard(reply.id)
        timeline.mark("reply.sending", reply.id)
        progress = Progress(  # for replies that take several API calls: none of them twice
            check=partial(self._part_sent, reply.id, may_be_sent),
            record=partial(self._record_part, reply.id),
        )
        for attempt in range(1, self.max_tries + 1):
            await self.limiters[reply.channel].wait(reply.chat)
            try:
                await channel.send(reply, progress)
                break
            except Refused as exc:
                self.metrics.replies.labels(reply.channel, "failed").inc()
                raise Rejected(f"{reply.channel} refused the reply: {exc.reason}") from None
            except RetryLater as exc:
                if attempt == self.max_tries:
                    self.metrics.replies.labels(reply.channel, "failed").inc()
                    raise Rejected(f"gave up after {attempt} tries: {exc.reason}") from None
                self.metrics.replies.labels(reply.channel, "retried").inc()
                delay = exc.after if exc.after is not None else self._backoff(attempt)
                log.info("reply %s: %s; trying again in %.2f s", reply.id, exc.reason, delay)
                await asyncio.sleep(delay)
        self.metrics.replies.labels(reply.channel, "sent").inc()
        timeline.mark("reply.sent", reply.id)
        return reply.id

    async def _part_sent(self, reply_id: str, ask_store: bool, call: int) -> bool:
        return await self.sent.was_sent(f"{reply_id}#{call}", ask_store=ask_store)

    async def _record_part(self, reply_id: str, call: int) -> None:
        await self.sent.record(f"{reply_id}#{call}")
