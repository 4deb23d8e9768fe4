"""The worker sends the replies of a message that names a serve instance to that instance only, and
publishes a turn's replies and email jobs at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.core.bus.base import Delivery, Envelope, Handler, Topic
from gateway.core.bus.memory import MemoryBus
from gateway.core.schema import Inbound, parse_reply
from gateway.core.store.memory import MemoryStore
from tests.support.webchat import settings_for
from worker.engine import Engine, load_stories
from worker.reload import load_engine
from worker.service import StoryWorker


def hello(n: int, **meta: str) -> Envelope:
    message = Inbound(
        id=f"webchat:u{n}:1", channel="webchat", chat=f"u{n}", user=f"u{n}", text="hi", meta=meta
    )
    return Envelope(body=message.to_json(), message_id=message.id, key=str(message.conversation))


async def test_replies_go_to_the_instance_the_inbound_names_and_nowhere_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bus = MemoryBus(partitions=4)
    engine = load_engine(settings_for(tmp_path))
    worker = StoryWorker(bus, MemoryStore(), lambda: engine)
    got: dict[str, list[Delivery]] = {"shared": [], "a": [], "b": []}

    def recorder(name: str) -> Handler:
        async def handle(delivery: Delivery) -> None:
            got[name].append(delivery)

        return handle

    await bus.subscribe(Topic.OUTBOUND, recorder("shared"))
    await bus.subscribe_direct(Topic.OUTBOUND, "serve-a", recorder("a"))
    await bus.subscribe_direct(Topic.OUTBOUND, "serve-b", recorder("b"))
    await worker.start()
    inbound = [
        hello(1, instance="serve-a"),
        hello(2, instance="serve-b"),
        hello(3),
        hello(4, instance="gone"),
    ]
    with caplog.at_level(logging.INFO, logger="gateway.worker"):
        await bus.publish(Topic.INBOUND, inbound)
        await bus.join()
    await worker.stop()
    await bus.close()

    def users(name: str) -> list[str]:
        return [parse_reply(d.envelope.body).user for d in got[name]]

    assert (users("a"), users("b"), users("shared")) == (["u1", "u1"], ["u2", "u2"], ["u3", "u3"])
    assert [parse_reply(d.envelope.body).meta for d in got["a"]] == [{"instance": "serve-a"}] * 2
    assert "serve instance gone is gone: 2 replies to webchat:u4:1 dropped" in caplog.text


TICKET_STORY = """\
stories:
  ticket:
    triggers: [ticket]
    steps:
      - id: file
        actions:
          - email: {to: support@example.com, subject: Help, body: "{{@message}}"}
          - message: A ticket is on its way.
          - message: We will write back soon.
"""


class GatedBus(MemoryBus):
    """Publishes wait for a gate: shows which publishes a handler has under way at the same moment."""

    def __init__(self) -> None:
        super().__init__(partitions=4)
        self.gate = asyncio.Event()
        self.waiting: list[Topic] = []
        self.both_waiting = asyncio.Event()

    async def publish(self, topic: Topic, envelopes: Sequence[Envelope]) -> None:
        if topic is not Topic.INBOUND:
            self.waiting.append(topic)
            if len(self.waiting) == 2:
                self.both_waiting.set()
            await self.gate.wait()
        await super().publish(topic, envelopes)


async def test_a_turns_replies_and_email_jobs_are_published_at_once(tmp_path: Path) -> None:
    """Issue 18: one wait for the broker's confirms, not one per topic."""
    (tmp_path / "ticket.yml").write_text(TICKET_STORY)
    engine = Engine(load_stories(tmp_path))
    bus = GatedBus()
    worker = StoryWorker(bus, MemoryStore(), lambda: engine)
    outbound: list[Delivery] = []
    emails: list[Delivery] = []

    async def keep(into: list[Delivery], delivery: Delivery) -> None:
        into.append(delivery)

    await bus.subscribe(Topic.OUTBOUND, lambda d: keep(outbound, d))
    await bus.subscribe(Topic.EMAIL, lambda d: keep(emails, d))
    await worker.start()
    message = Inbound(id="telegram:update:1", channel="telegram", chat="7", user="7", text="ticket")
    await bus.publish(Topic.INBOUND, [Envelope(message.to_json(), message.id, str(message.conversation))])
    async with asyncio.timeout(5):
        await bus.both_waiting.wait()
    assert sorted(bus.waiting) == sorted([Topic.OUTBOUND, Topic.EMAIL])
    bus.gate.set()
    await bus.join()
    await worker.stop()
    await bus.close()
    assert [d.envelope.message_id for d in outbound] == ["telegram:update:1/r0", "telegram:update:1/r1"]
    assert [d.envelope.message_id for d in emails] == ["telegram:update:1/e0"]


async def test_the_worker_tells_the_user_index_who_wrote_and_from_which_direct_chat(tmp_path: Path) -> None:
    """A user's message moves their last seen; a direct chat (with its web chat instance) is where a
    broadcast reaches them; a broadcast's own start is not a message of theirs."""
    from gateway.core.store.users.base import IndexEntry
    from gateway.core.store.users.memory import MemoryUserIndex

    bus = MemoryBus(partitions=4)
    index = MemoryUserIndex()
    engine = load_engine(settings_for(tmp_path))
    worker = StoryWorker(bus, MemoryStore(), lambda: engine, users=index)
    await bus.subscribe(Topic.OUTBOUND, _ignore)
    await worker.start()

    def message(n: int, chat: str, user: str, at: float, **fields: object) -> Envelope:
        inbound = Inbound(
            id=f"m{n}", channel="telegram", chat=chat, user=user, text="hi", sent_at=at, **fields
        )
        return Envelope(body=inbound.to_json(), message_id=inbound.id, key=str(inbound.conversation))

    await bus.publish(Topic.INBOUND, [message(1, "7", "7", 100.0, meta={"instance": "serve-a"})])
    await bus.publish(Topic.INBOUND, [message(2, "-100", "7", 200.0)])  # in a group
    await bus.publish(Topic.INBOUND, [message(3, "-100", "8", 300.0)])  # only ever in a group
    await bus.publish(Topic.INBOUND, [message(4, "7", "7", 900.0, kind="broadcast", story="welcome")])
    await bus.join()
    await worker.stop()
    await bus.close()
    assert await index.entry("telegram", "7") == IndexEntry("7", 200.0, "7", {"instance": "serve-a"})
    assert await index.entry("telegram", "8") == IndexEntry("8", 300.0, None, {})


async def _ignore(delivery: Delivery) -> None:
    return None
