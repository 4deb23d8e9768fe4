"""Outbound delivery, shared by every channel: replies leave in order, once, within the channel's limits.

Order per conversation comes from the bus (the outbound topic is partitioned by conversation). A reply
already sent (its id is recorded after the send) is dropped, so a worker that re-publishes after a crash
causes no second message; a reply that takes several API calls repeats none that went out when it is
tried again (:class:`~channels.base.Progress`). A reply, or part of one, that went out while its record
could not be written (Redis away) is remembered in this process and recorded before anything else is done
for it (:class:`~gateway.core.store.effects.SentRecords`): the bus's retry of the handler never sends it
again. A 429 waits for its Retry-After, a 5xx or network error backs off and tries again, a permanent
refusal is dead-lettered with its reason.

A reply whose inbound named a ``serve`` instance (``meta["instance"]``: the web chat, whose browser socket
only that process holds) comes on that instance's direct destination of the outbound topic instead of the
shared partitions; the deliverer of that instance consumes both, through the same path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from functools import partial

from channels.base import Channel, Progress, Refused, RetryLater
from channels.ratelimit import RateLimit, RateLimiter
from gateway.core import tracing
from gateway.core.bus.base import REPLAY_HEADER, Bus, Delivery, Subscription, Topic
from gateway.core.errors import Rejected, SchemaError
from gateway.core.metrics import Metrics
from gateway.core.retry import full_jitter
from gateway.core.schema import parse_reply
from gateway.core.store.base import Store
from gateway.core.store.effects import SentRecords

log = logging.getLogger("gateway.delivery")

SENT_NAMESPACE = "sent"


class Deliverer:
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

    async def start(self, concurrency: int = 256) -> None:
        self._subscriptions.append(
            await self.bus.subscribe(Topic.OUTBOUND, self.handle, concurrency=concurrency)
        )
        if self.instance is not None:
            self._subscriptions.append(
                await self.bus.subscribe_direct(
                    Topic.OUTBOUND, self.instance, self.handle, concurrency=concurrency
                )
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

    async def handle(self, delivery: Delivery) -> None:
        with tracing.consuming("deliver reply", delivery.envelope):
            await self._deliver(delivery)

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            reply = parse_reply(delivery.envelope.body)
        except SchemaError as exc:
            raise Rejected(str(exc)) from None
        channel = self.channels.get(reply.channel)
        if channel is None:
            raise Rejected(f"channel {reply.channel!r} is not enabled in this gateway")
        may_be_sent = self._may_be_sent(delivery)
        recorded_late = self.sent.unrecorded(reply.id)
        if await self.sent.was_sent(reply.id, ask_store=may_be_sent):
            if recorded_late:
                log.info("reply %s: sent while the store was away, recorded now", reply.id)
            else:
                self.metrics.replies.labels(reply.channel, "duplicate").inc()
                log.info("reply %s was sent before; dropped", reply.id)
            return
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
        await self.sent.record(reply.id)

    async def _part_sent(self, reply_id: str, ask_store: bool, call: int) -> bool:
        return await self.sent.was_sent(f"{reply_id}#{call}", ask_store=ask_store)

    async def _record_part(self, reply_id: str, call: int) -> None:
        await self.sent.record(f"{reply_id}#{call}")
