"""A real SMTP server on localhost (aiosmtpd) that keeps what it receives and lets a test await it."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.faults import free_port


class SmtpSink:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived: asyncio.Event | None = None
        self._controller: Controller | None = None
        self.refuse: str | None = None  # e.g. "550 5.1.1 No such user": every recipient is refused

    @property
    def url(self) -> str:
        assert self._controller is not None
        return f"smtp://127.0.0.1:{self._controller.port}"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse is not None:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message: Any = message_from_bytes(content, policy=policy.default)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._add, message)
        return "250 OK"

    def _add(self, message: EmailMessage) -> None:
        assert self._arrived is not None
        self.messages.append(message)
        self._arrived.set()

    async def start(self) -> SmtpSink:
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        self._controller = Controller(self, hostname="127.0.0.1", port=free_port())
        await asyncio.to_thread(self._controller.start)
        return self

    async def stop(self) -> None:
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[EmailMessage]:
        assert self._arrived is not None
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.messages
