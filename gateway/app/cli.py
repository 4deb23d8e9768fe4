"""The ``gateway`` command: one console script for every role and tool (see OPERATIONS.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from gateway.app.process import Gateway, report_startup_error, run_until_signalled
from gateway.app.roles.base import RoleName, StartupError
from gateway.core.errors import SettingsError
from gateway.core.settings import Settings

EXIT_USAGE = 2


CHAT_COMMANDS = """\
commands:
  /wait DURATION    time passes at once (10m, 2h, 1d): the timers due meanwhile fire, in order
  /agent TEXT       a person's answer from the support desk of a handed-over conversation;
                    \\n starts a new line. What the desk gets is printed as "[desk] " lines
  /agent #bot       the person hands the conversation back to the bot (docs/support-desk.md)
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Multi-channel chatbot gateway.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="everything in one process (embedded bus and store unless configured)")
    sub.add_parser("serve", help="HTTP ingress and outbound delivery")
    worker = sub.add_parser("worker", help="story workers")
    worker.add_argument("--concurrency", type=int, default=None, help="messages handled at once")
    mailer = sub.add_parser("mailer", help="send email jobs over SMTP")
    mailer_sub = mailer.add_subparsers(dest="mailer_command", metavar="ACTION")
    dead = mailer_sub.add_parser("dead", help="list dead-lettered email jobs")
    dead.add_argument("--limit", type=int, default=50)
    replay = mailer_sub.add_parser("replay", help="put dead-lettered email jobs back on the queue")
    replay.add_argument("--limit", type=int, default=None)
    sub.add_parser("inbox", help="receive staff email replies (SMTP, or GATEWAY_IMAP_URL) for the users")
    partitions = sub.add_parser(
        "partitions", help="show the broker's partition count and queues, or change it (docs/operations.md)"
    )
    partitions.add_argument(
        "--set",
        type=int,
        default=None,
        metavar="N",
        dest="new_count",
        help="change the count (only while the partition queues are empty and unconsumed)",
    )
    telegram = sub.add_parser("telegram", help="Telegram set-up")
    telegram_sub = telegram.add_subparsers(dest="telegram_command", metavar="ACTION", required=True)
    set_hook = telegram_sub.add_parser(
        "set-webhook", help="register GATEWAY_PUBLIC_URL/webhooks/telegram (with the secret) with Telegram"
    )
    set_hook.add_argument("--drop-pending", action="store_true", help="discard updates Telegram holds")
    chat = sub.add_parser(
        "chat",
        help="talk to the stories in the terminal",
        description="Talk to the stories in the terminal, one line per message (a number presses a button).",
        epilog=CHAT_COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument("--user", default="you", help="user id (user attributes persist per id)")
    check = sub.add_parser("check", help="validate stories and templates")
    check.add_argument("path", nargs="?", type=Path, default=None)
    test = sub.add_parser("test", help="run conversation tests (docs/testing.md)")
    test.add_argument("path", nargs="?", type=Path, default=Path("config/tests"), help="file or folder")
    test.add_argument("--stories", type=Path, default=None, help="stories folder (default GATEWAY_STORIES)")
    users = sub.add_parser("users", help="read, change, export or erase one user's data (docs/users.md)")
    users_sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    for action, what in (
        ("show", "the user's attributes, sessions, pending timers and handoffs, as JSON"),
        ("export", "everything kept about the user, as one JSON document"),
        ("erase", "erase everything kept about the user"),
    ):
        one = users_sub.add_parser(action, help=what)
        one.add_argument("channel")
        one.add_argument("user")
    set_ = users_sub.add_parser("set", help="set attributes (NAME=VALUE), or delete them (NAME=)")
    set_.add_argument("channel")
    set_.add_argument("user")
    set_.add_argument("assignments", nargs="+", metavar="NAME=VALUE")
    broadcast = sub.add_parser("broadcast", help="start a story for every matching user of a channel")
    broadcast.add_argument("story")
    broadcast.add_argument("--channel", required=True)
    broadcast.add_argument(
        "--where", default="", help="a condition over @user.*, e.g. '@user.Plan == \"pro\"'"
    )
    broadcast.add_argument("--dry-run", action="store_true", help="count the matching users, start nobody")
    map_ = sub.add_parser("map", help="draw the stories as a graph: Mermaid text, or SVG (docs/map.md)")
    map_.add_argument("path", nargs="?", type=Path, default=None, help="stories folder")
    map_.add_argument("--svg", type=Path, default=None, metavar="FILE", help="write an SVG drawing to FILE")
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)


