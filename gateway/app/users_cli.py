"""``gateway users show|export|erase CHANNEL USER`` and ``gateway users set CHANNEL USER NAME=VALUE ...``:
the admin API's user calls from the command line, on the Redis (and RabbitMQ) the settings name.

The answer is the API's JSON, on stdout; the audit line (``cli:<login>`` as who asked) goes to the log.
``NAME=`` with nothing after the ``=`` deletes the attribute. Exit status: 0 done, 1 a service is away,
2 a malformed request (unknown channel, user id of the wrong form, bad name) or missing settings.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from gateway.app.userdata.checks import Refused, attribute_changes
from gateway.app.userdata.service import UserDataService
from gateway.core.bus.base import Bus
from gateway.core.errors import SettingsError, Unavailable
from gateway.core.services import build_bus, build_schedule, build_store, build_user_stores
from gateway.core.settings import Settings

NEEDS_BROKER = frozenset({"export", "erase"})  # they look at the dead letters


def who_asks() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def require(settings: Settings, command: str, *, broker: bool) -> None:
    """The user data lives in Redis (and dead letters in RabbitMQ): an embedded store has none to show."""
    if settings.redis_url is None:
        raise SettingsError(f"GATEWAY_REDIS_URL: required by `gateway {command}` (the user data is in Redis)")
    if broker and settings.amqp_url is None:
        raise SettingsError(
            f"GATEWAY_AMQP_URL: required by `gateway {command}` (dead letters are in RabbitMQ)"
        )


def assignments(pairs: Sequence[str]) -> dict[str, str | None]:
    """``NAME=VALUE`` pairs as attribute changes; ``NAME=`` deletes."""
    raw: dict[str, str | None] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals:
            raise Refused(400, "bad_body", f"{pair!r}: write NAME=VALUE (NAME= deletes the attribute)")
        raw[name] = value if value else None
    return attribute_changes(raw)


async def run_users_command(
    settings: Settings,
    action: str,
    channel: str,
    user: str,
    pairs: Sequence[str] = (),
    *,
    out: Callable[[str], None] = print,
) -> int:
    try:
        require(settings, f"users {action}", broker=action in NEEDS_BROKER)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = build_store(settings)
    schedule = build_schedule(settings)
    bus: Bus | None = build_bus(settings) if action in NEEDS_BROKER else None
    try:
        if bus is not None:
            await bus.start()
        service = UserDataService(
            store,
            build_user_stores(store),
            bus=bus,
            dedup_ttl=settings.dedup_ttl,
            schedule=schedule,
            partitions=settings.partitions,
        )
        who = who_asks()
        found: Any
        if action == "show":
            found = await service.show(who, channel, user)
        elif action == "export":
            found = await service.export(who, channel, user)
        elif action == "erase":
            found = await service.erase(who, channel, user)
        else:
            found = await service.change(who, channel, user, assignments(pairs))
        out(json.dumps(found, indent=2, ensure_ascii=False))
    except Refused as refused:
        print(f"error: {refused.message}", file=sys.stderr)
        return 2
    except Unavailable as exc:
        print(f"error: unavailable: {exc}", file=sys.stderr)
        return 1
    finally:
        if bus is not None:
            await bus.close()
        await store.close()
        await schedule.close()
    return 0
