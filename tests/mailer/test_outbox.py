"""OutboxTransport: whole, parseable .eml files, one per email."""

from __future__ import annotations

import logging
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from gateway.core.schema import EmailJob
from mailer.message import build_message
from mailer.outbox import OutboxTransport
from mailer.transport import TemporaryMailError


def message(job_id: str, text: str = "hello", html: str | None = None) -> EmailMessage:
    job = EmailJob(
        id=job_id, to=("Zo\u00eb <support@example.com>",), subject="Ticket \U0001f44b", text=text, html=html
    )
    return build_message(job, "gateway@localhost", max_recipients=10)


def listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


async def test_writes_parseable_eml_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "var" / "outbox"  # created on first use
    transport = OutboxTransport(folder)
    ticket = "User wrote: {{@user.x}} <b>\r\nsecond\n"
    with caplog.at_level(logging.INFO, logger="mailer.outbox"):
        await transport.send(message("console:you:1/e0", text=ticket, html="<p>x</p>"))
        await transport.send(message("console:you:2/e0"))
    await transport.close()

    files = [folder / name for name in listing(folder)]
    assert len(files) == 2, files
    assert all(re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-console_you_\d_e0\.eml", f.name) for f in files)
    parsed: EmailMessage = BytesParser(policy=policy.default).parsebytes(files[0].read_bytes())
    assert parsed["Subject"] == "Ticket \U0001f44b"
    assert parsed["To"].addresses[0].display_name == "Zo\u00eb"
    text_part = parsed.get_body(("plain",))
    assert text_part is not None and text_part.get_content() == ticket
    assert str(files[0]) in caplog.text and str(files[1]) in caplog.text


async def test_an_unwritable_outbox_is_a_temporary_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(TemporaryMailError, match="cannot write to the outbox"):
        await OutboxTransport(blocker).send(message("x/e0"))
    assert listing(tmp_path) == ["outbox"]


async def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    transport = OutboxTransport(tmp_path)
    for n in range(5):
        await transport.send(message(f"job {n}/e0"))
    names = listing(tmp_path)
    assert len(names) == 5
    assert not [name for name in names if name.startswith(".") or name.endswith(".tmp")]