def _fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _require_services(settings: Settings, command: str) -> None:
    if settings.amqp_url is None:
        raise SettingsError(
            f"GATEWAY_AMQP_URL: required by `gateway {command}` (without it only `run` and `chat` work)"
        )
    if settings.redis_url is None:
        raise SettingsError(
            f"GATEWAY_REDIS_URL: required by `gateway {command}` (without it only `run` and `chat` work)"
        )


def _set_telegram_webhook(settings: Settings, *, drop_pending: bool) -> int:
    from gateway.app.telegram_cli import TelegramSetupError, set_webhook

    try:
        url = asyncio.run(set_webhook(settings, drop_pending_updates=drop_pending))
    except TelegramSetupError as exc:
        return _fail(str(exc))
    print(f"Telegram will post updates to {url}")
    return 0


def _run_fast(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived role on uvloop when it is installed (faster sockets and callbacks), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _reads_stories_folder(args: argparse.Namespace) -> bool:
    """Whether the command uses GATEWAY_STORIES (and so needs the folder to exist)."""
    command: str = args.command
    if command in ("check", "map"):
        return args.path is None
    if command == "test":
        return args.stories is None
    return command in ("run", "worker", "chat", "broadcast")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command: str = args.command
    try:
        settings = Settings.from_env(require_stories=_reads_stories_folder(args))
        if command in ("serve", "worker", "mailer", "inbox", "partitions"):
            _require_services(settings, command)
        if command == "inbox" and settings.inbox_address is None:
            raise SettingsError("GATEWAY_INBOX_ADDRESS: required by `gateway inbox` (the desk's address)")
    except SettingsError as exc:
        return _fail(str(exc), EXIT_USAGE)

    if command == "check":
        from designer.check import run_check

        return run_check(args.path or settings.stories, settings.emails)
    if command == "telegram":
        return _set_telegram_webhook(settings, drop_pending=args.drop_pending)
    if command == "partitions":
        from gateway.app.partitions_cli import run_partitions

        return asyncio.run(run_partitions(settings, args.new_count))
    if command == "chat":
        from gateway.app.chat import chat

        return asyncio.run(chat(settings, user=args.user))
    if command == "test":
        from designer.conversation_tests import run_tests

        return run_tests(
            args.path,
            args.stories or settings.stories,
            settings.emails,
            mail_from=settings.mail_from,
            secrets=settings.secrets,
        )
    if command == "map":
        from designer.story_map.command import run_map

        return run_map(args.path or settings.stories, settings.emails, svg=args.svg)
    if command == "users":
        from gateway.app.users_cli import run_users_command

        _configure_logging(settings.log_level)
        pairs = getattr(args, "assignments", ())
        return asyncio.run(run_users_command(settings, args.users_command, args.channel, args.user, pairs))
    if command == "broadcast":
        from gateway.app.broadcast_cli import run_broadcast_command

        _configure_logging(settings.log_level)
        return asyncio.run(
            run_broadcast_command(settings, args.story, args.channel, args.where, args.dry_run)
        )
    if command == "mailer" and args.mailer_command:
        from mailer.deadletters import run_dead_letter_command

        return asyncio.run(run_dead_letter_command(settings, args.mailer_command, args.limit))

    _configure_logging(settings.log_level)
    roles = {
        "run": frozenset(RoleName),
        "serve": frozenset({RoleName.SERVE}),
        "worker": frozenset({RoleName.WORKER}),
        "mailer": frozenset({RoleName.MAILER}),
        "inbox": frozenset({RoleName.INBOX}),
    }[command]
    if command == "worker" and args.concurrency is not None:
        if args.concurrency < 1:
            return _fail("--concurrency must be at least 1", EXIT_USAGE)
        from dataclasses import replace

        settings = replace(settings, worker_concurrency=args.concurrency)
    gateway = Gateway(settings, roles)
    try:
        _run_fast(run_until_signalled(gateway))
    except StartupError as exc:
        return report_startup_error(exc)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
