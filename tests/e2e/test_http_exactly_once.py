"""Workers SIGKILLed around a story's http call: after the call and before the commit, the next worker calls
again with the same Idempotency-Key; after the commit, nobody calls again. The user gets one reply.

A worker started with ``GATEWAY_TEST_FREEZE_AT`` stops itself (SIGSTOP) at that point and prints
``FROZEN <point> <message id>``; the test then SIGKILLs it (see test_exactly_once.py).
"""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp

from tests.support.deployment import TelegramUser, address_of, sent_texts, wait_until_drained
from tests.support.engine import write
from tests.support.fakes import FakeTelegram
from tests.support.fakes.json_api import Answer, FakeJsonApi
from tests.support.processes import GatewayProcess, Start

SECRET = "e2e-s3cret-t0ken"
FIRST, SECOND = "telegram:update:9401", "telegram:update:9402"

STORIES = """\
stories:
  order:
    triggers: [order]
    steps:
      - id: look
        actions:
          - http:
              url: "{api}/orders?chat={{{{@message}}}}"
              headers: {{Authorization: "Bearer {{{{@secret.TOKEN}}}}"}}
              save: {{session: {{Status: $.status}}}}
          - message: "Order: {{{{@session.Status}}}}"
"""


def freeze_at(point: str) -> dict[str, str]:
    return {"GATEWAY_TEST_FREEZE_AT": f"{point}@{FIRST}"}


async def kill_when_frozen(worker: GatewayProcess, point: str) -> str:
    message_id = (await worker.wait_for(rf"FROZEN {point} (\S+)")).group(1)
    worker.signal(signal.SIGKILL)
    assert await worker.wait(10) == -signal.SIGKILL
    return message_id


async def test_a_worker_killed_after_the_call_calls_again_with_the_same_key_and_after_the_commit_not_at_all(
    start_role: Start, telegram: FakeTelegram, tmp_path: Path, rabbit_vhost: str, queue_prefix: str
) -> None:
    async with FakeJsonApi() as api:
        api.script("/orders", Answer(json={"status": "shipped"}))
        stories = write(tmp_path / "http-stories", {"order.yml": STORIES.format(api=api.url("").rstrip("/"))})
        env = {"GATEWAY_STORIES": str(stories), "GATEWAY_HTTP_ALLOW": "127.0.0.1"}
        env["GATEWAY_SECRET_TOKEN"] = SECRET
        serve = await start_role("serve", **env)
        roles = [serve]
        async with aiohttp.ClientSession() as http:
            user = TelegramUser(http, await address_of(serve), chat_id=9400, first_update=9400)

            # 1. Killed after the call, before the commit: the next worker calls again, with the same key.
            a = await start_role("worker", wait_ready=False, **env, **freeze_at("after_call"))
            assert await user.say("order") == 200
            assert await kill_when_frozen(a, "after_call") == FIRST
            assert len(api.requests) == 1
            # 2. That worker calls, commits, and is killed after the commit, before publishing.
            b = await start_role("worker", wait_ready=False, **env, **freeze_at("after_commit"))
            assert await kill_when_frozen(b, "after_commit") == FIRST
            assert len(api.requests) == 2
            # 3. A healthy worker finds the commit: it re-publishes the reply and does not call.
            c = await start_role("worker", **env)
            await telegram.wait_for_calls(1, method="sendMessage", ok=True)
            assert await user.say("order") == 200
            await telegram.wait_for_calls(2, method="sendMessage", ok=True)
            await wait_until_drained(rabbit_vhost, queue_prefix)
            roles += [a, b, c]

        keys = [request.headers["Idempotency-Key"] for request in api.requests]
        assert keys == [f"{FIRST}/h0", f"{FIRST}/h0", f"{SECOND}/h0"]
        assert {request.headers["Authorization"] for request in api.requests} == {f"Bearer {SECRET}"}
    assert sent_texts(telegram, 9400) == ["Order: shipped", "Order: shipped"]
    assert "committed before; re-publishing" in c.output()
    assert "http secrets: 1 used\n" in c.output() + "\n"  # and none unset
    for role in roles:
        assert SECRET not in role.output()
