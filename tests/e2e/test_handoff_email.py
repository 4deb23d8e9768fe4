"""A Telegram user handed over to an email desk and back, through separate `serve`, `worker`, `mailer` and
`inbox` processes on the real RabbitMQ and Redis, a real SMTP server (aiosmtpd) for the tickets and a real
IMAP server (dovecot) for one of the inboxes: the ticket and its thread reach the desk, a person's reply
reaches the user once (sent twice, or with a worker killed -9 on the way), every refused reply reaches
nobody, and `#bot` hands back to the `resume` story."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import aiohttp
import aiosmtplib
import pytest

from bench.common import free_port
from gateway.core.desk import token_of_address
from tests.support.deployment import SECRET, TelegramUser, address_of, sent_texts
from tests.support.fakes import FakeTelegram
from tests.support.imap import ImapAccount, ImapServer
from tests.support.processes import GatewayProcess, Start
from tests.support.smtp_sink import SmtpSink

INBOX = "desk@bot.example.com"
AGENT = "ann@support.example.com"
STORIES = """\
bot:
  fallback: fallback
stories:
  fallback:
    steps:
      - id: sorry
        actions:
          - message: Sorry?
  human:
    triggers: [human]
    steps:
      - id: ask
        actions:
          - message: What is the problem?
        next: hand
      - id: hand
        actions:
          - set_session: {Problem: "{{@message}}"}
          - message: Passing you to a person.
          - handoff:
              desk: email
              to: support@example.com
              subject: "Chat about {{@session.Problem}}"
              summary: "Problem: {{@session.Problem}}"
              until: 2h
              resume: csat
  csat:
    steps:
      - id: rate
        actions:
          - message: "Back with the bot. Was {{@session.Problem}} solved?"
"""
GMAIL_LAYOUT = """\
{answer}

-- 
Ann
Support, Example Inc.

On Tue, 1 Dec 2026 at 16:00, Gateway <{address}> wrote:
> Problem: {problem}
>
> Reply to this email to answer the user.
"""  # noqa: W291 - "-- " with its space is the signature delimiter


@pytest.fixture(scope="module")
def imap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapServer]:
    with ImapServer(tmp_path_factory.mktemp("imap-e2e")) as server:
        yield server


@pytest.fixture
def desk_env(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "desk-stories"
    folder.mkdir()
    (folder / "main.yml").write_text(STORIES)
    return {
        "GATEWAY_SECRET_KEY": "e2e-desk-key",
        "GATEWAY_INBOX_ADDRESS": INBOX,
        "GATEWAY_INBOX_PORT": str(free_port()),
        "GATEWAY_STAFF": "@support.example.com",
        "GATEWAY_STORIES": str(folder),
        "GATEWAY_RATE_LIMITS": "false",
    }


def staff_reply(
    ticket: EmailMessage, answer: str, *, sender: str = AGENT, to: str | None = None
) -> EmailMessage:
    """A person's reply to ``ticket`` as Gmail writes it: answer, signature, the quoted ticket."""
    reply = EmailMessage()
    reply["From"] = f"Ann <{sender}>"
    reply["To"] = to if to is not None else str(ticket["Reply-To"])
    reply["Subject"] = f"Re: {ticket['Subject']}"
    reply["Message-ID"] = make_msgid(domain="support.example.com")
    reply["In-Reply-To"] = str(ticket["Message-ID"])
    reply.set_content(GMAIL_LAYOUT.format(answer=answer, address=ticket["Reply-To"], problem="late"))
    return reply


async def send(port: int, mail: EmailMessage) -> int:
    """The inbox's SMTP answer to ``mail``: 250, the refusal's code, or 0 with no answer at all."""
    try:
        await aiosmtplib.send(mail, hostname="127.0.0.1", port=port)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return exc.recipients[0].code
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code
    except aiosmtplib.SMTPServerDisconnected:
        return 0  # the inbox went away before answering
    return 250


async def hand_over(user: TelegramUser, telegram: FakeTelegram, smtp: SmtpSink) -> EmailMessage:
    assert await user.say("human") == 200
    assert await user.say("late") == 200
    await telegram.wait_for_calls(2, method="sendMessage", ok=True)
    [ticket] = await smtp.wait_for(1)
    return ticket


