"""The handoff action in the engine: the order it gives the worker, the step it ends, and ``resume`` (the
story started when a person hands the conversation back). What happens between the two — the desk, the
person's answers — is the worker's business (tests/worker/handoff)."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.core.schema import Inbound
from gateway.core.store.base import Session
from tests.support.engine import NOW, Chat, load
from worker.engine import Engine
from worker.engine.calls import HttpAnswer
from worker.engine.engine import HandOffOrder

STORIES = """\
stories:
  support:
    triggers: [help]
    session_ttl: 1h
    steps:
      - id: ask
        actions:
          - message: What's wrong?
        next: hand
      - id: hand
        actions:
          - set_session: {Problem: "{{@message}}"}
          - message: Connecting you with a person.
          - handoff:
              desk: email
              to: 'Support <support@example.com>, {{@session.Cc || "nobody"}}'
              subject: 'Chat with {{@user.FirstName || "a user"}}: {{@session.Problem}}'
              summary: "{{@user.FirstName}} says: {{@session.Problem}}\\nsecond line"
              until: 2h
              resume: csat
  slack:
    triggers: [slack]
    steps:
      - id: only
        actions:
          - handoff: {desk: slack, to: "{{@user.SlackDesk || 'C0123ABCD'}}"}
  maybe:
    triggers: [maybe]
    steps:
      - id: only
        actions:
          - message: Hello.
            quick_replies: [{title: Later, goto: after}]
          - handoff: {desk: slack, to: C0123ABCD, resume: csat}
            if: '@user.Vip == "yes"'
          - message: No person for you, {{@user.FirstName}}.
        next: after
      - id: after
        actions:
          - message: 'Waited: {{@message}}'
  csat:
    steps:
      - id: rate
        actions:
          - message: 'How did we do, {{@user.FirstName}}? Your problem was {{@session.Problem}}.{{@message}}'
            quick_replies: [Good, Bad]
        next: thanks
      - id: thanks
        actions:
          - message: Thanks.
  checked:
    steps:
      - id: call
        actions:
          - http:
              url: https://api.example.com/rating
              save: {session: {Score: $.score}}
          - message: 'Score {{@session.Score}} for {{@session.Problem}}'
  nowhere:
    triggers: [nowhere]
    steps:
      - id: only
        actions:
          - message: Connecting you.
          - handoff: {desk: email, to: "{{@user.DeskEmail}}"}
