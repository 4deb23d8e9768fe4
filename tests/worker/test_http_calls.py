"""The story worker making http calls: on the real RabbitMQ and Redis, against a local fake API.

A conversation waits for its own call while the others go on (its handler gives its concurrency slot
back); a commit that fails after the call (Redis away) is retried without calling again; a secret reaches
the API and nothing else: no reply, no email, no log line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from designer.conversation_tests.rig import InProcessGateway
from gateway.core.bus.base import Delivery, Envelope, Topic
from gateway.core.bus.memory import MemoryBus
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.schema import ConversationKey, Inbound, parse_reply
from gateway.core.store.redis import RedisStore
from tests.support.bus import Watch, delete_topology
from tests.support.engine import load
from tests.support.fakes.json_api import Answer, FakeJsonApi
from tests.support.faults import PrivateRedis
from worker.engine import Engine
from worker.http import AddressPolicy, HttpClient
from worker.service import StoryWorker

STORIES = """\
stories:
  order:
    triggers: [order]
    steps:
      - id: look
        actions:
          - http:
              url: "{api}/orders/{{{{@message}}}}"
              save: {{session: {{Status: $.status}}}}
              on_error: sorry
          - message: "order {{{{@session.Status}}}}"
      - id: sorry
        actions:
          - message: "sorry: {{{{@session.http_error}}}}"
  hello:
    triggers: [hi]
    steps:
      - id: say
        actions:
          - message: hello
"""


@pytest.fixture
async def api() -> AsyncIterator[FakeJsonApi]:
    async with FakeJsonApi() as fake:
        yield fake


def inbound(conversation: str, n: int, text: str) -> Envelope:
    message = Inbound(id=f"test:{conversation}:{n}", channel="test", chat=conversation, user=conversation,
                      text=text)  # fmt: skip
    return Envelope(message.to_json(), message.id, str(message.conversation))


class Replies:
    """The replies published on the outbound topic, by conversation."""

    def __init__(self) -> None:
        self.by_chat: dict[str, list[str]] = {}
        self.watch = Watch()

    async def handle(self, delivery: Delivery) -> None:
        reply = parse_reply(delivery.envelope.body)
        self.by_chat.setdefault(reply.chat, []).append(reply.text)
        self.watch.changed()

    async def until(self, chat: str, count: int) -> list[str]:
        await self.watch.until(lambda: len(self.by_chat.get(chat, [])) >= count)
        return self.by_chat[chat]


async def test_conversations_waiting_on_an_api_do_not_hold_up_the_others(
    tmp_path: Path, api: FakeJsonApi, amqp_url: str, queue_prefix: str, redis_url: str, redis_prefix: str
) -> None:
    """Two handler slots, six conversations waiting on a slow API: a seventh is answered meanwhile, and a
    waiting conversation's next message waits for its own call (order)."""
    release = asyncio.Event()
    api.script("/orders/order", Answer(json={"status": "shipped"}, hold=release))
    engine = Engine(load(tmp_path, STORIES.format(api=api.url("").rstrip("/"))))
    bus = RabbitBus(amqp_url, prefix=queue_prefix, partitions=4)
    store = RedisStore.from_url(redis_url, prefix=redis_prefix)
    client = HttpClient(AddressPolicy(["127.0.0.1"]))
    worker = StoryWorker(bus, store, lambda: engine, caller=client)
    replies = Replies()
    await bus.start()
    try:
        await bus.subscribe(Topic.OUTBOUND, replies.handle)
        await worker.start(concurrency=2)
        await bus.publish(Topic.INBOUND, [inbound(f"slow{n}", 1, "order") for n in range(6)])
        await bus.publish(Topic.INBOUND, [inbound("slow0", 2, "hi"), inbound("quick", 1, "hi")])
        assert await replies.until("quick", 1) == ["hello"]
        await api.wait_for(6)  # six calls in flight at once, on two handler slots
        assert "slow0" not in replies.by_chat  # its "hi" waits behind its own call
        release.set()
        assert await replies.until("slow0", 2) == ["order shipped", "hello"]
        for n in range(1, 6):
            assert await replies.until(f"slow{n}", 1) == ["order shipped"]
        assert len(api.requests) == 6
    finally:
        await worker.stop()
        await client.close()
        await bus.close()
        await store.close()
        await delete_topology(amqp_url, bus.topology)


