"""The real parts of the inbox tests: one private dovecot per session (plain, and one with TLS) with an
account and an empty mailbox of its own for every test, and RabbitMQ and Redis of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.core.bus.rabbit import RabbitBus
from gateway.core.store.redis import RedisStore
from mailer.inbox.service import Inbox
from tests.support.bus import FAST_RETRIES, delete_topology
from tests.support.imap import ImapAccount, ImapServer
from tests.support.inbox import INBOX_ADDRESS, SECRET, STAFF, Inbounds, collect_inbounds, hand_over


@pytest.fixture(scope="session")
def imap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapServer]:
    """A plain ``imap://`` dovecot on 127.0.0.1, started once for the session and stopped at its end."""
    with ImapServer(tmp_path_factory.mktemp("imap")) as server:
        yield server


@pytest.fixture(scope="session")
def imaps_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapServer]:
    """An ``imaps://`` dovecot with a self-signed certificate (``cert_path``, ``ssl_context()``)."""
    with ImapServer(tmp_path_factory.mktemp("imaps"), tls=True) as server:
        yield server


@pytest.fixture
def imap_account(imap_server: ImapServer) -> ImapAccount:
    """A new user of ``imap_server`` whose mailboxes are empty: ``.url`` is a ``GATEWAY_IMAP_URL``."""
    return imap_server.add_user()


@pytest.fixture
def imaps_account(imaps_server: ImapServer) -> ImapAccount:
    return imaps_server.add_user()


# The bus and store the inbox publishes on, as deployed: RabbitMQ and Redis of this test's own.
@pytest.fixture
async def rabbit(amqp_url: str, queue_prefix: str) -> AsyncIterator[RabbitBus]:
    bus = RabbitBus(amqp_url, prefix=queue_prefix, partitions=2, backoff=FAST_RETRIES)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()
        await delete_topology(amqp_url, bus.topology)


@pytest.fixture
async def redis_store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, prefix=redis_prefix)
    await hand_over(store)
    yield store
    await store.close()


@pytest.fixture
def inbox(rabbit: RabbitBus, redis_store: RedisStore) -> Inbox:
    """An inbox on the real services; ``CONVERSATION`` is handed over."""
    return Inbox(rabbit, redis_store, secret_key=SECRET, inbox_address=INBOX_ADDRESS, staff=STAFF)


@pytest.fixture
async def inbounds(rabbit: RabbitBus) -> AsyncIterator[Inbounds]:
    """The staff inbounds RabbitMQ carries (as a worker would take them)."""
    collected = await collect_inbounds(rabbit)
    yield collected
    await collected.stop()
