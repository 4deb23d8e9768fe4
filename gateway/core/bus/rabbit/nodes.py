"""One robust connection to a RabbitMQ cluster: to one node at a time, moving on when that node goes away.

aio-pika's robust connection reconnects, restoring its channels, consumers and declarations, but only to
the URL it was made with (mosquito/aio-pika#141): when that node dies, it retries a dead address forever.
:class:`ClusterConnection` keeps the whole of aio-pika's recovery and only changes where it reconnects:
while the connection is down, each ``reconnect_interval`` without success moves it to the next node of
``GATEWAY_AMQP_URL``, so recovery lands on a live node within a few intervals. The first connection is
made to the first node that answers, in the order given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika import RobustConnection
from yarl import URL

log = logging.getLogger("gateway.core.bus.rabbit")


def node_urls(urls: str | Sequence[str]) -> list[str]:
    """The nodes of ``GATEWAY_AMQP_URL``: one URL, or several separated by commas."""
    listed = urls.split(",") if isinstance(urls, str) else list(urls)
    nodes = [url.strip() for url in listed if url.strip()]
    if not nodes:
        raise ValueError("no RabbitMQ URL given")
    return nodes


def safe(url: URL | str) -> str:
    """A node for the log, its password masked."""
    url = URL(str(url))
    return str(url.with_password("***")) if url.password else str(url)


class ClusterConnection(RobustConnection):
    """A robust connection that follows the nodes of a cluster (see the module notes)."""

    def __init__(self, nodes: Sequence[str], first: int = 0, **kwargs: Any) -> None:
        self._nodes = [URL(node) for node in nodes]
        self._current = first % len(self._nodes)
        self._follower: asyncio.Task[None] | None = None
        super().__init__(self._nodes[self._current], **kwargs)
        self.close_callbacks.add(self._on_lost)

    @property  # type: ignore[override]
    def url(self) -> URL:
        """The node the next connection attempt goes to (aio-pika reads it at each attempt)."""
        return self._nodes[self._current]

    @url.setter
    def url(self, value: URL) -> None:  # aio-pika sets it at start and when a secret is updated
        self._nodes[self._current] = URL(value)

    @property
    def node(self) -> str:
        return safe(self.url)

    def _on_lost(self, *_: object) -> None:
        if (
            len(self._nodes) > 1
            and not self._close_called
            and (self._follower is None or self._follower.done())
        ):
            self._follower = self.loop.create_task(self._move_while_down())

    async def _move_while_down(self) -> None:
        """While down: after each reconnect interval with no connection, try the next node."""
        interval = max(float(self.reconnect_interval), 0.1)
        while not self.is_closed and not self._close_called:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.connected.wait(), interval * 1.5)
            if self.connected.is_set() or self.is_closed or self._close_called:
                return
            gone = self.node
            self._current = (self._current + 1) % len(self._nodes)
            log.warning("RabbitMQ node %s does not answer; reconnecting to %s", gone, self.node)

    async def close(self, exc: Any = asyncio.CancelledError) -> None:
        if self._follower is not None:
            self._follower.cancel()
        await super().close(exc)


async def connect_cluster(
    nodes: Sequence[str], *, timeout: float, reconnect_interval: float, client_properties: dict[str, Any]
) -> ClusterConnection:
    """A connection to the first node that answers, in the order given; the last failure if none does."""
    failure: BaseException | None = None
    for first in range(len(nodes)):
        connection = ClusterConnection(
            nodes, first, reconnect_interval=reconnect_interval, client_properties=client_properties
        )
        try:
            await connection.connect(timeout=timeout)
        except (aio_pika.exceptions.AMQPException, ConnectionError, OSError, TimeoutError) as exc:
            failure = exc
            with contextlib.suppress(Exception):
                await connection.close()
            if len(nodes) > 1:
                log.warning("RabbitMQ node %s does not answer: %r", safe(nodes[first]), exc)
            continue
        return connection
    assert failure is not None
    raise failure
