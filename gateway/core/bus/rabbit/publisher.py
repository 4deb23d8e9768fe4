"""Publishing with confirms, coalesced (see :meth:`Publisher.send`): RabbitMQ and the AMQP client spend
their effort per message and per round trip, so a process's publish calls share batches, a batch shares one
wait for its confirms, and the envelopes of a batch bound for one queue share one packed message. Each call
still learns its own outcome: confirmed, returned by the broker (no queue took it), or refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast

import aio_pika
import aiormq

from gateway.core import timeline
from gateway.core.bus.base import Envelope
from gateway.core.bus.packing import chunks
from gateway.core.bus.rabbit.channels import restored, retrieve
from gateway.core.bus.rabbit.connection import BrokerConnection
from gateway.core.bus.rabbit.messages import to_message, to_packed_message
from gateway.core.errors import BusUnavailable


@dataclass(slots=True)
class _PendingPublish:
    messages: list[tuple[str, Envelope]]  # (queue, envelope)
    unroutable: Literal["raise", "drop"]
    packable: bool
    result: asyncio.Future[int]


class Publisher:
    """The bus's publishes, sent in batches on the connection's confirming channel."""

    def __init__(self, broker: BrokerConnection, *, timeout: float, window: int) -> None:
        self.timeout = timeout  # for one batch: frames sent and every confirm back
        self.window = window  # batches waiting for their confirms at once
        self._broker = broker
        self._pending: list[_PendingPublish] = []  # publishes waiting for the next batch
        self._flush_scheduled = False
        self._flushes: set[asyncio.Task[None]] = set()  # batches sent and waiting for their confirms
        self._renewal: asyncio.Task[None] | None = None
        self.renewals = 0  # publish channels replaced after a refusal

    async def send(
        self,
        batch: Iterable[tuple[str, Envelope]],
        unroutable: Literal["raise", "drop"] = "raise",
        *,
        packable: bool = False,
    ) -> int:
        """Publish every envelope, then wait for every confirm: one round trip per batch, not per message.

        Calls are coalesced into batches: those made in the same turn of the event loop, and those made
        while ``window`` batches are already waiting for their confirms (under load a batch then grows
        instead of the broker getting many small ones; when idle nothing waits). A batch has one timeout and
        one wait for the confirms, and its ``packable`` envelopes bound for the same queue travel as one
        packed message (:mod:`gateway.core.bus.packing`). Only ordered topics pack: their queues have one
        consumer at a time anyway, while packing email jobs would take them away from competing mailers. A
        message no queue takes raises :class:`BusUnavailable`, or with ``unroutable="drop"`` is counted:
        returns how many were dropped so.
        """
        messages = list(batch)
        if not messages:
            return 0
        self._broker.require()
        loop = asyncio.get_running_loop()
        call = _PendingPublish(messages, unroutable, packable, loop.create_future())
        self._pending.append(call)
        self._schedule_flush()
        return await call.result

    @property
    def in_flight(self) -> int:
        """Batches sent and waiting for their confirms (at most ``window``)."""
        return len(self._flushes)

    async def drain(self) -> None:
        """Wait for the batches already sent (whatever their outcome)."""
        await asyncio.gather(*self._flushes, return_exceptions=True)
        if self._renewal is not None:  # the connection closes anyway: no need to wait out the grace
            self._renewal.cancel()
            await asyncio.gather(self._renewal, return_exceptions=True)

    def _renew_channel(self) -> None:
        """After a refusal, the next batches go out on a fresh channel (one renewal at a time)."""
        if self._renewal is None or self._renewal.done():
            self.renewals += 1
            renewal = self._broker.renew_publish_channel(self.timeout)
            self._renewal = asyncio.get_running_loop().create_task(renewal)
            self._renewal.add_done_callback(retrieve)

    def _schedule_flush(self) -> None:
        if self._pending and not self._flush_scheduled and len(self._flushes) < self.window:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_publishes)

    def _flush_publishes(self) -> None:
        self._flush_scheduled = False
        calls, self._pending = self._pending, []
        if not calls:
            return
        if timeline.recording():  # benchmarks: the wait for the window ends here
            for call in calls:
                for _, envelope in call.messages:
                    timeline.mark("bus.flushed", envelope.message_id)
        task = asyncio.get_running_loop().create_task(self._publish_calls(calls))
        self._flushes.add(task)
        task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        self._schedule_flush()

    async def _publish_calls(self, calls: list[_PendingPublish]) -> None:
        try:
            outcomes = await self._publish_frames(calls)
        except BaseException as exc:
            failure = (
                exc if isinstance(exc, BusUnavailable) else BusUnavailable(f"publish interrupted: {exc!r}")
            )
            for call in calls:
                if not call.result.done():
                    call.result.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        first = 0
        for call in calls:
            own = outcomes[first : first + len(call.messages)]
            first += len(call.messages)
            if call.result.done():  # the caller gave up (cancelled)
                continue
            failures = [o for o in own if isinstance(o, BaseException)]
            returned = [f for f in failures if isinstance(f, aiormq.exceptions.PublishError)]
            refused = [f for f in failures if f not in returned] if call.unroutable == "drop" else failures
            if refused:
                error = BusUnavailable(f"RabbitMQ did not confirm the messages: {refused[0]!r}")
                error.__cause__ = refused[0]
                call.result.set_exception(error)
            if len(returned) < len(failures):  # nacked or failed, not merely unroutable
                self._renew_channel()
            else:
                call.result.set_result(len(returned))

    async def _publish_frames(self, calls: list[_PendingPublish]) -> list[Any]:
        """Queue every frame at once, then gather the confirms; each envelope's outcome (None or error)."""
        self._broker.require()
        channel = self._broker.publish_channel
        assert channel is not None
        messages, carried = _wire_messages(calls)
        tasks: list[asyncio.Task[Any]] = []
        try:
            async with asyncio.timeout(self.timeout):
                underlay = cast(aiormq.Channel, await restored(channel))
                tasks = [  # wait=False: queue every frame at once instead of a socket drain per message
                    asyncio.create_task(
                        underlay.basic_publish(
                            message.body,
                            routing_key=queue,
                            properties=message.properties,
                            mandatory=True,
                            wait=False,
                        )
                    )
                    for queue, message in messages
                ]
                outcomes: list[Any] = [None] * sum(map(len, carried))
                sent = await asyncio.gather(*tasks, return_exceptions=True)
                for outcome, numbers in zip(sent, carried, strict=True):
                    for number in numbers:
                        outcomes[number] = outcome
                return outcomes
        except BusUnavailable:
            raise
        except Exception as exc:
            self._renew_channel()
            raise BusUnavailable(f"RabbitMQ did not confirm the messages: {exc!r}") from exc
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
                task.add_done_callback(retrieve)


