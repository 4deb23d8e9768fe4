"""Send-side rate limits: respect a channel's published limits instead of discovering them by 429s.

Per process: with several ``serve`` instances each keeps its own budget (documented in the README).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimit:
    """How fast the sender may go, so that limits are respected rather than discovered through 429s."""

    per_second: float | None = None  # across the whole channel
    per_chat_interval: float | None = None  # minimum seconds between two messages to one chat


# The channels' published limits, in one place: their deliverers respect them, broadcasts pace by them.
# Bot API FAQ: about 30 messages per second overall, about one per second in one chat.
TELEGRAM_LIMIT = RateLimit(per_second=30.0, per_chat_interval=1.0)
# chat.postMessage: about one message per second per channel (bursts tolerated briefly).
SLACK_LIMIT = RateLimit(per_chat_interval=1.0)
# A long code sends about one segment per second; Twilio queues the rest, so going faster only queues.
SMS_LIMIT = RateLimit(per_second=1.0, per_chat_interval=1.0)

# Broadcast starts a second per channel: the channel's overall limit (each start sends at least one
# message); Slack publishes none across channels, so a conservative 20; the web chat has no limit.
BROADCAST_PACE: dict[str, float | None] = {"telegram": 30.0, "slack": 20.0, "sms": 1.0, "webchat": None}


class RateLimiter:
    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._next_global = 0.0
        self._next_chat: dict[str, float] = {}

    def _reserve(self, chat: str) -> float:
        """Book the earliest slot for ``chat`` and return how long to wait for it."""
        now = self.clock()
        at = now
        if self.limit.per_chat_interval:
            at = max(at, self._next_chat.get(chat, 0.0))
        if self.limit.per_second:
            at = max(at, self._next_global)
            self._next_global = at + 1.0 / self.limit.per_second
        if self.limit.per_chat_interval:
            self._next_chat[chat] = at + self.limit.per_chat_interval
            if len(self._next_chat) > 10_000:
                self._next_chat = {c: t for c, t in self._next_chat.items() if t > now}
        return at - now

    async def wait(self, chat: str) -> None:
        if not (self.limit.per_second or self.limit.per_chat_interval):
            return
        delay = self._reserve(chat)
        if delay > 0:
            await asyncio.sleep(delay)
