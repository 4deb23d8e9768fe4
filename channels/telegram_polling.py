"""Long polling (``TELEGRAM_MODE=polling``): for a developer whose gateway has no public URL.

The updates take the same parse path as the webhook's (:meth:`TelegramChannel.accept_update`) and are
handed to ``accept`` (the ingress's publish-with-confirm). The offset moves past a batch only once
``accept`` returned, so a batch the broker did not take is fetched again; duplicates are dropped by
their ids like a webhook's. Button presses are answered (``answerCallbackQuery``) after the batch is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramConflictError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import Update

from channels.base import Accepted
from channels.telegram import ALLOWED_UPDATES, TelegramChannel
from gateway.core.retry import full_jitter
from gateway.core.schema import Inbound

log = logging.getLogger("gateway.channels.telegram.polling")

Accept = Callable[[Sequence[Inbound]], Awaitable[None]]


class TelegramPoller:
    def __init__(
        self,
        channel: TelegramChannel,
        *,
        poll_timeout: int = 30,
        limit: int = 100,
        delete_webhook: bool = True,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        """``delete_webhook``: Telegram refuses getUpdates while a webhook is set, so remove it first."""
        self.channel = channel
        self.poll_timeout = poll_timeout
        self.limit = limit
        self.delete_webhook = delete_webhook
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.offset: int | None = None
        self._stopping = asyncio.Event()
        self._poll: asyncio.Task[list[Update]] | None = None
        self._after: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        """Make :meth:`run` return: at once when it is waiting for Telegram, else after the current batch."""
        self._stopping.set()
        if self._poll is not None:
            self._poll.cancel()

    async def run(self, accept: Accept) -> None:
        """Poll until :meth:`stop` or cancellation; a bad token raises ``TelegramUnauthorizedError``."""
        failures = 0
        bot = self.channel.bot
        if self.delete_webhook:
            await self._until_done(bot.delete_webhook)
        try:
            while not self._stopping.is_set():
                updates = await self._fetch()
                if updates is None:
                    failures += 1
                    await self._pause(failures)
                    continue
                failures = 0
                if updates:
                    await self._hand_over(updates, accept)
        finally:
            if self._after:
                await asyncio.gather(*self._after, return_exceptions=True)

    async def _fetch(self) -> list[Update] | None:
        """One long poll; None after a failure that is worth waiting out, [] when stopped."""
        bot = self.channel.bot
        self._poll = asyncio.ensure_future(
            bot.get_updates(
                offset=self.offset,
                limit=self.limit,
                timeout=self.poll_timeout,
                allowed_updates=list(ALLOWED_UPDATES),
                request_timeout=self.poll_timeout + 15,
            )
        )
        try:
            return await self._poll
        except asyncio.CancelledError:
            if self._stopping.is_set():
                return []
            raise
        except TelegramRetryAfter as exc:
            log.warning("telegram asks to wait %s s before polling again", exc.retry_after)
            await self._sleep(float(exc.retry_after))
            return []
        except TelegramUnauthorizedError:
            raise
        except TelegramConflictError as exc:
            log.warning(
                "telegram refused getUpdates (%s): another poller, or a webhook, is active", exc.message
            )
            return None
        except (TelegramAPIError, ClientDecodeError) as exc:
            log.warning("telegram polling failed: %s", exc)
            return None
        finally:
            self._poll = None

    async def _hand_over(self, updates: list[Update], accept: Accept) -> None:
        """Accept the batch (retrying until the broker takes it), then move the offset past it."""
        accepted: list[Accepted] = [self.channel.accept_update(update) for update in updates]
        messages = [m for a in accepted for m in a.messages]
        failures = 0
        while True:
            try:
                if messages:
                    await accept(messages)
                break
            except Exception as exc:
                if self._stopping.is_set():
                    return  # the offset stays: the next poller fetches this batch again
                failures += 1
                log.warning("polled updates not accepted (%r); trying again", exc)
                await self._pause(failures)
        self.offset = updates[-1].update_id + 1
        for item in accepted:
            if item.after is not None:
                task = asyncio.ensure_future(self._run_after(item.after))
                self._after.add(task)
                task.add_done_callback(self._after.discard)

    async def _run_after(self, action: Callable[[], Awaitable[None]]) -> None:
        try:
            await action()
        except Exception:
            log.exception("post-accept action failed")

    async def _until_done(self, call: Callable[[], Awaitable[object]]) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await call()
                return
            except TelegramUnauthorizedError:
                raise
            except (TelegramAPIError, ClientDecodeError) as exc:
                failures += 1
                log.warning("telegram call failed (%s); trying again", exc)
                await self._pause(failures)

    async def _pause(self, failures: int) -> None:
        await self._sleep(full_jitter(failures, self.backoff_base, self.backoff_max))

    async def _sleep(self, seconds: float) -> None:
        """Wait, but no longer than until :meth:`stop`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
