"""Support desks on the clusters: `serve`, `worker`, `mailer` and `inbox` as processes on a 3-node RabbitMQ
cluster (quorum queues) and a 6-node Redis Cluster. Thirty Telegram users are handed over to the email
desk; a person answers each by email while the Redis master holding some of those conversations is
killed with kill -9. Every answer reaches its user once (the test resends a refused or unanswered mail,
as a mail server would), and every Redis call of the handoff path keeps to one slot (a cross-slot call
would fail every time, not only during the kill)."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import aiohttp
import aiosmtplib
import pytest
from redis.crc import key_slot

from bench.common import free_port
from tests.support.clusters import RabbitCluster, RedisCluster
from tests.support.deployment import SECRET, TelegramUser, address_of
from tests.support.fakes import FakeTelegram
from tests.support.processes import GatewayProcess
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.cluster

USERS = 30
INBOX = "desk@bot.example.com"
STORIES = """\
stories:
  human:
    triggers: [human]
    steps:
      - id: hand
        actions:
          - message: Passing you to a person.
          - handoff:
              desk: email
              to: support@example.com
              summary: "A user asks for a person"
              until: 1h
"""


def answer(ticket: EmailMessage, text: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "Ann <ann@support.example.com>"
    mail["To"] = str(ticket["Reply-To"])
    mail["Subject"] = f"Re: {ticket['Subject']}"
    mail["Message-ID"] = make_msgid(domain="support.example.com")
    mail.set_content(f"{text}\n\nOn Tue, the gateway wrote:\n> the ticket\n")
    return mail


async def deliver(port: int, mail: EmailMessage) -> None:
    """Send until the inbox answers 250, as a mail server retries a 4xx or a lost connection."""
    for _ in range(200):
        try:
            await aiosmtplib.send(mail, hostname="127.0.0.1", port=port, timeout=10)
            return
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            code = getattr(exc, "code", 0)
            assert code == 0 or 400 <= code < 500, f"refused for good: {exc}"
            await asyncio.sleep(0.2)  # a mail server's retry interval; nothing tells it when to try
    raise AssertionError("the inbox never took the mail")


async def test_email_desk_answers_reach_each_user_once_with_a_redis_master_killed(
    rabbit_cluster: RabbitCluster,
    redis_cluster: RedisCluster,
    telegram: FakeTelegram,
    smtp: SmtpSink,
    tmp_path: Path,
    queue_prefix: str,
    redis_prefix: str,
) -> None:
    stories = tmp_path / "stories"
    stories.mkdir()
    (stories / "main.yml").write_text(STORIES)
    inbox_port = free_port()
    env = {
        "GATEWAY_AMQP_URL": rabbit_cluster.amqp_url,
        "GATEWAY_QUEUE_TYPE": "quorum",
        "GATEWAY_REDIS_URL": redis_cluster.url,
        "GATEWAY_REDIS_CLUSTER": "true",
        "GATEWAY_QUEUE_PREFIX": queue_prefix,
        "GATEWAY_REDIS_PREFIX": redis_prefix,
        "GATEWAY_PARTITIONS": "4",
        "GATEWAY_STORIES": str(stories),
        "GATEWAY_SMTP_URL": smtp.url,
        "GATEWAY_PORT": "0",
        "GATEWAY_CONNECT_TIMEOUT": "20s",
        "GATEWAY_RATE_LIMITS": "false",
        "GATEWAY_SECRET_KEY": "cluster-desk-key",
        "GATEWAY_INBOX_ADDRESS": INBOX,
        "GATEWAY_INBOX_PORT": str(inbox_port),
        "GATEWAY_STAFF": "@support.example.com",
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }
    roles = [GatewayProcess(role, env=env) for role in ("serve", "worker", "mailer", "inbox")]
    killed: int | None = None
    try:
        for role in roles:
            await role.start()
        for role in roles:
            await role.wait_for(r"INFO .*: ready$", timeout=60)
        address = await address_of(roles[0])
        async with aiohttp.ClientSession() as http:
            users = [
                TelegramUser(http, address, chat_id=8000 + n, first_update=1000 * n) for n in range(USERS)
            ]
            for user in users:
                assert await user.say("human") == 200
            tickets = await smtp.wait_for(USERS, timeout=120)
            by_chat = {str(t["Reply-To"]).split("+")[1]: t for t in tickets}
            assert len(by_chat) == USERS, "one ticket per conversation"
            mails = [answer(ticket, f"Answer {n}.") for n, ticket in enumerate(tickets)]
            await asyncio.gather(*(deliver(inbox_port, mail) for mail in mails[: USERS // 2]))
            killed = redis_cluster.master_of_slot(key_slot(f"{{telegram:{users[0].chat_id}}}".encode()))
            await asyncio.to_thread(redis_cluster.kill_node, killed)
            await asyncio.gather(*(deliver(inbox_port, mail) for mail in mails[USERS // 2 :]))
            await telegram.wait_for_calls(USERS * 2, method="sendMessage", ok=True, timeout=180)

        texts: dict[str, list[str]] = {}
        for call in telegram.calls_to("sendMessage", ok=True):
            texts.setdefault(str(call.params["chat_id"]), []).append(str(call.params["text"]))
        assert len(texts) == USERS
        for chat, said in texts.items():
            assert said[0] == "Passing you to a person." and len(said) == 2, (chat, said)
            assert said[1].startswith("Answer "), (chat, said)
        answers = sorted(said[1] for said in texts.values())
        assert answers == sorted(f"Answer {n}." for n in range(USERS)), "each answer once"
        for role in roles:
            assert role.process is not None and role.process.returncode is None, role.output()[-3000:]
    finally:
        for role in roles:
            await role.stop()
        if killed is not None:
            await asyncio.to_thread(redis_cluster.restart_node, killed)
            await asyncio.to_thread(redis_cluster.wait_healthy)
