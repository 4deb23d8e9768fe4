"""The IMAP inbox on a real dovecot (``GATEWAY_IMAP_URL``), publishing on RabbitMQ with the Redis store:
a reply put into the mailbox (IMAP APPEND, as a delivery would) is passed on once and marked ``\\Seen``; a
refused one stays unread, is not passed on and is logged once; a restart passes nothing on twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from mailer.inbox.imap_reader import ImapInbox, ImapUrl
from mailer.inbox.service import Inbox
from tests.support.imap import ImapAccount, ImapServer
from tests.support.inbox import GMAIL_BODY, OUTLOOK_BODY, Inbounds, staff_reply

SEEN = "\\Seen"
Reader = Callable[[], ImapInbox]


@pytest.fixture
async def reader(inbox: Inbox, imap_account: ImapAccount) -> AsyncIterator[Reader]:
    """``reader()`` starts an IMAP inbox on the test's mailbox; every one started is stopped at the end."""
    started: list[ImapInbox] = []

    def start() -> ImapInbox:
        one = ImapInbox(inbox, inbox.store, imap_account.url, retry_seconds=0.2)
        started.append(one)
        asyncio.get_running_loop().create_task(one.start())
        return one

    yield start
    for one in started:
        await stop(one)


async def stop(reader: ImapInbox) -> None:
    await reader.stop_intake()
    await reader.drain(10)
    await reader.close()


async def append(account: ImapAccount, raw: bytes) -> int:
    return await asyncio.to_thread(account.append, raw)


def refusal_lines(caplog: pytest.LogCaptureFixture, message_id: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if "refused" in r.getMessage() and message_id in r.getMessage()
    ]


def test_the_url_names_server_account_and_mailbox() -> None:
    url = ImapUrl.parse("imaps://desk%40bot.example.com:p%3Ass@mail.example.com/Support%2FReplies")
    assert (url.tls, url.host, url.port, url.user, url.password, url.mailbox) == (
        True, "mail.example.com", 993, "desk@bot.example.com", "p:ss", "Support/Replies",
    )  # fmt: skip
    assert ImapUrl.parse("imap://u:p@h").port == 143 and ImapUrl.parse("imap://u:p@h").mailbox == "INBOX"
    assert "p:ss" not in str(url)


async def test_a_reply_appended_is_passed_on_once_and_marked_seen(
    reader: Reader, imap_account: ImapAccount, inbounds: Inbounds
) -> None:
    one = reader()
    await one.wait_sweeps(1)  # logged in and looked at the empty mailbox; now waiting in IDLE
    uid = await append(imap_account, staff_reply(GMAIL_BODY).as_bytes())
    [inbound] = await inbounds.until(1)
    assert inbound.kind == "staff" and inbound.text.startswith("Hi Ada,\n\nyour parcel")
    assert await one.wait_handled(uid)
    assert SEEN in imap_account.flags(uid)
    # A second reply, in the other layout, while the reader idles.
    second = await append(imap_account, staff_reply(OUTLOOK_BODY).as_bytes())
    _, outlook = await inbounds.until(2)
    assert outlook.text.startswith("Hello Ada,") and "Original Message" not in outlook.text
    assert await one.wait_handled(second)
    assert imap_account.unseen_count() == 0 and len(inbounds.received) == 2


async def test_a_refused_reply_stays_unread_and_is_logged_once(
    reader: Reader, imap_account: ImapAccount, inbounds: Inbounds, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.inbox")
    one = reader()
    await one.wait_sweeps(1)
    refused = await append(
        imap_account, staff_reply(sender="mallory@evil.test", message_id="<evil@evil.test>").as_bytes()
    )
    marker = await append(imap_account, staff_reply("first marker").as_bytes())
    assert not await one.wait_handled(refused)
    assert await one.wait_handled(marker)
    # Another sweep (for new mail) finds the refused one still unread and leaves it alone, unlogged.
    later = await append(imap_account, staff_reply("second marker").as_bytes())
    assert await one.wait_handled(later)
    assert [i.text for i in await inbounds.until(2)] == ["first marker", "second marker"]
    assert SEEN not in imap_account.flags(refused)
    assert imap_account.uids(criteria="UNSEEN") == [refused]
    [line] = refusal_lines(caplog, "evil@evil.test")
    assert "not_staff" in line and "mallory@evil.test" in line


async def test_a_restart_passes_nothing_on_twice(
    reader: Reader, imap_account: ImapAccount, inbounds: Inbounds, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.inbox")
    reply = staff_reply(message_id="<once@support.example.com>").as_bytes()
    refused = await append(
        imap_account, staff_reply(sender="x@evil.test", message_id="<no@evil.test>").as_bytes()
    )
    uid = await append(imap_account, reply)
    first = reader()
    assert await first.wait_handled(uid)
    await inbounds.until(1)
    await stop(first)
    # As if the reader had died between the publish and the flag: the reply is unread again; and the
    # same reply arrives a second time (another UID, the same Message-ID).
    with imap_account.session() as conn:
        conn.select("INBOX")
        conn.uid("STORE", str(uid), "-FLAGS", "(\\Seen)")
    again = await append(imap_account, reply)
    marker = await append(imap_account, staff_reply("after the restart").as_bytes())
    second = reader()
    assert await second.wait_handled(uid) and await second.wait_handled(again)
    assert await second.wait_handled(marker)
    assert [i.text.split(",")[0] for i in await inbounds.until(2)] == ["Hi Ada", "after the restart"]
    assert imap_account.uids(criteria="UNSEEN") == [refused]
    assert refused not in second.handled  # remembered in the store: not looked at (nor logged) again
    assert len(refusal_lines(caplog, "no@evil.test")) == 1


async def test_the_reader_comes_back_after_the_server_restarts(
    inbox: Inbox, imap_server: ImapServer, inbounds: Inbounds, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with ImapServer(tmp_path_factory.mktemp("imap-restart")) as server:
        one = ImapInbox(inbox, inbox.store, server.url, retry_seconds=0.1, max_backoff=0.5)
        await one.start()
        try:
            await one.wait_sweeps(1)
            server.restart()
            uid = await asyncio.to_thread(server.append, staff_reply("after the server restart").as_bytes())
            [inbound] = await inbounds.until(1, timeout=30)
            assert inbound.text == "after the server restart"
            assert await one.wait_handled(uid)
        finally:
            await stop(one)


async def test_imaps_with_the_servers_certificate_trusted(
    inbox: Inbox,
    imaps_server: ImapServer,
    imaps_account: ImapAccount,
    inbounds: Inbounds,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(imaps_server.cert_path))  # what a deployment's CA bundle does
    one = ImapInbox(inbox, inbox.store, imaps_account.url)
    await one.start()
    try:
        uid = await append(imaps_account, staff_reply("over TLS").as_bytes())
        [inbound] = await inbounds.until(1)
        assert inbound.text == "over TLS"
        assert await one.wait_handled(uid)
        assert SEEN in imaps_account.flags(uid)
    finally:
        await stop(one)
