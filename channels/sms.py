"""SMS and MMS through Twilio: signed webhooks in, the Messages API out, carrier keywords honoured.

Inbound: ``X-Twilio-Signature`` is checked with twilio's ``RequestValidator`` against the URL Twilio
called (``GATEWAY_PUBLIC_URL`` + path, in :attr:`WebhookRequest.public_url`); the answer is TwiML built
with twilio's ``MessagingResponse`` (empty for ordinary messages). The id is ``sms:<MessageSid>``; MMS
media become attachments.

Keywords (the whole message, case and surrounding spaces ignored), as carriers require:
STOP and its synonyms record an opt-out and are not passed to the stories; from then on every reply to
that number is refused (dead-lettered with "recipient opted out", never retried) and the user's further
messages are ignored, until START (or a synonym) lifts it. HELP answers with ``help_text``. The answers to
these keywords go out as TwiML in the webhook's response; ``keyword_replies=False`` leaves them to
Twilio's own opt-out handling (Advanced Opt-Out) when that is switched on for the number.

Outbound: twilio's ``Client`` with its ``AsyncTwilioHttpClient``; the client has no base-URL option, so
its API domain's ``base_url`` (a plain attribute) is set to ``TWILIO_API_URL``. Buttons are appended as a
numbered list ("1. Paris 2. London") and the engine takes a bare-number reply on channel ``sms`` as that
button; an image goes as ``media_url``, except one carried in a ``data:`` URL (a person's answer by email):
MMS needs a public URL, so its caption and ``[image]`` go as text (:mod:`channels.data_url`).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import parse_qsl

import aiohttp
from multidict import MultiDict
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

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
from channels.ratelimit import SMS_LIMIT, RateLimit
from channels.text import numbered_choices
from gateway.core.retry import retry_after_seconds
from gateway.core.schema import Attachment, Inbound, Reply
from gateway.core.store.base import Store

log = logging.getLogger("gateway.channels.sms")
_http_log = logging.getLogger("gateway.channels.sms.http")
_http_log.setLevel(logging.WARNING)  # twilio's client logs every request and response at INFO

WEBHOOK_PATH = "/webhooks/sms"
SIGNATURE_HEADER = "X-Twilio-Signature"
TWIML_TYPE = "application/xml"
# Twilio's default opt-out, opt-in and help keywords (Advanced Opt-Out documentation).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
DEFAULT_HELP = "Reply STOP to unsubscribe, START to subscribe again. Msg & data rates may apply."
STOP_CONFIRMATION = "You are unsubscribed and will receive no more messages. Reply START to subscribe again."
START_CONFIRMATION = "You are subscribed again. Reply HELP for help, STOP to unsubscribe."
DEFAULT_RATE_LIMIT = SMS_LIMIT
# Error codes meaning "never for this recipient" (https://www.twilio.com/docs/api/errors).
UNSUBSCRIBED = 21610
TOO_MANY_REQUESTS = 20429
CHANNEL = "sms"
LEGACY_OPT_OUT_NAMESPACE = "sms-optout"  # where opt-outs were kept before they became a user fact
_KINDS: dict[str, Literal["image", "audio", "video", "file"]] = {
    "image": "image",
    "audio": "audio",
    "video": "video",
}


class OptOuts:
    """Who sent STOP: a fact about the user in the store (:meth:`Store.set_opted_out`), set by STOP and
    lifted by START; kept with no time limit, exported and erased with the user's data.

    Releases before 2026-12 kept it as a duplicate marker (namespace ``sms-optout``); one found there is
    moved over on first sight, so no opt-out is lost by an upgrade.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    async def opted_out(self, number: str) -> bool:
        if await self.store.opted_out(CHANNEL, number):
            return True
        if not await self.store.is_seen(LEGACY_OPT_OUT_NAMESPACE, number):
            return False
        await self.opt_out(number)
        return True

    async def opt_out(self, number: str) -> None:
        await self.store.set_opted_out(CHANNEL, number, True)
        await self.store.forget_seen(LEGACY_OPT_OUT_NAMESPACE, number)

    async def opt_in(self, number: str) -> None:
        await self.store.set_opted_out(CHANNEL, number, False)
        await self.store.forget_seen(LEGACY_OPT_OUT_NAMESPACE, number)


