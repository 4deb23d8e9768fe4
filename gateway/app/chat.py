"""``gateway chat``: the stories in the terminal, through the same worker, bus and mailer as production.

One line in, the bot's replies out, so piped input works too. Each line waits for its whole turn (the
worker handled it, its replies were printed, its emails sent) before the next is read; at the end of input
the process exits 0.

Timers fire in real time (a timeout's nudge is printed unprompted while the terminal waits), and
``/wait 10m`` skips time: every timer due meanwhile fires at its due time, in order, before the next line
is read. The session's expiry follows the same clock, so ``/wait 31m`` also ends a 30-minute session.

Support desks (docs/support-desk.md): the person at the terminal also plays the desk's staff. What a
handoff sends to the desk is printed as ``[desk] `` lines; ``/agent TEXT`` is a person's answer (the
user sees it as ``(Agent) TEXT``), ``/agent #bot`` hands back, and ``\n`` in it starts a new line
(``/agent Done!\n#bot``). The ``until`` of a handoff passes with ``/wait`` like any timer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import sys
import time

from gateway.app.chat_desk import DeskShowingTransport, SlackDeskConsole, UserConsole
from gateway.app.process import Gateway, report_startup_error
from gateway.app.roles.base import RoleName, StartupError
from gateway.core.bus.base import Envelope, Topic
from gateway.core.bus.memory import MemoryBus
from gateway.core.desk import HANDOFF_RECORD
from gateway.core.durations import parse_duration
from gateway.core.schedule.memory import MemorySchedule
from gateway.core.schema import ConversationKey, Inbound
from gateway.core.settings import Settings
from gateway.core.store.base import Store
from gateway.core.store.memory import MemoryStore
from mailer.factory import build_transport
from mailer.service import Mailer
from worker.timers.simulation import pass_time

PROMPT = "> "
WAIT = "/wait"
AGENT = "/agent"
AGENT_NAME = "Agent"  # the name the user sees on a person's answer
CHAT_INBOX_ADDRESS = "desk@chat.localhost"  # the email desk's reply address when none is set


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
    console = UserConsole(_say)
    # Always in-process, whatever broker and Redis the environment names (a shared .env, say): the
    # terminal conversation is a designer's sandbox, and waiting for a turn needs the embedded bus.
    # An email desk's tickets get a reply address even when no inbox is set up (nobody replies to it:
    # the terminal does, with /agent).
    inbox_address = settings.inbox_address or CHAT_INBOX_ADDRESS
    settings = dataclasses.replace(settings, amqp_url=None, redis_url=None, inbox_address=inbox_address)
    bus = MemoryBus(partitions=settings.partitions, max_attempts=settings.max_attempts)
    clock = ShiftedClock()
    store = MemoryStore(processed_ttl=settings.processed_ttl, clock=clock)
    gateway = Gateway(
        settings,
        frozenset({RoleName.SERVE, RoleName.WORKER}),  # and the mailer below, which prints the desk's emails
        channels=[console, SlackDeskConsole(_say)],
        serve_http=False,
        bus=bus,
        store=store,
        schedule=MemorySchedule(clock=clock),
        clock=clock,
    )
    mailer = Mailer(
        bus,
        store,
        DeskShowingTransport(build_transport(settings), inbox_address, _say),
        mail_from=settings.mail_from,
        max_recipients=settings.max_recipients,
        metrics=gateway.metrics,
    )
    try:
        await gateway.start()
    except StartupError as exc:
        return report_startup_error(exc)
    await mailer.start()
    if settings.smtp is None:
        print(f"(emails are written to {settings.outbox}/)", file=sys.stderr)
    loop = asyncio.get_running_loop()
    session = f"{int(time.time())}"
    key = ConversationKey("console", user, user)
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
            if text.split(maxsplit=1)[0] == AGENT:
                answer = agent_answer(text, key, f"console:{user}:{session}:agent:{n}", clock())
                if answer is not None and await handed_over(store, key):
                    await bus.publish(Topic.INBOUND, [Envelope(answer.to_json(), answer.id, str(key))])
                    await bus.join()
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
        await mailer.stop(1.0)
        await gateway.stop()
    return 0


def _say(text: str) -> None:
    print(text, flush=True)


def agent_answer(command: str, key: ConversationKey, message_id: str, now: float) -> Inbound | None:
    """``/agent TEXT``: a person's answer from the desk of ``key`` (``\\n`` starts a new line); None,
    with the usage on stderr, when there is no text."""
    text = command[len(AGENT) :].strip().replace("\\n", "\n")
    if not text:
        print(
            f"usage: {AGENT} TEXT (a person's answer from the desk); {AGENT} #bot hands back", file=sys.stderr
        )
        return None
    return Inbound(
        id=message_id,
        channel=key.channel,
        chat=key.chat,
        user=key.user,
        text=text,
        sent_at=now,
        user_name=AGENT_NAME,
        kind="staff",
    )


async def handed_over(store: Store, key: ConversationKey) -> bool:
    """Whether a person has the conversation now; if not, says so on stderr (an answer would be dropped)."""
    snapshot = await store.load(key, "-", (HANDOFF_RECORD,))
    if HANDOFF_RECORD in snapshot.records:
        return True
    print("(no person has this conversation: a story's handoff action hands it over first)", file=sys.stderr)
    return False


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
