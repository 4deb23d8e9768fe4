"""A timer's message reaches the web chat like any reply: the example support story nudges an unanswered
question after 10 minutes (simulated), and the browser that asked gets the nudge on its socket."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from gateway.app.process import Gateway
from gateway.app.roles.base import RoleName
from gateway.core.bus.memory import MemoryBus
from gateway.core.schedule.memory import MemorySchedule
from gateway.core.store.memory import MemoryStore
from tests.support.timers import Clock
from tests.support.webchat import Browser, settings_for
from worker.timers.simulation import pass_time

NUDGE = "Are you still there? Tell us what went wrong and we'll open a ticket."


async def test_a_timeout_nudge_is_pushed_to_the_browser(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    clock, bus = Clock(), MemoryBus(partitions=4)
    gateway = Gateway(
        settings_for(tmp_path),
        frozenset(RoleName),
        bus=bus,
        store=MemoryStore(clock=clock),
        schedule=MemorySchedule(clock=clock),
        clock=clock,
    )
    await gateway.start()
    try:
        assert gateway.address is not None and gateway.worker is not None
        browser = Browser(http, gateway.address)
        await browser.open()
        await browser.say("help")
        assert await browser.next_replies(1) == ["What can we help you with?"]
        await pass_time(gateway.worker.poller, clock, clock() + 600, bus.join)
        assert await browser.next_replies(1) == [NUDGE]
        await browser.say("The app crashes")
        assert (await browser.next_replies(1))[0].startswith("Thanks!")
        await browser.close()
    finally:
        await gateway.stop()
