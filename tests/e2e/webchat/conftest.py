"""Fixtures for the web chat across processes: role processes on the example stories, without the fake
Telegram and SMTP server of the other whole-gateway tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.paths import EMAILS, STORIES
from tests.support.processes import GatewayProcess, Start
from tests.support.timers import DESK_KEY


@pytest.fixture
async def start_role(
    amqp_url: str, redis_url: str, queue_prefix: str, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[Start]:
    """``await start_role("serve", GATEWAY_INSTANCE_ID="a")``: a role process of one deployment on the
    real RabbitMQ and Redis, with the example stories; stopped after the test. (It overrides, for this
    folder, the ``start_role`` of ``tests/e2e/conftest.py``.)"""
    shared = {
        "GATEWAY_AMQP_URL": amqp_url,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_QUEUE_PREFIX": queue_prefix,
        "GATEWAY_REDIS_PREFIX": redis_prefix,
        "GATEWAY_PARTITIONS": "4",
        "GATEWAY_STORIES": str(STORIES),
        "GATEWAY_EMAILS": str(EMAILS),
        "GATEWAY_SECRET_KEY": DESK_KEY,  # the example stories hand over (human.yml)
        "GATEWAY_OUTBOX": str(tmp_path / "outbox"),
        "GATEWAY_PORT": "0",
        "GATEWAY_CONNECT_TIMEOUT": "10s",
    }
    started: list[GatewayProcess] = []

    async def start(command: str, **env: str) -> GatewayProcess:
        process = await GatewayProcess(command, env={**shared, **env}).start()
        started.append(process)
        await process.wait_for(r"INFO .*: ready$")
        return process

    yield start
    for process in started:
        await process.stop()
        print(f"--- gateway {' '.join(process.args)}:\n{process.output()}")  # shown when a test fails
