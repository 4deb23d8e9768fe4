"""``gateway broadcast STORY --channel C [--where CONDITION] [--dry-run]``: make a broadcast and run it here,
with a progress bar; the summary (the API's JSON) on stdout at the end.

The command runs the broadcast itself, under the same claim the workers use, so a running ``gateway
worker`` does not run it too; if a worker claimed it first, the command follows its progress instead.
Interrupted (Ctrl-C, SIGTERM), it hands its claim back and a worker resumes where it stopped; killed, a
worker resumes once the claim runs out (``GATEWAY_BROADCAST_LEASE``). Nobody gets the story twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import TextIO

from gateway.app.roles.broadcasts import pace_of
from gateway.app.userdata.broadcasts import make_broadcast
from gateway.app.userdata.checks import Refused
from gateway.app.users_cli import require, who_asks
from gateway.core.errors import SettingsError, Unavailable
from gateway.core.services import build_bus, build_store, build_user_stores
from gateway.core.settings import Settings
from gateway.core.store.broadcasts.base import Broadcast
from worker.broadcast import BroadcastRunner
from worker.reload import load_engine

WIDTH = 30


class ProgressBar:
    """``[#####.....]  45%  450/1000 users  matched 200  started 190  failed 10`` on one line of a
    terminal, redrawn; on anything else, one line at each tenth."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.tty = stream.isatty()
        self._shown_tenth = -1

    def show(self, broadcast: Broadcast) -> None:
        progress = broadcast.progress
        share = min(progress.walked / self.total, 1.0) if broadcast.status != "done" else 1.0
        filled = round(share * WIDTH)
        line = (
            f"[{'#' * filled}{'.' * (WIDTH - filled)}] {share:4.0%}  {progress.walked}/{self.total} users"
            f"  matched {progress.matched}  started {progress.started}  failed {progress.failed}"
        )
        if self.tty:
            self.stream.write("\r" + line)
            if broadcast.status == "done":
                self.stream.write("\n")
        elif int(share * 10) > self._shown_tenth:
            self._shown_tenth = int(share * 10)
            self.stream.write(line + "\n")
        self.stream.flush()


async def run_broadcast_command(
    settings: Settings, story: str, channel: str, where: str, dry_run: bool, *, err: TextIO = sys.stderr
) -> int:
    try:
        require(settings, "broadcast", broker=True)
    except SettingsError as exc:
        print(f"error: {exc}", file=err)
        return 2
    store = build_store(settings)
    users = build_user_stores(store)
    bus = build_bus(settings)
    runner = BroadcastRunner(
        bus, store, users.index, users.broadcasts,
        holder=f"cli/{os.getpid()}/{uuid.uuid4().hex[:8]}",
        pace=pace_of(settings), claim_ttl=settings.broadcast_lease,
    )  # fmt: skip
    made: Broadcast | None = None
    try:
        await bus.start()
        made = await make_broadcast(
            users.broadcasts, lambda: load_engine(settings).stories,
            who=who_asks(), story=story, channel=channel, where=where, dry_run=dry_run,
        )  # fmt: skip
        print(
            f"broadcast {made.id}: story {story} to {channel} users{' (dry run)' if dry_run else ''}",
            file=err,
        )
        bar = ProgressBar(await users.index.count(channel), err)
        done = await runner.run(made.id, bar.show)
        while done is None or done.status != "done":  # a worker runs it: follow its progress
            await asyncio.sleep(0.5)
            done = await users.broadcasts.get(made.id)
            if done is None:
                raise Unavailable(f"broadcast {made.id} is gone")
            bar.show(done)
        print(json.dumps(done.as_json(), indent=2))
    except Refused as refused:
        print(f"error: {refused.message}", file=err)
        return 2
    except Unavailable as exc:
        print(f"error: unavailable: {exc}", file=err)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        if made is not None:
            await runner.release(made.id)
            print(f"\ninterrupted: a gateway worker resumes broadcast {made.id} where it stopped", file=err)
        return 130
    finally:
        await bus.close()
        await store.close()
    return 0