async def test_an_email_desk_answers_a_telegram_user_and_hands_back(
    start_role: Start, telegram: FakeTelegram, smtp: SmtpSink, desk_env: dict[str, str]
) -> None:
    serve = await start_role("serve", **desk_env)
    await start_role("worker", **desk_env)
    await start_role("mailer", **desk_env)
    inbox = await start_role("inbox", **desk_env)
    port = int(desk_env["GATEWAY_INBOX_PORT"])
    async with aiohttp.ClientSession() as http:
        user = TelegramUser(http, await address_of(serve), chat_id=5151, first_update=9200)
        ticket = await hand_over(user, telegram, smtp)
        assert ticket["To"] == "support@example.com" and ticket["Subject"] == "Chat about late"
        token = token_of_address(str(ticket["Reply-To"]), INBOX)
        assert token is not None
        assert "Problem: late" in ticket.get_content() and "user: human" in ticket.get_content()

        # The user writes on: a message in the ticket's thread, nothing from the bot.
        assert await user.say("hello? anyone?") == 200
        follow_up = (await smtp.wait_for(2))[1]
        assert (
            follow_up["In-Reply-To"] == ticket["Message-ID"]
            and follow_up["References"] == ticket["Message-ID"]
        )
        assert "hello? anyone?" in follow_up.get_content()

        answer = staff_reply(ticket, "Hi, Ann here. It ships tomorrow.")
        assert await send(port, answer) == 250
        await telegram.wait_for_calls(3, method="sendMessage", ok=True)
        assert await send(port, answer) == 250  # the same reply again (a retrying mail server): once

        forged = str(ticket["Reply-To"]).replace(token, token[:-2] + ("aa" if token[-2:] != "aa" else "bb"))
        assert await send(port, staff_reply(ticket, "forged", to=forged)) == 550
        assert await send(port, staff_reply(ticket, "outsider", sender="eve@example.net")) == 550
        assert await send(port, staff_reply(ticket, "Anything else?\n#bot")) == 250
        await telegram.wait_for_calls(5, method="sendMessage", ok=True)
        assert await send(port, staff_reply(ticket, "too late")) == 550  # handed back already

    assert sent_texts(telegram, 5151) == [
        "What is the problem?",
        "Passing you to a person.",
        "Hi, Ann here. It ships tomorrow.",
        "Anything else?",
        "Back with the bot. Was late solved?",
    ]
    log = inbox.output()
    for reason in ("bad_token", "not_staff", "handed_back"):
        assert reason in log, reason


async def kill_when_frozen(worker: GatewayProcess, point: str) -> str:
    message_id = (await worker.wait_for(rf"FROZEN {point} (\S+)")).group(1)
    worker.signal(signal.SIGKILL)
    assert await worker.wait(10) == -signal.SIGKILL
    return message_id


async def test_a_worker_killed_while_passing_a_reply_on_sends_it_once(
    start_role: Start, telegram: FakeTelegram, smtp: SmtpSink, desk_env: dict[str, str]
) -> None:
    """Killed after committing the answer, then after publishing it: the user gets it once."""
    serve = await start_role("serve", **desk_env)
    first = await start_role("worker", **desk_env)
    await start_role("mailer", **desk_env)
    await start_role("inbox", **desk_env)
    port = int(desk_env["GATEWAY_INBOX_PORT"])
    async with aiohttp.ClientSession() as http:
        user = TelegramUser(http, await address_of(serve), chat_id=5252, first_update=9300)
        ticket = await hand_over(user, telegram, smtp)
        first.signal(signal.SIGTERM)
        assert await first.wait(15) == 0

        a = await start_role("worker", wait_ready=False, GATEWAY_TEST_FREEZE_AT="after_commit", **desk_env)
        assert await send(port, staff_reply(ticket, "Your parcel is at the door.")) == 250
        staff_message = await kill_when_frozen(a, "after_commit")
        assert staff_message.startswith("mail:")
        b = await start_role(
            "worker", wait_ready=False, GATEWAY_TEST_FREEZE_AT=f"after_publish@{staff_message}", **desk_env
        )
        assert await kill_when_frozen(b, "after_publish") == staff_message
        c = await start_role("worker", **desk_env)
        await c.wait_for("committed before; re-publishing")
        assert await user.say("thanks!") == 200  # still handed over: to the desk, after the answer
        await smtp.wait_for(2)
    assert sent_texts(telegram, 5252) == [
        "What is the problem?",
        "Passing you to a person.",
        "Your parcel is at the door.",
    ]


