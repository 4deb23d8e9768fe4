"""``gateway mailer dead`` / ``replay`` on the MemoryBus, with a real SMTP server behind the mailer."""

from __future__ import annotations

import asyncio
import re

from gateway.core.bus.base import Envelope, Topic
from gateway.core.bus.memory import MemoryBus
from gateway.core.schema import EmailJob
from gateway.core.settings import Settings
from gateway.core.store.memory import MemoryStore
from mailer.deadletters import dead_email_lines, list_dead_emails, replay_dead_emails, run_dead_letter_command
from mailer.service import Mailer
from mailer.smtp import SmtpTransport
from tests.support.smtp_server import ServerFactory


def email(job_id: str, to: str, subject: str) -> Envelope:
    job = EmailJob(id=job_id, to=(to,), subject=subject, text="hi", created_at=0.0)
    return Envelope(job.to_json(), job.id)


async def test_list_then_replay_once_the_server_is_fixed(smtp_server: ServerFactory) -> None:
    server = smtp_server()
    server.recorder.rcpt_rules["ann@example.com"] = ["550-5.2.1 Mailbox disabled\r\n550 5.2.1 for good"]
    server.recorder.rcpt_rules["bob@example.com"] = ["554 5.7.1 Relay denied"]
    bus, store = MemoryBus(), MemoryStore()
    transport = SmtpTransport(server.settings())
    mailer = Mailer(bus, store, transport, mail_from="gateway@example.com", retry_base=0.01)
    await mailer.start()
    try:
        envelopes = [
            email("web:1/e0", "ann@example.com", "Ticket\nfrom Ann"),
            email("web:2/e0", "bob@example.com", "Ticket from Bob"),
            Envelope(b"{garbage", "bad-1"),
        ]
        for handled, envelope in enumerate(envelopes, 1):  # one at a time: dead letters keep this order
            await bus.publish(Topic.EMAIL, [envelope])
            await asyncio.wait_for(mailer.wait_handled(handled), 10)

        dead = await list_dead_emails(bus)
        assert [(d.job_id, d.to, d.parsed) for d in dead] == [
            ("web:1/e0", ("ann@example.com",), True),
            ("web:2/e0", ("bob@example.com",), True),
            ("bad-1", (), False),
        ]
        lines = await dead_email_lines(bus)
        assert len(lines) == 4
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  web:1/e0  ", lines[0])
        assert "web:1/e0  to=ann@example.com  subject='Ticket from Ann'  tries=1" in lines[0]
        assert "reason: " in lines[0] and "550 5.2.1 Mailbox disabled 5.2.1 for good" in lines[0]
        assert "\n" not in "".join(lines)
        assert "554 5.7.1 Relay denied" in lines[1]
        assert "bad-1  (not an email job)" in lines[2]
        assert lines[3] == "3 dead-lettered email job(s)"
        assert (await dead_email_lines(bus, limit=2))[-1].endswith("(showing the oldest; there may be more)")

        # Ann's mailbox works again; Bob's relay still refuses.
        server.recorder.rcpt_rules.pop("ann@example.com")
        server.recorder.rcpt_rules["bob@example.com"] = ["554 5.7.1 Relay denied"]
        assert await replay_dead_emails(bus, limit=2) == 2
        await asyncio.wait_for(mailer.wait_handled(5), 10)
        assert [r.rcpt_tos for r in server.recorder.received] == [("ann@example.com",)]
        assert [d.job_id for d in await list_dead_emails(bus)] == ["bad-1", "web:2/e0"]

        # Replaying a job that was sent meanwhile does not send it again.
        await bus.publish(Topic.EMAIL, [email("web:1/e0", "ann@example.com", "again")])
        await asyncio.wait_for(mailer.wait_handled(6), 10)
        assert len(server.recorder.received) == 1
    finally:
        await mailer.stop()
        await transport.close()
        await bus.close()


async def test_empty_queue_and_the_cli_entry_point() -> None:
    bus = MemoryBus()
    out: list[str] = []
    assert await run_dead_letter_command(Settings(), "dead", None, bus=bus, out=out.append) == 0
    assert out == ["no dead-lettered email jobs"]
    out.clear()
    assert await run_dead_letter_command(Settings(), "replay", None, bus=bus, out=out.append) == 0
    assert out == ["replayed 0 email job(s) onto the email queue"]
    assert await run_dead_letter_command(Settings(), "bury", None, bus=bus, out=out.append) == 2