class _RetryAfter(Exception):
    def __init__(self, status: int, after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.after = after


class _HttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio's aiohttp client, keeping what its exceptions drop: a 429's Retry-After."""

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        if auth is not None:  # as a header: aiohttp deprecates the BasicAuth object twilio would build
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers = {**(headers or {}), "Authorization": f"Basic {token}"}
        response = await super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        if response.status_code == 429:
            raise _RetryAfter(429, retry_after_seconds((response.headers or {}).get("Retry-After")))
        return response


def body_of(reply: Reply) -> str:
    """The SMS text: the message, the image caption (and ``[image]`` for an image that cannot go as
    media), then the buttons as a numbered list."""
    parts = [reply.text] if reply.text else []
    if reply.image is not None and reply.image.caption:
        parts.append(reply.image.caption)
    if reply.image is not None and is_data_url(reply.image.url):
        parts.append(IMAGE_PLACEHOLDER)
    if reply.buttons:
        parts.append(numbered_choices(reply.buttons))
    return "\n".join(parts)


def _twiml(message: str | None = None) -> bytes:
    response = MessagingResponse()
    if message:
        response.message(message)
    return str(response.to_xml()).encode()


def _form(body: bytes) -> MultiDict[str]:
    try:
        return MultiDict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body)))
    except (UnicodeDecodeError, ValueError):
        raise Malformed("not a form-encoded body") from None


def _media(form: MultiDict[str]) -> tuple[Attachment, ...]:
    try:
        count = int(form.get("NumMedia", "0") or "0")
    except ValueError:
        raise Malformed("NumMedia is not a number") from None
    found: list[Attachment] = []
    for i in range(min(count, 10)):  # Twilio carries at most 10 media per message
        url = form.get(f"MediaUrl{i}")
        if not url:
            continue
        mime = form.get(f"MediaContentType{i}") or None
        found.append(Attachment(kind=_KINDS.get((mime or "").split("/", 1)[0], "file"), url=url, mime=mime))
    return tuple(found)


class SmsChannel(Channel):
    name = CHANNEL

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        store: Store,
        *,
        api_url: str = "https://api.twilio.com",
        rate_limit: RateLimit = DEFAULT_RATE_LIMIT,
        help_text: str = DEFAULT_HELP,
        keyword_replies: bool = True,
        request_timeout: float = 15.0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_number = from_number
        self.api_url = api_url
        self.rate_limit = rate_limit
        self.help_text = help_text
        self.keyword_replies = keyword_replies
        self.request_timeout = request_timeout
        self.opt_outs = OptOuts(store)
        self.validator = RequestValidator(auth_token)
        self._http: _HttpClient | None = None
        self._client: Any = None

    def endpoints(self) -> Sequence[Endpoint]:
        return (Endpoint(WEBHOOK_PATH, self.handle_webhook),)

    def describe(self) -> str:
        return f"sms (twilio {self.from_number}, {self.api_url})"

    @property
    def client(self) -> Any:
        """twilio's REST client on an aiohttp pool, made on first use (the pool needs a running loop)."""
        if self._client is None:
            self._http = _HttpClient(timeout=self.request_timeout, logger=_http_log)
            # A non-empty environment: the settings, not TWILIO_EDGE / TWILIO_REGION, decide the host.
            client = Client(
                self.account_sid,
                self.auth_token,
                http_client=self._http,
                environment={"TWILIO_API_URL": self.api_url},
            )
            client.api.base_url = self.api_url.rstrip("/")
            self._client = client
        return self._client

    async def start(self) -> None:
        _ = self.client

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = None
        self._client = None

    # Inbound

    async def handle_webhook(self, request: WebhookRequest) -> Accepted:
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise Unauthorized(f"missing {SIGNATURE_HEADER}")
        form = _form(request.body)
        if not self.validator.validate(request.public_url, form, signature):
            raise Unauthorized(f"wrong {SIGNATURE_HEADER} for {request.public_url}")
        sid = form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid")
        sender = form.get("From")
        if not sid or not sender:
            raise Malformed("MessageSid or From missing")
        text = form.get("Body", "")
        keyword = text.strip().upper()
        if keyword in STOP_WORDS:
            await self.opt_outs.opt_out(sender)
            log.info("sms %s opted out", sid)
            return self._answer(STOP_CONFIRMATION)
        if keyword in START_WORDS:
            await self.opt_outs.opt_in(sender)
            log.info("sms %s opted in again", sid)
            return self._answer(START_CONFIRMATION)
        if keyword in HELP_WORDS:
            return self._answer(self.help_text)
        if await self.opt_outs.opted_out(sender):
            log.info("sms %s from a number that opted out: ignored", sid)
            return self._answer(None)
        inbound = Inbound(
            id=f"sms:{sid}",
            channel=self.name,
            chat=sender,
            user=sender,
            channel_message_id=sid,
            text=text,
            attachments=_media(form),
        )
        return Accepted(messages=(inbound,), body=_twiml(), content_type=TWIML_TYPE)

    def _answer(self, message: str | None) -> Accepted:
        return Accepted(body=_twiml(message if self.keyword_replies else None), content_type=TWIML_TYPE)

    # Outbound

    async def send(self, reply: Reply, progress: Progress | None = None) -> None:
        body = body_of(reply)
        media = [reply.image.url] if reply.image is not None else None
        if reply.image is not None and is_data_url(reply.image.url):
            decode_image(reply.image.url)  # one that does not decode is refused, as on every channel
            media = None
        if not body and not media:
            return
        if await self.opt_outs.opted_out(reply.chat):
            raise Refused("recipient opted out")
        try:
            await self.client.messages.create_async(
                to=reply.chat, from_=self.from_number, body=body or None, media_url=media
            )
        except _RetryAfter as exc:
            raise RetryLater("twilio: 429 too many requests", after=exc.after) from None
        except (TwilioRestException, TwilioServiceException) as exc:
            raise await self._send_error(reply.chat, exc) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise RetryLater(f"twilio unreachable: {exc!r}") from None

    async def _send_error(self, number: str, exc: Exception) -> RetryLater | Refused:
        status, code = int(getattr(exc, "status", 0) or 0), getattr(exc, "code", None)
        detail = getattr(exc, "msg", None) or getattr(exc, "detail", None) or getattr(exc, "title", "")
        reason = f"twilio {code}: {detail}" if code else f"twilio HTTP {status}: {detail}"
        if status == 429 or code == TOO_MANY_REQUESTS or status >= 500:
            return RetryLater(reason)
        if code == UNSUBSCRIBED:
            try:
                await self.opt_outs.opt_out(number)  # Twilio knows of a STOP we never saw: remember it
            except Exception as store_error:
                log.warning("could not record the opt-out Twilio reported: %r", store_error)
        return Refused(reason)
