"""Fault injection for tests: a TCP proxy that can cut, refuse or stall the traffic to a real service.

Point a client at ``127.0.0.1:<port>`` returned by :meth:`TcpProxy.start` instead of the service, then:

* :meth:`TcpProxy.cut` — close every connection and refuse new ones (the service "goes away");
* :meth:`TcpProxy.restore` — accept connections again, on the same port;
* :meth:`TcpProxy.stall` / :meth:`TcpProxy.unstall` — keep connections open but forward nothing (a hung
  service or a black-holed network), then let the held bytes through.

Usage::

    async with TcpProxy("127.0.0.1", 5672) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        ...
        await proxy.cut()
        ...
        await proxy.restore()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
from pathlib import Path
from types import TracebackType


class _Link:
    """One client connection and its connection to the target, with the two pumps between them."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.writers = (client, upstream)
        self.pumps: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        for pump in self.pumps:
            pump.cancel()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.accepted = 0  # connections accepted since start, for assertions

    @property
    def connections(self) -> int:
        """Connections open through the proxy now."""
        return len(self._links)

    async def start(self) -> int:
        """Listen (on a free port the first time, the same port afterwards); return the port."""
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, self.listen_host, self.port, reuse_address=True
            )
            self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def cut(self) -> None:
        """Close every connection at once and refuse new ones until :meth:`restore`."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for link in list(self._links):
            link.abort()
        self._links.clear()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def restore(self) -> None:
        """Accept connections again, on the same port."""
        self._flowing.set()
        await self.start()

    def stall(self) -> None:
        """Forward nothing more (connections stay open, new ones are accepted) until :meth:`unstall`."""
        self._flowing.clear()

    def unstall(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        await self.cut()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._server is None:  # cut while this connection was being accepted
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            client_writer.transport.abort()
            return
        for writer in (client_writer, upstream_writer):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.accepted += 1
        link = _Link(client_writer, upstream_writer)
        self._links.add(link)
        link.pumps = [
            asyncio.create_task(self._pump(client_reader, upstream_writer, link)),
            asyncio.create_task(self._pump(upstream_reader, client_writer, link)),
        ]

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # one side went away: take the other down too, as a real broken connection would
            self._links.discard(link)
            for other in link.writers:
                other.transport.abort()


READY = b"Ready to accept connections"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server subprocess of this test's own, with AOF, that the test may stop and start again."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        self._output: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = await asyncio.create_subprocess_exec(
            *(server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "yes", "--dir", str(self.directory), "--loglevel", "notice"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        log = b""
        async with asyncio.timeout(10):
            while READY not in (line := await self.process.stdout.readline()):  # it logs when it is ready
                if not line:
                    raise RuntimeError(f"redis-server exited: {log.decode(errors='replace')}")
                log += line
        self._output = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while await self.process.stdout.read(65536):
            pass

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    async def stop(self) -> None:
        if self.process is None:
            return
        self.resume()
        self.process.terminate()
        await self.process.wait()
        if self._output is not None:
            await self._output
        self.process = None
