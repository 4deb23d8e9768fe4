"""STORIES.md "Time: step timeouts and follow-ups", through the real worker, poller and deliverer on the
embedded bus, the in-memory store and schedule, on simulated time."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from gateway.core.schema import Inbound
from gateway.core.store.base import Commit
from gateway.core.store.users.memory import MemoryUserIndex
from tests.support.timers import START, CountingSchedule, TimerRig, until
from worker.timers.pending import firing

STORIES = """\
bot:
  session_ttl: 30m
  fallback: lost
stories:
  signup:
    triggers: [signup]
    steps:
      - id: ask_email
        actions:
          - message: What's your email?
        expect: email
        next: save_email
        timeout: {after: 10m, goto: nudge}
      - id: nudge
        actions:
          - message: 'Still there? [{{@message}}] {{@session.Note || "no note"}}'
        expect: email
        next: save_email
      - id: save_email
        actions:
          - set_user: {Email: "{{@session.email}}"}
          - set_session: {Note: noted}
          - message: Saved.
          - follow_up: {after: 2d, goto: check_in}
      - id: check_in
        actions:
          - message: 'How is it going, {{@user.Email}}? {{@session.Note || "new session"}}'
  remind:
    triggers: [remind]
    steps:
      - id: set
        actions:
          - follow_up: {after: 1h, goto: kept, keep_on_reply: true}
          - follow_up: {after: 2h, goto: plain}
          - message: Reminders set.
        next: answer
      - id: answer
        actions:
          - message: 'You said {{@message}}.'
      - id: kept
        actions:
          - message: Kept reminder.
      - id: plain
        actions:
          - message: Plain reminder.
  count:
    triggers: [count]
    steps:
      - id: start
        actions:
          - message: Counting.
        next: one
      - id: one
        actions:
          - follow_up: {after: 1h, goto: done, keep_on_reply: true}
        next: one
      - id: done
        actions:
          - message: Done.
  lost:
    steps:
      - id: sorry
        actions:
          - message: Sorry?
