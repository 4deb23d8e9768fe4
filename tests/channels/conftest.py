"""Fixtures for the channel tests. Helpers (doc fixtures, the spied bus, the webhook app) live in
:mod:`tests.support.channels`, the scripted browser of the web chat in :mod:`tests.support.webchat`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.app.process import Gateway
from gateway.app.roles.base import RoleName
from gateway.core.bus.memory import MemoryBus
from gateway.core.store.memory import MemoryStore
from tests.support.webchat import settings_for


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """``gateway run`` in this process: every role, the embedded bus and store, the example stories."""
    running = Gateway(
        settings_for(tmp_path), frozenset(RoleName), bus=MemoryBus(partitions=4), store=MemoryStore()
    )
    await running.start()
    yield running
    await running.stop()
