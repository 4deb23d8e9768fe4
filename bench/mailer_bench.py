"""Mailer transport benchmark: build and send emails through SmtpTransport to a local aiosmtpd sink.

The sink runs in its own process (so it does not share the client's event loop or GIL) and counts what
it accepted; the run fails unless every email arrived. Each configuration opens as many SMTP sessions
as its pool has, and reuses them for the whole burst. A "connection per email" run (the naive floor a
reused session is meant to beat) is measured in the same invocation.

    .venv/bin/python bench/mailer_bench.py [--emails 2000] [--senders 8]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.core.schema import EmailJob
from gateway.core.settings import SmtpSettings
from mailer.message import build_message
from mailer.smtp import SmtpTransport

TICKET = (
    "Support question from user Ann from Paris: my order {{@user.x}} <b>never</b> arrived \U0001f622\n" * 5
)


class CountingSink:
    def __init__(self) -> None:
        self.accepted = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.accepted += 1
        return "250 OK"


def run_sink() -> None:
    """The child process: serve on a free port, print it, print the count when told to stop."""
    from aiosmtpd.smtp import SMTP

    async def serve() -> None:
        sink = CountingSink()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(sink, enable_SMTPUTF8=True), "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        print(sink.accepted, flush=True)

    asyncio.run(serve())


async def send_all(port: int, emails: int, senders: int, pool_size: int, reuse: bool) -> tuple[float, int]:
    settings = SmtpSettings("127.0.0.1", port, None, None, implicit_tls=False, starttls=False, timeout=30)
    transport = SmtpTransport(settings, pool_size=pool_size)
    jobs = iter(range(emails))
    opened = 0

    async def sender() -> None:
        nonlocal opened
        for n in jobs:
            job = EmailJob(
                id=f"bench:{n}/e0", to=("support@example.com",), subject=f"Ticket {n}", text=TICKET
            )
            message = build_message(job, "Gateway <gateway@example.com>", max_recipients=10)
            if reuse:
                await transport.send(message)
            else:
                single = SmtpTransport(settings)
                await single.send(message)
                await single.close()
                opened += 1

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    await transport.close()
    return time.perf_counter() - started, opened + transport.connections_opened


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=8, help="concurrent send calls (mailer concurrency)")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink()
        return

    runs = [
        ("1 reused connection", 1, True),
        ("2 reused connections", 2, True),
        ("connection per email", 1, False),
    ]
    for name, pool_size, reuse in runs:
        emails = args.emails if reuse else max(1, args.emails // 10)
        sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True)
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        try:
            seconds, connections = asyncio.run(send_all(port, emails, args.senders, pool_size, reuse))
        finally:
            sink.send_signal(signal.SIGTERM)
            accepted = int(sink.stdout.readline() or -1)
            sink.wait(10)
        if accepted != emails:
            raise SystemExit(f"{name}: the sink accepted {accepted} of {emails} emails")
        print(
            f"{name:<22} {emails / seconds:8.0f} emails/s  ({emails} emails in {seconds:.2f} s,"
            f" {connections} SMTP connection(s), all {accepted} accepted)"
        )


if __name__ == "__main__":
    main()
