"""The whole gateway on the clusters: `serve`, two `worker`s and a `mailer` as separate processes on a
3-node RabbitMQ cluster (quorum queues) and a 6-node Redis Cluster. 150 conversations run while a
RabbitMQ node and then a Redis master are killed with kill -9: every reply and ticket email arrives
exactly once and in order, and every role is still running."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from redis.crc import key_slot

from tests.support.clusters import RabbitCluster, RedisCluster
from tests.support.deployment import SECRET, TelegramUser, address_of, write_stories
from tests.support.fakes import FakeTelegram
from tests.support.processes import GatewayProcess
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.cluster

USERS = 150
SCRIPT = ["hi", "Ada", "help", "the printer is on fire"]
EXPECTED = ["What's your name?", "Nice to meet you, Ada.", "What is the problem?", "Ticket sent."]


async def converse(user: TelegramUser) -> None:
    """One user's four messages, each posted until the gateway takes it (503 while the broker moves)."""
    for text in SCRIPT:
        while (status := await user.say(text)) != 200:
            assert status == 503, status
            user.next_update -= 1  # the same update again, as Telegram retries it
            await asyncio.sleep(0.2)


# This test used to fail about once in ten runs: the replies of some chats never came. Its failure report
# (below: the short chats, and what each role logged about their updates) showed `serve` yielding outbound
# partitions to a ghost subscriber, the consumer of its connection to the killed node, which the quorum
# members queue went on counting; the subscribers are now counted on a classic presence queue (see
# gateway/core/bus/rabbit/naming.py and test_bus_on_rabbit_cluster.py). 0 failures in 14 runs since.
@pytest.mark.timeout(300)
async def test_conversations_survive_a_rabbitmq_node_and_a_redis_master_killed(
    rabbit_cluster: RabbitCluster,
    redis_cluster: RedisCluster,
    telegram: FakeTelegram,
    smtp: SmtpSink,
    tmp_path: Path,
    queue_prefix: str,
    redis_prefix: str,
) -> None:
    env = {
        "GATEWAY_AMQP_URL": rabbit_cluster.amqp_url,
        "GATEWAY_QUEUE_TYPE": "quorum",
        "GATEWAY_REDIS_URL": redis_cluster.url,
        "GATEWAY_REDIS_CLUSTER": "true",
        "GATEWAY_QUEUE_PREFIX": queue_prefix,
        "GATEWAY_REDIS_PREFIX": redis_prefix,
        "GATEWAY_PARTITIONS": "4",
        "GATEWAY_STORIES": str(write_stories(tmp_path / "stories")),
        "GATEWAY_SMTP_URL": smtp.url,
        "GATEWAY_PORT": "0",
        "GATEWAY_CONNECT_TIMEOUT": "20s",
        "GATEWAY_RATE_LIMITS": "false",
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }
    roles = [GatewayProcess(role, env=env) for role in ("serve", "worker", "worker", "mailer")]
    killed_rabbit: int | None = None
    killed_redis: int | None = None
    phase = "starting the roles"
    try:
        for role in roles:
            await role.start()
        for role in roles:
            await role.wait_for(r"INFO .*: ready$", timeout=60)
        address = await address_of(roles[0])
        async with aiohttp.ClientSession() as http:
            users = [
                TelegramUser(http, address, chat_id=7000 + n, first_update=100 * n) for n in range(USERS)
            ]
            talking = asyncio.gather(*(converse(user) for user in users))
            phase = "half the first replies"
            await telegram.wait_for_calls(USERS // 2, method="sendMessage", ok=True, timeout=60)
            killed_rabbit = 0  # every role connected to the first node that answered: the first
            began = time.monotonic()
            await asyncio.to_thread(rabbit_cluster.kill_node, killed_rabbit)
            phase = "replies after the RabbitMQ node was killed"
            await telegram.wait_for_calls(USERS * 2, method="sendMessage", ok=True, timeout=100)
            after_rabbit = time.monotonic() - began
            # the master holding the first user's keys: its conversations are in flight right now
            killed_redis = redis_cluster.master_of_slot(key_slot(f"{{telegram:{users[0].chat_id}}}".encode()))
            await asyncio.to_thread(redis_cluster.kill_node, killed_redis)
            phase = "the rest after the Redis master was killed"
            await talking
            await telegram.wait_for_calls(USERS * len(SCRIPT), method="sendMessage", ok=True, timeout=60)
            await smtp.wait_for(USERS, timeout=10)
            phase = "done"
            print(f"RabbitMQ node killed: half the replies {after_rabbit:.1f} s later; all done")

        by_chat: dict[str, list[str]] = {}
        for call in telegram.calls_to("sendMessage", ok=True):
            by_chat.setdefault(str(call.params["chat_id"]), []).append(str(call.params["text"]))
        wrong = {chat: texts for chat, texts in by_chat.items() if texts != EXPECTED}
        assert not wrong, (
            f"{len(wrong)} chats did not get each reply once, in order: {list(wrong.items())[:3]}"
        )
        assert len(by_chat) == USERS
        emails = Counter(str(message["Message-ID"]) for message in smtp.messages)
        assert len(emails) == USERS and set(emails.values()) == {1}, emails.most_common(3)
        for role in roles:
            assert role.process is not None and role.process.returncode is None, role.output()[-3000:]
    finally:
        for role in roles:
            await role.stop()
        if phase != "done":  # shown with the failure: where it stopped, and what each role said
            print(f"stopped at: {phase}; {len(telegram.calls_to('sendMessage', ok=True))} replies")
            _print_short_chats(telegram, roles)
            for role in roles:
                print(f"--- gateway {' '.join(role.args)}:\n{role.output()[-4000:]}")
        if killed_rabbit is not None:
            await asyncio.to_thread(rabbit_cluster.restart_node, killed_rabbit)
        if killed_redis is not None:
            await asyncio.to_thread(redis_cluster.restart_node, killed_redis)
            await asyncio.to_thread(redis_cluster.wait_healthy)


def _print_short_chats(telegram: FakeTelegram, roles: list[GatewayProcess]) -> None:
    """The chats that did not get all their replies, and every line a role logged about their updates."""
    by_chat: dict[int, list[str]] = {7000 + n: [] for n in range(USERS)}
    for call in telegram.calls_to("sendMessage", ok=True):
        by_chat.setdefault(int(call.params["chat_id"]), []).append(str(call.params["text"]))
    short = {chat: texts for chat, texts in by_chat.items() if texts != EXPECTED}
    for chat, texts in list(short.items())[:5]:
        first = 100 * (chat - 7000)
        ids = [f"telegram:update:{first + k}" for k in range(1, len(SCRIPT) + 4)]
        print(f"chat {chat} got {texts}; lines about updates {first + 1}..{first + len(SCRIPT) + 3}:")
        for role in roles:
            for line in role.output().splitlines():
                if any(f"{i}/" in line or line.endswith(i) or f"{i} " in line for i in ids):
                    print(f"  [{role.args[0]}] {line}")