"""


@pytest.fixture
async def rig(tmp_path: Path) -> TimerRig:
    async with TimerRig(tmp_path, STORIES) as started:
        yield started


async def test_a_timeout_fires_when_the_step_waited_that_long(rig: TimerRig) -> None:
    assert await rig.say("signup") == ["What's your email?"]
    assert await rig.wait(599.999) == [], "never early"
    # @message is empty in a target entered by time
    assert await rig.wait(0.001) == ["Still there? [] no note"]
    nudge = rig.replies[-1]
    assert nudge.id.startswith("timer:test/u1/u1:") and nudge.id.endswith("/r0")
    assert await rig.say("ada@example.com") == ["Saved."], "the nudge step waits for the answer"
    assert await rig.wait(3600) == [], "it fired once"
    assert rig.metrics.timers_fired.labels("timeout")._value.get() == 1
    assert rig.metrics.timer_lateness._sum.get() == 0.0


async def test_a_reply_before_the_timeout_cancels_it(rig: TimerRig) -> None:
    await rig.say("signup")
    await rig.wait(300)
    assert rig.metrics.timers_pending._value.get() == 1, "the poller counts what it watches"
    assert await rig.say("ada@example.com") == ["Saved."]
    assert await rig.wait(3600) == []
    assert [t.kind for t in (await rig.pending()).timers] == ["follow_up"], "only the follow-up is left"
    assert rig.metrics.timers_cancelled.labels("reply")._value.get() == 1
    assert rig.metrics.timers_pending._value.get() == 1


async def test_a_retry_waits_afresh_from_the_users_last_message(rig: TimerRig) -> None:
    await rig.say("signup")
    await rig.wait(300)
    assert await rig.say("no idea") == ["Sorry, I didn't get that."]
    assert await rig.wait(599) == []
    assert await rig.wait(1) == ["Still there? [] no note"]


async def test_a_follow_up_fires_with_the_session_or_an_empty_one(rig: TimerRig) -> None:
    await rig.say("signup")
    await rig.say("ada@example.com")
    assert await rig.wait(2 * 86400) == ["How is it going, ada@example.com? new session"], (
        "the session expired after 30 minutes: an empty one, the user's attributes kept"
    )
    await rig.say("signup")
    await rig.say("bob@example.com")
    await rig.wait(2 * 86400 - 60)
    assert await rig.say("hello?") == ["Sorry?"], "a reply cancels a follow-up not kept on reply"
    assert await rig.wait(7 * 86400) == []


async def test_a_follow_up_in_a_live_session_sees_its_values(tmp_path: Path) -> None:
    stories = STORIES.replace("session_ttl: 30m", "session_ttl: 3d")
    async with TimerRig(tmp_path, stories) as rig:
        await rig.say("signup")
        await rig.say("ada@example.com")
        assert await rig.wait(2 * 86400) == ["How is it going, ada@example.com? noted"]


async def test_keep_on_reply_keeps_a_follow_up_that_a_reply_would_cancel(rig: TimerRig) -> None:
    assert await rig.say("remind") == ["Reminders set."]
    assert await rig.say("ok") == ["You said ok."]
    assert await rig.wait(3 * 3600) == ["Kept reminder."]
    assert rig.metrics.timers_cancelled.labels("reply")._value.get() == 1


async def test_a_story_started_by_a_trigger_cancels_every_timer_of_the_session_it_replaces(
    rig: TimerRig,
) -> None:
    await rig.say("remind")
    assert await rig.say("signup") == ["What's your email?"]
    assert [t.target.step for t in (await rig.pending()).timers] == ["nudge"]
    assert await rig.wait(3 * 3600) == ["Still there? [] no note"], "the kept reminder went with its session"
    assert rig.metrics.timers_cancelled.labels("new_story")._value.get() == 2


async def test_the_fallback_starting_cancels_them_too(rig: TimerRig) -> None:
    await rig.say("remind")
    await rig.say("ok")  # the story ended; the kept reminder is pending
    assert await rig.say("what?") == ["Sorry?"]
    assert await rig.wait(3 * 3600) == []


async def test_ten_follow_ups_pending_at_most_the_eleventh_replaces_the_oldest(rig: TimerRig) -> None:
    await rig.say("count")
    for _ in range(11):
        rig.clock.set_to(rig.clock() + 1)
        await rig.say("again")
    pending = (await rig.pending()).timers
    assert len(pending) == 10
    first_due = min(t.due_ms for t in pending)
    assert first_due == round((rig.clock() - 9 + 3600) * 1000), "the first one set is the one that went"
    assert await rig.scheduled() == 10, "and it left the schedule too"
    assert await rig.wait(3600) == ["Done."] * 10
    assert rig.metrics.timers_cancelled.labels("replaced")._value.get() == 1
    assert await rig.pending() == type(await rig.pending())(), "nothing pending: the record is gone"


@pytest.mark.parametrize("first", ["user", "timer"])
async def test_a_timer_and_a_message_at_the_same_instant_have_the_outcome_their_order_says(
    rig: TimerRig, first: str
) -> None:
    """The firing is one more message of the conversation: what is handled first decides."""
    await rig.say("signup")
    (timeout,) = (await rig.pending()).timers
    rig.clock.set_to(timeout.due_ms / 1000)
    fire = firing(rig.message("").conversation, timeout.id, timeout.due_ms)
    answer = rig.message("ada@example.com")
    before = len(rig.replies)
    await rig.publish([answer, fire] if first == "user" else [fire, answer])
    said = [reply.text for reply in rig.replies[before:]]
    if first == "user":
        # the answer cancelled the timeout: its firing, already on its way, is dropped
        assert said == ["Saved."]
    else:
        assert said == ["Still there? [] no note", "Saved."], "the timeout fired, then the answer was taken"
    assert await rig.wait(60) == [], "the poller's own copy of the firing changes nothing"


async def test_a_firing_published_twice_is_handled_once(rig: TimerRig) -> None:
    await rig.say("signup")
    (timeout,) = (await rig.pending()).timers
    rig.clock.set_to(timeout.due_ms / 1000)
    fire = firing(rig.message("").conversation, timeout.id, timeout.due_ms)
    await rig.publish([fire, fire])
    assert await rig.wait(1) == []
    assert [reply.text for reply in rig.replies] == ["What's your email?", "Still there? [] no note"]


async def test_a_timer_whose_target_left_the_stories_is_dropped_with_a_log_line(
    rig: TimerRig, caplog: pytest.LogCaptureFixture
) -> None:
    await rig.say("signup")
    rig.reload(STORIES.replace("goto: nudge}", "goto: ask_email}").replace("- id: nudge", "- id: gone"))
    with caplog.at_level(logging.WARNING, logger="gateway.timers"):
        assert await rig.wait(3600) == []
    assert "dropped: its target signup.nudge no longer exists" in caplog.text
    assert (await rig.pending()).timers == ()
    assert rig.metrics.timers_cancelled.labels("target_gone")._value.get() == 1


async def test_replies_to_a_firing_carry_the_routing_of_the_users_latest_message(rig: TimerRig) -> None:
    await rig.say("remind", thread_ts="1.1")
    await rig.say("ok", thread_ts="2.2")
    await rig.wait(3600)
    assert rig.replies[-1].text == "Kept reminder."
    assert rig.replies[-1].meta == {"thread_ts": "2.2"}


async def test_conversations_have_their_own_timers(rig: TimerRig) -> None:
    await rig.say("signup", user="a")
    rig.clock.set_to(rig.clock() + 60)
    await rig.say("signup", user="b")
    await rig.say("a@example.com", user="a")
    assert await rig.wait(600) == ["Still there? [] no note"]
    assert rig.replies[-1].user == "b"


async def test_a_schedule_change_lost_after_the_commit_is_applied_by_the_retry(rig: TimerRig) -> None:
    """Redis away between the commit and the schedule change: the bus retries the message in place, the
    retry finds the commit and applies the recorded change, and the timer fires once."""
    failing = CountingSchedule(rig.schedule)
    rig.timers.schedule = failing
    failing.failing = True
    answer = rig.message("signup")
    publishing = asyncio.ensure_future(rig.publish([answer]))
    await until(lambda: failing.calls.get("change", 0) >= 2)
    assert await rig.scheduled() == 0 and len((await rig.pending()).timers) == 1, "committed, not scheduled"
    failing.failing = False
    await publishing
    assert await rig.scheduled() == 1
    assert [r.text for r in rig.replies] == ["What's your email?"], "the reply went once"
    assert await rig.wait(600) == ["Still there? [] no note"]


async def test_an_entry_whose_conversation_record_is_gone_is_dropped_when_it_falls_due(
    rig: TimerRig,
) -> None:
    await rig.say("signup")
    key = rig.message("").conversation
    await rig.store.commit(key, Commit("erase", None, records={"timers": None}))  # as erasing the user does
    assert await rig.scheduled() == 1
    assert await rig.wait(600) == []
    assert await rig.scheduled() == 0, "nothing stays in the schedule past its due time"
    assert rig.metrics.handled.labels("dropped")._value.get() == 1


async def test_a_firing_early_by_this_workers_clock_waits_for_it(tmp_path: Path) -> None:
    """The poller's clock may run ahead of the worker's (another machine): the turn still is not early."""
    async with TimerRig(tmp_path, STORIES) as rig:
        rig.worker.clock = time.time
        await rig.say("signup")
        (timeout,) = (await rig.pending()).timers
        due = time.time() + 0.2
        early = firing(rig.message("").conversation, timeout.id, round(due * 1000))
        await rig.publish([early])
        assert rig.replies[-1].text == "Still there? [] no note"
        assert rig.replies[-1].created_at >= round(due * 1000) / 1000


async def test_a_broadcast_starting_a_story_cancels_the_timers_of_the_session_it_replaces(
    rig: TimerRig,
) -> None:
    await rig.say("remind")
    await rig.say("ok")  # the kept reminder is pending
    start = Inbound(
        id="broadcast:b1:u1", channel="test", chat="u1", user="u1", kind="broadcast", story="signup"
    )
    await rig.publish([start])
    assert rig.replies[-1].text == "What's your email?"
    assert [t.target.step for t in (await rig.pending()).timers] == ["nudge"], "its own timeout only"
    assert await rig.wait(3 * 3600) == ["Still there? [] no note"]


async def test_a_firing_is_not_a_message_of_the_user(tmp_path: Path) -> None:
    """The user index counts the user's own messages (retention counts from the last one); a timer that
    fires is the bot's doing."""
    index = MemoryUserIndex()
    async with TimerRig(tmp_path, STORIES, users=index) as rig:
        await rig.say("signup")
        seen = await index.entry("test", "u1")
        assert seen is not None and seen.last_seen == START
        await rig.wait(600)
        assert rig.replies[-1].text == "Still there? [] no note"
        assert await index.entry("test", "u1") == seen