async def test_an_imap_inbox_passes_a_reply_on_once_and_marks_it_seen(
    start_role: Start,
    telegram: FakeTelegram,
    smtp: SmtpSink,
    desk_env: dict[str, str],
    imap_server: ImapServer,
) -> None:
    account: ImapAccount = imap_server.add_user()
    imap_env = {**desk_env, "GATEWAY_IMAP_URL": account.url}
    serve = await start_role("serve", **imap_env)
    await start_role("worker", **imap_env)
    await start_role("mailer", **imap_env)
    inbox = await start_role("inbox", **imap_env)
    async with aiohttp.ClientSession() as http:
        user = TelegramUser(http, await address_of(serve), chat_id=5353, first_update=9400)
        ticket = await hand_over(user, telegram, smtp)
        refused = account.append(bytes(staff_reply(ticket, "from outside", sender="eve@example.net")))
        uid = account.append(bytes(staff_reply(ticket, "Read from the mailbox.")))
        await telegram.wait_for_calls(3, method="sendMessage", ok=True)
        await inbox.wait_for("not_staff")
    assert sent_texts(telegram, 5353)[2:] == ["Read from the mailbox."]
    assert "\\Seen" in account.flags(uid)
    assert "\\Seen" not in account.flags(refused)


async def test_gateway_run_alone_hands_over_to_the_email_desk_and_back(
    tmp_path: Path, telegram: FakeTelegram, smtp: SmtpSink, desk_env: dict[str, str]
) -> None:
    """Embedded: one `gateway run` (in-process bus and store, its own inbox) does the whole loop."""
    env = {
        **desk_env,
        "GATEWAY_AMQP_URL": "",
        "GATEWAY_REDIS_URL": "",
        "GATEWAY_SMTP_URL": smtp.url,
        "GATEWAY_PORT": "0",
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }
    gateway = await GatewayProcess("run", env=env).start()
    try:
        await gateway.wait_for(r"INFO .*: ready$")
        port = int(desk_env["GATEWAY_INBOX_PORT"])
        async with aiohttp.ClientSession() as http:
            user = TelegramUser(http, await address_of(gateway), chat_id=5454, first_update=9500)
            ticket = await hand_over(user, telegram, smtp)
            assert await send(port, staff_reply(ticket, "Embedded answer.")) == 250
            await telegram.wait_for_calls(3, method="sendMessage", ok=True)
            assert await send(port, staff_reply(ticket, "#bot")) == 250
            await telegram.wait_for_calls(4, method="sendMessage", ok=True)
    finally:
        await gateway.stop()
    assert sent_texts(telegram, 5454) == [
        "What is the problem?",
        "Passing you to a person.",
        "Embedded answer.",
        "Back with the bot. Was late solved?",
    ]


async def test_an_inbox_killed_after_passing_a_reply_on_before_its_250_sends_it_once(
    start_role: Start, telegram: FakeTelegram, smtp: SmtpSink, desk_env: dict[str, str]
) -> None:
    """The sending server got no 250, so it sends the reply again, to the inbox started next: the
    user still gets it once (same inbound id: the worker finds its commit, the deliverer its record)."""
    serve = await start_role("serve", **desk_env)
    await start_role("worker", **desk_env)
    await start_role("mailer", **desk_env)
    doomed = await start_role("inbox", GATEWAY_TEST_FREEZE_AT="after_publish", **desk_env)
    port = int(desk_env["GATEWAY_INBOX_PORT"])
    async with aiohttp.ClientSession() as http:
        user = TelegramUser(http, await address_of(serve), chat_id=5555, first_update=9600)
        ticket = await hand_over(user, telegram, smtp)
        reply = staff_reply(ticket, "Sent once, whatever happens.")
        attempt = asyncio.create_task(send(port, reply))
        await kill_when_frozen(doomed, "after_publish")
        assert await attempt != 250, "no 250 from a killed inbox"
        await telegram.wait_for_calls(3, method="sendMessage", ok=True)  # it was published before the kill
        await start_role("inbox", **desk_env)
        assert await send(port, reply) == 250
        assert await user.say("thanks") == 200  # to the desk, after whatever the second copy did
        await smtp.wait_for(2)
    assert sent_texts(telegram, 5555) == [
        "What is the problem?",
        "Passing you to a person.",
        "Sent once, whatever happens.",
    ]
