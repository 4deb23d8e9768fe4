"""Fixtures for the mailer tests: real SMTP servers (scripted: :mod:`tests.support.smtp_server`) and a
self-signed certificate for their TLS."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.smtp_server import Certificate, ServerFactory, SmtpServer, start_smtp_server


@pytest.fixture
def smtp_server() -> Iterator[ServerFactory]:
    """``smtp_server(tls=None|"starttls"|"implicit", tls_context=ctx, auth=False)`` → a running server."""
    started: list[SmtpServer] = []

    def start(
        tls: str | None = None, tls_context: ssl.SSLContext | None = None, auth: bool = False, **smtp: Any
    ) -> SmtpServer:
        server = start_smtp_server(tls, tls_context, auth, **smtp)
        started.append(server)
        return server

    yield start
    for server in started:
        server.controller.stop()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 / localhost (``cryptography`` is not installed: openssl)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return Certificate(cert, key)
