"""``gateway chat``: the stories in the terminal, through the same worker, bus and mailer as production.

One line in, the bot's replies out, so piped input works too. Each line waits for its whole turn (the
worker handled it, its replies were printed, its emails sent) before the next is read; at the end of input
the process exits 0.

Timers fire in real time (a timeout's nudge is printed unprompted while the terminal waits), and
``/wait 10m`` skips time: every timer due meanwhile fires at its due time, in order, before the next line
is read. The session's expiry follows the same clock, so ``/wait 31m`` also ends a 30-minute session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import sys
import time

from channels.console import ConsoleChannel
from gateway.app.process import Gateway, report_startup_error
from gateway.app.roles.base import RoleName, StartupError
from gateway.core.bus.base import Envelope, Topic
from gateway.core.bus.memory import MemoryBus
from gateway.core.durations import parse_duration
from gateway.core.schedule.memory import MemorySchedule
from gateway.core.schema import Inbound
from gateway.core.settings import Settings
from gateway.core.store.memory import MemoryStore
from worker.timers.simulation import pass_time

PROMPT = "> "
WAIT = "/wait"


class ShiftedClock:
    """The wall clock, plus the time skipped with ``/wait``."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def set_to(self, now: float) -> None:
        self.offset += max(0.0, now - self())


async def chat(settings: Settings, *, user: str) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    interactive = sys.stdin.isatty()
    console = ConsoleChannel(lambda text: print(text, flush=True))
    # Always in-process, whatever broker and Redis the environment names (a shared .env, say): the
    # terminal conversation is a designer's sandbox, and waiting for a turn needs the embedded bus.
    settings = dataclasses.replace(settings, amqp_url=None, redis_url=None)
    bus = MemoryBus(partitions=settings.partitions, max_attempts=settings.max_attempts)
    clock = ShiftedClock()
    gateway = Gateway(
        settings,
        frozenset(RoleName),
        channels=[console],
        serve_http=False,
        bus=bus,
        store=MemoryStore(processed_ttl=settings.processed_ttl, clock=clock),
        schedule=MemorySchedule(clock=clock),
        clock=clock,
    )
    try:
        await gateway.start()
    except StartupError as exc:
        return report_startup_error(exc)
    if settings.smtp is None:
        print(f"(emails are written to {settings.outbox}/)", file=sys.stderr)
    loop = asyncio.get_running_loop()
    session = f"{int(time.time())}"
    try:
        for n in itertools.count():
            if interactive:
                print(PROMPT, end="", flush=True)
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            if text.split(maxsplit=1)[0] == WAIT:
                await skip_time(gateway, bus, clock, text)
                continue
            message = Inbound(
                id=f"console:{user}:{session}:{n}",
                channel="console",
                chat=user,
                user=user,
                channel_message_id=str(n),
                text=text,
                button=console.press(text),
            )
            await bus.publish(
                Topic.INBOUND, [Envelope(message.to_json(), message.id, str(message.conversation))]
            )
            await bus.join()
    finally:
        await gateway.stop()
    return 0


async def skip_time(gateway: Gateway, bus: MemoryBus, clock: ShiftedClock, command: str) -> None:
    """``/wait DURATION``: time passes at once; the timers due meanwhile fire in order."""
    try:
        seconds = parse_duration(command[len(WAIT) :].strip())
    except ValueError:
        print(f"usage: {WAIT} DURATION, such as {WAIT} 10m (units s, m, h, d)", file=sys.stderr)
        return
    assert gateway.worker is not None
    poller = gateway.worker.poller
    await pass_time(poller, clock, clock() + seconds, bus.join)
    poller.wake()  # its next due time is now closer on the shifted clock
    print(f"({command[len(WAIT) :].strip()} later)", file=sys.stderr)
