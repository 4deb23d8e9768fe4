"""The channel interface: only what differs between Telegram, Slack, SMS, web chat and the console.

A channel verifies and parses its webhooks into normalized :class:`~gateway.core.schema.Inbound` messages and
renders and sends a normalized :class:`~gateway.core.schema.Reply`. Everything the channels share — the body
size limit, duplicate drop, publishing with confirm, the status codes, retries and rate limits of
delivery, metrics — lives once in :mod:`channels.ingress` and :mod:`channels.delivery`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from channels.ratelimit import RateLimit
from gateway.core.schema import Inbound, Reply


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A webhook call as a channel sees it: already size-limited, nothing parsed yet."""

    path: str
    public_url: str  # the URL the outside world called (GATEWAY_PUBLIC_URL + path), what Twilio signs
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)


class WebhookError(Exception):
    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unauthorized(WebhookError):
    """Missing or wrong signature / secret: nothing is published."""

    status = 401


class Forbidden(WebhookError):
    status = 403


class Malformed(WebhookError):
    """A body that does not parse as the channel's webhook format: nothing is published."""

    status = 400


@dataclass(frozen=True, slots=True)
class Accepted:
    """What a verified webhook yields: messages to publish and the answer to give once they are safe."""

    messages: Sequence[Inbound] = ()
    body: bytes = b""
    content_type: str = "text/plain"
    # Runs after the answer was sent (e.g. Telegram's answerCallbackQuery); its failures are only logged.
    after: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    path: str
    handle: Callable[[WebhookRequest], Awaitable[Accepted]]  # verify, then parse; raises WebhookError


class SendError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryLater(SendError):
    """The channel API asked us to wait (429) or failed for now (5xx, network): send again later."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class Refused(SendError):
    """A permanent refusal (the user blocked the bot, unknown chat, 400): dead-lettered, never retried."""


class Progress:
    """Which of one reply's API calls went out, so that trying the reply again repeats none of them.

    Most replies are one call. A reply that needs several (Telegram: a photo, then a text too long for its
    caption; a text over 4,096 characters in parts) goes through :meth:`run`: a call that succeeded is
    skipped when the deliverer tries the reply again in place, and every call but the last is recorded
    (``record``) so that after a redelivery — the process died between two calls — ``check`` finds it.
    The last call needs no record of its own: the deliverer records the whole reply as sent.
    """

    def __init__(
        self,
        check: Callable[[int], Awaitable[bool]] | None = None,
        record: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.done = 0  # calls that went out, counted from the first
        self._check, self._record = check, record

    async def run(self, calls: Sequence[Callable[[], Awaitable[object]]]) -> None:
        last = len(calls) - 1
        for n, call in enumerate(calls):
            if n < self.done:
                continue
            if n < last and self._check is not None and await self._check(n):
                self.done = n + 1
                continue
            await call()
            self.done = n + 1
            if n < last and self._record is not None:
                await self._record(n)


class Channel(ABC):
    name: str
    rate_limit: RateLimit = RateLimit()

    def endpoints(self) -> Sequence[Endpoint]:
        """The webhooks this channel serves; none for channels that are not reached over HTTP."""
        return ()

    @abstractmethod
    async def send(self, reply: Reply, progress: Progress | None = None) -> None:
        """Deliver one reply; raise :class:`RetryLater` or :class:`Refused` on failure.

        A channel that needs several API calls for one reply makes them through ``progress`` (the
        deliverer passes the same one to every try of a reply); a one-call channel may ignore it.
        """

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def describe(self) -> str:
        """One phrase for the start-up log."""
        return self.name
