"""Chaos run: Redis stopped and started under load, with `serve`, 2 `worker` and `mailer` as processes.

As an outside user would: the roles run as `python -m gateway.app.cli ROLE` on the machine's RabbitMQ (a vhost
of their own) and a private redis-server with AOF, facing the fake Telegram Bot API and a real SMTP server
run here. U users each send "hi", "Ada", "help", "the printer is on fire" at once (each posted until the
webhook answers 200, as Telegram retries). At a third of the replies, Redis is stopped (SIGTERM; SIGKILL
with ``--kill``, then with ``appendfsync always`` so acknowledged writes survive) for ``--outage`` seconds.
Reported: every chat's replies exactly once and in order, every email (by Message-ID) exactly once; how
long Redis was unreachable (signal to "Ready to accept connections"); and from then, how soon each role
works: worker, the first reply to K new users (over all partitions) saying "hi"; mailer, the email of a
user left at the ticket step before the outage who sends the ticket; serve, the first reply to a chat
whose previous reply went out while Redis was away (it waits for that one's "sent" record); the backlog.

    .venv/bin/python bench/redis_outage_bench.py [--users 300] [--outage 1.0] [--probes 16] [--kill]
        [--timeout 120] [--logs DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import rabbit_vhost  # noqa: E402
from gateway.core.bus.base import partition_of  # noqa: E402
from tests.support.deployment import (  # noqa: E402
    SECRET,
    TelegramUser,
    queue_depths,
    wait_until_drained,
    write_stories,
)
from tests.support.fakes import FakeTelegram  # noqa: E402
from tests.support.faults import READY, PrivateRedis  # noqa: E402
from tests.support.processes import GatewayProcess  # noqa: E402
from tests.support.smtp_sink import SmtpSink  # noqa: E402

SCRIPT = ["hi", "Ada", "help", "the printer is on fire"]
EXPECTED = ["What's your name?", "Nice to meet you, Ada.", "What is the problem?", "Ticket sent."]
PROBE_TICKET = "mailer probe: the printer is on fire"
PARTITIONS = 4  # as in the e2e tests' role_env
BACK_WITHIN = 2.0  # seconds: what "shortly after Redis answers again" is taken to mean
Replies = list[tuple[float, str, str]]  # (wall-clock time, chat, text), in arrival order


class ChaosRedis(PrivateRedis):
    """:class:`PrivateRedis` with an ``appendfsync`` policy, and SIGKILL besides the clean stop."""

    def __init__(self, directory: Path, appendfsync: str) -> None:
        super().__init__(directory)
        self.appendfsync = appendfsync

    async def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = await asyncio.create_subprocess_exec(
            *(server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"),
            *("--appendfsync", self.appendfsync, "--dir", str(self.directory)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        async with asyncio.timeout(30):
            while READY not in (line := await self.process.stdout.readline()):
                if not line:
                    raise RuntimeError("redis-server exited before it was ready")
        self._output = asyncio.create_task(self._drain())

    async def kill(self) -> None:
        assert self.process is not None and self._output is not None
        self.process.kill()
        await self.process.wait()
        await self._output
        self.process = None


class TimedTelegram(FakeTelegram):
    """The fake Bot API, noting each reply that went out and when."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: Replies = []

    async def record(
        self, method: str, params: dict[str, Any], request: web.Request, status: int, error: str | None = None
    ) -> None:
        if method == "sendMessage" and 200 <= status < 300 and error is None:
            self.replies.append((time.time(), str(params.get("chat_id")), str(params.get("text"))))
        await super().record(method, params, request, status, error)


