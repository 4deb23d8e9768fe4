"""Fixtures for whole-gateway tests: separate role processes on the real RabbitMQ and Redis, the fake
Telegram Bot API and a real SMTP server, all on localhost.

Every test collected under this folder is marked ``e2e`` here, so ``pytest -m "not e2e"`` leaves them out
and a new test cannot forget the mark. Helpers live in :mod:`tests.support` (``deployment``,
``processes``, ``smtp_sink``, ``fakes``, ``faults``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.deployment import SECRET, write_stories
from tests.support.fakes import FakeTelegram
from tests.support.processes import GatewayProcess, Start
from tests.support.smtp_sink import SmtpSink

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``e2e`` every test of this folder (the hook sees the whole session's items: filter by path)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def role_env(
    amqp_url: str,
    redis_url: str,
    queue_prefix: str,
    redis_prefix: str,
    tmp_path: Path,
    telegram: FakeTelegram,
    smtp: SmtpSink,
) -> dict[str, str]:
    """The settings every role of one test deployment shares."""
    return {
        "GATEWAY_AMQP_URL": amqp_url,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_QUEUE_PREFIX": queue_prefix,
        "GATEWAY_REDIS_PREFIX": redis_prefix,
        "GATEWAY_PARTITIONS": "4",
        "GATEWAY_STORIES": str(write_stories(tmp_path / "stories")),
        "GATEWAY_SMTP_URL": smtp.url,
        "GATEWAY_PORT": "0",
        "GATEWAY_CONNECT_TIMEOUT": "10s",
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }


@pytest.fixture
async def start_role(role_env: dict[str, str]) -> AsyncIterator[Start]:
    """``await start_role("worker", GATEWAY_X="...")`` → a started role process, stopped after the test."""
    started: list[GatewayProcess] = []

    async def start(command: str, *args: str, wait_ready: bool = True, **env: str) -> GatewayProcess:
        process = await GatewayProcess(command, *args, env={**role_env, **env}).start()
        started.append(process)
        if wait_ready:
            await process.wait_for(r"INFO .*: ready$")
        return process

    yield start
    for process in started:
        await process.stop()
        print(f"--- gateway {' '.join(process.args)}:\n{process.output()}")  # shown when a test fails
