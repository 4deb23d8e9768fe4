"""Staff replies read from an IMAP mailbox (``GATEWAY_IMAP_URL``, aioimaplib) instead of received by SMTP.

The reader logs in, selects the mailbox and sweeps it: every UNSEEN message, in UID order, is read with
``BODY.PEEK[]`` (reading does not mark it) and handed to :class:`~mailer.inbox.service.Inbox`. A reply
passed on now or before gets ``\\Seen`` only after its publish is confirmed; a refused one stays unread
for a person to look at, and its UID is remembered in the store (per mailbox and UIDVALIDITY), so that it
is logged once, not at every sweep. While the broker or the store is away the sweep stops where it is and
is tried again after ``retry_seconds``, the rest left unseen. Between sweeps the reader waits in IDLE
(told of new mail at once) or, on a server without IDLE, ``poll_seconds``. A lost connection is made
again with backoff, one log line per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aioimaplib

from gateway.core.errors import Unavailable
from gateway.core.store.base import Store
from mailer.inbox.service import Inbox

log = logging.getLogger("gateway.inbox")

REFUSED_NAMESPACE = "inbox-refused-uid"
REFUSED_TTL = 30 * 86400.0  # a refused mail left unread is looked at again (and logged) after this long
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


class ImapError(Exception):
    """The server refused a command (login, select, ...)."""


@dataclass(frozen=True, slots=True)
class ImapUrl:
    """``imap[s]://user:password@host[:port]/MAILBOX`` (mailbox INBOX when left out)."""

    tls: bool
    host: str
    port: int
    user: str
    password: str
    mailbox: str

    @classmethod
    def parse(cls, url: str) -> ImapUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname:
            raise ValueError("GATEWAY_IMAP_URL: use imaps://user:password@host/INBOX (or imap://)")
        tls = parts.scheme == "imaps"
        mailbox = unquote(parts.path.lstrip("/")) or "INBOX"
        return cls(
            tls=tls,
            host=parts.hostname,
            port=parts.port or (993 if tls else 143),
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            mailbox=mailbox,
        )

    def __str__(self) -> str:
        return f"{'imaps' if self.tls else 'imap'}://{self.user}@{self.host}:{self.port}/{self.mailbox}"


def _ok(answer: aioimaplib.Response, what: str) -> aioimaplib.Response:
    if answer.result != "OK":
        raise ImapError(f"{what}: {answer.result} {b' '.join(_text_lines(answer))!r}")
    return answer


def _text_lines(answer: aioimaplib.Response) -> list[bytes]:
    return [line for line in answer.lines if isinstance(line, bytes)]


