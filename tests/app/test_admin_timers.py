"""Erasing a user takes their pending timers out of the timer schedule too: after the admin API's erase,
no key of the deployment names the user (a whole gateway in this process on RabbitMQ and Redis)."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from gateway.app.process import Gateway
from gateway.app.roles.base import RoleName
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.settings import AdminToken, Settings
from tests.support.admin import TOKEN, Admin, keys_naming
from tests.support.bus import delete_topology
from tests.support.deployment import SECRET, TelegramUser
from tests.support.fakes import FakeTelegram
from tests.support.timers import ASKED, nudge_stories


async def test_an_erase_leaves_no_pending_timer_of_the_user_in_the_schedule(
    tmp_path: Path, amqp_url: str, queue_prefix: str, redis_url: str, redis_prefix: str
) -> None:
    stories = tmp_path / "stories"
    stories.mkdir()
    (stories / "main.yml").write_text(nudge_stories(3600))
    async with FakeTelegram() as telegram, aiohttp.ClientSession() as http:
        settings = Settings(
            amqp_url=amqp_url, redis_url=redis_url, queue_prefix=queue_prefix, redis_prefix=redis_prefix,
            partitions=4, stories=stories, outbox=tmp_path / "outbox", port=0,
            telegram_bot_token=telegram.token, telegram_api_url=telegram.url, telegram_webhook_secret=SECRET,
            admin_tokens=(AdminToken("ops", TOKEN),), instance_id="test-serve",
        )  # fmt: skip
        gateway = Gateway(settings, frozenset(RoleName))
        await gateway.start()
        try:
            assert gateway.address is not None
            assert await TelegramUser(http, gateway.address, 5353, 100).say("ask") == 200
            await telegram.wait_for_calls(1, method="sendMessage", ok=True)
            assert telegram.calls_to("sendMessage", ok=True)[0].params["text"] == ASKED[0]
            schedule = f"{redis_prefix}:{{timers:"
            assert any(schedule in key for key in await keys_naming(redis_url, redis_prefix, "5353")), (
                "the pending timeout's schedule entry names the user"
            )
            status, erased = await Admin(http, gateway.address).call("DELETE", "/users/telegram/5353")
            assert status == 200, erased
            assert erased["erased"]["records"] == {"timers": 1}
            assert await keys_naming(redis_url, redis_prefix, "5353") == []
        finally:
            await gateway.stop()
            assert isinstance(gateway.bus, RabbitBus)
            await delete_topology(amqp_url, gateway.bus.topology)
