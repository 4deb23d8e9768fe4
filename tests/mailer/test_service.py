"""The Mailer role end to end: MemoryBus → Mailer → SmtpTransport → a real (aiosmtpd) server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.core.bus.base import Envelope, Topic
from gateway.core.bus.memory import MemoryBus
from gateway.core.errors import StoreUnavailable
from gateway.core.schema import EmailJob
from gateway.core.store.memory import MemoryStore
from gateway.core.store.redis import RedisStore
from mailer.outbox import OutboxTransport
from mailer.service import Mailer
from mailer.smtp import SmtpTransport
from mailer.transport import MailTransport
from tests.support.smtp_server import ServerFactory, SmtpServer

SENDER = "gateway@example.com"


def email(job_id: str, **changes: Any) -> Envelope:
    values: dict[str, Any] = {"id": job_id, "to": ("support@example.com",), "subject": job_id, "text": "hi"}
    values.update(changes)
    job = EmailJob(**values)
    return Envelope(job.to_json(), job.id)


@asynccontextmanager
async def running(
    transport: MailTransport, store: Any = None, bus: MemoryBus | None = None, **options: Any
) -> AsyncIterator[tuple[Mailer, MemoryBus]]:
    bus = bus or MemoryBus()
    options.setdefault("retry_base", 0.01)
    mailer = Mailer(bus, MemoryStore() if store is None else store, transport, mail_from=SENDER, **options)
    await bus.start()
    await mailer.start(concurrency=8)
    try:
        yield mailer, bus
    finally:
        await mailer.stop()
        await transport.close()
        await bus.close()


def listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def subjects(server: SmtpServer) -> list[str]:
    return [r.message["Subject"] for r in server.recorder.received]


async def settle(mailer: Mailer, calls: int) -> None:
    await asyncio.wait_for(mailer.wait_handled(calls), timeout=10)


async def test_a_job_is_sent_and_recorded(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    store = MemoryStore()
    async with running(SmtpTransport(server.settings()), store) as (mailer, bus):
        await bus.publish(Topic.EMAIL, [email("web:1/e0")])
        await settle(mailer, 1)
    assert subjects(server) == ["web:1/e0"]
    assert await store.is_seen("email", "web:1/e0")
    assert mailer.counters == {"sent": 1, "retried": 0, "failed": 0, "duplicate": 0}


async def test_the_same_job_published_twice_is_sent_once(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    async with running(SmtpTransport(server.settings())) as (mailer, bus):
        await bus.publish(Topic.EMAIL, [email("web:1/e0"), email("web:1/e0")])  # handled side by side
        await settle(mailer, 2)
        await bus.publish(Topic.EMAIL, [email("web:1/e0")])  # and once more, later
        await settle(mailer, 3)
    assert subjects(server) == ["web:1/e0"]
    assert mailer.counters["sent"] == 1
    assert mailer.counters["duplicate"] == 2
    assert await bus.dead_letters(Topic.EMAIL) == []


async def test_two_mailers_each_holding_a_copy_of_one_job_send_it_once(
    smtp_server: ServerFactory, redis_url: str, redis_prefix: str
) -> None:
    """A worker re-published a job while its first copy was queued, and two mailer processes took one copy
    each: the one holding the lease sends, the other waits for its record and drops its copy."""
    server = smtp_server()
    server.recorder.hold_data = held = threading.Event()
    first_store = RedisStore.from_url(redis_url, prefix=redis_prefix)  # one Redis, a client per process
    second_store = RedisStore.from_url(redis_url, prefix=redis_prefix)
    try:
        async with (
            running(SmtpTransport(server.settings()), first_store) as (first, first_bus),
            running(SmtpTransport(server.settings()), second_store) as (second, second_bus),
        ):
            await first_bus.publish(Topic.EMAIL, [email("web:1/e0")])
            await asyncio.get_running_loop().run_in_executor(None, server.recorder.data_seen.wait, 10)
            await second_bus.publish(Topic.EMAIL, [email("web:1/e0")])  # while the first is inside DATA
            await settle(second, 1)  # its first try found the lease taken
            assert second.counters["sent"] == 0
            held.set()
            await settle(first, 1)
            await settle(second, 2)  # a retry in place found the job recorded
        assert subjects(server) == ["web:1/e0"]
        assert server.recorder.data_commands == 1
        assert (first.counters["sent"], second.counters["duplicate"]) == (1, 1)
        assert await first_store.lease("email-sending", "web:1/e0", "someone", 60), "the lease was released"
    finally:
        held.set()
        await first_store.close()
        await second_store.close()


async def test_a_job_whose_lease_holder_died_is_sent_when_the_lease_runs_out(
    smtp_server: ServerFactory,
) -> None:
    """A mailer took the lease and died before sending: its copy comes back to another mailer, which
    waits for the lease to run out and then sends."""
    server = smtp_server()
    store = MemoryStore()
    assert await store.lease("email-sending", "web:1/e0", "a mailer that died", 0.3)
    async with running(SmtpTransport(server.settings()), store) as (mailer, bus):
        await bus.publish(Topic.EMAIL, [email("web:1/e0")])
        await settle(mailer, 2)  # at least one try found the lease taken, one sent
        while mailer.counters["sent"] == 0:
            await settle(mailer, mailer.handled + 1)
    assert subjects(server) == ["web:1/e0"]
    assert await store.is_seen("email", "web:1/e0")


async def test_temporary_failures_then_success_send_once(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    server.recorder.data_replies.extend(["421 4.3.2 try later", "451 4.3.0 local problem"])
    async with running(SmtpTransport(server.settings())) as (mailer, bus):
        await bus.publish(Topic.EMAIL, [email("web:1/e0")])
        await settle(mailer, 1)
        dead = await bus.dead_letters(Topic.EMAIL)
    assert subjects(server) == ["web:1/e0"]
    assert server.recorder.data_commands == 3
    assert mailer.counters == {"sent": 1, "retried": 2, "failed": 0, "duplicate": 0}
    assert dead == []


async def test_a_dropped_connection_is_retried_and_arrives_once(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    server.recorder.drop_data = 1
    async with running(SmtpTransport(server.settings())) as (mailer, bus):
        await bus.publish(Topic.EMAIL, [email("web:1/e0", text="long body\n" * 500)])
        await settle(mailer, 1)
    assert subjects(server) == ["web:1/e0"]
    assert mailer.counters["retried"] == 1


async def test_a_permanent_failure_is_dead_lettered_with_the_server_reply(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    server.recorder.rcpt_rules["nobody@example.com"] = ["550 5.1.1 <nobody@example.com>: Recipient unknown"]
    store = MemoryStore()
    async with running(SmtpTransport(server.settings()), store) as (mailer, bus):
        await bus.publish(Topic.EMAIL, [email("web:1/e0", to=("nobody@example.com",))])
        await settle(mailer, 1)
        [dead] = await bus.dead_letters(Topic.EMAIL)
    assert "550 5.1.1 <nobody@example.com>: Recipient unknown" in dead.reason
    assert dead.attempts == 1
    assert server.recorder.received == []
    assert not await store.is_seen("email", "web:1/e0")
    assert mailer.counters == {"sent": 0, "retried": 0, "failed": 1, "duplicate": 0}


async def test_giving_up_after_max_tries_dead_letters_with_the_last_reply(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    server.recorder.rcpt_rules["busy@example.com"] = ["452 4.2.2 Mailbox full"] * 10
    async with running(SmtpTransport(server.settings()), max_tries=3) as (mailer, bus):
        await bus.publish(Topic.EMAIL, [email("web:1/e0", to=("busy@example.com",))])
        await settle(mailer, 1)
        [dead] = await bus.dead_letters(Topic.EMAIL)
    assert dead.reason.startswith("gave up after 3 tries")
    assert "452 4.2.2 Mailbox full" in dead.reason
    assert mailer.counters == {"sent": 0, "retried": 2, "failed": 1, "duplicate": 0}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "EmailJob"),
        (b'{"v": 2, "type": "email", "id": "x", "to": ["a@example.com"]}', "EmailJob: v"),
    ],
)
async def test_a_body_that_does_not_parse_is_dead_lettered(
    smtp_server: ServerFactory, body: bytes, reason: str
) -> None:
    server = smtp_server()
    async with running(SmtpTransport(server.settings())) as (mailer, bus):
        await bus.publish(Topic.EMAIL, [Envelope(body, "bad-1")])
        await settle(mailer, 1)
        [dead] = await bus.dead_letters(Topic.EMAIL)
    assert dead.reason.startswith(reason)
    assert server.recorder.received == []


async def test_too_many_recipients_or_none_valid_are_dead_lettered(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    crowd = tuple(f"user{n}@example.com" for n in range(4))
    async with running(SmtpTransport(server.settings()), max_recipients=3) as (mailer, bus):
        await bus.publish(Topic.EMAIL, [email("web:1/e0", to=crowd), email("web:2/e0", to=("nobody",))])
        await settle(mailer, 2)
        reasons = sorted(d.reason for d in await bus.dead_letters(Topic.EMAIL))
    assert reasons == [
        "invalid recipient: no valid address among 'nobody'",
        "too many recipients: 4 (at most 3)",
    ]
    assert server.recorder.received == []


class FixedBackoffMailer(Mailer):
    def backoff(self, tries: int) -> float:
        return 0.5


async def test_a_job_waiting_to_retry_does_not_hold_up_the_others(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    server.recorder.rcpt_rules["slow@example.com"] = ["451 4.7.1 greylisted"]
    bus = MemoryBus()
    transport = SmtpTransport(server.settings())
    mailer = FixedBackoffMailer(bus, MemoryStore(), transport, mail_from=SENDER)
    await mailer.start(concurrency=2)
    try:
        slow = email("slow/e0", to=("slow@example.com",))
        await bus.publish(Topic.EMAIL, [slow, *(email(f"fast:{n}/e0") for n in range(6))])
        await settle(mailer, 7)
    finally:
        await mailer.stop()
        await transport.close()
        await bus.close()
    assert subjects(server) == [*(f"fast:{n}/e0" for n in range(6)), "slow/e0"]


async def test_stopping_hands_a_job_waiting_to_retry_back_to_the_queue(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    server.recorder.data_replies.append("451 4.3.0 try again in a minute")
    bus = MemoryBus()

    class SlowRetry(Mailer):
        def backoff(self, tries: int) -> float:
            return 60.0

    first = SlowRetry(bus, MemoryStore(), SmtpTransport(server.settings()), mail_from=SENDER)
    await first.start()
    await bus.publish(Topic.EMAIL, [email("web:1/e0")])
    assert await asyncio.to_thread(server.recorder.data_seen.wait, 5)
    started = time.monotonic()
    await asyncio.wait_for(first.stop(timeout=10.0), 5)
    assert time.monotonic() - started < 2  # did not sit out the 60 s backoff, nor the 10 s drain
    assert first.counters == {"sent": 0, "retried": 0, "failed": 0, "duplicate": 0}
    assert await bus.dead_letters(Topic.EMAIL) == []

    second = Mailer(bus, MemoryStore(), SmtpTransport(server.settings()), mail_from=SENDER)
    await second.start()
    try:
        await settle(second, 1)
    finally:
        await second.stop()
        await bus.close()
    assert subjects(server) == ["web:1/e0"]


def test_backoff_is_full_jitter_capped() -> None:
    mailer = Mailer(
        MemoryBus(),
        MemoryStore(),
        OutboxTransport(Path(".")),
        mail_from=SENDER,
        retry_base=1.0,
        retry_max=5.0,
    )
    for tries, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (200, 5.0)):
        delays = [mailer.backoff(tries) for _ in range(300)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2


class FlakyStore(MemoryStore):
    """The in-memory store, away for its first ``is_seen`` / ``mark_seen`` calls."""

    def __init__(self, is_seen_failures: int = 0, mark_seen_failures: int = 0) -> None:
        super().__init__()
        self.is_seen_failures = is_seen_failures
        self.mark_seen_failures = mark_seen_failures

    async def is_seen(self, namespace: str, item: str) -> bool:
        if self.is_seen_failures:
            self.is_seen_failures -= 1
            raise StoreUnavailable("connection refused")
        return await super().is_seen(namespace, item)

    async def mark_seen(self, namespace: str, item: str, ttl: float) -> bool:
        if self.mark_seen_failures:
            self.mark_seen_failures -= 1
            raise StoreUnavailable("connection refused")
        return await super().mark_seen(namespace, item, ttl)


async def test_store_away_before_sending_is_retried_by_the_bus(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    store = FlakyStore(is_seen_failures=2)
    async with running(SmtpTransport(server.settings()), store) as (mailer, bus):
        await bus.publish(Topic.EMAIL, [email("web:1/e0")])
        await settle(mailer, 3)
        assert await bus.dead_letters(Topic.EMAIL) == []
    assert subjects(server) == ["web:1/e0"]


async def test_store_away_after_sending_records_on_retry_without_sending_again(
    smtp_server: ServerFactory,
) -> None:
    server = smtp_server()
    store = FlakyStore(mark_seen_failures=2)
    async with running(SmtpTransport(server.settings()), store) as (mailer, bus):
        await bus.publish(Topic.EMAIL, [email("web:1/e0")])
        await settle(mailer, 3)
        assert await bus.dead_letters(Topic.EMAIL) == []
    assert subjects(server) == ["web:1/e0"]
    assert await store.is_seen("email", "web:1/e0")


async def test_redis_records_survive_the_mailer(
    smtp_server: ServerFactory, redis_url: str, redis_prefix: str
) -> None:
    """A second mailer (another process, say) drops a job the first one sent: the record is in Redis."""
    server = smtp_server()
    store = RedisStore(redis_url, prefix=redis_prefix)
    try:
        async with running(SmtpTransport(server.settings()), store) as (first, bus):
            await bus.publish(Topic.EMAIL, [email("web:1/e0")])
            await settle(first, 1)
        async with running(SmtpTransport(server.settings()), store) as (second, bus):
            await bus.publish(Topic.EMAIL, [email("web:1/e0"), email("web:2/e0")])
            await settle(second, 2)
        assert second.counters["duplicate"] == 1
    finally:
        await store.close()
    assert subjects(server) == ["web:1/e0", "web:2/e0"]


async def test_outbox_is_the_transport_without_smtp(tmp_path: Path) -> None:
    async with running(OutboxTransport(tmp_path)) as (mailer, bus):
        await bus.publish(Topic.EMAIL, [email("console:you:1/e0"), email("console:you:1/e0")])
        await settle(mailer, 2)
    assert [name.split("-", 1)[1] for name in listing(tmp_path)] == ["console_you_1_e0.eml"]


def test_a_bad_sender_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="sender"):
        Mailer(MemoryBus(), MemoryStore(), OutboxTransport(Path(".")), mail_from="not an address")
