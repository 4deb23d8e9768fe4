"""``gateway chat``: the stories in the terminal, through the same worker, bus and mailer as production.

One line in, the bot's replies out, so piped input works too. Each line waits for its whole turn (the
worker handled it, its replies were printed, its emails sent) before the next is read; at the end of input
the process exits 0.
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
from gateway.core.schema import Inbound
from gateway.core.settings import Settings

PROMPT = "> "


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
    gateway = Gateway(settings, frozenset(RoleName), channels=[console], serve_http=False, bus=bus)
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
