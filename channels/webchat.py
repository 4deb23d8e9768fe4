"""The web chat: a page served by the gateway, talking to it over a WebSocket; a channel for trying stories.

Inbound: each browser frame is parsed, size-limited and rate-limited per connection, then published through
the shared ingress path (duplicate drop, publish with confirm) like any webhook; the browser is told
``ack`` once its message is safe, and resends what was not acknowledged after a reconnect under the same
client message id, so the resend is the same inbound id and is handled once. The inbound names this
process in ``meta["instance"]``: its replies come back on this process's direct destination of the bus.

Outbound: :meth:`WebChatChannel.send` pushes the reply to every socket this process holds for that user.
A user with no socket here (a reload, a network blip) has the reply kept for ``hold`` seconds on this
process and gets it on reconnecting; after that it is dropped with a log line — the page is a designer's
tool, not a mailbox.

Protocol (JSON text frames). Browser → gateway: ``{"type": "message", "id", "text"}`` and
``{"type": "button", "id", "payload", "title"}``. Gateway → browser: ``{"type": "ready", "user"}`` first,
``{"type": "ack", "id"}``, ``{"type": "reply", "id", "text", "image", "buttons"}`` (plus ``"author"``, the
name of the person who wrote it, on a support desk's answer; the page labels it), and
``{"type": "error", "code", "message", "id"}`` with code ``too_large``, ``rate_limited``, ``bad_frame`` or
``unavailable`` (the only one worth resending). A connection that keeps being refused is closed (1008).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from channels.base import Channel, Progress
from channels.data_url import decode_image, is_data_url
from gateway.core.errors import Unavailable
from gateway.core.schema import INSTANCE_META, ButtonPress, Inbound, Reply

log = logging.getLogger("gateway.channels.webchat")

CHANNEL = "webchat"
PAGE_PATH = "/"
SOCKET_PATH = "/webchat/socket"
ASSETS = {  # served from channels/static/ under /webchat/<name>
    "webchat.js": "text/javascript",
    "webchat.css": "text/css",
    "bot.svg": "image/svg+xml",
}
MAX_TEXT_BYTES = 4096  # of one message's text or button title, UTF-8
MAX_PAYLOAD_BYTES = 1024  # of a button payload
MAX_FRAME_BYTES = 16 * 1024  # beyond this aiohttp closes the socket (1009) without reading the frame
RATE_PER_SECOND, RATE_BURST = 5.0, 10  # messages one connection may send
REFUSALS_PER_SECOND, REFUSALS_BURST = 1.0, 20  # refused frames before the socket is closed as a flood
SEND_TIMEOUT = 5.0  # seconds a frame may take to leave for a browser
DEFAULT_AUTHOR = "Support"  # the label of a person's answer whose author has no name

# A user id is the browser's bearer token for its attributes: random, from the page or from us.
_USER_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' http: https: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

Accept = Callable[[Sequence[Inbound]], Awaitable[None]]


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; each taken token is one allowed event."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class FrameRefused(Exception):
    """A browser frame that is not published; the browser gets an error frame saying why."""

    def __init__(self, code: str, message: str, client_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.client_id = client_id


@dataclass(frozen=True, slots=True)
class BrowserMessage:
    """One parsed browser frame: typed text or a pressed button."""

    client_id: str
    text: str
    button: ButtonPress | None = None

    def inbound(self, user: str, instance: str) -> Inbound:
        return Inbound(
            id=f"{CHANNEL}:{user}:{self.client_id}",
            channel=CHANNEL,
            chat=user,
            user=user,
            channel_message_id=self.client_id,
            text=self.text,
            button=self.button,
            meta={INSTANCE_META: instance},
        )


def parse_frame(data: str) -> BrowserMessage:
    """A browser frame as a message; raises :class:`FrameRefused` for anything else."""
    try:
        frame = json.loads(data)
    except ValueError:
        raise FrameRefused("bad_frame", "not JSON") from None
    if not isinstance(frame, dict):
        raise FrameRefused("bad_frame", "not a JSON object")
    client_id = frame.get("id")
    if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
        raise FrameRefused("bad_frame", "id must be 1 to 64 letters, digits, '_' or '-'")
    kind = frame.get("type")
    if kind == "message":
        text = _text(frame, "text", MAX_TEXT_BYTES, client_id)
        if not text.strip():
            raise FrameRefused("bad_frame", "empty message", client_id)
        return BrowserMessage(client_id, text)
    if kind == "button":
        payload = _text(frame, "payload", MAX_PAYLOAD_BYTES, client_id)
        title = _text(frame, "title", MAX_TEXT_BYTES, client_id)
        if not payload:
            raise FrameRefused("bad_frame", "empty button payload", client_id)
        return BrowserMessage(client_id, title, ButtonPress(payload=payload, title=title or None))
    raise FrameRefused("bad_frame", "type must be message or button", client_id)


def _text(frame: dict[str, Any], name: str, limit: int, client_id: str) -> str:
    value = frame.get(name, "")
    if not isinstance(value, str):
        raise FrameRefused("bad_frame", f"{name} must be a string", client_id)
    if len(value.encode("utf-8", "surrogatepass")) > limit:
        raise FrameRefused("too_large", f"{name} is over {limit} bytes", client_id)
    return value


def render_reply(reply: Reply) -> str:
    """A reply as the browser's frame; the page renders every string as text. An image in a ``data:``
    URL goes as it is (the page's CSP allows ``img-src data:``) once it decodes; else :class:`Refused`."""
    if reply.image is not None and is_data_url(reply.image.url):
        decode_image(reply.image.url)
    image = None if reply.image is None else {"url": reply.image.url, "caption": reply.image.caption}
    buttons = [{"title": b.title, "payload": b.payload} for b in reply.buttons]
    frame: dict[str, Any] = {
        "type": "reply",
        "id": reply.id,
        "text": reply.text,
        "image": image,
        "buttons": buttons,
    }
    if reply.author is not None:
        frame["author"] = reply.author or DEFAULT_AUTHOR
    return json.dumps(frame, ensure_ascii=False)


class HeldReplies:
    """Replies for users with no socket on this process, kept ``seconds`` per user, bounded in count."""

    def __init__(
        self,
        seconds: float = 60.0,
        *,
        per_user: int = 50,
        users: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.per_user = per_user
        self.users = users
        self.clock = clock
        self._held: OrderedDict[str, deque[tuple[float, str]]] = OrderedDict()  # least recently held first

    def __len__(self) -> int:
        return sum(len(frames) for frames in self._held.values())

    def hold(self, user: str, frame: str) -> None:
        now = self.clock()
        self._expire(now)
        frames = self._held.setdefault(user, deque())
        self._held.move_to_end(user)
        if len(frames) >= self.per_user:
            frames.popleft()
            log.info("web chat: a reply for %s dropped: more than %d waiting", user, self.per_user)
        frames.append((now, frame))
        while len(self._held) > self.users:
            gone, dropped = self._held.popitem(last=False)
            log.info("web chat: %d replies for %s dropped: too many users waiting", len(dropped), gone)

    def take(self, user: str) -> list[str]:
        """The replies kept for ``user`` (oldest first), no longer kept."""
        now = self.clock()
        self._expire(now)
        frames = self._held.pop(user, deque())
        return [frame for at, frame in frames if now - at <= self.seconds]

    def peek(self, user: str) -> list[str]:
        """The replies kept for ``user``, still kept (an export of the user's data)."""
        self._expire(self.clock())
        return [frame for _, frame in self._held.get(user, ())]

    def forget(self, user: str) -> int:
        """Drop the replies kept for ``user`` (an erase of the user's data); how many there were."""
        return len(self._held.pop(user, ()))

    def _expire(self, now: float) -> None:
        while self._held:
            user, frames = next(iter(self._held.items()))
            if now - frames[-1][0] <= self.seconds:
                return
            del self._held[user]
            log.info(
                "web chat: %d replies for %s dropped: the browser did not come back within %.0f s",
                len(frames),
                user,
                self.seconds,
            )


class _Connection:
    """One browser socket, with its own rate limits."""

    def __init__(
        self, socket: web.WebSocketResponse, user: str, transport: asyncio.Transport | None = None
    ) -> None:
        self.socket = socket
        self.user = user
        self.transport = transport
        self.messages = TokenBucket(RATE_PER_SECOND, RATE_BURST)
        self.refusals = TokenBucket(REFUSALS_PER_SECOND, REFUSALS_BURST)

    async def send(self, frame: str) -> bool:
        """False when the socket is gone, or so slow to read that it is given up (so one stuck browser
        cannot hold a delivery slot)."""
        if self.socket.closed:
            return False
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await self.socket.send_str(frame)
        except TimeoutError:
            log.info("web chat: the browser of %s does not read; closing its socket", self.user)
            if self.transport is not None:
                self.transport.abort()  # the read loop ends, the socket is detached
            return False
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def send_json(self, frame: dict[str, Any]) -> bool:
        return await self.send(json.dumps(frame, ensure_ascii=False))


class WebChatChannel(Channel):
    name = CHANNEL

    def __init__(self, instance: str, *, hold: float = 60.0) -> None:
        self.instance = instance  # this process, named in each inbound's meta so replies come back here
        self.held = HeldReplies(hold)
        self._sockets: dict[str, set[_Connection]] = {}
        self._accept: Accept | None = None

    def describe(self) -> str:
        return "web chat"

    # -- HTTP -------------------------------------------------------------------------------------

    def install(self, app: web.Application, accept: Accept) -> None:
        """Serve the page, its assets and the socket on ``app``; inbound messages go to ``accept``."""
        self._accept = accept
        static = files("channels") / "static"
        page = (static / "index.html").read_bytes()
        assets = {name: (static / name).read_bytes() for name in ASSETS}

        async def serve_page(_: web.Request) -> web.Response:
            return web.Response(body=page, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS)

        async def serve_asset(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            if name not in assets:
                raise web.HTTPNotFound()
            headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
            return web.Response(body=assets[name], content_type=ASSETS[name], headers=headers)

        app.router.add_get(PAGE_PATH, serve_page)
        app.router.add_get(SOCKET_PATH, self._serve_socket)
        app.router.add_get("/webchat/{name}", serve_asset)
        app.on_shutdown.append(lambda _: self.close_sockets())

    async def _serve_socket(self, request: web.Request) -> web.StreamResponse:
        # timeout: how long a close waits for the browser's answer (at shutdown, for every socket at once)
        socket = web.WebSocketResponse(timeout=2.0, heartbeat=30.0, max_msg_size=MAX_FRAME_BYTES)
        if not socket.can_prepare(request).ok:
            return web.Response(status=400, text="a WebSocket endpoint\n")
        await socket.prepare(request)
        user = request.query.get("user", "")
        if not _USER_ID.fullmatch(user):
            user = secrets.token_urlsafe(16)
        connection = _Connection(socket, user, request.transport)
        await connection.send_json({"type": "ready", "user": user})
        await self._attach(connection)
        binary = FrameRefused("bad_frame", "text frames only")
        try:
            async for frame in socket:
                if frame.type is WSMsgType.TEXT:
                    going_on = await self._on_frame(connection, frame.data)
                elif frame.type is WSMsgType.BINARY:
                    going_on = await self._refuse(connection, binary)
                else:  # ERROR: aiohttp closed the socket (a frame over MAX_FRAME_BYTES: 1009)
                    going_on = False
                if not going_on:
                    break
        finally:
            self._detach(connection)
        return socket

    async def close_sockets(self) -> None:
        """At shutdown: close every socket (1001), so that the pages reconnect to the next process."""
        sockets = [c.socket for connections in self._sockets.values() for c in connections]
        await asyncio.gather(
            *(s.close(code=WSCloseCode.GOING_AWAY, message=b"gateway stopping") for s in sockets),
            return_exceptions=True,
        )

    # -- inbound ----------------------------------------------------------------------------------

    async def _on_frame(self, connection: _Connection, data: str) -> bool:
        """Handle one browser frame; False once the connection is closed as a flood."""
        try:
            message = parse_frame(data)
        except FrameRefused as refused:
            return await self._refuse(connection, refused)
        if not connection.messages.take():
            why = f"too many messages: at most {RATE_PER_SECOND:g} a second"
            return await self._refuse(connection, FrameRefused("rate_limited", why, message.client_id))
        assert self._accept is not None, "install() first"
        try:
            await self._accept([message.inbound(connection.user, self.instance)])
        except Unavailable as exc:
            log.warning("web chat message from %s not accepted: %s", connection.user, exc)
            unavailable = {"code": "unavailable", "message": "the gateway is busy; sending again shortly"}
            await connection.send_json({"type": "error", **unavailable, "id": message.client_id})
            return True
        await connection.send_json({"type": "ack", "id": message.client_id})
        return True

    async def _refuse(self, connection: _Connection, refused: FrameRefused) -> bool:
        if not connection.refusals.take():
            log.warning("web chat: closing the socket of %s: too many refused frames", connection.user)
            await connection.socket.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many messages")
            return False
        log.debug("web chat frame from %s refused: %s", connection.user, refused.message)
        frame = {"type": "error", "code": refused.code, "message": refused.message, "id": refused.client_id}
        await connection.send_json(frame)
        return True

    # -- outbound ---------------------------------------------------------------------------------

    async def _attach(self, connection: _Connection) -> None:
        """Hand a (re)connected browser what was kept for it, then route its replies to it."""
        user = connection.user
        while frames := self.held.take(user):  # replies held while these were sent come in the next round
            for n, frame in enumerate(frames):
                if not await connection.send(frame):
                    for unsent in frames[n:]:
                        self.held.hold(user, unsent)
                    return
        self._sockets.setdefault(connection.user, set()).add(connection)

    def _detach(self, connection: _Connection) -> None:
        connections = self._sockets.get(connection.user)
        if connections is not None:
            connections.discard(connection)
            if not connections:
                del self._sockets[connection.user]

    async def send(self, reply: Reply, progress: Progress | None = None) -> None:
        frame = render_reply(reply)
        delivered = False
        for connection in list(self._sockets.get(reply.chat, ())):
            delivered = await connection.send(frame) or delivered
        if not delivered:
            self.held.hold(reply.chat, frame)

    async def close(self) -> None:
        await self.close_sockets()