class Logged(logging.Handler):
    """Sets an event when a log line containing ``text`` is emitted."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


async def test_a_commit_retried_in_place_after_the_call_does_not_call_again(
    tmp_path: Path, api: FakeJsonApi, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()
    api.script("/orders/order", Answer(json={"status": "shipped"}, hold=release))
    redis = PrivateRedis(tmp_path)
    await redis.start()
    engine = Engine(load(tmp_path, STORIES.format(api=api.url("").rstrip("/"))))
    bus = MemoryBus(partitions=1)
    store = RedisStore.from_url(redis.url, prefix="t")
    client = HttpClient(AddressPolicy(["127.0.0.1"]))
    worker = StoryWorker(bus, store, lambda: engine, caller=client)
    replies = Replies()
    waiting = Logged("retrying until it is back")
    caplog.set_level(logging.INFO, logger="gateway.core.bus.dispatch")
    logging.getLogger("gateway.core.bus.dispatch").addHandler(waiting)
    try:
        await bus.start()
        await bus.subscribe(Topic.OUTBOUND, replies.handle)
        await worker.start()
        await bus.publish(Topic.INBOUND, [inbound("c", 1, "order")])
        await api.wait_for(1)
        await redis.stop()  # the answer comes while Redis is away: the commit fails, the handler is retried
        release.set()
        await waiting.seen.wait()
        await redis.start()
        assert await replies.until("c", 1) == ["order shipped"]
        assert len(api.requests) == 1
    finally:
        logging.getLogger("gateway.core.bus.dispatch").removeHandler(waiting)
        await worker.stop()
        await client.close()
        await bus.close()
        await store.close()
        await redis.stop()


SECRET = "s3cr3t-T0ken/with+chars"


async def test_a_secret_reaches_the_api_and_no_user_email_or_log_line(
    tmp_path: Path, api: FakeJsonApi, caplog: pytest.LogCaptureFixture
) -> None:
    api.script("/echo", Answer(json={"you_sent": f"Bearer {SECRET}", "ok": "yes"}))
    api.script("/fail", Answer(503))
    stories = load(
        tmp_path,
        f"""\
        stories:
          s:
            triggers: [go]
            steps:
              - id: a
                actions:
                  - http:
                      url: "{api.url("/echo")}?key={{{{@secret.TOKEN}}}}"
                      method: POST
                      headers: {{Authorization: "Bearer {{{{@secret.TOKEN}}}}"}}
                      json: {{token: "{{{{@secret.TOKEN}}}}"}}
                      save: {{session: {{Echo: $.you_sent, All: $}}}}
                  - http:
                      url: "{api.url("/fail")}?key={{{{@secret.TOKEN}}}}"
                      timeout: 300ms
                  - message: "echo: {{{{@session.Echo}}}} / {{{{@session.All}}}} / <<@session.http_error>>"
                  - email:
                      to: support@example.com
                      subject: "{{{{@session.Echo}}}}"
                      body: "{{{{@session.All}}}}"
        """,
    )
    engine = Engine(stories, {"TOKEN": SECRET})
    client = HttpClient(AddressPolicy(["127.0.0.1"]), retry_base=0.01)
    key = ConversationKey("test", "u", "u")
    caplog.set_level(logging.DEBUG)
    try:
        async with InProcessGateway(engine, key, mail_from="bot@example.com", caller=client) as gateway:
            assert await gateway.send("go") == []
            replies = [reply.text for reply in gateway.channel.replies]
            emails = [message.as_string() for message in gateway.transport.messages]
    finally:
        await client.close()
    echo, fail = api.to("/echo")[0], api.to("/fail")[-1]
    assert echo.query == {"key": SECRET} and echo.headers["Authorization"] == f"Bearer {SECRET}"
    assert echo.json() == {"token": SECRET}
    assert fail.query == {"key": SECRET}
    assert replies == ['echo: Bearer *** / {"you_sent":"Bearer ***","ok":"yes"} / status 503']
    assert len(emails) == 1 and "Bearer ***" in emails[0]
    assert "http call POST" in caplog.text and "failed: status 503" in caplog.text  # the calls are logged
    for seen in (*replies, *emails, caplog.text):
        assert SECRET not in seen and "s3cr3t" not in seen


FAILURES = """\
stories:
  case:
    triggers: ["re:^[a-z]+$"]
    steps:
      - id: call
        actions:
          - http:
              url: "http://localhost:{port}/case/{{{{@message}}}}"
              timeout: 1s
              save: {{session: {{V: $.v}}}}
              on_error: failed
          - message: "ok: {{{{@session.V}}}}"
      - id: failed
        actions:
          - message: "error: {{{{@session.http_error}}}}"
  private:
    triggers: [private]
    steps:
      - id: call
        actions:
          - http: {{url: "http://127.0.0.1:{port}/case/private", on_error: failed}}
          - message: called
      - id: failed
        actions:
          - message: "error: {{{{@session.http_error}}}}"
"""


async def test_every_kind_of_failure_reaches_the_story(tmp_path: Path, api: FakeJsonApi) -> None:
    """The real client behind the worker, against the fake API reached as localhost (allowed by name)."""
    api.script("/case/flaky", Answer(503), Answer(json={"v": "second try"}))
    api.script("/case/broken", Answer(500))
    api.script("/case/slow", Answer(hold=asyncio.Event()))
    api.script("/case/huge", Answer(body=b"[" + b" " * (1024 * 1024) + b"]"))
    api.script("/case/html", Answer(body=b"<html>hello</html>"))
    api.script("/case/hop", Answer(redirect=api.url("/case/flaky", host="127.0.0.1")))
    for n in range(4):
        api.script(f"/case/chain{n}" if n else "/case/chain", Answer(redirect=f"/case/chain{n + 1}"))
    engine = Engine(load(tmp_path, FAILURES.format(port=api.port)))
    client = HttpClient(AddressPolicy(["localhost"]), retry_base=0.05)
    key = ConversationKey("test", "u", "u")
    try:
        async with InProcessGateway(engine, key, mail_from="bot@example.com", caller=client) as gateway:
            for text in ("flaky", "broken", "slow", "huge", "html", "hop", "chain", "private"):
                assert await gateway.send(text) == []
            replies = [reply.text for reply in gateway.channel.replies]
    finally:
        await client.close()
    assert replies == [
        "ok: second try",
        "error: status 500",
        "error: timeout",
        "error: answer too large",
        "error: not JSON",
        "error: refused address",
        "error: too many redirects",
        "error: refused address",
    ]
    assert len(api.to("/case/broken")) >= 2  # retried within its second
    assert not api.to("/case/private") and not api.to("/case/flaky")[2:]  # refused ones never arrived
