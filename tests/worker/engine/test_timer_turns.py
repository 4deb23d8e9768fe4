"""What the engine does for time: it reports the follow-ups a turn set, and enters a timer's target with
the session (or an empty one) and ``@message`` empty. Which timers are pending is the worker's business
(tests/worker/timers)."""

from __future__ import annotations

from pathlib import Path

from gateway.core.schema import Inbound
from gateway.core.store.base import Session
from tests.support.engine import NOW, Chat, load
from worker.engine import Engine
from worker.engine.model import TimerTarget

STORIES = """\
bot:
  session_ttl: 10m
stories:
  signup:
    triggers: [signup]
    session_ttl: 1h
    steps:
      - id: ask
        actions:
          - set_session: {Asked: "yes"}
          - follow_up: {after: 2d, goto: check_in}
          - follow_up: {after: 1m, jump: other, keep_on_reply: true}
            if: '@session.Asked == "no"'
          - message: What's your email?
        expect: email
        next: thanks
        timeout: {after: 10m, goto: nudge}
      - id: nudge
        actions:
          - message: 'Still there? You said "{{@message}}" before; {{@session.Asked || "nothing asked"}}.'
        next: thanks
      - id: thanks
        actions:
          - message: Thanks {{@user.Name}}.
      - id: check_in
        actions:
          - follow_up: {after: 1d, goto: check_in}
          - goto: thanks
  other:
    steps:
      - id: start
        actions:
          - message: Other story.
"""


def firing(timer: str = "t1") -> Inbound:
    return Inbound(id=f"timer:c/u/u:{timer}", channel="c", chat="u", user="u", timer=timer, sent_at=NOW)


def test_a_turn_reports_the_follow_ups_that_ran(tmp_path: Path) -> None:
    chat = Chat(load(tmp_path, STORIES))
    turn = chat.send("signup")
    (follow_up,) = turn.follow_ups  # the second one's condition does not hold
    assert (follow_up.after.seconds, follow_up.target) == (172800.0, TimerTarget("signup", "check_in"))
    assert chat.send("ada@example.com").follow_ups == ()


def test_a_timer_enters_its_target_with_the_session_and_an_empty_message(tmp_path: Path) -> None:
    engine = Engine(load(tmp_path, STORIES))
    session = Session("signup", "ask", {"Asked": "yes"}, ttl=3600.0)
    turn = engine.fire(session, {"Name": "Ada"}, firing(), TimerTarget("signup", "nudge"), NOW)
    assert turn is not None
    assert [r.text for r in turn.replies] == ['Still there? You said "" before; yes.']
    assert turn.replies[0].id == "timer:c/u/u:t1/r0"
    assert turn.session == Session("signup", "nudge", {"Asked": "yes"}, ttl=3600.0)
    assert turn.route == "timer"


def test_a_timer_of_a_session_that_expired_starts_from_an_empty_one(tmp_path: Path) -> None:
    engine = Engine(load(tmp_path, STORIES))
    turn = engine.fire(None, {"Name": "Ada"}, firing(), TimerTarget("signup", "check_in"), NOW)
    assert turn is not None
    assert [r.text for r in turn.replies] == ["Thanks Ada."]
    assert turn.session == Session("signup", None, {}, ttl=3600.0)
    assert [f.target for f in turn.follow_ups] == [TimerTarget("signup", "check_in")], "it can set another"


def test_a_jump_target_enters_the_story_entry(tmp_path: Path) -> None:
    engine = Engine(load(tmp_path, STORIES))
    live = Session("signup", "ask", {"Asked": "yes"}, ttl=3600.0)
    turn = engine.fire(live, {}, firing(), TimerTarget("other", None), NOW)
    assert turn is not None and [r.text for r in turn.replies] == ["Other story."]
    assert turn.session == Session("other", None, {"Asked": "yes"}, ttl=600.0), "the session is kept"


def test_a_target_that_no_longer_exists_gives_no_turn(tmp_path: Path) -> None:
    engine = Engine(load(tmp_path, STORIES))
    assert engine.fire(None, {}, firing(), TimerTarget("signup", "removed"), NOW) is None
    assert engine.fire(None, {}, firing(), TimerTarget("removed", None), NOW) is None
    assert engine.fire(None, {}, firing(), TimerTarget("removed", "ask"), NOW) is None
