"""The Slack support desk (STORIES.md, "Handing over to a person"): a handed-over conversation is one
thread in the desk's channel; the people there answer in it, or press its "Hand back" button.

Outbound, from the ordinary replies the worker publishes (their meta names the desk post,
:mod:`gateway.core.desk`):

- ``desk_post: root`` opens the thread: the ticket's text and a "Hand back" button (value
  ``handback:<token>``), posted to the desk channel. Then two links are written, kept ``desk_ttl`` seconds:
  ``<channel>:<ts>`` → token (a message in the thread → the conversation) and ``<channel>:<token>`` → ts
  (the user's next message → the thread). The post happens once: a link the store does not take is tried
  again with backoff for up to :attr:`SlackDesk.link_wait` seconds, and after that the post is remembered
  here (:attr:`SlackDesk.pending`) and the store error raised, so that the bus tries the reply again in
  place, and that try writes the links without posting again — the record is retried, never the effect.
- ``desk_post: thread`` is the user's message, posted in the thread. A conversation with no thread (its
  root was refused for good) still gets it, as a message in the channel saying the thread is missing.

Inbound: a person's message in a desk thread becomes ``Inbound(kind="staff")`` on the user's own
conversation, its author the Slack user id; a click on "Hand back" becomes ``Inbound(kind="handback")``.
The token is verified each time (HMAC, :func:`gateway.core.desk.verify`): a made-up one is logged and
ignored. Everything else in the desk channel is left to the channel's ordinary rules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, PlainTextObject, SectionBlock

from channels.base import Refused
from gateway.core.desk import (
    DESK_POST,
    DESK_TOKEN,
    DESK_TTL,
    HANDBACK_PREFIX,
    THREAD_OF_TS,
    TS_OF_THREAD,
    BadToken,
    verify,
)
from gateway.core.errors import Unavailable
from gateway.core.retry import full_jitter
from gateway.core.schema import Attachment, ConversationKey, Inbound, Reply
from gateway.core.store.base import Store

log = logging.getLogger("gateway.channels.slack.desk")

ROOT, THREAD = "root", "thread"
HANDBACK_ACTION = "desk-handback"
HANDBACK_TITLE = "Hand back"
THREAD_MISSING = "⚠ This conversation's thread is missing (its first post was not delivered); the user wrote:"
DEFAULT_TTL = 7 * 86400.0  # seconds a thread's links are kept when the post does not say
MAX_BLOCKS = 50  # Slack's limit of one message
NOTIFICATION_LIMIT = 300  # characters of the top-level text (what a notification shows)


class Post(Protocol):
    """``chat.postMessage`` as the channel makes it (its errors already Refused / RetryLater)."""

    def __call__(
        self, *, channel: str, text: str, blocks: Sequence[Block], thread_ts: str | None = None
    ) -> Awaitable[Mapping[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class ThreadLinks:
    """A root posted to ``channel`` (as the reply named it: ``desk``) at ``ts`` for ``token``."""

    desk: str
    channel: str
    ts: str
    token: str
    ttl: float


@dataclass(frozen=True, slots=True)
class StaffMessage:
    """What the channel read of a person's message in a channel thread (the filters already passed)."""

    event_id: str
    channel: str
    thread_ts: str
    user: str
    ts: str
    text: str
    attachments: tuple[Attachment, ...]


def is_desk_post(reply: Reply) -> bool:
    return reply.meta.get(DESK_POST) in (ROOT, THREAD)


