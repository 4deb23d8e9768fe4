"""A real IMAP server for the inbox tests: one private dovecot per session (plain, and one with TLS), and
an account with an empty mailbox of its own for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.imap import ImapAccount, ImapServer


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
