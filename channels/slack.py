"""Slack through slack-sdk: signed Events API and interaction webhooks in, ``chat.postMessage`` out.

Inbound: every request's ``X-Slack-Signature`` and ``X-Slack-Request-Timestamp`` (5-minute window) are
checked with slack-sdk's ``SignatureVerifier`` before anything is parsed. ``url_verification`` is answered
with its challenge. Direct messages (``message`` in an ``im`` channel) and mentions (``app_mention``)
become inbound messages with the id ``slack:event:<event_id>``; messages from bots (ours included), edits
and every other subtype are acknowledged and ignored. A retry (``X-Slack-Retry-Num``) is never dropped by
its header: its ``event_id`` is the same as the first delivery's, so the shared ingress drops it only when
that first delivery really reached the broker. ``block_actions`` button clicks become the button's press,
with the id ``slack:action:<trigger_id>`` (Slack's one id per interaction).

Outbound: Block Kit built with slack-sdk's models: the text as ``plain_text`` sections (so user text is
never parsed as markup or mentions), buttons as an ``actions`` block (value = payload), an image block
(for an http(s) URL; an image in a ``data:`` URL, a person's answer by email, is its caption and
``[image]``); the reply stays in the thread its inbound came from (``meta["thread_ts"]``).

Support desks (:mod:`channels.slack_desk`): replies whose meta names a desk post open or continue a
conversation's thread in the desk channel; a person's message in such a thread, and its "Hand back"
button, come back on the user's conversation. They need the store and ``GATEWAY_SECRET_KEY``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import parse_qs

import aiohttp
from slack_sdk.errors import SlackApiError, SlackObjectFormationError
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ImageBlock,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from channels.base import (
    Accepted,
    Channel,
    Endpoint,
    Malformed,
    Progress,
    Refused,
    RetryLater,
    Unauthorized,
    WebhookRequest,
)
from channels.data_url import IMAGE_PLACEHOLDER, decode_image, is_data_url
from channels.ratelimit import SLACK_LIMIT
from channels.slack_desk import SlackDesk, StaffMessage, is_desk_post
from gateway.core.desk import HANDBACK_PREFIX
from gateway.core.retry import retry_after_seconds
from gateway.core.schema import Attachment, ButtonPress, Inbound, Reply
from gateway.core.store.base import Store

log = logging.getLogger("gateway.channels.slack")

EVENTS_PATH = "/webhooks/slack/events"
INTERACTIONS_PATH = "/webhooks/slack/interactions"
SIGNATURE_HEADER = "X-Slack-Signature"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
MAX_AGE = 300.0  # seconds; Slack's documented replay window
SECTION_LIMIT = 3000  # characters of one section's text
BUTTON_TITLE_LIMIT = 75
BUTTONS_PER_BLOCK = 25
THREAD_KEY = "thread_ts"
# ok:false errors that say "not now" rather than "never" (https://docs.slack.dev/reference/methods/chat.postMessage)
TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)
AttachmentKind = Literal["image", "audio", "video", "file"]
CHANNEL_TYPES = frozenset({"channel", "group"})  # public and private channels, where desks live
# Message subtypes that are still a person's words in a desk thread: with files, or also sent to the channel.
STAFF_SUBTYPES = frozenset({"file_share", "thread_broadcast"})
_LEADING_MENTION = re.compile(r"^\s*<@[A-Z0-9]+(?:\|[^>]*)?>[\s,:]*")


def _unescape(text: str) -> str:
    """Slack escapes exactly these three in message text."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def blocks_of(reply: Reply) -> list[Block]:
    """The reply as Block Kit blocks (slack-sdk models; their own checks run when serialised)."""
    blocks: list[Block] = []
    text = reply.text
    image = reply.image
    if image is not None and not image.url.lower().startswith(("http://", "https://")):
        if is_data_url(image.url):
            decode_image(image.url)  # Refused, saying why, unless it is an image
        # Slack shows only images it can fetch: say there is one (an upload would need files.* calls).
        text = "\n".join(part for part in (text, image.caption, IMAGE_PLACEHOLDER) if part)
        image = None
    for start in range(0, len(text), SECTION_LIMIT):
        blocks.append(
            SectionBlock(text=PlainTextObject(text=text[start : start + SECTION_LIMIT], emoji=True))
        )
    if image is not None:
        caption = image.caption
        blocks.append(ImageBlock(image_url=image.url, alt_text=caption or "image", title=caption or None))
    for start in range(0, len(reply.buttons), BUTTONS_PER_BLOCK):
        chunk = reply.buttons[start : start + BUTTONS_PER_BLOCK]
        elements = [
            ButtonElement(
                text=PlainTextObject(text=b.title[:BUTTON_TITLE_LIMIT] or "·", emoji=True),
                value=b.payload,
                action_id=f"button-{start + n}",
            )
            for n, b in enumerate(chunk)
        ]
        blocks.append(ActionsBlock(elements=elements))
    return blocks


