"""The private dovecot of ``tests/support/imap.py`` works the way the inbox will use it, with aioimaplib:
login, SELECT, UID SEARCH UNSEEN, UID FETCH, \\Seen, IDLE pushes, and imaps:// with a trusted certificate."""

from __future__ import annotations

import asyncio
import imaplib
import ssl
import time
from email.message import EmailMessage

import aioimaplib
import pytest

from tests.support.imap import ImapAccount, ImapServer

PUSH_DEADLINE = 10.0  # dovecot tells an IDLE client of new mail about 0.5 s after it arrives


def reply(subject: str, body: str = "Thanks, looking into it.") -> bytes:
    message = EmailMessage()
    message["From"] = "agent@support.example.com"
    message["To"] = "desk+token@bot.example.com"
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@support.example.com>"
    message.set_content(body)
    return message.as_bytes()


async def logged_in(server: ImapServer, account: ImapAccount) -> aioimaplib.IMAP4:
    client: aioimaplib.IMAP4
    if server.tls:
        client = aioimaplib.IMAP4_SSL(host=server.host, port=server.port, ssl_context=server.ssl_context())
    else:
        client = aioimaplib.IMAP4(host=server.host, port=server.port)
    await client.wait_hello_from_server()
    answer = await client.login(account.user, account.password)
    assert answer.result == "OK", answer
    return client


def uids_of(answer: aioimaplib.Response) -> list[int]:
    assert answer.result == "OK", answer
    return [int(uid) for uid in answer.lines[0].split()]


def literal_of(answer: aioimaplib.Response) -> bytes:
    assert answer.result == "OK", answer
    return next(bytes(line) for line in answer.lines if isinstance(line, bytearray))


def test_urls_and_fresh_accounts(imap_server: ImapServer, imap_account: ImapAccount) -> None:
    assert imap_server.running
    assert imap_server.url == (
        f"imap://{imap_server.user}:{imap_server.password}@127.0.0.1:{imap_server.port}/INBOX"
    )
    assert imap_account.url.startswith(f"imap://{imap_account.user}:")
    assert imap_account.user != imap_server.user
    assert imap_account.messages() == [] and imap_account.unseen_count() == 0
    assert imap_server.start_seconds is not None and imap_server.start_seconds < 10


async def test_search_fetch_and_mark_seen(imap_server: ImapServer, imap_account: ImapAccount) -> None:
    first = imap_account.append(reply("first"))
    second = imap_account.append(reply("second"))
    assert imap_account.unseen_count() == 2

    client = await logged_in(imap_server, imap_account)
    try:
        selected = await client.select("INBOX")
        assert selected.result == "OK" and b"2 EXISTS" in selected.lines, selected
        assert uids_of(await client.uid_search("UNSEEN")) == [first, second]

        # BODY.PEEK[] reads without marking seen: what a reply that is refused needs (it stays unread).
        peeked = literal_of(await client.uid("fetch", str(first), "(BODY.PEEK[])"))
        assert b"Subject: first" in peeked
        assert imap_account.unseen_count() == 2
        # An explicit \Seen once the reply is handled.
        stored = await client.uid("store", str(first), "+FLAGS.SILENT", r"(\Seen)")
        assert stored.result == "OK", stored
        assert "\\Seen" in imap_account.flags(first)
        assert imap_account.unseen_count() == 1
        # Fetching RFC822 (or BODY[]) from a read-write mailbox marks the message seen by itself.
        fetched = literal_of(await client.uid("fetch", str(second), "(RFC822)"))
        assert b"Subject: second" in fetched and b"Message-ID: <second@support.example.com>" in fetched
        assert imap_account.unseen_count() == 0
        assert uids_of(await client.uid_search("UNSEEN")) == []
    finally:
        await client.logout()
    assert [message.uid for message in imap_account.messages()] == [first, second]
    assert all("\\Seen" in message.flags for message in imap_account.messages())


async def test_idle_is_told_of_new_mail(imap_server: ImapServer, imap_account: ImapAccount) -> None:
    client = await logged_in(imap_server, imap_account)
    try:
        assert client.has_capability("IDLE")
        await client.select("INBOX")
        idle = await client.idle_start(timeout=60)
        began = time.monotonic()
        uid = await asyncio.to_thread(imap_account.append, reply("while idle"))  # another connection
        pushes: list[bytes] = []
        deadline = began + PUSH_DEADLINE
        while not any(line.endswith(b" EXISTS") for line in pushes):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no EXISTS within {PUSH_DEADLINE} s, only {pushes}"
            pushes += [
                line for line in await client.wait_server_push(timeout=remaining) if isinstance(line, bytes)
            ]
        assert b"1 EXISTS" in pushes
        client.idle_done()
        done = await asyncio.wait_for(idle, PUSH_DEADLINE)
        assert done.result == "OK", done
        assert uids_of(await client.uid_search("UNSEEN")) == [uid]
    finally:
        await client.logout()


async def test_wrong_password_is_refused(imap_server: ImapServer, imap_account: ImapAccount) -> None:
    client = aioimaplib.IMAP4(host=imap_server.host, port=imap_server.port)
    await client.wait_hello_from_server()
    answer = await client.login(imap_account.user, "not-" + imap_account.password)
    assert answer.result == "NO", answer
    await client.logout()


def test_restart_keeps_mail_and_url(tmp_path_factory: pytest.TempPathFactory) -> None:
    with ImapServer(tmp_path_factory.mktemp("imap-restart")) as server:
        url = server.url
        uid = server.append(reply("before the restart"))
        server.restart()
        assert server.running and server.url == url
        assert [message.uid for message in server.messages()] == [uid]
        assert server.unseen_count() == 1
    assert not server.running and server.runtime_dir is None


async def test_imaps(imaps_server: ImapServer, imaps_account: ImapAccount) -> None:
    assert imaps_account.url.startswith(f"imaps://{imaps_account.user}:")
    uid = imaps_account.append(reply("over tls"))
    client = await logged_in(imaps_server, imaps_account)
    try:
        await client.select("INBOX")
        assert uids_of(await client.uid_search("UNSEEN")) == [uid]
    finally:
        await client.logout()


async def test_imaps_certificate_is_checked(imaps_server: ImapServer) -> None:
    untrusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, and trusts no CA at all
    client = aioimaplib.IMAP4_SSL(host=imaps_server.host, port=imaps_server.port, ssl_context=untrusting)
    with pytest.raises(ssl.SSLCertVerificationError):
        await client.wait_hello_from_server()


def test_ssl_cert_file_makes_the_default_context_trust_it(
    imaps_server: ImapServer, imaps_account: ImapAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How a gateway under test is told to trust the server: SSL_CERT_FILE, which
    ssl.create_default_context() reads (aioimaplib.IMAP4_SSL's default context is one)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(imaps_server.cert_path))
    context = ssl.create_default_context()
    conn = imaplib.IMAP4_SSL(imaps_server.host, imaps_server.port, ssl_context=context, timeout=10)
    try:
        assert conn.login(imaps_account.user, imaps_account.password)[0] == "OK"
    finally:
        conn.logout()
