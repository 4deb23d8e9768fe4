"""Session fixtures starting a real Redis Cluster and a real RabbitMQ cluster once for all cluster tests.

Each takes the first free block of ports from 17000 (Redis) and 17200 (RabbitMQ) on, so two sessions on
one machine do not collide, and is stopped (every process killed, its folder removed) at the end.
Tests that kill nodes restart them before they end, so the next test finds the whole cluster.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clusters import RabbitCluster, RedisCluster


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    with RabbitCluster(tmp_path_factory.mktemp("rabbit-cluster")) as cluster:
        yield cluster
