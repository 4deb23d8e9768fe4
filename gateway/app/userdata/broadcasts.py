"""The operator's side of broadcasts, for the admin API and ``gateway broadcast``: make one (checked
against the channels, the stories and the condition syntax) and read how far it got. Workers run them
(:mod:`gateway.app.roles.broadcasts`)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from gateway.app.userdata.checks import Refused, check_channel
from gateway.core.store.broadcasts.base import BROADCAST_ID, Broadcast, Broadcasts
from worker.broadcast import AudienceError, compile_audience
from worker.engine import Stories, StoriesError

audit = logging.getLogger("gateway.audit")

StoriesSource = Callable[[], Stories]


def new_broadcast_id() -> str:
    return uuid.uuid4().hex[:20]


async def make_broadcast(
    broadcasts: Broadcasts,
    stories: StoriesSource,
    *,
    who: str,
    story: str,
    channel: str,
    where: str = "",
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
) -> Broadcast:
    """Check and keep a new broadcast (a runner takes it up); :class:`Refused` says what is wrong."""
    try:
        check_channel(channel)
    except Refused as refused:
        raise Refused(400, refused.code, refused.message) from None
    try:
        known = stories()
    except StoriesError as exc:
        raise Refused(503, "stories_broken", f"the stories do not load: {exc.problems[0]}") from None
    if story not in known.stories:
        raise Refused(400, "unknown_story", f"no story {story!r} in the stories")
    try:
        compile_audience(where)
    except AudienceError as exc:
        raise Refused(400, "bad_condition", f"where: {exc}") from None
    broadcast = Broadcast(
        id=new_broadcast_id(),
        story=story,
        channel=channel,
        where=where,
        dry_run=dry_run,
        created_at=clock(),
        by=who,
    )
    await broadcasts.create(broadcast)
    audit.info(
        "audit: %s made broadcast %s: story %s to %s users where %r%s",
        who, broadcast.id, story, channel, where, " (dry run)" if dry_run else "",
    )  # fmt: skip
    return broadcast


async def read_broadcast(broadcasts: Broadcasts, broadcast_id: str) -> Broadcast:
    if not BROADCAST_ID.fullmatch(broadcast_id):
        raise Refused(404, "unknown_broadcast", f"no broadcast {broadcast_id[:80]!r}")
    found = await broadcasts.get(broadcast_id)
    if found is None:
        raise Refused(
            404, "unknown_broadcast", f"no broadcast {broadcast_id!r} (finished ones go after 30 days)"
        )
    return found