class TimedSink(SmtpSink):
    """The SMTP sink, noting when each email arrived (``arrivals[i]`` for ``messages[i]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    def _add(self, message: EmailMessage) -> None:
        self.arrivals.append(time.time())
        super()._add(message)


async def converse(user: TelegramUser, texts: list[str]) -> None:
    """Each message posted until the gateway takes it (503 while it cannot publish), as Telegram does."""
    for text in texts:
        while await user.say(text) != 200:
            user.next_update -= 1  # the same update again


def spread(count: int, first_chat: int) -> list[int]:
    """``count`` chat ids whose conversations go round-robin over the partitions (so over both workers)."""
    ids = range(first_chat, first_chat + 64 * count)
    of = {
        p: [c for c in ids if partition_of(f"telegram/{c}/{c}", PARTITIONS) == p] for p in range(PARTITIONS)
    }
    return [of[n % PARTITIONS][n // PARTITIONS] for n in range(count)]


def spread_of(seconds: list[float]) -> str:
    return f"median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s"


def tally(expected: dict[str, list[str]], replies: Replies) -> dict[str, int]:
    """Replies expected, received, and how many of them came twice, never, unasked, or out of order."""
    got: dict[str, list[str]] = {}
    for _, chat, text in replies:
        got.setdefault(chat, []).append(text)
    n = dict.fromkeys(("duplicated", "lost", "other", "out of order"), 0)
    for chat in expected.keys() | got.keys():
        want, have = expected.get(chat, []), got.get(chat, [])
        for text, extra in (Counter(have) - Counter(want)).items():
            n["duplicated" if text in want else "other"] += extra
        n["lost"] += sum((Counter(want) - Counter(have)).values())
        seen = list(dict.fromkeys(t for t in have if t in want))
        n["out of order"] += seen != [t for t in want if t in seen]
    return {"expected": sum(map(len, expected.values())), "received": len(replies), **n}


class Bench:
    """One run: deployment, users, outage, probes, and what arrived when (wall-clock, as in the logs)."""

    def __init__(self, args: argparse.Namespace, tmp: Path, vhost: str, amqp_url: str) -> None:
        self.args, self.tmp, self.vhost, self.amqp_url = args, tmp, vhost, amqp_url
        self.prefix = f"ro{uuid.uuid4().hex[:8]}"
        self.redis = ChaosRedis(tmp, "always" if args.kill else "everysec")
        self.telegram, self.sink = TimedTelegram(), TimedSink()
        self.roles: dict[str, GatewayProcess] = {}
        self.expected: dict[str, list[str]] = {}  # chat -> its replies, in order
        self.users, self.probes = set[str](), list[str]()  # the users' chats, the worker probes'
        self.mail_probe, self.problems = "", list[str]()
        self.started = self.outage = self.back = 0.0  # users began; Redis stopped; Redis started again

    async def deploy(self) -> str:
        """Redis, then `serve`, 2 `worker` and `mailer`, all ready; the address `serve` listens on."""
        await self.redis.start()
        env = {  # the e2e tests' role_env, on the private Redis
            "GATEWAY_AMQP_URL": self.amqp_url,
            "GATEWAY_REDIS_URL": self.redis.url,
            "GATEWAY_QUEUE_PREFIX": self.prefix,
            "GATEWAY_REDIS_PREFIX": self.prefix,
            "GATEWAY_PARTITIONS": str(PARTITIONS),
            "GATEWAY_STORIES": str(write_stories(self.tmp / "stories")),
            "GATEWAY_SMTP_URL": self.sink.url,
            "GATEWAY_PORT": "0",
            "GATEWAY_CONNECT_TIMEOUT": "10s",
            "TELEGRAM_BOT_TOKEN": self.telegram.token,
            "TELEGRAM_API_URL": self.telegram.url,
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "GATEWAY_RATE_LIMITS": "false",
        }
        for name in ("serve", "worker-1", "worker-2", "mailer"):
            self.roles[name] = await GatewayProcess(name.split("-")[0], env=env).start()
        for role in self.roles.values():
            await role.wait_for(r"INFO .*: ready$", timeout=60)
        return (await self.roles["serve"].wait_for(r"listening on (http://\S+)")).group(1)

    async def chat(self, address: str) -> None:
        """The users' conversations, the outage in their midst, and the probes as soon as Redis is back."""
        args, telegram = self.args, self.telegram
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.users + 64)) as http:
            mail_probe = TelegramUser(http, address, 3_000_000, first_update=100 * args.users)
            await converse(mail_probe, ["help"])  # left at the ticket step before the outage
            await telegram.wait_for_calls(1, method="sendMessage", ok=True, timeout=30)
            users = [TelegramUser(http, address, 1_000_000 + n, 100 * n) for n in range(args.users)]
            talking = asyncio.gather(*(converse(u, SCRIPT) for u in users), return_exceptions=True)
            self.started, third = time.time(), 1 + args.users * len(SCRIPT) // 3
            await telegram.wait_for_calls(third, method="sendMessage", ok=True, timeout=args.timeout)
            self.outage = time.time()
            await (self.redis.kill() if args.kill else self.redis.stop())
            await asyncio.sleep(args.outage)  # the outage itself, not a wait for anything
            await self.redis.start()
            self.back, chats = time.time(), spread(args.probes, 2_000_000)
            probes = [TelegramUser(http, address, c, 100 * (args.users + 1 + i)) for i, c in enumerate(chats)]
            await asyncio.gather(converse(mail_probe, [PROBE_TICKET]), *(converse(p, ["hi"]) for p in probes))
            if failed := [r for r in await talking if isinstance(r, BaseException)]:
                raise failed[0]
        self.users, self.probes = {str(u.chat_id) for u in users}, [str(c) for c in chats]
        self.expected = {chat: EXPECTED for chat in self.users} | {chat: EXPECTED[:1] for chat in self.probes}
        self.mail_probe = str(mail_probe.chat_id)
        self.expected[self.mail_probe] = EXPECTED[2:]

    async def complete(self) -> None:
        """All expected replies, all emails, then empty queues, within deadlines; else what is left."""
        timeout, replies = self.args.timeout, sum(map(len, self.expected.values()))
        try:
            await self.telegram.wait_for_calls(replies, method="sendMessage", ok=True, timeout=timeout)
            await self.sink.wait_for(self.args.users + 1, timeout=timeout)
            await wait_until_drained(self.vhost, self.prefix, timeout=timeout)
        except TimeoutError:
            self.problems.append(f"not complete within {timeout:.0f} s")
            busy = {q: n for q, n in queue_depths(self.vhost, self.prefix).items() if n}
            self.problems += [f"left in queues: {busy}"] if busy else []
        exited = [name for name, r in self.roles.items() if not r.process or r.process.returncode is not None]
        self.problems += [f"{name} exited" for name in exited]

    def report(self) -> bool:
        """The summary and the verdict: True if all went out exactly once and every role came back in time."""
        back, emails, replies = self.back, self.args.users + 1, tally(self.expected, self.telegram.replies)
        ids = Counter(str(m["Message-ID"]) for m in self.sink.messages)
        mails = {"expected": emails, "received": len(self.sink.messages)}
        mails |= {"duplicated": sum(n - 1 for n in ids.values()), "lost": max(0, emails - len(ids))}
        after = [(t - back, c) for t, c, _ in self.telegram.replies if t >= back]
        worker = [min((t for t, c in after if c == chat), default=math.nan) for chat in self.probes]
        mailed = zip(self.sink.arrivals, self.sink.messages, strict=True)
        mailer = min((t for t, m in mailed if PROBE_TICKET in m.get_content()), default=math.nan) - back
        reply = min((t for t, c in after if c == self.mail_probe), default=math.nan)
        away = {c for t, c, _ in self.telegram.replies if self.outage <= t < back}  # one went out meanwhile
        serve = min((t for t, c in after if c in away), default=math.nan)
        backlog = [t for t, c in after if c in self.users] or [math.nan]
        stamp = [datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-3] for t in (self.outage, back)]
        how = "SIGKILL, appendfsync always" if self.args.kill else "SIGTERM"
        lines = [
            f"Redis stopped ({how}) at {stamp[0]}, {self.outage - self.started:.2f} s after the users began;",
            f"answering again at {stamp[1]}: unreachable for {back - self.outage:.2f} s",
            f"{'':8}" + "".join(f"{k:>13}" for k in replies),
            f"{'replies':8}" + "".join(f"{v:>13}" for v in replies.values()),
            f"{'emails':8}" + "".join(f"{v:>13}" for v in mails.values()),
            "after Redis answered again:",
            f"  worker   first reply to {len(worker)} new users: {spread_of(worker)}",
            f"  mailer   a ticket sent then: email {mailer:.2f} s (its reply {reply:.2f} s)",
            f"  serve    first reply that waited for a record: {serve:.2f} s (of {len(away)} chats)",
            f"  backlog  {len(backlog)} users' replies: first {min(backlog):.2f} s, {spread_of(backlog)}",
        ]
        wrong = [f"replies {k}" for k, v in list(replies.items())[2:] if v]
        wrong += [f"emails {k}" for k in ("duplicated", "lost") if mails[k]] + self.problems
        times = {"worker": max(worker), "mailer": mailer, "serve": serve}
        if slow := [f"{role} {t:.2f} s" for role, t in times.items() if not t <= BACK_WITHIN]:
            wrong.append(f"slow to come back (over {BACK_WITHIN:.0f} s): {', '.join(slow)}")
        fine = f"PASS: all exactly once, in order; every role back within {BACK_WITHIN:.0f} s"
        print("\n".join([*lines, "verdict: " + ("FAIL: " + "; ".join(wrong) if wrong else fine)]), flush=True)
        return not wrong

    async def run(self) -> bool:
        await self.telegram.start()
        await self.sink.start()
        try:
            await self.chat(await self.deploy())
            await self.complete()
            return self.report()
        finally:  # whatever happened: no process of this run outlives it
            for role in self.roles.values():
                await role.stop()
            if self.args.logs is not None:
                self.args.logs.mkdir(parents=True, exist_ok=True)
                for name, role in self.roles.items():
                    (self.args.logs / f"{name}.log").write_text(role.output() + "\n")
            await self.redis.stop()
            await self.sink.stop()
            await self.telegram.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--outage", type=float, default=1.0, help="seconds Redis stays down")
    parser.add_argument("--probes", type=int, default=16, help="new users probing the workers' recovery")
    parser.add_argument("--kill", action="store_true", help="SIGKILL Redis (with appendfsync always)")
    parser.add_argument("--timeout", type=float, default=120.0, help="deadline of each wait, seconds")
    parser.add_argument("--logs", type=Path, default=None, help="write each role's log to this folder")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # killed: clean up as on Ctrl-C
    with tempfile.TemporaryDirectory(prefix="redis-outage-") as tmp, rabbit_vhost() as (vhost, amqp_url):
        return 0 if asyncio.run(Bench(args, Path(tmp), vhost, amqp_url).run()) else 1


if __name__ == "__main__":
    sys.exit(main())
