"""SmtpTransport against a real (aiosmtpd) SMTP server: TLS, AUTH, failures, connection reuse."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from email.message import EmailMessage
from typing import Any

import pytest

from gateway.core.schema import EmailJob
from mailer.message import build_message
from mailer.smtp import SmtpTransport
from mailer.transport import PermanentMailError, TemporaryMailError
from tests.support.smtp_server import PASSWORD, USERNAME, Certificate, ServerFactory

SENDER = "Gateway <gateway@example.com>"


def message(n: int = 0, **changes: Any) -> EmailMessage:
    values: dict[str, Any] = {"id": f"web:{n}/e0", "to": ("support@example.com",), "subject": f"ticket {n}"}
    values.update(changes)
    return build_message(EmailJob(**values), SENDER, max_recipients=10)


async def test_plain_delivery(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    transport = SmtpTransport(server.settings())
    try:
        await transport.send(message(to=("Ann <ann@example.com>",), cc=("bob@example.org",), text="hello"))
    finally:
        await transport.close()
    [received] = server.recorder.received
    assert received.mail_from == "gateway@example.com"
    assert received.rcpt_tos == ("ann@example.com", "bob@example.org")
    assert not received.tls
    assert received.message["Subject"] == "ticket 0"
    assert received.message.get_content() == "hello"
    assert server.recorder.quits == 1


async def test_utf8_names_subject_and_a_literal_ticket_arrive_intact(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    ticket = "User wrote: {{@user.x}} <<@message>> <b>hi</b> \U0001f44b caf\u00e9\r\nline 2\n.\n..dots\r\n"
    html = "<p>User wrote: &lt;b&gt;hi&lt;/b&gt; \U0001f44b</p>"
    subject = "Frage von Zo\u00eb \u00dcn\u00efcode \U0001f44b"
    transport = SmtpTransport(server.settings())
    try:
        await transport.send(
            message(
                to=("Zo\u00eb \u00dcn\u00efcode <zoe@example.com>",), subject=subject, text=ticket, html=html
            )
        )
    finally:
        await transport.close()
    received = server.recorder.received[0].message
    assert received["Subject"] == subject
    assert received["To"].addresses[0].display_name == "Zo\u00eb \u00dcn\u00efcode"
    text_part, html_part = received.get_body(("plain",)), received.get_body(("html",))
    assert text_part is not None and html_part is not None
    assert text_part.get_payload(decode=True) == ticket.encode()
    assert html_part.get_content() == html


async def test_injected_headers_never_reach_the_server(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    transport = SmtpTransport(server.settings())
    try:
        await transport.send(
            message(
                to=("ann@example.com", "bob@example.com\r\nBcc: evil@attacker.example"),
                subject="Hi\r\nBcc: evil@attacker.example",
                reply_to="ann@example.com\r\nBcc: evil@attacker.example",
            )
        )
    finally:
        await transport.close()
    [received] = server.recorder.received
    assert received.rcpt_tos == ("ann@example.com",)
    assert "Bcc" not in received.message
    assert received.message["Subject"] == "Hi Bcc: evil@attacker.example"


async def test_starttls(smtp_server: ServerFactory, certificate: Certificate) -> None:
    server = smtp_server(tls="starttls", tls_context=certificate.server_context())
    transport = SmtpTransport(server.settings(), tls_context=certificate.client_context())
    try:
        await transport.send(message())
    finally:
        await transport.close()
    assert [r.tls for r in server.recorder.received] == [True]


async def test_starttls_refuses_an_untrusted_certificate(
    smtp_server: ServerFactory, certificate: Certificate
) -> None:
    server = smtp_server(tls="starttls", tls_context=certificate.server_context())
    transport = SmtpTransport(server.settings())  # the system trust store does not know this certificate
    try:
        with pytest.raises(TemporaryMailError, match="CERTIFICATE_VERIFY_FAILED"):
            await transport.send(message())
    finally:
        await transport.close()
    assert server.recorder.received == []


async def test_implicit_tls(smtp_server: ServerFactory, certificate: Certificate) -> None:
    server = smtp_server(tls="implicit", tls_context=certificate.server_context())
    transport = SmtpTransport(server.settings(), tls_context=certificate.client_context())
    try:
        await transport.send(message(1))
        await transport.send(message(2))
    finally:
        await transport.close()
    assert [r.tls for r in server.recorder.received] == [True, True]
    assert len(server.recorder.connections) == 1


async def test_login(smtp_server: ServerFactory) -> None:
    server = smtp_server(auth=True)
    transport = SmtpTransport(server.settings(username=USERNAME, password=PASSWORD))
    try:
        await transport.send(message())
    finally:
        await transport.close()
    assert [r.authenticated for r in server.recorder.received] == [True]


async def test_wrong_password_is_permanent_with_the_server_reply(smtp_server: ServerFactory) -> None:
    server = smtp_server(auth=True)
    transport = SmtpTransport(server.settings(username=USERNAME, password="wrong"))
    try:
        with pytest.raises(PermanentMailError, match="535"):
            await transport.send(message())
    finally:
        await transport.close()
    assert server.recorder.received == []


async def test_421_is_temporary_and_the_next_try_gets_through_once(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    server.recorder.data_replies.append("421 4.3.2 Service shutting down, try later")
    transport = SmtpTransport(server.settings())
    try:
        with pytest.raises(TemporaryMailError, match=re.escape("421 4.3.2 Service shutting down")):
            await transport.send(message())
        await transport.send(message())
    finally:
        await transport.close()
    assert len(server.recorder.received) == 1
    assert transport.connections_opened == 2  # aiosmtplib hangs up after a 421, as RFC 5321 asks


async def test_451_keeps_the_connection(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    server.recorder.rcpt_replies.append("451 4.7.1 Greylisted, come back later")
    transport = SmtpTransport(server.settings())
    try:
        with pytest.raises(TemporaryMailError, match=re.escape("451 4.7.1 Greylisted")):
            await transport.send(message())
        await transport.send(message())
    finally:
        await transport.close()
    assert len(server.recorder.received) == 1
    assert transport.connections_opened == 1


async def test_550_is_permanent_with_the_server_reply(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    server.recorder.rcpt_rules["nobody@example.com"] = ["550 5.1.1 <nobody@example.com>: user unknown"]
    transport = SmtpTransport(server.settings())
    try:
        with pytest.raises(
            PermanentMailError, match=re.escape("550 5.1.1 <nobody@example.com>: user unknown")
        ):
            await transport.send(message(to=("nobody@example.com",)))
        await transport.send(message(1))  # the session is still good after the refusal
    finally:
        await transport.close()
    assert [r.rcpt_tos for r in server.recorder.received] == [("support@example.com",)]
    assert transport.connections_opened == 1


async def test_554_after_data_is_permanent(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    server.recorder.data_replies.append("554 5.7.1 Message rejected as spam")
    transport = SmtpTransport(server.settings())
    try:
        with pytest.raises(PermanentMailError, match=re.escape("554 5.7.1 Message rejected as spam")):
            await transport.send(message())
    finally:
        await transport.close()


async def test_one_refused_recipient_of_two_is_delivered_to_the_other(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    server.recorder.rcpt_rules["nobody@example.com"] = ["550 5.1.1 user unknown"]
    transport = SmtpTransport(server.settings())
    try:
        await transport.send(message(to=("nobody@example.com", "ann@example.com")))
    finally:
        await transport.close()
    assert [r.rcpt_tos for r in server.recorder.received] == [("ann@example.com",)]


async def test_connection_dropped_mid_data_is_temporary_and_the_retry_arrives_once(
    smtp_server: ServerFactory,
) -> None:
    server = smtp_server()
    server.recorder.drop_data = 1
    transport = SmtpTransport(server.settings())
    try:
        with pytest.raises(TemporaryMailError):
            await transport.send(message(text="body\n" * 2000))
        await transport.send(message(text="body\n" * 2000))
    finally:
        await transport.close()
    assert server.recorder.data_commands == 2
    assert len(server.recorder.received) == 1
    assert transport.connections_opened == 2


async def test_a_hung_server_times_out_as_temporary(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    server.recorder.hang_data = True
    transport = SmtpTransport(server.settings(timeout=0.3))
    started = time.monotonic()
    try:
        with pytest.raises(TemporaryMailError, match="timed out"):
            await transport.send(message())
    finally:
        await transport.close()
    assert time.monotonic() - started < 3


async def test_connection_refused_is_temporary(smtp_server: ServerFactory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = smtp_server().settings(port=port)
    transport = SmtpTransport(settings)
    with pytest.raises(TemporaryMailError, match="connection failed"):
        await transport.send(message())
    await transport.close()


async def test_a_burst_reuses_one_connection(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    transport = SmtpTransport(server.settings())
    try:
        for n in range(10):
            await transport.send(message(n))
        await asyncio.gather(*(transport.send(message(n)) for n in range(10, 30)))
    finally:
        await transport.close()
    assert len(server.recorder.received) == 30
    assert len(server.recorder.connections) == 1
    assert transport.connections_opened == 1
    assert sorted(r.message["Subject"] for r in server.recorder.received) == sorted(
        f"ticket {n}" for n in range(30)
    )


async def test_a_pool_of_two_uses_at_most_two_connections(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    transport = SmtpTransport(server.settings(), pool_size=2)
    try:
        await asyncio.gather(*(transport.send(message(n)) for n in range(20)))
    finally:
        await transport.close()
    assert len(server.recorder.received) == 20
    assert 1 <= len(server.recorder.connections) <= 2
    assert server.recorder.quits == transport.connections_opened


async def test_a_session_the_server_hung_up_is_replaced(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    server.recorder.hang_up_after_data = True  # as servers do to idle clients, without a word
    transport = SmtpTransport(server.settings(), idle_check=0.0)  # probe with NOOP before each reuse
    try:
        for n in range(3):
            await transport.send(message(n))
    finally:
        await transport.close()
    assert [r.message["Subject"] for r in server.recorder.received] == ["ticket 0", "ticket 1", "ticket 2"]
    assert len(server.recorder.connections) == 3


async def test_send_after_close_is_temporary(smtp_server: ServerFactory) -> None:
    transport = SmtpTransport(smtp_server().settings())
    await transport.close()
    await transport.close()
    with pytest.raises(TemporaryMailError, match="closed"):
        await transport.send(message())
