"""The Redis client every Redis user of the core builds on, and which of its failures mean "Redis is away".

redis-py's own retries are off: a retried call can misreport (a SET NX "seen before", a script's
"committed before"), so every connection error, timeout, loading or read-only answer surfaces at once as
:class:`~gateway.core.errors.StoreUnavailable` and the caller retries the work. The pool blocks when
exhausted instead of raising, replaces connections the server closed when it hands them out
(maintenance notifications off), and pings idle ones before reuse.
"""

from __future__ import annotations

from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from gateway.core.errors import StoreUnavailable

# Answers that mean "Redis is away or cannot take writes now", never "this call is wrong".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError, pool wait timeout
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
    OSError,
)


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The error a caller sees for ``exc`` (one of :data:`UNAVAILABLE`, or a cancelled round trip)."""
    error = StoreUnavailable(f"redis: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def make_client(
    url: str,
    *,
    client_name: str = "gateway",
    max_connections: int = 16,
    socket_timeout: float = 5.0,
    connect_timeout: float = 2.0,
    pool_timeout: float = 10.0,
    health_check_interval: int = 30,
    **pool_options: Any,
) -> Redis:
    """A client on a blocking pool: an exhausted pool waits (up to ``pool_timeout``) instead of raising.

    ``client_name`` names its connections in CLIENT LIST; ``pool_options`` go to the pool as they are
    (``connection_class``, ``protocol``, ...). Needs redis-py 8: 7.x's asyncio connections take no
    ``maint_notifications_config`` and fail on the first connect.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        client_name=client_name,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        socket_keepalive=True,
        health_check_interval=health_check_interval,
        retry=Retry(NoBackoff(), 0),
        # With maintenance notifications on (redis-py 8's default, "auto"), the pool skips its check for a
        # connection the server closed, so the first call after a Redis restart failed on every pooled
        # connection, and the work it carried waited one more backoff step.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
        **pool_options,
    )
    return Redis.from_pool(pool)
