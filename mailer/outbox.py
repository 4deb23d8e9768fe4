"""Write emails as ``.eml`` files instead of sending them: the default when no SMTP server is set.

A developer opens the file in any mail client; a test parses it. Each file appears whole or not at
all (written under a temporary name, then renamed), so a watcher never reads half a message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from email.message import EmailMessage
from pathlib import Path

from mailer.transport import MailTransport, TemporaryMailError

log = logging.getLogger(__name__)

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_name(text: str) -> str:
    return _UNSAFE_NAME.sub("_", text).strip("._")[:80] or "email"


class OutboxTransport(MailTransport):
    """Write each message to ``<folder>/<UTC timestamp>-<job id>.eml`` (CRLF line ends, as on the wire)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, message: EmailMessage) -> None:
        try:
            path = await asyncio.to_thread(self._write, message)
        except OSError as exc:
            raise TemporaryMailError(f"cannot write to the outbox {self.folder}: {exc}") from exc
        log.info("email written to %s (to %s, subject %r)", path, message.get("To", ""), message["Subject"])

    def _write(self, message: EmailMessage) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{now % 1:.6f}"[1:] + "Z"
        ident = message.get("X-Gateway-Job") or message.get("Message-ID") or ""
        path = self.folder / f"{stamp}-{_safe_name(str(ident))}.eml"
        data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            with temporary.open("wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return path

    async def close(self) -> None:
        """Nothing to release: every file is complete when ``send`` returns."""
