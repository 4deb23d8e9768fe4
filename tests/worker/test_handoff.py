"""Handing a conversation over to a person and back, through the real worker, bus path and deliverer
(in-memory bus and store, simulated time): STORIES.md, "Handing over to a person"."""

from __future__ import annotations

from pathlib import Path

from gateway.core.desk import DESK_POST, DESK_TOKEN, token_of_address, verify
from gateway.core.schema import ConversationKey, Inbound
from tests.support.timers import DESK_INBOX, DESK_KEY, TimerRig

STORIES = """
bot:
  fallback: fallback
stories:
  fallback:
    steps:
      - id: say
        actions:
          - message: "I did not get that."
  help:
    triggers: [human]
    steps:
      - id: ask
        actions:
          - message: "What is the problem?"
        next: hand
      - id: hand
        actions:
          - set_session: {Problem: "{{@message}}"}
          - set_user: {FirstName: Ada}
          - message: "Passing you to a person."
          - handoff:
              desk: DESK
              to: TO
              summary: "Problem: {{@session.Problem}}"
              until: 1h
              resume: csat
  csat:
    steps:
      - id: rate
        actions:
          - message: "How did we do, {{@session.Problem}}?"
            quick_replies: [Good, Bad]
  menu:
    triggers: [menu]
    steps:
      - id: show
        actions:
          - message: "Menu"
            quick_replies: [{title: Pick, goto: picked}]
      - id: picked
        actions:
          - message: "Picked"
"""


def stories(desk: str = "email") -> str:
    to = "support@example.com" if desk == "email" else "C0DESK"
    return STORIES.replace("DESK", desk).replace("TO", to)


def staff(rig: TimerRig, text: str, user: str = "u1", n: int = 1, kind: str = "staff") -> Inbound:
    return Inbound(
        id=f"mail:{user}:{n}:{kind}", kind=kind, channel="test", chat=user, user=user, text=text,
        user_name="Ann", sent_at=rig.clock(),
    )  # fmt: skip


async def test_an_email_desk_gets_the_ticket_and_the_users_messages_and_its_answers_reach_the_user(
    tmp_path: Path,
) -> None:
    async with TimerRig(tmp_path, stories("email"), desks=True) as rig:
        assert await rig.say("human") == ["What is the problem?"]
        assert await rig.say("my order is late") == ["Passing you to a person."]
        [ticket] = rig.emails
        assert ticket.to == ("support@example.com",)
        assert ticket.thread is None
        assert ticket.reply_to is not None
        token = token_of_address(ticket.reply_to, DESK_INBOX)
        assert token is not None and verify(DESK_KEY, token) == ConversationKey("test", "u1", "u1")
        assert ticket.subject == "Conversation with Ada (test)"
        text = ticket.text
        assert text.startswith("Problem: my order is late")
        seen_in_ticket = [
            "user: human",
            "bot: What is the problem?",
            "user: my order is late",
            "bot: Passing you to a person.",
            "Problem: my order is late",
            "FirstName: Ada",
        ]
        for seen in seen_in_ticket:
            assert seen in text, seen

        # While handed over the bot runs nothing: not the fallback, not a trigger, not an old button.
        assert await rig.say("are you there?") == []
        assert await rig.say("menu") == []
        follow_ups = rig.emails[1:]
        assert [e.thread for e in follow_ups] == [ticket.id, ticket.id]
        assert [e.subject for e in follow_ups] == ["Re: Conversation with Ada (test)"] * 2
        assert "are you there?" in follow_ups[0].text and "menu" in follow_ups[1].text

        before = len(rig.replies)
        await rig.publish([staff(rig, "Hello, I am looking into it.")])
        [answer] = rig.replies[before:]
        assert answer.text == "Hello, I am looking into it." and answer.author == "Ann"
        assert rig.metrics.staff_replies.labels("email")._value.get() == 1

        # "#bot" alone on a line hands back: the rest of the answer goes first, then `resume` runs with
        # the session kept.
        before = len(rig.replies)
        await rig.publish([staff(rig, "It ships tomorrow.\n #BOT \n", n=2)])
        texts = [r.text for r in rig.replies[before:]]
        assert texts == ["It ships tomorrow.", "How did we do, my order is late?"]
        assert await rig.say("menu") == ["Menu"]  # the bot has the conversation again
        assert rig.metrics.handoffs.labels("handed_back_staff")._value.get() == 1

        # A second handoff's ticket shows the person's answers among the last messages.
        await rig.say("human")
        await rig.say("again")
        second = rig.emails[-1]
        assert second.thread is None and second.id != ticket.id
        assert "agent: It ships tomorrow." in second.text
        assert "bot: How did we do, my order is late? [Good | Bad]" in second.text


