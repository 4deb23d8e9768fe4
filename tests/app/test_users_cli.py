"""`gateway users` and `gateway broadcast` as an operator runs them: separate processes with only the
settings, on the real Redis and RabbitMQ, the same answers as the admin API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.core.bus.base import Delivery, Topic
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.schema import ConversationKey, Inbound, parse_inbound
from gateway.core.services import build_user_stores
from gateway.core.store.base import Commit, Session
from gateway.core.store.redis import RedisStore
from tests.support.bus import Watch, delete_topology
from tests.support.deployment import queue_depths, write_stories
from tests.support.processes import GatewayProcess

KEY = ConversationKey("telegram", "42", "42")


@pytest.fixture
def env(
    amqp_url: str, queue_prefix: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> dict[str, str]:
    return {
        "GATEWAY_AMQP_URL": amqp_url,
        "GATEWAY_QUEUE_PREFIX": queue_prefix,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_REDIS_PREFIX": redis_prefix,
        "GATEWAY_PARTITIONS": "4",
        "GATEWAY_STORIES": str(write_stories(tmp_path / "stories")),
        "GATEWAY_RATE_LIMITS": "false",
    }


@pytest.fixture
async def store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, prefix=redis_prefix)
    yield store
    await store.close()


@pytest.fixture
async def topology(amqp_url: str, queue_prefix: str) -> AsyncIterator[None]:
    yield
    await delete_topology(amqp_url, RabbitBus(amqp_url, prefix=queue_prefix, partitions=4).topology)


async def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run one `gateway` command to its end: its exit status and what it wrote (stdout and stderr)."""
    process = await GatewayProcess(*args, env=env).start()
    code = await process.wait(60)
    return code, process.output()


def document(output: str) -> dict[str, object]:
    """The JSON document a command printed (the log lines around it aside)."""
    start, end = output.index("\n{") + 1, output.rindex("}") + 1
    found: dict[str, object] = json.loads(output[start:end])
    return found


async def test_users_set_show_export_and_erase(
    env: dict[str, str], store: RedisStore, topology: None
) -> None:
    session = Session(story="greet", step="save", values={"City": "Paris"})
    assert await store.commit(KEY, Commit("telegram:update:1", session, {"Name": "Ada", "Old": "x"}, [b"Rr"]))
    await build_user_stores(store).index.touch("telegram", "42", 1000.0, "42")

    code, output = await run(env, "users", "set", "telegram", "42", "Name=Grace", "Old=", "Plan=pro")
    assert code == 0, output
    assert document(output)["attributes"] == {"Name": "Grace", "Plan": "pro"}
    assert "audit: cli:" in output and "changed telegram/42: set Name,Plan; deleted Old" in output

    code, output = await run(env, "users", "show", "telegram", "42")
    shown = document(output)
    assert code == 0 and shown["attributes"] == {"Name": "Grace", "Plan": "pro"}
    assert shown["conversations"] == [
        {
            "chat": "42",
            "session": {
                "story": "greet", "step": "save", "values": {"City": "Paris"}, "buttons": [],
                "expires_at": shown["conversations"][0]["session"]["expires_at"],  # type: ignore[index]
            },
            "records": {},
        }
    ]  # fmt: skip

    code, output = await run(env, "users", "export", "telegram", "42")
    exported = document(output)
    assert code == 0 and all(exported[key] == value for key, value in shown.items())
    assert [m["id"] for m in exported["messages"]] == ["telegram:update:1"]  # type: ignore[attr-defined]

    code, output = await run(env, "users", "erase", "telegram", "42")
    erased = document(output)["erased"]
    assert code == 0 and erased["attributes"] == 2 and erased["sessions"] == 1  # type: ignore[index]
    code, output = await run(env, "users", "erase", "telegram", "42")
    assert code == 0 and not any(document(output)["erased"].values())  # type: ignore[attr-defined]
    assert await store.user_attributes("telegram", "42") == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("users", "show", "fax", "1"), "error: no channel 'fax'"),
        (("users", "erase", "sms", "12345"), "is not a sms user id"),
        (("users", "set", "telegram", "1", "Name"), "write NAME=VALUE"),
        (("users", "set", "telegram", "1", "First Name=Ada"), "a name is 1 to 64 letters"),
        (("broadcast", "nope", "--channel", "telegram"), "no story 'nope'"),
        (("broadcast", "count", "--channel", "telegram", "--where", "@message"), "not @message"),
    ],
)
async def test_a_malformed_request_stops_with_one_line(
    env: dict[str, str], topology: None, args: tuple[str, ...], message: str
) -> None:
    code, output = await run(env, *args)
    assert code == 2 and message in output and "Traceback" not in output, output


async def test_users_needs_redis(env: dict[str, str]) -> None:
    code, output = await run({**env, "GATEWAY_REDIS_URL": ""}, "users", "show", "telegram", "1")
    assert code == 2 and "GATEWAY_REDIS_URL: required by `gateway users show`" in output


async def test_broadcast_runs_here_with_a_progress_bar_and_a_dry_run_sends_nothing(
    env: dict[str, str], store: RedisStore, topology: None, rabbit_vhost: str, queue_prefix: str
) -> None:
    index = build_user_stores(store).index
    for n in range(40):
        user = str(7000 + n)
        await store.commit(
            ConversationKey("telegram", user, user), Commit(f"m{n}", None, {"Plan": f"p{n % 4}"})
        )
        await index.touch("telegram", user, 1000.0, user)

    code, output = await run(
        env, "broadcast", "count", "--channel", "telegram", "--where", '@user.Plan == "p1"', "--dry-run"
    )
    assert code == 0, output
    summary = document(output)
    assert (summary["dry_run"], summary["matched"], summary["started"]) == (True, 10, 0)
    assert sum(queue_depths(rabbit_vhost, queue_prefix).values()) == 0, "a dry run publishes nothing"

    code, output = await run(
        env, "broadcast", "count", "--channel", "telegram", "--where", '@user.Plan == "p1"'
    )
    assert code == 0, output
    summary = document(output)
    assert (summary["walked"], summary["matched"], summary["started"], summary["failed"]) == (40, 10, 10, 0)
    assert "[##############################] 100%  40/40 users" in output
    started: list[Inbound] = []
    watch = Watch()

    async def take(delivery: Delivery) -> None:
        started.append(parse_inbound(delivery.envelope.body))
        watch.changed()

    bus = RabbitBus(env["GATEWAY_AMQP_URL"], prefix=queue_prefix, partitions=4)
    await bus.start()
    try:
        await bus.subscribe(Topic.INBOUND, take)
        await watch.until(lambda: len(started) >= 10)
    finally:
        await bus.close()
    assert sorted(m.id for m in started) == [f"broadcast:{summary['id']}:{7000 + n}" for n in range(1, 40, 4)]
