"""The bus, the store and the timer schedule the settings name: RabbitMQ and Redis, or their in-process
stand-ins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.bus.base import Bus
from gateway.core.schedule.base import Schedule
from gateway.core.settings import Settings
from gateway.core.store.base import Store
from gateway.core.store.broadcasts.base import Broadcasts
from gateway.core.store.users.base import UserData, UserIndex


def build_bus(settings: Settings) -> Bus:
    """RabbitMQ when ``GATEWAY_AMQP_URL`` is set, else the embedded in-process bus."""
    if settings.amqp_url is None:
        from gateway.core.bus.memory import MemoryBus

        return MemoryBus(partitions=settings.partitions, max_attempts=settings.max_attempts)
    from gateway.core.bus.rabbit import RabbitBus

    return RabbitBus(
        settings.amqp_url,
        prefix=settings.queue_prefix,
        partitions=settings.partitions,
        queue_type=settings.queue_type,
        max_attempts=settings.max_attempts,
    )


def build_store(settings: Settings, clock: Callable[[], float] | None = None) -> Store:
    """Redis when ``GATEWAY_REDIS_URL`` is set, else the in-memory store (on ``clock``, if given)."""
    if settings.redis_url is None:
        from gateway.core.store.memory import MemoryStore

        if clock is None:
            return MemoryStore(processed_ttl=settings.processed_ttl)
        return MemoryStore(processed_ttl=settings.processed_ttl, clock=clock)
    from gateway.core.store.redis import RedisStore

    return RedisStore.from_url(
        settings.redis_url,
        prefix=settings.redis_prefix,
        processed_ttl=settings.processed_ttl,
        cluster=settings.redis_cluster,
    )


def build_schedule(settings: Settings, clock: Callable[[], float] | None = None) -> Schedule:
    """The timer schedule beside the store: on Redis when ``GATEWAY_REDIS_URL`` is set, else in memory (its
    leases on ``clock``, if given)."""
    if settings.redis_url is None:
        from gateway.core.schedule.memory import MemorySchedule

        return MemorySchedule() if clock is None else MemorySchedule(clock=clock)
    from gateway.core.schedule.redis import RedisSchedule

    return RedisSchedule(settings.redis_url, prefix=settings.redis_prefix, cluster=settings.redis_cluster)


@dataclass(frozen=True, slots=True)
class UserStores:
    """What the store keeps about users beyond a conversation's turn, on the same backend as the store."""

    data: UserData
    index: UserIndex
    broadcasts: Broadcasts


def build_user_stores(store: Store) -> UserStores:
    """The user data, user index and broadcasts beside ``store`` (a RedisStore or a MemoryStore)."""
    from gateway.core.store.memory import MemoryStore

    if isinstance(store, MemoryStore):
        from gateway.core.store.broadcasts.memory import MemoryBroadcasts
        from gateway.core.store.users.memory import MemoryUserData, MemoryUserIndex

        return UserStores(MemoryUserData(store), MemoryUserIndex(), MemoryBroadcasts())
    from gateway.core.store.broadcasts.redis import RedisBroadcasts
    from gateway.core.store.redis import RedisStore
    from gateway.core.store.users.redis import RedisUserData, RedisUserIndex

    if not isinstance(store, RedisStore):
        raise TypeError(f"no user data for a {type(store).__name__}")
    return UserStores(RedisUserData(store), RedisUserIndex(store), RedisBroadcasts(store))
