"""A Redis client for any part of the core that keeps state in Redis (the store today; timers, handoffs
and a user index to come). It knows connections, commands and scripts, no key layout or data format.

- :mod:`~gateway.core.redis.client`: :func:`~gateway.core.redis.client.make_client` (a blocking pool, no
  retries) and which failures mean "Redis is away" (raised as :class:`~gateway.core.errors.StoreUnavailable`).
- :mod:`~gateway.core.redis.scripts`: :class:`~gateway.core.redis.scripts.LuaScript`, a script named by
  its SHA-1, loaded again when Redis has forgotten it.
- :mod:`~gateway.core.redis.pipeline`: :class:`~gateway.core.redis.pipeline.AutoPipeline`, which sends the
  calls of one event-loop turn as one pipeline on one pooled connection, and its RESP packer.

redis-py: the pipeline drives redis-py's asyncio connections below their public API (the pool's
``get_connection`` and ``release``, ``send_packed_command``, ``read_response(timeout=...)``,
``socket_timeout``), and the client turns off maintenance notifications, an option of the asyncio pool
since redis-py 8. Written for and tested with redis-py 8.x (``redis[hiredis]>=8.0,<9`` in
pyproject.toml). redis-py 7.x refuses that option at the first connect; with it left out, the store's
tests passed on 7.4.1 too (checked once, not kept up).

Redis Cluster: an :class:`~gateway.core.redis.pipeline.AutoPipeline` works on one pool, that is one node.
A cluster mode keeps one per node and routes each call by the slot of its keys (the keys of one call share
a hash tag, so one slot).

The dependencies go one way: :mod:`gateway.core.store.redis` (and any other Redis user) → this package →
:mod:`gateway.core.errors`.
"""