class ImapInbox:
    """Sweep the mailbox of ``url`` into ``inbox`` until :meth:`stop_intake`."""

    def __init__(
        self,
        inbox: Inbox,
        store: Store,
        url: str,
        *,
        idle_seconds: float = 300.0,
        poll_seconds: float = 30.0,
        retry_seconds: float = 2.0,
        max_backoff: float = 30.0,
        timeout: float = 30.0,
    ) -> None:
        self.inbox = inbox
        self.store = store
        self.url = ImapUrl.parse(url)
        self.idle_seconds = idle_seconds
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.sweeps = 0  # finished sweeps
        self.handled: dict[int, bool] = {}  # UID -> done (marked seen) or refused (left unseen), this run
        self._progress = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: aioimaplib.IMAP4 | None = None
        self._lost = asyncio.Event()  # set when the current connection goes away
        self._refused: set[str] = set()  # this process's cache of REFUSED_NAMESPACE

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="imap-inbox")

    async def stop_intake(self) -> None:
        self._stopping.set()

    async def drain(self, timeout: float) -> None:
        """Let the mail in hand finish (its publish confirmed, its flag set) within ``timeout``."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        await self._logout()

    async def wait_sweeps(self, count: int) -> None:
        """Return once ``count`` sweeps of the mailbox have finished (for tests and benchmarks)."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.sweeps >= count)

    async def wait_handled(self, uid: int) -> bool:
        """Return once message ``uid`` is handled (its flag set, or its refusal remembered): whether it was
        passed on (now or before) and marked seen."""
        async with self._progress:
            await self._progress.wait_for(lambda: uid in self.handled)
        return self.handled[uid]

    async def _progressed(self, uid: int | None = None, done: bool = False) -> None:
        async with self._progress:
            if uid is None:
                self.sweeps += 1
            else:
                self.handled[uid] = done
            self._progress.notify_all()

    # -- the loop ---------------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = self.retry_seconds
        while not self._stopping.is_set():
            try:
                client = await self._connect()
                delay = self.retry_seconds
                await self._until_lost(self._serve(client))
            except (ImapError, aioimaplib.AioImapException, OSError, TimeoutError, ssl.SSLError) as exc:
                reason = str(exc) or repr(exc)
                log.warning("inbox: IMAP %s: %s; connecting again in %.1f s", self.url, reason, delay)
                await self._logout()
                await self._pause(delay)
                delay = min(delay * 2, self.max_backoff)
        await self._logout()

    async def _connect(self) -> aioimaplib.IMAP4:
        url = self.url
        client: aioimaplib.IMAP4
        if url.tls:
            client = aioimaplib.IMAP4_SSL(host=url.host, port=url.port, timeout=self.timeout)
        else:
            client = aioimaplib.IMAP4(host=url.host, port=url.port, timeout=self.timeout)
        self._client = client
        self._lost = asyncio.Event()
        lost = self._lost
        client.protocol.conn_lost_cb = lambda exc: lost.set()  # IMAP4_SSL takes no conn_lost_cb argument
        await client.wait_hello_from_server()
        _ok(await client.login(url.user, url.password), f"login as {url.user}")
        log.info("inbox: reading %s", url)
        return client

    async def _until_lost(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work``; if the connection goes away first (aioimaplib's commands would wait for an answer
        that never comes), cancel it and raise :class:`ConnectionError`. A mail cut off between its publish
        and its flag is passed on again under the same id, and found recorded."""
        task = asyncio.ensure_future(work)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()
            await asyncio.gather(task, lost, return_exceptions=True)
        if not task.cancelled() and task.exception() is None:
            return
        if self._lost.is_set():
            raise ConnectionError("the server closed the connection")
        task.result()  # its own error

    async def _serve(self, client: aioimaplib.IMAP4) -> None:
        selected = _ok(await client.select(self.url.mailbox), f"select {self.url.mailbox}")
        found = next((m for line in _text_lines(selected) if (m := _UIDVALIDITY.search(line))), None)
        validity = found.group(1).decode() if found else "0"
        idle = client.has_capability("IDLE")
        while not self._stopping.is_set():
            complete = await self._sweep(client, validity)
            await self._progressed()
            if self._stopping.is_set():
                return
            if not complete:
                await self._pause(self.retry_seconds)
            elif idle:
                await self._idle(client)
            else:
                await self._pause(self.poll_seconds)
                _ok(await client.noop(), "noop")

    async def _sweep(self, client: aioimaplib.IMAP4, validity: str) -> bool:
        """Hand over every unseen message not refused before; False when stopped by a broker or store
        that is away (the rest stays unseen for the next sweep)."""
        answer = _ok(await client.uid_search("UNSEEN"), "search UNSEEN")
        uids = sorted(int(uid) for line in _text_lines(answer)[:1] for uid in line.split() if uid.isdigit())
        fresh = [uid for uid in uids if not await self._refused_before(validity, uid)]
        if not fresh:
            return True
        sizes = await self._sizes(client, fresh)
        for uid in fresh:
            if self._stopping.is_set():
                return True
            try:
                done = await self._hand_over(client, validity, uid, sizes.get(uid))
            except Unavailable as exc:
                log.warning("inbox: mail UID %d left unseen for now: %s", uid, exc)
                return False
            if done:
                _ok(await client.uid("store", str(uid), "+FLAGS.SILENT", r"(\Seen)"), f"mark UID {uid} seen")
            await self._progressed(uid, done)
        return True

    async def _hand_over(self, client: aioimaplib.IMAP4, validity: str, uid: int, size: int | None) -> bool:
        """Pass one message on; True when it is done with (to be marked seen)."""
        if size is not None and size > self.inbox.max_mail_bytes:
            self.inbox.refuse_too_big(size, None)
            await self._remember_refused(validity, uid)
            return False
        answer = _ok(await client.uid("fetch", str(uid), "(BODY.PEEK[])"), f"fetch UID {uid}")
        raw = next((bytes(line) for line in answer.lines if isinstance(line, bytearray)), None)
        if raw is None:
            return False  # expunged meanwhile
        outcome = await self.inbox.handle(raw)
        if not outcome.done:
            await self._remember_refused(validity, uid)
        return outcome.done

    async def _sizes(self, client: aioimaplib.IMAP4, uids: list[int]) -> dict[int, int]:
        answer = _ok(await client.uid("fetch", ",".join(map(str, uids)), "(RFC822.SIZE)"), "fetch sizes")
        sizes: dict[int, int] = {}
        for line in _text_lines(answer):
            uid, size = _UID.search(line), _SIZE.search(line)
            if uid is not None and size is not None:
                sizes[int(uid.group(1))] = int(size.group(1))
        return sizes

    # -- refused UIDs -----------------------------------------------------------------------------------
    def _refusal_key(self, validity: str, uid: int) -> str:
        where = f"{self.url.user}@{self.url.host}:{self.url.port}/{self.url.mailbox}/{validity}/{uid}"
        return hashlib.blake2b(where.encode(), digest_size=16).hexdigest()

    async def _refused_before(self, validity: str, uid: int) -> bool:
        key = self._refusal_key(validity, uid)
        if key in self._refused:
            return True
        if await self.store.is_seen(REFUSED_NAMESPACE, key):
            self._refused.add(key)
            return True
        return False

    async def _remember_refused(self, validity: str, uid: int) -> None:
        key = self._refusal_key(validity, uid)
        self._refused.add(key)
        with contextlib.suppress(Unavailable):  # then it is only logged again after a restart
            await self.store.mark_seen(REFUSED_NAMESPACE, key, REFUSED_TTL)

    # -- waiting ----------------------------------------------------------------------------------------
    async def _idle(self, client: aioimaplib.IMAP4) -> None:
        """Wait in IDLE until the server tells of a change, ``idle_seconds`` pass, or the reader stops."""
        idle = await client.idle_start(timeout=self.idle_seconds)
        waiters = [
            asyncio.ensure_future(client.wait_server_push(timeout=self.idle_seconds + 5)),
            asyncio.ensure_future(self._stopping.wait()),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        client.idle_done()
        _ok(await asyncio.wait_for(idle, self.timeout), "idle")

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _logout(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.logout(), 5.0)
