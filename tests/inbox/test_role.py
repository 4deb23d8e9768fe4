"""The inbox as a role: `gateway run` includes it when GATEWAY_INBOX_ADDRESS is set, `gateway inbox` runs it
alone (split mode, on RabbitMQ and Redis) and refuses to start without the address."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiosmtplib
import pytest

from gateway.app.process import Gateway
from gateway.app.roles.base import RoleName
from gateway.app.roles.inbox import InboxRole
from gateway.core.bus.memory import MemoryBus
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.store.memory import MemoryStore
from gateway.core.store.redis import RedisStore
from mailer.inbox.smtp_server import SmtpInbox
from tests.support.inbox import INBOX_ADDRESS, SECRET, STAFF, Inbounds, hand_over, reply_address, staff_reply
from tests.support.paths import ROOT
from tests.support.processes import GatewayProcess
from tests.support.webchat import settings_for


def inbox_role(gateway: Gateway) -> InboxRole | None:
    return next((role for role in gateway.roles if isinstance(role, InboxRole)), None)


async def test_run_includes_the_inbox_when_an_address_is_set(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, inbox_address=INBOX_ADDRESS, secret_key=SECRET, staff=STAFF, inbox_port=0
    )
    store = MemoryStore()
    gateway = Gateway(settings, frozenset(RoleName), bus=MemoryBus(partitions=4), store=store)
    await gateway.start()
    try:
        role = inbox_role(gateway)
        assert role is not None and isinstance(role.listener, SmtpInbox)
        assert any(
            line.startswith(f"inbox: staff replies to {INBOX_ADDRESS}, SMTP on 127.0.0.1:")
            for line in gateway.describe()
        )
        await hand_over(store)
        _, answer = await aiosmtplib.send(
            staff_reply("Hello from the desk"), hostname="127.0.0.1", port=role.listener.port,
            sender="agent@support.example.com", recipients=[reply_address()],
        )  # fmt: skip
        assert answer.startswith("2.0.0 OK: passed on")
        assert gateway.metrics.registry.get_sample_value("gateway_inbox_accepted_total") == 1
    finally:
        await gateway.stop()


async def test_run_without_an_address_has_no_inbox(tmp_path: Path) -> None:
    gateway = Gateway(
        settings_for(tmp_path), frozenset(RoleName), bus=MemoryBus(partitions=4), store=MemoryStore()
    )
    await gateway.start()
    try:
        assert inbox_role(gateway) is None
    finally:
        await gateway.stop()


def test_gateway_inbox_needs_the_address() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/",
        "GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gateway.app.cli", "inbox"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == "error: GATEWAY_INBOX_ADDRESS: required by `gateway inbox` (the desk's address)\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_gateway_inbox_alone_on_rabbitmq_and_redis(
    rabbit: RabbitBus,
    redis_store: RedisStore,
    inbounds: Inbounds,
    amqp_url: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    port = free_port()
    env = {
        "GATEWAY_AMQP_URL": amqp_url,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_QUEUE_PREFIX": rabbit.topology.prefix,
        "GATEWAY_REDIS_PREFIX": redis_prefix,
        "GATEWAY_PARTITIONS": "2",
        "GATEWAY_INBOX_ADDRESS": INBOX_ADDRESS,
        "GATEWAY_SECRET_KEY": SECRET,
        "GATEWAY_STAFF": ",".join(STAFF),
        "GATEWAY_INBOX_PORT": str(port),
    }
    process = await GatewayProcess("inbox", env=env).start()
    try:
        await process.wait_for(r"\bready\b")
        _, answer = await aiosmtplib.send(
            staff_reply("From the split inbox"), hostname="127.0.0.1", port=port,
            sender="agent@support.example.com", recipients=[reply_address()],
        )  # fmt: skip
        assert answer.startswith("2.0.0 OK: passed on")
        [inbound] = await inbounds.until(1)
        assert inbound.kind == "staff" and inbound.text == "From the split inbox"
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await aiosmtplib.send(
                staff_reply(sender="mallory@evil.test"), hostname="127.0.0.1", port=port,
                sender="mallory@evil.test", recipients=[reply_address()],
            )  # fmt: skip
        assert refused.value.code == 550
        await process.wait_for(r"refused mail .* from mallory@evil\.test: not_staff")
    finally:
        process.signal(signal.SIGTERM)
        assert await process.wait() == 0