def fallback_text(reply: Reply) -> str:
    """The top-level ``text``: what notifications and screen readers show."""
    text = reply.text or (reply.image.caption if reply.image is not None else None) or ""
    if not text and reply.image is not None and not reply.image.url.lower().startswith(("http:", "https:")):
        text = IMAGE_PLACEHOLDER
    if not text and reply.buttons:
        text = " / ".join(b.title for b in reply.buttons)
    return _escape(text)


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return str(value)
    return None


class SlackChannel(Channel):
    name = "slack"
    rate_limit = SLACK_LIMIT

    def __init__(
        self,
        token: str,
        signing_secret: str,
        *,
        api_url: str = "https://slack.com/api/",
        bot_user_id: str | None = None,
        request_timeout: float = 15.0,
        clock: Callable[[], float] = time.time,
        store: Store | None = None,
        secret_key: str = "",
    ) -> None:
        """``store`` and ``secret_key`` (``GATEWAY_SECRET_KEY``) serve support desks; without the store
        desk posts are refused and desk threads read as ordinary threads."""
        self.token = token
        self.api_url = api_url
        self.bot_user_id = bot_user_id
        self.request_timeout = request_timeout
        self._clock = clock
        self.verifier = SignatureVerifier(signing_secret, clock=_Clock(clock))
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None
        self.desk = SlackDesk(store, secret_key, self._post) if store is not None else None

    def endpoints(self) -> Sequence[Endpoint]:
        return (
            Endpoint(EVENTS_PATH, self.handle_event),
            Endpoint(INTERACTIONS_PATH, self.handle_interaction),
        )

    def describe(self) -> str:
        return f"slack ({self.api_url})"

    @property
    def client(self) -> AsyncWebClient:
        """One Web API client on one connection pool, made on first use (it needs a running loop)."""
        if self._client is None:
            timeout = aiohttp.ClientTimeout(total=self.request_timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
            # No retry handlers: retries, with their waits, belong to the shared deliverer.
            self._client = AsyncWebClient(
                token=self.token,
                base_url=self.api_url,
                session=self._session,
                timeout=int(self.request_timeout),
                retry_handlers=[],
            )
        return self._client

    async def start(self) -> None:
        _ = self.client

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._client = None

    # Inbound

    def verify(self, request: WebhookRequest) -> None:
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        signature = request.headers.get(SIGNATURE_HEADER)
        if not timestamp or not signature:
            raise Unauthorized(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
        try:
            age = abs(self._clock() - int(timestamp))
        except ValueError:
            raise Unauthorized(f"{TIMESTAMP_HEADER} is not a number") from None
        if age > MAX_AGE:
            raise Unauthorized(
                f"{TIMESTAMP_HEADER} is {age:.0f} s away from now (replay window is 5 minutes)"
            )
        try:
            valid = self.verifier.is_valid(body=request.body, timestamp=timestamp, signature=signature)
        except UnicodeDecodeError:
            valid = False
        if not valid:
            raise Unauthorized(f"wrong {SIGNATURE_HEADER}")

    async def handle_event(self, request: WebhookRequest) -> Accepted:
        self.verify(request)
        payload = _json_object(request.body)
        kind = payload.get("type")
        if kind == "url_verification":
            challenge = payload.get("challenge")
            if not isinstance(challenge, str):
                raise Malformed("url_verification without a challenge")
            return Accepted(
                body=json.dumps({"challenge": challenge}).encode(), content_type="application/json"
            )
        if kind != "event_callback":
            return Accepted()
        event = payload.get("event")
        event_id = payload.get("event_id")
        if not isinstance(event, dict) or not isinstance(event_id, str) or not event_id:
            raise Malformed("event_callback without an event or an event_id")
        message = await self._from_event(event_id, event, self._own_users(payload))
        return Accepted(messages=(message,) if message is not None else ())

    def _own_users(self, payload: Mapping[str, Any]) -> set[str]:
        own = {self.bot_user_id} if self.bot_user_id else set()
        for authorization in payload.get("authorizations") or ():
            if (
                isinstance(authorization, dict)
                and authorization.get("is_bot")
                and authorization.get("user_id")
            ):
                own.add(str(authorization["user_id"]))
        return own

    async def _from_event(
        self, event_id: str, event: Mapping[str, Any], own_users: set[str]
    ) -> Inbound | None:
        kind = event.get("type")
        thread = str(event.get("thread_ts") or "")
        in_channel = event.get("channel_type") in CHANNEL_TYPES
        if kind == "message" and in_channel and thread and self.desk is not None:
            return await self._from_desk_thread(event_id, event, thread, own_users)
        if kind == "message":
            if event.get("channel_type") != "im":
                return None  # in channels only mentions are for us (they also arrive as app_mention)
        elif kind != "app_mention":
            return None
        sender = _person(event, own_users)
        if sender is None:
            return None
        user, channel = sender
        desk = self.desk
        if kind == "app_mention" and thread and desk and await desk.thread_conversation(channel, thread):
            return None  # a mention in a desk thread: its message event is the person's answer
        text = _unescape(str(event.get("text") or ""))
        if kind == "app_mention":
            text = _LEADING_MENTION.sub("", text, count=1)
        meta = {THREAD_KEY: str(event["thread_ts"])} if event.get("thread_ts") else {}
        return Inbound(
            id=f"slack:event:{event_id}",
            channel=self.name,
            chat=channel,
            user=user,
            channel_message_id=str(event.get("ts") or ""),
            text=text,
            attachments=_files(event),
            meta=meta,
        )

    async def _from_desk_thread(
        self, event_id: str, event: Mapping[str, Any], thread: str, own_users: set[str]
    ) -> Inbound | None:
        """A message in a channel thread: a person's answer if it is a desk thread, else nothing (as
        any channel message that does not mention us)."""
        assert self.desk is not None
        sender = _person(event, own_users, allowed_subtypes=STAFF_SUBTYPES)
        if sender is None:
            return None  # our own posts in the thread, bots, edits, deletions...
        user, channel = sender
        message = StaffMessage(
            event_id=event_id,
            channel=channel,
            thread_ts=thread,
            user=user,
            ts=str(event.get("ts") or ""),
            text=_unescape(str(event.get("text") or "")),
            attachments=_files(event),
        )
        return await self.desk.staff_answer(message)

    async def handle_interaction(self, request: WebhookRequest) -> Accepted:
        self.verify(request)
        try:
            form = parse_qs(request.body.decode(), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise Malformed("not a form-encoded body") from None
        raw = form.get("payload")
        if not raw:
            raise Malformed("no payload field")
        payload = _json_object(raw[0].encode())
        if payload.get("type") != "block_actions":
            return Accepted()  # shortcuts, modals...: nothing of ours
        message = self._from_click(payload)
        return Accepted(messages=(message,) if message is not None else ())

    def _from_click(self, payload: Mapping[str, Any]) -> Inbound | None:
        actions = [
            a for a in payload.get("actions") or () if isinstance(a, dict) and a.get("type") == "button"
        ]
        user = payload.get("user") or {}
        container = payload.get("container") or {}
        channel = (payload.get("channel") or {}).get("id") or container.get("channel_id")
        if not actions or not isinstance(user, dict) or not user.get("id") or not channel:
            return None  # a click outside a conversation (home tab, modal)
        action = actions[0]
        click = payload.get("trigger_id") or f"{channel}:{user['id']}:{action.get('action_ts')}"
        title = (action.get("text") or {}).get("text")
        message = payload.get("message") or {}
        value = str(action.get("value") or "")
        if value.startswith(HANDBACK_PREFIX):
            message_ts = str(container.get("message_ts") or message.get("ts") or "")
            if self.desk is None:
                log.warning("slack: a hand back click ignored: this gateway has no store for desks")
                return None
            return self.desk.handback(str(click), value, str(user["id"]), message_ts)
        thread = container.get("thread_ts") or message.get("thread_ts")
        return Inbound(
            id=f"slack:action:{click}",
            channel=self.name,
            chat=str(channel),
            user=str(user["id"]),
            channel_message_id=str(container.get("message_ts") or message.get("ts") or ""),
            text=str(title or ""),
            button=ButtonPress(payload=str(action.get("value") or ""), title=title),
            user_name=user.get("username") or user.get("name"),
            meta={THREAD_KEY: str(thread)} if thread else {},
        )

    # Outbound

    async def send(self, reply: Reply, progress: Progress | None = None) -> None:
        if is_desk_post(reply):
            if self.desk is None:
                raise Refused("a support desk post, but this Slack channel has no store for desks")
            await self.desk.send(reply, blocks_of(reply))
            return
        if not (reply.text or reply.image or reply.buttons):
            return
        await self._post(
            channel=reply.chat,
            text=fallback_text(reply),
            blocks=blocks_of(reply),
            thread_ts=reply.meta.get(THREAD_KEY) or None,
        )

    async def _post(
        self, *, channel: str, text: str, blocks: Sequence[Block], thread_ts: str | None = None
    ) -> Mapping[str, Any]:
        """One ``chat.postMessage`` with the bot's token; Slack's answer (``channel``, ``ts``, ...)."""
        try:
            rendered = [block.to_dict() for block in blocks]
        except SlackObjectFormationError as exc:
            raise Refused(f"cannot render for Slack: {exc}") from None
        try:
            response = await self.client.chat_postMessage(
                channel=channel, text=text, blocks=rendered, thread_ts=thread_ts, mrkdwn=False
            )
        except SlackApiError as exc:
            raise _send_error(exc) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise RetryLater(f"slack unreachable: {exc!r}") from None
        data = response.data
        return data if isinstance(data, dict) else {}


def _send_error(exc: SlackApiError) -> RetryLater | Refused:
    response = exc.response
    status = int(getattr(response, "status_code", None) or getattr(response, "status", 0) or 0)
    data = getattr(response, "data", None)
    error = str(data.get("error")) if isinstance(data, dict) and data.get("error") else f"HTTP {status}"
    if status == 429 or error == "ratelimited":
        retry_after = _header(getattr(response, "headers", None) or {}, "Retry-After")
        return RetryLater(f"slack: {error}", after=retry_after_seconds(retry_after))
    if status >= 500 or error in TRANSIENT_ERRORS:
        return RetryLater(f"slack: {error}")
    return Refused(f"slack: {error}")


def _person(
    event: Mapping[str, Any], own_users: set[str], *, allowed_subtypes: frozenset[str] = frozenset()
) -> tuple[str, str] | None:
    """(user, channel) of a message a person wrote; None for bots (ours included), edits, deletions,
    joins and every other subtype but ``allowed_subtypes``."""
    user, channel = event.get("user"), event.get("channel")
    subtype = event.get("subtype")
    if (subtype and subtype not in allowed_subtypes) or event.get("bot_id") or event.get("bot_profile"):
        return None
    if not isinstance(user, str) or not isinstance(channel, str) or not user or not channel:
        return None
    if user in own_users:
        return None
    return user, channel


def _files(event: Mapping[str, Any]) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    for file in event.get("files") or ():
        if not isinstance(file, dict) or not file.get("url_private"):
            continue
        mime = str(file.get("mimetype") or "") or None
        kind: AttachmentKind = "image" if mime and mime.startswith("image/") else "file"
        found.append(Attachment(kind=kind, url=str(file["url_private"]), mime=mime, name=file.get("name")))
    return tuple(found)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise Malformed("body is not JSON") from None
    if not isinstance(payload, dict):
        raise Malformed("body is not a JSON object")
    return payload


class _Clock(Clock):
    """slack-sdk's clock interface over a plain function, so tests can move time."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()
