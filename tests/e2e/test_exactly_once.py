"""Workers SIGKILLed between the steps of the exactly-once protocol: every reply and email arrives once.

A worker started with GATEWAY_TEST_FREEZE_AT stops itself (SIGSTOP) at that point and prints
``FROZEN <point> <message id>``; the test then SIGKILLs it, so the kill lands exactly between commit and
publish, or between publish and ack.
"""

from __future__ import annotations

import signal

import aiohttp

from gateway.core.bus.base import Envelope, Topic
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.schema import Inbound
from tests.support.deployment import TelegramUser, queue_depths, sent_texts, wait_until_drained
from tests.support.fakes import FakeTelegram
from tests.support.processes import GatewayProcess, Start
from tests.support.smtp_sink import SmtpSink

HELP, TICKET = "telegram:update:7001", "telegram:update:7002"  # the ids of the first two messages below


async def kill_when_frozen(worker: GatewayProcess, point: str) -> str:
    message_id = (await worker.wait_for(rf"FROZEN {point} (\S+)")).group(1)
    worker.signal(signal.SIGKILL)
    assert await worker.wait(10) == -signal.SIGKILL
    return message_id


async def test_workers_killed_between_commit_publish_and_ack(
    start_role: Start, telegram: FakeTelegram, smtp: SmtpSink, rabbit_vhost: str, queue_prefix: str
) -> None:
    serve = await start_role("serve")
    await start_role("mailer")
    address = (await serve.wait_for(r"listening on (http://\S+)")).group(1)
    async with aiohttp.ClientSession() as http:
        user = TelegramUser(http, address, chat_id=9001, first_update=7000)

        # 1. Killed after the commit, before publishing: the next worker re-publishes the recorded reply.
        a = await start_role("worker", wait_ready=False, GATEWAY_TEST_FREEZE_AT=f"after_commit@{HELP}")
        assert await user.say("help") == 200
        assert await kill_when_frozen(a, "after_commit") == HELP
        # 2. Killed after publishing, before the ack: the reply is out; the redelivery must not repeat it.
        b = await start_role("worker", wait_ready=False, GATEWAY_TEST_FREEZE_AT=f"after_publish@{HELP}")
        assert await kill_when_frozen(b, "after_publish") == HELP
        assert "committed before; re-publishing" in b.output()
        await telegram.wait_for_calls(1, method="sendMessage", ok=True)

        # The same two kills on a message whose turn sends an email and a reply.
        c = await start_role("worker", wait_ready=False, GATEWAY_TEST_FREEZE_AT=f"after_commit@{TICKET}")
        assert await user.say("my printer is on fire") == 200
        assert await kill_when_frozen(c, "after_commit") == TICKET
        d = await start_role("worker", wait_ready=False, GATEWAY_TEST_FREEZE_AT=f"after_publish@{TICKET}")
        assert await kill_when_frozen(d, "after_publish") == TICKET
        await smtp.wait_for(1)

        # A healthy worker takes the message once more (re-publishing), then goes on with the conversation.
        e = await start_role("worker")
        assert await user.say("hi") == 200
        await telegram.wait_for_calls(3, method="sendMessage", ok=True)
        await wait_until_drained(rabbit_vhost, queue_prefix)

    assert sent_texts(telegram, 9001) == ["What is the problem?", "Ticket sent.", "What's your name?"]
    assert len(smtp.messages) == 1
    assert "The user wrote: my printer is on fire" in smtp.messages[0].get_content()
    assert "committed before; re-publishing" in e.output()
    assert not any(".dead." in q and n for q, n in queue_depths(rabbit_vhost, queue_prefix).items())


async def test_mailer_killed_after_sending_before_the_ack_sends_no_second_copy(
    start_role: Start, telegram: FakeTelegram, smtp: SmtpSink, rabbit_vhost: str, queue_prefix: str
) -> None:
    serve = await start_role("serve")
    await start_role("worker")
    address = (await serve.wait_for(r"listening on (http://\S+)")).group(1)
    first = await start_role("mailer", wait_ready=False, GATEWAY_TEST_FREEZE_AT="after_record")
    async with aiohttp.ClientSession() as http:
        user = TelegramUser(http, address, chat_id=9002, first_update=8000)
        assert await user.say("help") == 200
        assert await user.say("the mailer will die") == 200
        job = await kill_when_frozen(first, "after_record")
        assert job == "telegram:update:8002/e0"
        (email,) = await smtp.wait_for(1)
        second = await start_role("mailer")
        await wait_until_drained(rabbit_vhost, queue_prefix)
    assert len(smtp.messages) == 1, "the redelivered job was dropped, not sent again"
    assert f"email {job} was sent already; dropped" in second.output()
    assert "the mailer will die" in email.get_content()


async def test_a_worker_killed_inside_a_packed_message_leaves_no_reply_missing_or_doubled(
    start_role: Start, telegram: FakeTelegram, amqp_url: str, rabbit_vhost: str, queue_prefix: str
) -> None:
    """Twenty conversations' messages travel as one packed broker message (one publish, one partition).

    The first worker handles them one at a time and is killed after publishing the eleventh's reply: the
    broker hands the whole packed message to the next worker, which must find the eleven finished ones
    committed (re-publishing, and delivery dropping what was sent) and run the other nine once.
    """
    one_partition = {"GATEWAY_PARTITIONS": "1"}
    await start_role("serve", **one_partition)
    chats = [9100 + n for n in range(20)]
    inbound = [
        Inbound(id=f"telegram:update:{71000 + n}", channel="telegram", chat=str(c), user=str(c), text="help")
        for n, c in enumerate(chats)
    ]
    first = await start_role(
        "worker",
        GATEWAY_WORKER_CONCURRENCY="1",
        GATEWAY_TEST_FREEZE_AT=f"after_publish@{inbound[10].id}",
        **one_partition,
    )
    async with RabbitBus(amqp_url, prefix=queue_prefix, partitions=1) as bus:
        await bus.publish(Topic.INBOUND, [Envelope(m.to_json(), m.id, str(m.conversation)) for m in inbound])
    assert await kill_when_frozen(first, "after_publish") == inbound[10].id

    second = await start_role("worker", **one_partition)
    await telegram.wait_for_calls(len(chats), method="sendMessage", ok=True)
    await wait_until_drained(rabbit_vhost, queue_prefix)

    assert second.output().count("committed before; re-publishing") == 11
    for chat in chats:
        assert sent_texts(telegram, chat) == ["What is the problem?"], chat
    assert len(sent_texts(telegram)) == len(chats)