async def test_an_answer_for_a_conversation_handed_back_is_dropped(tmp_path: Path) -> None:
    async with TimerRig(tmp_path, stories("email"), desks=True) as rig:
        await rig.publish([staff(rig, "hello?")])
        await rig.say("human")
        await rig.say("late")
        await rig.publish([staff(rig, "#bot", n=2)])
        before = len(rig.replies)
        await rig.publish([staff(rig, "one more thing", n=3), staff(rig, "x", n=4, kind="handback")])
        assert rig.replies[before:] == []
        assert rig.replies[0].text == "What is the problem?"  # the first answer, before any handoff: dropped


async def test_a_message_right_behind_the_handoff_goes_to_the_desk_not_the_bot(tmp_path: Path) -> None:
    async with TimerRig(tmp_path, stories("email"), desks=True) as rig:
        await rig.say("human")
        await rig.publish([rig.message("late"), rig.message("hello?"), rig.message("menu")])
        assert [r.text for r in rig.replies] == ["What is the problem?", "Passing you to a person."]
        assert len(rig.emails) == 3


async def test_a_slack_desk_thread_opens_with_a_hand_back_button_and_the_button_hands_back(
    tmp_path: Path,
) -> None:
    async with TimerRig(tmp_path, stories("slack"), desks=True) as rig:
        await rig.say("human")
        await rig.say("late")
        await rig.say("still waiting")
        root, post = rig.slack.replies
        assert root.chat == "C0DESK" and root.meta[DESK_POST] == "root"
        assert post.meta[DESK_POST] == "thread" and "still waiting" in post.text
        token = root.meta[DESK_TOKEN]
        assert verify(DESK_KEY, token) == ConversationKey("test", "u1", "u1")
        assert root.buttons == ()  # the Slack channel adds the Hand back button from the token
        assert rig.emails == []
        before = len(rig.replies)
        await rig.publish([staff(rig, "", kind="handback")])
        assert [r.text for r in rig.replies[before:]] == ["How did we do, late?"]
        assert "Handed back" in rig.slack.replies[-1].text


async def test_until_hands_back_after_a_quiet_hour_and_an_answer_restarts_it(tmp_path: Path) -> None:
    async with TimerRig(tmp_path, stories("email"), desks=True) as rig:
        await rig.say("human")
        await rig.say("late")
        assert await rig.wait(50 * 60) == []
        await rig.publish([staff(rig, "checking")])
        assert await rig.wait(50 * 60) == []  # an hour after the handoff, but not after the answer
        assert await rig.wait(11 * 60) == ["How did we do, late?"]
        assert rig.metrics.handoffs.labels("handed_back_until")._value.get() == 1
        assert await rig.wait(2 * 3600) == []  # the old timer of the first hour fired into nothing


async def test_story_timers_do_not_fire_while_a_person_has_the_conversation(tmp_path: Path) -> None:
    nudge = "      - id: nudge\n        actions:\n          - message: Still there?\n"
    nudging = (
        stories("email")
        .replace(
            "          - handoff:\n",
            "          - follow_up: {after: 10m, goto: nudge}\n          - handoff:\n",
        )
        .replace("  csat:\n", nudge + "  csat:\n")
    )
    async with TimerRig(tmp_path, nudging, desks=True) as rig:
        await rig.say("human")
        await rig.say("late")
        assert await rig.wait(30 * 60) == []


async def test_the_transcript_keeps_the_last_twenty_messages(tmp_path: Path) -> None:
    async with TimerRig(tmp_path, stories("email"), desks=True) as rig:
        for n in range(15):
            await rig.say(f"chatter {n}")
        await rig.say("human")
        await rig.say("late")
        text = rig.emails[0].text
        listed = [
            line for line in text.splitlines() if line.startswith("  user:") or line.startswith("  bot:")
        ]
        assert len(listed) == 20
        assert "user: chatter 6" not in text and text.count("user: chatter 7") == 1
