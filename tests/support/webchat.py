"""The web chat under test: settings for a whole gateway on the example stories (HTTP on a free port), and
a scripted browser speaking the page's WebSocket protocol."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from gateway.core.settings import Settings
from tests.support.paths import EMAILS, STORIES
from tests.support.timers import DESK_KEY

WAIT = 10.0


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "stories": STORIES,
        "emails": EMAILS,
        "outbox": tmp_path / "outbox",
        "port": 0,
        "instance_id": "test-instance",
        "secret_key": DESK_KEY,  # the example stories hand over (human.yml)
        **overrides,
    }
    return Settings(**values)


class Browser:
    """What the page does, scripted: one socket, every frame the gateway sends kept in order."""

    def __init__(self, http: aiohttp.ClientSession, address: str) -> None:
        self.http = http
        self.address = address.rstrip("/")
        self.frames: list[dict[str, Any]] = []
        self.user: str | None = None
        self.closed: int | None = None  # the close code, once the gateway closed the socket
        self._page = secrets.token_hex(4)  # like the page: client ids unique per page load
        self._ids = itertools.count(1)
        self._read = 0  # replies handed out by next_replies()
        self._changed = asyncio.Condition()
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self, user: str | None = None) -> str:
        """Connect (as ``user`` when given) and wait for ``ready``; returns the user id it got."""
        url = f"{self.address}/webchat/socket" + (f"?user={user}" if user is not None else "")
        self.frames, self._read, self.closed = [], 0, None
        self._socket = await self.http.ws_connect(url)
        self._reader = asyncio.create_task(self._receive(self._socket))
        ready = await self.wait_for(lambda: any(f["type"] == "ready" for f in self.frames))
        self.user = str(ready[0]["user"])
        return self.user

    async def _receive(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        async for message in socket:
            if message.type is aiohttp.WSMsgType.TEXT:
                async with self._changed:
                    self.frames.append(json.loads(message.data))
                    self._changed.notify_all()
        async with self._changed:
            self.closed = socket.close_code
            self._changed.notify_all()

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._reader is not None:
            await self._reader

    async def wait_for(self, condition: Callable[[], bool], timeout: float = WAIT) -> list[dict[str, Any]]:
        """Wait until ``condition()`` holds; returns the frames received so far."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(condition)
        except TimeoutError:
            raise AssertionError(f"condition not met within {timeout} s; frames: {self.frames}") from None
        return list(self.frames)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    async def send_raw(self, data: str | bytes) -> None:
        assert self._socket is not None
        if isinstance(data, bytes):
            await self._socket.send_bytes(data)
        else:
            await self._socket.send_str(data)

    async def send(self, frame: dict[str, Any]) -> str:
        """Send a frame (with a fresh client id unless it has one); returns the id."""
        frame = {"id": f"{self._page}-{next(self._ids)}", **frame}
        await self.send_raw(json.dumps(frame))
        return str(frame["id"])

    async def answered(self, client_id: str) -> dict[str, Any]:
        """The ack or error the gateway answered the frame ``client_id`` with."""

        def answer() -> bool:
            return any(f.get("id") == client_id and f["type"] in ("ack", "error") for f in self.frames)

        frames = await self.wait_for(answer)
        return next(f for f in frames if f.get("id") == client_id and f["type"] in ("ack", "error"))

    async def say(self, text: str, **frame: Any) -> str:
        client_id = await self.send({"type": "message", "text": text, **frame})
        answer = await self.answered(client_id)
        assert answer["type"] == "ack", answer
        return client_id

    async def press(self, title: str, payload: str | None = None) -> None:
        """Click the button ``title`` of the last reply that had buttons (or send ``payload`` under it)."""
        if payload is None:
            payload = next(b["payload"] for b in self.last_buttons() if b["title"] == title)
        client_id = await self.send({"type": "button", "payload": payload, "title": title})
        assert (await self.answered(client_id))["type"] == "ack"

    def last_buttons(self) -> list[dict[str, str]]:
        with_buttons = [f for f in self.of_type("reply") if f["buttons"]]
        return list(with_buttons[-1]["buttons"]) if with_buttons else []

    async def next_replies(self, count: int) -> list[str]:
        """The texts of the next ``count`` replies (waiting for them)."""
        start = self._read
        await self.wait_for(lambda: len(self.of_type("reply")) >= start + count)
        self._read = start + count
        return [str(f["text"]) for f in self.of_type("reply")[start : start + count]]

    def unread_replies(self) -> list[dict[str, Any]]:
        return self.of_type("reply")[self._read :]

    async def barrier(self) -> None:
        """Wait until the gateway has answered everything sent before (its frames arrive in order)."""
        client_id = await self.send({"type": "barrier"})  # not a frame type: refused, but answered
        assert (await self.answered(client_id))["code"] == "bad_frame"