class SlackDesk:
    def __init__(
        self,
        store: Store,
        secret_key: str,
        post: Post,
        *,
        link_wait: float = 300.0,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.secret_key = secret_key
        self.post = post
        self.link_wait = link_wait  # seconds a root's links are retried before the bus takes over
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._clock = clock
        self.pending: dict[str, ThreadLinks] = {}  # reply id -> a root posted whose links are not written

    # Outbound

    async def send(self, reply: Reply, blocks: list[Block]) -> None:
        """Post a desk reply (``blocks``: its text, image and buttons, rendered by the channel)."""
        if reply.meta.get(DESK_POST) == ROOT:
            await self._send_root(reply, blocks)
        else:
            await self._send_in_thread(reply, blocks)

    async def _send_root(self, reply: Reply, blocks: list[Block]) -> None:
        links = self.pending.get(reply.id)
        if links is None:  # else: posted by an earlier try, whose links the store did not take
            token = reply.meta.get(DESK_TOKEN)
            if not token:
                raise Refused(f"a desk thread's first post without its {DESK_TOKEN}")
            button = ButtonElement(
                text=PlainTextObject(text=HANDBACK_TITLE, emoji=True),
                value=HANDBACK_PREFIX + token,
                action_id=HANDBACK_ACTION,
                style="primary",
            )
            blocks = [*_fit(blocks, MAX_BLOCKS - 1), ActionsBlock(elements=[button])]
            answer = await self.post(channel=reply.chat, text=_notification(reply.text), blocks=blocks)
            ts = str(answer.get("ts") or "")
            if not ts:  # Slack always answers a post with its ts; without one there is no thread to link
                log.error("slack desk: %s posted, but Slack's answer has no ts: no thread links", reply.id)
                return
            channel = str(answer.get("channel") or reply.chat)
            links = ThreadLinks(reply.chat, channel, ts, token, _ttl(reply))
            self.pending[reply.id] = links
        await self._write_links(reply.id, links)
        del self.pending[reply.id]

    async def _write_links(self, reply_id: str, links: ThreadLinks) -> None:
        """Write both links, trying again with backoff for up to :attr:`link_wait` seconds; then raise the
        store's error (the post stays in :attr:`pending`, the bus's next try writes them)."""
        deadline = self._clock() + self.link_wait
        tries = 0
        while True:
            try:
                await self.store.put_link(THREAD_OF_TS, f"{links.channel}:{links.ts}", links.token, links.ttl)
                await self.store.put_link(TS_OF_THREAD, f"{links.desk}:{links.token}", links.ts, links.ttl)
                return
            except Unavailable as exc:
                tries += 1
                delay = full_jitter(tries, self.backoff_base, self.backoff_max)
                if self._clock() + delay > deadline:
                    log.warning(
                        "slack desk: reply %s posted (ts %s) but its thread links not written: %r; "
                        "the bus will try them again, not the post",
                        reply_id,
                        links.ts,
                        exc,
                    )
                    raise
                log.info("slack desk: links of %s not written (%r); again in %.2f s", reply_id, exc, delay)
                await asyncio.sleep(delay)

    async def _send_in_thread(self, reply: Reply, blocks: list[Block]) -> None:
        token = reply.meta.get(DESK_TOKEN)
        ts = await self.store.get_link(TS_OF_THREAD, f"{reply.chat}:{token}") if token else None
        if ts is None:
            log.warning(
                "slack desk: no thread in %s for reply %s (its first post was refused?); posting it plain",
                reply.chat,
                reply.id,
            )
            missing = SectionBlock(text=PlainTextObject(text=THREAD_MISSING, emoji=True))
            blocks = [missing, *_fit(blocks, MAX_BLOCKS - 1)]
        await self.post(channel=reply.chat, text=_notification(reply.text), blocks=blocks, thread_ts=ts)

    # Inbound

    async def thread_conversation(self, channel: str, thread_ts: str) -> ConversationKey | None:
        """The conversation whose desk thread is ``channel``/``thread_ts``, None for any other thread.

        A link whose token does not verify (the secret key changed) is logged and counts as none."""
        token = await self.store.get_link(THREAD_OF_TS, f"{channel}:{thread_ts}")
        if token is None:
            return None
        try:
            return verify(self.secret_key, token)
        except BadToken as exc:
            log.warning(
                "slack desk: thread %s in %s has a token that does not verify: %s", thread_ts, channel, exc
            )
            return None

    async def staff_answer(self, message: StaffMessage) -> Inbound | None:
        """A person's message in a desk thread as the user's conversation's ``staff`` inbound; None when
        the thread is not a desk thread (or it says nothing)."""
        key = await self.thread_conversation(message.channel, message.thread_ts)
        if key is None or not (message.text.strip() or message.attachments):
            return None
        return Inbound(
            id=f"slack:event:{message.event_id}",
            kind="staff",
            channel=key.channel,
            chat=key.chat,
            user=key.user,
            channel_message_id=message.ts,
            text=message.text,
            attachments=message.attachments,
            user_name=message.user,
            meta={},
        )

    def handback(self, click_id: str, value: str, clicker: str, message_ts: str) -> Inbound | None:
        """A click on a thread's "Hand back" (``value`` = ``handback:<token>``) as the conversation's
        ``handback`` inbound; None, with a log line, for a token that does not verify."""
        token = value.removeprefix(HANDBACK_PREFIX)
        try:
            key = verify(self.secret_key, token)
        except BadToken as exc:
            log.warning("slack desk: hand back by %s ignored: its token does not verify (%s)", clicker, exc)
            return None
        return Inbound(
            id=f"slack:action:{click_id}",
            kind="handback",
            channel=key.channel,
            chat=key.chat,
            user=key.user,
            channel_message_id=message_ts,
            user_name=clicker,
            meta={},
        )


def _ttl(reply: Reply) -> float:
    raw = reply.meta.get(DESK_TTL)
    try:
        ttl = float(raw) if raw is not None else 0.0
    except ValueError:
        ttl = 0.0
    if not ttl > 0:
        log.warning(
            "slack desk: reply %s has no usable %s (%r); keeping its links %g s",
            reply.id,
            DESK_TTL,
            raw,
            DEFAULT_TTL,
        )
        return DEFAULT_TTL
    return ttl


def _notification(text: str) -> str:
    """The top-level ``text`` of a desk post: its first line, short, escaped (the blocks hold the rest)."""
    first = text.strip().split("\n", 1)[0][:NOTIFICATION_LIMIT] or "…"
    return first.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fit(blocks: list[Block], room: int) -> list[Block]:
    """At most ``room`` blocks: a ticket too long for one message is cut, saying so."""
    if len(blocks) <= room:
        return blocks
    cut = SectionBlock(text=PlainTextObject(text=f"… ({len(blocks) - room + 1} more parts not shown)"))
    return [*blocks[: room - 1], cut]
