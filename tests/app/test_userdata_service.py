"""The user-data service beyond the store: held web chat replies, an SMS opt-out of an older release,
queued email jobs, dead letters; retention's sweep and the broadcast role's hand-back (in memory; the
same on Redis and RabbitMQ in tests/app/test_admin_api.py and tests/e2e/test_user_data.py)."""

from __future__ import annotations

import asyncio
import time

from channels.sms import LEGACY_OPT_OUT_NAMESPACE
from channels.webchat import HeldReplies
from gateway.app.roles.base import Services
from gateway.app.roles.broadcasts import BroadcastRole, pace_of
from gateway.app.roles.retention import RetentionRole, sweep_interval
from gateway.app.userdata.service import UserDataService, concerns
from gateway.core.bus.base import Envelope, Topic
from gateway.core.bus.memory import MemoryBus
from gateway.core.errors import Rejected
from gateway.core.metrics import Metrics
from gateway.core.schema import ConversationKey, EmailJob, Reply
from gateway.core.services import build_user_stores
from gateway.core.settings import Settings
from gateway.core.store.base import Commit, Session
from gateway.core.store.broadcasts.base import Broadcast
from gateway.core.store.memory import MemoryStore
from mailer.service import SEEN_NAMESPACE

WEB = ConversationKey("webchat", "visitor-0001", "visitor-0001")


def services(**settings: object) -> Services:
    store = MemoryStore()
    return Services(Settings(**settings), MemoryBus(partitions=2), store, Metrics(), build_user_stores(store))  # type: ignore[arg-type]


async def test_held_replies_are_exported_and_dropped_by_an_erase() -> None:
    held = HeldReplies(60.0)
    held.hold("visitor-0001", '{"type": "reply", "text": "while you were away"}')
    held.hold("visitor-0002", '{"type": "reply", "text": "someone else"}')
    s = services()
    service = UserDataService(s.store, s.users, held=held)
    exported = await service.export("ops", "webchat", "visitor-0001")
    assert exported["held_web_chat_replies"] == [{"type": "reply", "text": "while you were away"}]
    erased = await service.erase("ops", "webchat", "visitor-0001")
    assert erased["erased"]["held_web_chat_replies"] == 1
    assert held.take("visitor-0001") == [] and len(held.take("visitor-0002")) == 1


async def test_an_opt_out_kept_by_an_older_release_is_shown_and_erased() -> None:
    s = services()
    await s.store.mark_seen(LEGACY_OPT_OUT_NAMESPACE, "+15550001111", 86400.0)
    service = UserDataService(s.store, s.users)
    assert (await service.show("ops", "sms", "+15550001111"))["opted_out"] is True
    assert (await service.erase("ops", "sms", "+15550001111"))["erased"]["opted_out"] is True
    assert not await s.store.is_seen(LEGACY_OPT_OUT_NAMESPACE, "+15550001111")
    assert (await service.erase("ops", "sms", "+15550001111"))["erased"]["opted_out"] is False


async def test_queued_email_jobs_are_cancelled_and_dead_letters_removed() -> None:
    s = services()
    job = EmailJob(
        id="webchat:visitor-0001:m1/e0", to=("desk@example.com",), channel="webchat", user=WEB.user
    )
    sent = EmailJob(
        id="webchat:visitor-0001:m1/e1", to=("desk@example.com",), channel="webchat", user=WEB.user
    )
    outputs = [b"E" + job.to_json(), b"E" + sent.to_json()]
    assert await s.store.commit(WEB, Commit("webchat:visitor-0001:m1", Session(), outputs=outputs))
    await s.store.mark_seen(SEEN_NAMESPACE, sent.id, 60.0)  # that one went out already

    async def refuse(_: object) -> None:
        raise Rejected("no")

    bus = s.bus
    assert isinstance(bus, MemoryBus)
    await bus.subscribe(Topic.OUTBOUND, refuse)  # type: ignore[arg-type]
    mine = Reply(id="m1/r0", channel="webchat", chat=WEB.chat, user=WEB.user, text="hello")
    theirs = Reply(id="m2/r0", channel="webchat", chat="other-0002", user="other-0002", text="hi")
    await bus.publish(
        Topic.OUTBOUND, [Envelope(r.to_json(), r.id, key=str(r.conversation)) for r in (mine, theirs)]
    )
    await bus.join()
    service = UserDataService(s.store, s.users, bus=bus)
    assert [d["id"] for d in (await service.export("ops", "webchat", WEB.user))["dead_letters"]] == ["m1/r0"]
    erased = (await service.erase("ops", "webchat", WEB.user))["erased"]
    assert (erased["email_jobs_cancelled"], erased["dead_letters"], erased["messages"]) == (1, 1, 1)
    assert await s.store.is_seen(SEEN_NAMESPACE, job.id), "a mailer now drops the queued job"
    assert [d.envelope.message_id for d in await bus.dead_letters(Topic.OUTBOUND)] == ["m2/r0"]


def test_a_message_concerns_the_user_it_names() -> None:
    matches = concerns([("telegram", "42")])
    reply = Reply(id="r", channel="telegram", chat="42", user="42")
    assert matches(Envelope(reply.to_json(), "r"))
    assert not matches(Envelope(reply.model_copy(update={"user": "43"}).to_json(), "r"))
    assert not matches(Envelope(b"not json", "x")) and not matches(Envelope(b"[1]", "x"))


async def test_retention_erases_the_idle_and_keeps_who_wrote_since() -> None:
    now = time.time()
    s = services(user_retention=100.0)
    index = s.users.index
    for user, seen in (("1", now - 500), ("2", now - 150), ("3", now - 10)):
        assert await s.store.commit(
            ConversationKey("telegram", user, user), Commit(f"m{user}", None, {"A": user})
        )
        await index.touch("telegram", user, seen, user)
    role = RetentionRole(s, 100.0, clock=lambda: now)
    assert await role.sweep() == 2
    assert await s.store.user_attributes("telegram", "1") == {} and await index.entry("telegram", "2") is None
    assert await s.store.user_attributes("telegram", "3") == {"A": "3"}
    assert await role.sweep() == 0
    assert [sweep_interval(x) for x in (2.0, 600.0, 400 * 86400.0)] == [1.0, 60.0, 3600.0]


async def test_a_stopping_worker_hands_its_broadcast_back() -> None:
    s = services(broadcast_rate=5.0, broadcast_lease=30.0)
    for n in range(40):
        await s.users.index.touch("telegram", str(n), 1.0, str(n))
    await s.users.broadcasts.create(Broadcast("b1", "greet", "telegram", ""))
    role = BroadcastRole(s, poll=0.01)
    await role.start()
    async with asyncio.timeout(10):
        # the role's first checkpoint: nothing signals it
        while (found := await s.users.broadcasts.get("b1")) is None or found.progress.walked == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert await s.users.broadcasts.claim("b1", "other", 30.0) is None, "the role runs it"
    await role.stop_intake()
    resumed = await s.users.broadcasts.claim("b1", "other", 30.0)
    assert resumed is not None and resumed.status == "running", "taken over at once, not after 30 s"
    assert pace_of(Settings(rate_limits=False))("telegram") is None
    assert pace_of(Settings())("sms") == 1.0 and pace_of(Settings(broadcast_rate=7.0))("sms") == 7.0
