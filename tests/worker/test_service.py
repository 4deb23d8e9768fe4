"""The worker sends the replies of a message that names a serve instance to that instance only."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.core.bus.base import Delivery, Envelope, Handler, Topic
from gateway.core.bus.memory import MemoryBus
from gateway.core.schema import Inbound, parse_reply
from gateway.core.store.memory import MemoryStore
from tests.support.webchat import settings_for
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
