"""The mailer as deployed: RabbitMQ (RabbitBus) → Mailer with the Redis store → a real SMTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest

from gateway.core.bus.base import Envelope, Topic
from gateway.core.bus.dispatch import Backoff
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.schema import EmailJob
from gateway.core.settings import Settings
from gateway.core.store.redis import RedisStore
from mailer.deadletters import list_dead_emails, run_dead_letter_command
from mailer.service import Mailer
from mailer.smtp import SmtpTransport
from tests.support.smtp_server import ServerFactory


def email(job_id: str, to: str = "support@example.com") -> Envelope:
    job = EmailJob(id=job_id, to=(to,), subject=job_id, text="hi")
    return Envelope(job.to_json(), job.id)


@pytest.fixture
async def rabbit(amqp_url: str, queue_prefix: str) -> AsyncIterator[RabbitBus]:
    bus = RabbitBus(amqp_url, prefix=queue_prefix, partitions=2, backoff=Backoff(0.005, 0.02))
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()
        connection = await aio_pika.connect(amqp_url)
        async with connection, connection.channel() as channel:
            for name in bus.topology.all_queues():
                await channel.queue_delete(name)
            await channel.exchange_delete(bus.topology.dead_exchange)


@pytest.fixture
async def redis_store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, prefix=redis_prefix)
    yield store
    await store.close()


async def test_once_each_dead_letters_and_replay_over_rabbitmq(
    smtp_server: ServerFactory, rabbit: RabbitBus, redis_store: RedisStore
) -> None:
    server = smtp_server()
    server.recorder.rcpt_rules["gone@example.com"] = ["550 5.1.1 gone@example.com: no such user"]
    mailer = Mailer(rabbit, redis_store, SmtpTransport(server.settings()), mail_from="gw@example.com")
    await mailer.start()
    try:
        await rabbit.publish(
            Topic.EMAIL, [email("web:1/e0"), email("web:1/e0"), email("web:2/e0", "gone@example.com")]
        )
        await asyncio.wait_for(mailer.wait_handled(3), 15)
        assert [r.message["Subject"] for r in server.recorder.received] == ["web:1/e0"]

        [dead] = await list_dead_emails(rabbit)
        assert dead.job_id == "web:2/e0"
        assert "550 5.1.1 gone@example.com: no such user" in dead.reason
        lines: list[str] = []
        # What `gateway mailer dead` prints, from its own connection to the broker.
        settings = Settings(amqp_url=rabbit.url, queue_prefix=rabbit.topology.prefix, partitions=2)
        assert await run_dead_letter_command(settings, "dead", 10, out=lines.append) == 0
        assert "web:2/e0  to=gone@example.com" in lines[0]

        server.recorder.rcpt_rules.clear()  # the mailbox exists again
        assert await rabbit.replay_dead_letters(Topic.EMAIL) == 1
        await asyncio.wait_for(mailer.wait_handled(4), 15)
        assert sorted(r.message["Subject"] for r in server.recorder.received) == ["web:1/e0", "web:2/e0"]
        assert await list_dead_emails(rabbit) == []
    finally:
        await mailer.stop()
