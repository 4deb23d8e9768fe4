"""``timeout`` and ``follow_up`` as the loader reads them: what they become, and every mistake positioned."""

from __future__ import annotations

from pathlib import Path

from tests.support.engine import load, problems
from worker.engine.model import Delay, FollowUp, Timeout, TimerTarget, Where

STORIES = """\
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
          - message: Still there?
        next: save_email
        timeout: {after: 1d, jump: goodbye}
      - id: save_email
        actions:
          - follow_up: {after: 2d, goto: check_in}
          - follow_up: {after: 90s, jump: goodbye, keep_on_reply: true}
            if: "@session.email"
      - id: check_in
        actions:
          - message: How is it going?
  goodbye:
    steps:
      - id: bye
        actions:
          - message: Bye!
"""


def test_timeouts_and_follow_ups_are_read_with_their_targets(tmp_path: Path) -> None:
    stories = load(tmp_path, STORIES)
    steps = stories.stories["signup"].steps
    assert steps["ask_email"].timeout == Timeout(
        Delay(600.0, "10m"), TimerTarget("signup", "nudge"), Where(str(tmp_path / "stories/bot.yml"), 10, 9)
    )
    timeout = steps["nudge"].timeout
    assert timeout is not None and (timeout.after, timeout.target) == (
        Delay(86400.0, "1d"),
        TimerTarget("goodbye", None),
    )
    assert steps["save_email"].timeout is None
    first, second = steps["save_email"].actions
    assert first == FollowUp(Delay(172800.0, "2d"), TimerTarget("signup", "check_in"))
    assert isinstance(second, FollowUp) and second.keep_on_reply and second.when
    assert (second.after, second.target) == (Delay(90.0, "90s"), TimerTarget("goodbye", None))


def test_every_timer_mistake_is_reported_where_it_is(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "bot.yml": """\
            stories:
              s:
                steps:
                  - id: a
                    actions:
                      - message: hi
                      - follow_up: {after: 0.5s, goto: b}
                      - follow_up: {after: 31d, goto: b}
                      - follow_up: {after: soon, goto: b}
                      - follow_up: {goto: b}
                      - follow_up: {after: 1m}
                      - follow_up: {after: 1m, goto: b, jump: t}
                      - follow_up: {after: 1m, goto: nowhere}
                      - follow_up: {after: 1m, jump: nothing}
                      - follow_up: {after: 1m, goto: b, keep_on_reply: yes}
                      - follow_up: {after: 1m, goto: b, keep: true}
                      - follow_up: 10m
                    next: b
                    timeout: {after: 30d, goto: b}
                  - id: b
                    actions:
                      - message: b
                    timeout: {after: 5m, goto: a}
                  - id: c
                    actions:
                      - message: c
                    next: a
                    timeout: {after: 1s, goto: gone, unless: x}
              t:
                steps:
                  - id: only
                    actions:
                      - message: t
            """
        },
    )
    assert found == [
        "stories/bot.yml:7:32: after '0.5s' is out of range: a timer waits from 1s to 30d",
        "stories/bot.yml:8:32: after '31d' is out of range: a timer waits from 1s to 30d",
        "stories/bot.yml:9:32: bad duration 'soon': use a number with s, m, h or d, such as 10m",
        "stories/bot.yml:10:24: follow_up needs 'after' (from 1s to 30d, such as 10m)",
        "stories/bot.yml:11:24: follow_up needs 'goto: STEP' or 'jump: STORY', the target it enters",
        "stories/bot.yml:12:45: follow_up has either 'goto' or 'jump', not both",
        "stories/bot.yml:13:42: story 's' has no step 'nowhere'",
        "stories/bot.yml:14:42: jump: there is no story 'nothing'",
        "stories/bot.yml:15:60: keep_on_reply must be true or false, not 'yes'",
        "stories/bot.yml:16:45: unknown key 'keep' in follow_up (expected one of: after, goto, jump, "
        "keep_on_reply)",
        "stories/bot.yml:17:24: follow_up must be a mapping (NAME: value)",
        "stories/bot.yml:23:9: 'timeout' needs a step that waits for the user (a 'next', or a button with "
        "goto or jump)",
        "stories/bot.yml:28:36: story 's' has no step 'gone'",
        "stories/bot.yml:28:42: unknown key 'unless' in timeout (expected one of: after, goto, jump)",
    ]
