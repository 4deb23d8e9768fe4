"""Automatic pipelining on a Redis Cluster: one :class:`~gateway.core.redis.pipeline.AutoPipeline` per
master, each call sent to the master of its key's slot.

A call's key decides where it goes (the first key of a script; every key of one script shares a hash tag,
so one slot, which the cluster requires). The calls of one loop turn bound for the same master still share
one round trip, so the pipelining keeps its benefit per node. The slot map comes from ``CLUSTER SLOTS``,
asked of any node that answers. When a master fails and its replica takes over, calls to the old address
fail (connection refused, or ``MOVED`` from a node that knows better) and raise
:class:`~gateway.core.errors.StoreUnavailable` like any Redis outage, so the bus retries the work in place;
meanwhile the map is read again, and the retry goes to the new master. ``MOVED`` and ``ASK`` mean the
command did not run, so its retry is safe; a broken connection may hide a write that ran, as on one node.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.typing import EncodableT

from gateway.core.errors import StoreUnavailable
from gateway.core.redis.client import make_client
from gateway.core.redis.pipeline import AutoPipeline
from gateway.core.redis.scripts import LuaScript

log = logging.getLogger(__name__)

Node = tuple[str, int]  # host, port of a master
REFRESH_INTERVAL = 0.5  # seconds between two reads of the slot map after failures


class ClusterPipeline:
    """Sends each call to the master of its key's slot, pipelined per master (see the module notes)."""

    def __init__(self, url: str, *, max_batch: int, **client_options: Any) -> None:
        self._url = urlsplit(url)
        self._client_options = client_options
        self._max_batch = max_batch
        self._clients: dict[Node, Redis] = {}
        self._pipelines: dict[Node, AutoPipeline] = {}
        self._starts: list[int] = []  # first slot of each range, ascending
        self._owners: list[Node] = []  # the master of each range
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0
        self._known: list[Node] = [(self._url.hostname or "127.0.0.1", self._url.port or 6379)]

    # -- calls -----------------------------------------------------------------------------------

    async def execute(self, *command: EncodableT, script: LuaScript | None = None) -> Any:
        """Send a one-key command (its key is ``command[1]``) to the master of that key's slot."""
        return await self._on_node(command[1], command, script)

    async def run(self, script: LuaScript, keys: Sequence[str], args: Sequence[EncodableT] = ()) -> Any:
        return await self._on_node(keys[0], ("EVALSHA", script.sha, len(keys), *keys, *args), script)

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @max_batch.setter
    def max_batch(self, calls: int) -> None:
        self._max_batch = calls
        for pipeline in self._pipelines.values():
            pipeline.max_batch = calls

    async def ping(self) -> bool:
        """True when every master answers."""
        try:
            await self._ready()
            masters = {self._pipelines[node] for node in self._owners}
            answers = await asyncio.gather(*(pipeline.execute("PING") for pipeline in masters))
        except (StoreUnavailable, redis_errors.RedisError, OSError):
            self._refresh_soon()
            return False
        return all(answer in (b"PONG", "PONG", True) for answer in answers)

    async def _on_node(self, key: EncodableT, command: Sequence[EncodableT], script: LuaScript | None) -> Any:
        await self._ready()
        pipeline = self._pipelines[self._owner(key)]
        try:
            return await pipeline.execute(*command, script=script)
        except (redis_errors.MovedError, redis_errors.AskError) as exc:
            self._refresh_soon()
            raise StoreUnavailable(f"redis cluster: the slot moved ({exc}); reading the map again") from exc
        except StoreUnavailable:
            self._refresh_soon()  # its master may be failing over to a replica
            raise

    def _owner(self, key: EncodableT) -> Node:
        raw = key if isinstance(key, bytes) else str(key).encode()
        slot = key_slot(raw)
        return self._owners[bisect.bisect_right(self._starts, slot) - 1]

    # -- the slot map ------------------------------------------------------------------------------

    async def _ready(self) -> None:
        if not self._owners:
            await self._refresh()

    def _refresh_soon(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        """Read ``CLUSTER SLOTS`` from the first known node that answers; StoreUnavailable if none does."""
        wait = self._refreshed_at + REFRESH_INTERVAL - time.monotonic()
        if wait > 0 and self._owners:
            await asyncio.sleep(wait)
        self._refreshed_at = time.monotonic()
        failure: BaseException | None = None
        for node in list(self._known):
            try:
                slots = await self._pipeline(node).execute("CLUSTER", "SLOTS")
            except (StoreUnavailable, redis_errors.RedisError, OSError) as exc:
                failure = exc
                continue
            self._use(slots)
            return
        raise StoreUnavailable(f"redis cluster: no node answers CLUSTER SLOTS: {failure!r}")

    def _use(self, slots: Sequence[Sequence[Any]]) -> None:
        ranges: list[tuple[int, Node]] = []
        for entry in slots:
            start, master = int(entry[0]), entry[2]
            host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
            ranges.append((start, (host or self._url.hostname or "127.0.0.1", int(master[1]))))
            for replica in entry[3:]:
                replica_host = replica[0].decode() if isinstance(replica[0], bytes) else str(replica[0])
                self._remember((replica_host, int(replica[1])))
        ranges.sort()
        self._starts = [start for start, _ in ranges]
        self._owners = [node for _, node in ranges]
        for node in self._owners:
            self._remember(node)
            self._pipeline(node)

    def _remember(self, node: Node) -> None:
        if node not in self._known:
            self._known.append(node)

    def _pipeline(self, node: Node) -> AutoPipeline:
        pipeline = self._pipelines.get(node)
        if pipeline is None:
            netloc = self._url.netloc.rsplit("@", 1)
            where = f"{node[0]}:{node[1]}"
            url = urlunsplit(self._url._replace(netloc=f"{netloc[0]}@{where}" if len(netloc) == 2 else where))
            client = self._clients[node] = make_client(url, **self._client_options)
            pipeline = self._pipelines[node] = AutoPipeline(client.connection_pool, max_batch=self._max_batch)
        return pipeline

    async def aclose(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        for pipeline in self._pipelines.values():
            await pipeline.aclose()
        for client in self._clients.values():
            await client.aclose()