"""


def handback(conversation: str = "x") -> Inbound:
    """What the worker passes to :meth:`Engine.resume`: the hand-back event of the conversation."""
    return Inbound(
        id=f"handback:{conversation}", channel="webchat", chat="chat-1", user="+442071234567",
        kind="handback", text="#bot", sent_at=NOW,
    )  # fmt: skip


def test_a_handoff_ends_the_step_with_an_order_for_the_worker(tmp_path: Path) -> None:
    chat = Chat(load(tmp_path, STORIES), user={"FirstName": "Ada"})
    chat.say("help")
    turn = chat.send("my order is late")
    assert [reply.text for reply in turn.replies] == ["Connecting you with a person."]
    assert turn.handoff == HandOffOrder(
        desk="email",
        to="support@example.com",  # the address of "Name <address>", an invalid one dropped
        subject="Chat with Ada: my order is late",
        summary="Ada says: my order is late\nsecond line",  # not one line: it is the ticket's body
        until=7200.0,
        resume="csat",
    )
    assert turn.session is not None
    assert (turn.session.story, turn.session.step) == ("support", None)  # nothing waits
    assert turn.session.values == {"text": "my order is late", "Problem": "my order is late"}  # kept
    assert turn.session.ttl == 3600.0
    assert turn.route == "next" and not turn.warnings


def test_no_subject_renders_empty_and_until_defaults_to_a_day(tmp_path: Path) -> None:
    chat = Chat(load(tmp_path, STORIES))
    turn = chat.send("slack")
    assert turn.handoff == HandOffOrder("slack", "C0123ABCD", "", "", 86400.0, None)
    assert turn.replies == []


def test_a_handoff_with_if_runs_only_when_it_holds(tmp_path: Path) -> None:
    stories = load(tmp_path, STORIES)
    vip = Chat(stories, user={"Vip": "yes", "FirstName": "Ada"})
    turn = vip.send("maybe")
    assert turn.handoff is not None and turn.handoff.resume == "csat"
    assert [reply.text for reply in turn.replies] == ["Hello."]  # what the step said before it is sent
    assert turn.session is not None and turn.session.step is None
    assert turn.session.buttons == ()  # the conversation is a person's: no button of the bot's is live
    other = Chat(stories, user={"FirstName": "Bob"})
    turn = other.send("maybe")
    assert turn.handoff is None
    assert [reply.text for reply in turn.replies] == ["Hello.", "No person for you, Bob."]
    assert turn.session is not None and turn.session.step == "only"  # the step waits as usual
    assert other.buttons == ["Later"]
    assert other.say("hello") == ["Waited: hello"]


def test_a_to_that_renders_to_no_desk_skips_the_handoff_with_a_warning(tmp_path: Path) -> None:
    stories = load(tmp_path, STORIES)
    turn = Chat(stories, user={"SlackDesk": "#support"}).send("slack")
    assert turn.handoff is None and turn.replies == []
    (warning,) = turn.warnings
    assert warning.endswith("bot.yml:26:22 skipped: '#support' is not a Slack channel id")
    turn = Chat(stories, user={"DeskEmail": "support at example"}).send("nowhere")
    assert turn.handoff is None
    assert turn.warnings[0].endswith("bot.yml:65:22 skipped: no valid address in 'to'")
    assert [reply.text for reply in turn.replies] == ["Connecting you."]
    assert turn.session is not None and turn.session.step is None  # the step ends as it would have
    turn = Chat(stories, user={"DeskEmail": "desk@example.com"}).send("nowhere")
    assert turn.handoff is not None and turn.handoff.to == "desk@example.com"


def test_resume_runs_the_story_with_the_session_kept_and_no_message(tmp_path: Path) -> None:
    chat = Chat(load(tmp_path, STORIES), user={"FirstName": "Ada"})
    chat.say("help")
    handed = chat.send("my order is late")
    assert handed.handoff is not None and handed.handoff.resume is not None
    turn = chat.engine.resume(chat.session, chat.user, handback(), handed.handoff.resume, NOW + 60)
    assert [reply.text for reply in turn.replies] == [
        "How did we do, Ada? Your problem was my order is late."  # @message is empty
    ]
    assert [button.title for button in turn.replies[0].buttons] == ["Good", "Bad"]
    assert turn.replies[0].id == "handback:x/r0" and turn.replies[0].in_reply_to == "handback:x"
    assert turn.route == "resume" and turn.handoff is None and not turn.warnings
    assert turn.session is not None
    assert (turn.session.story, turn.session.step) == ("csat", "rate")  # waits for the rating
    assert turn.session.values == {"text": "my order is late", "Problem": "my order is late"}
    chat.session = turn.session
    assert chat.press("Good") == ["Thanks."]


def test_resume_of_a_story_the_stories_no_longer_have_keeps_the_session(tmp_path: Path) -> None:
    engine = Engine(load(tmp_path, STORIES))
    session = Session("support", None, {"Problem": "late"}, (), 3600.0)
    turn = engine.resume(session, {}, handback(), "gone", NOW)
    assert turn.replies == [] and turn.handoff is None and turn.call is None
    assert turn.session == Session("support", None, {"Problem": "late"}, (), 3600.0)
    assert turn.warnings == ("resume story 'gone', which the stories no longer have",)
    turn = engine.resume(None, {}, handback(), "gone", NOW)
    assert turn.session is None and len(turn.warnings) == 1


def test_resume_without_a_session_starts_with_no_values(tmp_path: Path) -> None:
    turn = Engine(load(tmp_path, STORIES)).resume(None, {"FirstName": "Ada"}, handback(), "csat", NOW)
    assert [reply.text for reply in turn.replies] == ["How did we do, Ada? Your problem was ."]
    assert turn.session is not None and turn.session.values == {}


def test_resume_stops_at_an_http_call_like_a_message_does(tmp_path: Path) -> None:
    engine = Engine(load(tmp_path, STORIES))
    session = Session("support", None, {"Problem": "late"}, (), 3600.0)
    first = engine.resume(session, {}, handback("y"), "checked", NOW)
    assert first.call is not None and first.call.url == "https://api.example.com/rating"
    assert first.call.key == "handback:y/h0"
    assert first.session == session and first.replies == []  # not finished: nothing to commit yet
    answer = HttpAnswer(200, json.dumps({"score": 5}).encode())
    turn = engine.resume(session, {}, handback("y"), "checked", NOW, [answer])
    assert turn.call is None
    assert [reply.text for reply in turn.replies] == ["Score 5 for late"]
    assert turn.session is not None and turn.session.values == {"Problem": "late", "Score": "5"}
