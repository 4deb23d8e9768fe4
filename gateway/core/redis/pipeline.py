"""Automatic pipelining: the calls made during one turn of the event loop go out together.

They go as one non-transactional pipeline (EVALSHA/SET/EXISTS/...) on one pooled connection, and each
caller gets its own answer or its own error (a failing script does not fail its neighbours; each script
stays atomic on its own). A lone call is still one round trip; many concurrent calls share one, which
saves redis-py's per-command cost (pool checkout, health check, timeouts). A batch holds at most
:attr:`AutoPipeline.max_batch` calls; more make more batches, sent at once on more connections. A script
Redis has forgotten (NOSCRIPT, after a restart) is loaded and its calls re-sent on the same connection,
one extra round trip.

Failures: a broken connection fails every call of its batch that has no answer yet, as
:class:`~gateway.core.errors.StoreUnavailable` (see :mod:`gateway.core.redis.client`); a write among
them may have been applied. An error reply (WRONGTYPE, a script's error) goes to its caller only.

Uses redis-py's asyncio connection internals (written for redis-py 8.x, see :mod:`gateway.core.redis`).
One pipeline works on one pool, that is one Redis node.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis import exceptions as redis_errors
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.typing import EncodableT

from gateway.core.redis.client import UNAVAILABLE, unavailable
from gateway.core.redis.scripts import LuaScript

log = logging.getLogger(__name__)


def pack_command(command: Sequence[EncodableT]) -> bytes:
    """A command in the Redis protocol (RESP): str as UTF-8, int as decimal, bytes as they are.

    A leaner :meth:`redis.asyncio.connection.Connection.pack_command`, which costs twice as much, for the
    few argument types the gateway sends.
    """
    parts = [b"*%d\r\n" % len(command)]
    append = parts.append
    for arg in command:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            arg = b"%d" % arg
        elif not isinstance(arg, bytes):
            raise TypeError(f"cannot send a {type(arg).__name__} to Redis: {arg!r}")
        append(b"$%d\r\n" % len(arg))
        append(arg)
        append(b"\r\n")
    return b"".join(parts)


@dataclass(slots=True)
class _Call:
    """One caller's command in a batch, and the future its answer goes to."""

    command: bytes  # packed
    script: LuaScript | None  # the script an EVALSHA runs, loaded again on NOSCRIPT
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def answer(self, value: Any) -> None:
        """Give the caller its reply: a value, an error reply, or StoreUnavailable for 'Redis is away'."""
        if self.future.done():  # the caller was cancelled
            return
        if isinstance(value, UNAVAILABLE):
            self.future.set_exception(unavailable(value))
        elif isinstance(value, BaseException):
            self.future.set_exception(value)
        else:
            self.future.set_result(value)


class CommandPipeline(Protocol):
    """What the store needs of a pipelining client: :class:`AutoPipeline` on one node, or
    :class:`~gateway.core.redis.cluster.ClusterPipeline` on a Redis Cluster."""

    max_batch: int

    async def execute(self, *command: EncodableT, script: LuaScript | None = None) -> Any: ...

    async def run(self, script: LuaScript, keys: Sequence[str], args: Sequence[EncodableT] = ()) -> Any: ...

    async def aclose(self) -> None: ...


class AutoPipeline:
    """Sends the commands issued during one event-loop turn as one pipeline on one pooled connection.

    Nothing waits for company: the flush runs on the loop's next turn, so a lone call goes out at once.
    The pool's connections must not decode responses if callers expect bytes.
    """

    def __init__(self, pool: ConnectionPool, *, max_batch: int) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self._pending: deque[_Call] = deque()
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def execute(self, *command: EncodableT, script: LuaScript | None = None) -> Any:
        """Send ``command`` with the others of this loop turn; its reply, or its error raised."""
        call = _Call(pack_command(command), script)  # packed here: a bad argument fails its caller only
        self._pending.append(call)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await call.future

    async def run(self, script: LuaScript, keys: Sequence[str], args: Sequence[EncodableT] = ()) -> Any:
        """EVALSHA ``script`` on ``keys`` and ``args``; loaded first, once, if Redis has forgotten it."""
        return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args, script=script)

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._pending:
            batch: list[_Call] = []
            while self._pending and len(batch) < self.max_batch:
                call = self._pending.popleft()
                if not call.future.done():  # skip callers cancelled before their batch left
                    batch.append(call)
            if batch:
                task = asyncio.get_running_loop().create_task(self._send(batch))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            connection: AbstractConnection = await self.pool.get_connection()  # type: ignore[no-untyped-call]
        except BaseException as exc:
            self._fail(batch, exc)
            return
        try:
            forgotten = await self._exchange(connection, [], batch, reload_on_noscript=True)
            if forgotten:  # Redis restarted: load the scripts, then re-send the calls that did not run
                scripts = {call.script.sha: call.script for call in forgotten if call.script is not None}
                log.info("redis forgot %d script(s); loading them again", len(scripts))
                loads = [pack_command(("SCRIPT", "LOAD", script.source)) for script in scripts.values()]
                await self._exchange(connection, loads, forgotten, reload_on_noscript=False)
        except BaseException as exc:
            self._fail(batch, exc)  # only the calls still waiting: the others have their answers
        finally:
            await self.pool.release(connection)

    @staticmethod
    def _fail(batch: list[_Call], exc: BaseException) -> None:
        """Answer every waiting call of a batch that broke; a cancelled batch still answers, then stops."""
        for call in batch:
            call.answer(exc if isinstance(exc, Exception) else unavailable(exc))
        if not isinstance(exc, Exception):
            raise exc

    @staticmethod
    async def _exchange(
        connection: AbstractConnection,
        preamble: Sequence[bytes],
        calls: list[_Call],
        *,
        reload_on_noscript: bool,
    ) -> list[_Call]:
        """One round trip: send ``preamble`` and the calls' commands, answer each call as its reply is read.

        Returns the calls that met NOSCRIPT (when ``reload_on_noscript``). All replies share one deadline,
        the connection's socket timeout, instead of redis-py's timer per reply.
        """
        forgotten: list[_Call] = []
        async with asyncio.timeout(connection.socket_timeout):
            await connection.send_packed_command(b"".join([*preamble, *(call.command for call in calls)]))
            for _ in preamble:
                await connection.read_response(timeout=math.inf)  # math.inf: no timer of redis-py's own
            for call in calls:
                try:
                    reply = await connection.read_response(timeout=math.inf)
                except redis_errors.NoScriptError as error:
                    if reload_on_noscript:
                        forgotten.append(call)
                        continue
                    reply = error
                except redis_errors.ResponseError as error:  # this call's error; the stream is still in step
                    reply = error
                call.answer(reply)
        return forgotten

    async def aclose(self) -> None:
        """Let the batches already sent finish, so their callers get answers before the pool closes."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