def _wire_messages(
    calls: list[_PendingPublish],
) -> tuple[list[tuple[str, aio_pika.Message]], list[list[int]]]:
    """The broker messages that carry the calls' envelopes, and which envelopes each one carries.

    Envelopes are numbered in call order. A queue's packable envelopes are packed, in publish order, at
    the position of its first one; dead letters (never packed) go to queues of their own, so every
    queue still receives its envelopes in publish order.
    """
    messages: list[tuple[str, aio_pika.Message]] = []
    carried: list[list[int]] = []
    order: list[tuple[str, list[tuple[int, Envelope]]]] = []
    by_queue: dict[str, list[tuple[int, Envelope]]] = {}
    number = 0
    for call in calls:
        for queue, envelope in call.messages:
            if not call.packable:
                order.append((queue, [(number, envelope)]))
            elif (group := by_queue.get(queue)) is not None:
                group.append((number, envelope))
            else:
                by_queue[queue] = group = [(number, envelope)]
                order.append((queue, group))
            number += 1
    for queue, group in order:
        numbers = iter(n for n, _ in group)
        for run in chunks([envelope for _, envelope in group]):
            messages.append((queue, to_message(run[0]) if len(run) == 1 else to_packed_message(run)))
            carried.append([next(numbers) for _ in run])
    return messages, carried
