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
import socket
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
