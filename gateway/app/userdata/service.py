"""Read, change, export and erase one user's data — one implementation for the admin API, ``gateway users``
and the retention sweeper. Every call leaves an audit line naming who asked (a token's name, never the
token) and what changed.

Where a user's data is, and what an erase does with it:

- under the user's hash tag in the store (attributes, opt-out, sessions, records such as pending timers
  and handoffs, processed-message records with their outputs): deleted, atomically;
- the pending timers' entries in the timer schedule (apart from the user's keys, naming the
  conversation): removed, from the erased timers records;
- their entry in the channel's user index (last seen, broadcast chat): removed first, so a half-done
  erase (a crash between the two) is not reached by broadcasts, and a second erase finishes it;
- email jobs still queued for the mailer: recorded as sent under the mailer's own duplicate marker, so
  the mailer drops them (jobs found through the processed-message records, kept ``GATEWAY_PROCESSED_TTL``);
- dead letters of every topic (inbound, replies, email jobs) whose message names the user: deleted;
- web chat replies held for a browser that is away: dropped in this process (other ``serve`` processes
  drop theirs within their hold time, 60 s);
- an SMS opt-out kept by an older release as a duplicate marker: removed.
Replies already queued for delivery, and emails already sent, are beyond it (``docs/users.md``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from channels.webchat import HeldReplies
from gateway.app.userdata import render
from gateway.app.userdata.checks import check_user
from gateway.core.bus.base import Bus, Envelope, Topic
from gateway.core.errors import SchemaError
from gateway.core.schedule.base import Schedule
from gateway.core.schema import ConversationKey, parse_email
from gateway.core.services import UserStores
from gateway.core.store.base import Store
from gateway.core.store.users.base import UserRecords
from worker.service import recorded_output
from worker.timers.erase import KIND as TIMERS
from worker.timers.erase import unschedule

audit = logging.getLogger("gateway.audit")

Json = dict[str, Any]


def concerns(pairs: Iterable[tuple[str, str]]) -> Callable[[Envelope], bool]:
    """Whether a bus message (an inbound, a reply, an email job: all name channel and user) is about one
    of the (channel, user) ``pairs``; a body that is not such JSON is about nobody."""
    wanted = set(pairs)

    def matches(envelope: Envelope) -> bool:
        try:
            message = json.loads(envelope.body)
        except ValueError:
            return False
        if not isinstance(message, dict):
            return False
        return (message.get("channel"), message.get("user")) in wanted

    return matches


class UserDataService:
    """``bus`` None: a caller without a broker (``gateway users show``) — dead letters are not looked at;
    ``held`` the web chat replies this process holds, if it serves the web chat."""

    def __init__(
        self,
        store: Store,
        users: UserStores,
        *,
        bus: Bus | None = None,
        dedup_ttl: float = 86400.0,
        held: HeldReplies | None = None,
        clock: Callable[[], float] = time.time,
        schedule: Schedule | None = None,
        partitions: int = 16,
    ) -> None:
        self.store = store
        self.users = users
        self.bus = bus
        self.dedup_ttl = dedup_ttl
        self.held = held
        self.clock = clock
        self.schedule = schedule  # None: no timers to take out of a schedule (a caller without one)
        self.partitions = partitions

    async def show(self, who: str, channel: str, user: str) -> Json:
        check_user(channel, user)
        records = await self.users.data.read(channel, user)
        records = await self._opt_out(channel, user, records)
        found = render.shown(channel, user, records, await self.users.index.entry(channel, user))
        audit.info("audit: %s read %s/%s", who, channel, user)
        return found

    async def export(self, who: str, channel: str, user: str) -> Json:
        """Everything kept about the user, as one document (a data subject's request)."""
        check_user(channel, user)
        records = await self._opt_out(channel, user, await self.users.data.read(channel, user, messages=True))
        held = self.held.peek(user) if self.held is not None and channel == "webchat" else []
        document = {
            "format": render.EXPORT_FORMAT,
            "exported_at": render.timestamp(self.clock()),
            **render.shown(channel, user, records, await self.users.index.entry(channel, user)),
            "messages": render.messages(records.messages),
            "dead_letters": render.dead_letters(await self._dead_letters(channel, user)),
            "held_web_chat_replies": [json.loads(frame) for frame in held],
        }
        audit.info("audit: %s exported %s/%s", who, channel, user)
        return document

    async def change(self, who: str, channel: str, user: str, changes: Mapping[str, str | None]) -> Json:
        """Set and delete attributes; the user becomes known to the channel's index (retention counts from
        now for a user who never wrote)."""
        check_user(channel, user)
        attributes = await self.users.data.change_attributes(channel, user, changes)
        await self.users.index.add(channel, user, self.clock())
        set_names = sorted(name for name, value in changes.items() if value is not None)
        deleted = sorted(name for name, value in changes.items() if value is None)
        audit.info(
            "audit: %s changed %s/%s: set %s; deleted %s",
            who, channel, user, ",".join(set_names) or "-", ",".join(deleted) or "-",
        )  # fmt: skip
        return {"channel": channel, "user": user, "attributes": dict(sorted(attributes.items()))}

    async def erase(self, who: str, channel: str, user: str) -> Json:
        """Erase everything kept about the user; the answer counts what was removed (all zero the second
        time)."""
        check_user(channel, user)
        answer, dead = await asyncio.gather(  # Redis and RabbitMQ at once
            self._erase_stored(channel, user), self._remove_dead_letters([(channel, user)])
        )
        answer["dead_letters"] = len(dead)
        answer["held_web_chat_replies"] = self._forget_held(channel, user)
        audit.info("audit: %s erased %s/%s: %s", who, channel, user, json.dumps(answer, sort_keys=True))
        return {"channel": channel, "user": user, "erased": answer}

    async def erase_idle(self, who: str, channel: str, users: list[str], idle_before: float) -> list[str]:
        """Erase the users that have not written since ``idle_before`` (retention): each one only if their
        index entry still says so, so a user who writes meanwhile is kept. The ones erased."""
        erased: list[str] = []
        for user in users:
            if not await self.users.index.remove(channel, user, idle_before=idle_before):
                continue
            answer = await self._erase_stored(channel, user, index_entry=True)
            answer["held_web_chat_replies"] = self._forget_held(channel, user)
            audit.info("audit: %s erased %s/%s: %s", who, channel, user, json.dumps(answer, sort_keys=True))
            erased.append(user)
        if erased:
            dead = await self._remove_dead_letters([(channel, user) for user in erased])
            if dead:
                audit.info("audit: %s erased %d dead letters of those users", who, len(dead))
        return erased

    async def _erase_stored(self, channel: str, user: str, *, index_entry: bool | None = None) -> Json:
        """The index entry, then the queued emails (found in the processed messages, so before those go:
        an erase cut short by a crash leaves none of them to be sent), then everything under the user's
        tag; emails of a message committed meanwhile are cancelled from what the erase removed."""
        if index_entry is None:
            index_entry = await self.users.index.remove(channel, user)
        cancelled = await self._cancel_emails(await self.users.data.read(channel, user, messages=True))
        records = await self.users.data.erase(channel, user)
        cancelled += await self._cancel_emails(records)
        await self._unschedule(channel, user, records)
        records = await self._opt_out(channel, user, records, forget=True)
        answer = render.erased(records, index_entry)
        answer["email_jobs_cancelled"] = cancelled
        return answer

    async def _opt_out(
        self, channel: str, user: str, records: UserRecords, *, forget: bool = False
    ) -> UserRecords:
        """An SMS opt-out kept by a release before 2026-12 (a duplicate marker) counts as one."""
        if channel != "sms":
            return records
        from channels.sms import LEGACY_OPT_OUT_NAMESPACE

        if not await self.store.is_seen(LEGACY_OPT_OUT_NAMESPACE, user):
            return records
        if forget:
            await self.store.forget_seen(LEGACY_OPT_OUT_NAMESPACE, user)
        return UserRecords(records.attributes, True, records.sessions, records.records, records.messages)

    async def _unschedule(self, channel: str, user: str, records: UserRecords) -> None:
        """Take the erased pending timers out of the schedule (if the erase is cut short before, the
        entries are dropped when they fall due, their record being gone)."""
        if self.schedule is None:
            return
        for record in records.records:
            if record.kind == TIMERS:
                conversation = ConversationKey(channel, record.chat, user)
                await unschedule(self.schedule, self.partitions, conversation, record.value)

    async def _cancel_emails(self, records: UserRecords) -> int:
        """Mark the user's email jobs as sent, so a mailer drops the ones still queued; how many were not
        sent yet."""
        from mailer.service import SEEN_NAMESPACE

        cancelled = 0
        for message in records.messages:
            for item in message.outputs:
                output = recorded_output(item)
                if output is None:
                    continue
                topic, body = output
                if topic is Topic.EMAIL:
                    try:
                        job = parse_email(body)
                    except SchemaError:
                        continue
                    cancelled += await self.store.mark_seen(SEEN_NAMESPACE, job.id, self.dedup_ttl)
        return cancelled

    async def _dead_letters(self, channel: str, user: str) -> list[Any]:
        if self.bus is None:
            return []
        matches = concerns([(channel, user)])
        bus = self.bus
        found = await asyncio.gather(*(bus.dead_letters(topic, limit=65535) for topic in Topic))
        return [letter for letters in found for letter in letters if matches(letter.envelope)]

    async def _remove_dead_letters(self, pairs: list[tuple[str, str]]) -> list[Any]:
        if self.bus is None:
            return []
        matches = concerns(pairs)
        bus = self.bus
        removed = await asyncio.gather(*(bus.remove_dead_letters(topic, matches) for topic in Topic))
        return [letter for letters in removed for letter in letters]

    def _forget_held(self, channel: str, user: str) -> int:
        return self.held.forget(user) if self.held is not None and channel == "webchat" else 0
