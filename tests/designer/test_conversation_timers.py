"""Conversation tests on simulated time: `wait:` lets the timers due meanwhile fire, at their due times, and
what they say is expected after that line."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

from designer.conversation_tests import run_tests
from tests.support.designer import write

STORIES = """\
bot:
  session_ttl: 30m
stories:
  signup:
    triggers: [signup]
    steps:
      - id: ask
        actions:
          - message: What's your email?
        expect: email
        next: thanks
        timeout: {after: 10m, goto: nudge}
      - id: nudge
        actions:
          - message: Still there?
          - follow_up: {after: 1s, goto: again}
        expect: email
        next: thanks
      - id: again
        actions:
          - message: Just your email, please.
        expect: email
        next: thanks
      - id: thanks
        actions:
          - message: Thanks.
          - follow_up: {after: 2d, goto: check_in}
      - id: check_in
        actions:
          - message: How is it going?
"""


def run(tmp_path: Path, text: str) -> tuple[int, str]:
    stories = write(tmp_path / "stories" / "bot.yml", STORIES).parent
    path = write(tmp_path / "tests" / "signup.yml", text)
    out = StringIO()
    code = run_tests(path, stories, out=out)
    return code, out.getvalue().replace(f"{path}", "signup.yml")


def test_timers_fire_during_a_wait_in_order_chains_included(tmp_path: Path) -> None:
    code, out = run(tmp_path, """\
        tests:
          - name: nudged, then the follow-up the nudge set
            conversation:
              - user: signup
              - bot: What's your email?
              - wait: 9m
              - wait: 2m
              - bot: Still there?
              - bot: Just your email, please.
              - user: ada@example.com
              - bot: Thanks.
              - wait: 2d
              - bot: How is it going?
          - name: an answer in time cancels the timeout
            conversation:
              - user: signup
              - bot: What's your email?
              - wait: 9m
              - user: ada@example.com
              - bot: Thanks.
              - wait: 1d
        """)  # fmt: skip
    assert code == 0, out


def test_what_a_timer_says_unexpectedly_fails_at_the_wait_line(tmp_path: Path) -> None:
    code, out = run(tmp_path, """\
        tests:
          - name: forgot the nudge
            conversation:
              - user: signup
              - bot: What's your email?
              - wait: 10m
              - user: ada@example.com
              - bot: Thanks.
        """)  # fmt: skip
    assert code == 1
    assert out.splitlines()[:3] == [
        "signup.yml:6: FAIL forgot the nudge",
        "  expected: nothing more from the bot after wait 10m (add a 'bot:' line for what it says)",
        "  bot said: 'Still there?'",
    ]


def test_an_expected_timer_message_that_does_not_come(tmp_path: Path) -> None:
    code, out = run(tmp_path, """\
        tests:
          - name: too early
            conversation:
              - user: signup
              - bot: What's your email?
              - wait: 599s
              - bot: Still there?
        """)  # fmt: skip
    assert code == 1
    assert out.splitlines()[:3] == [
        "signup.yml:7: FAIL too early",
        "  expected: 'Still there?'",
        "  bot said: nothing more after wait 599s",
    ]


def test_a_timer_whose_target_calls_an_api(tmp_path: Path) -> None:
    """The turn of a timer is a turn like any: its http actions are called (once, committed with it)."""
    stories = write(tmp_path / "stories" / "bot.yml", """\
        stories:
          order:
            triggers: [order]
            steps:
              - id: placed
                actions:
                  - message: Order placed.
                  - follow_up: {after: 1h, goto: status}
              - id: status
                actions:
                  - http:
                      url: https://shop.example.com/api/orders/1
                      save: {session: {Status: "$.status"}}
                  - message: "Your order is {{@session.Status}}."
        """).parent  # fmt: skip
    path = write(tmp_path / "tests" / "order.yml", """\
        tests:
          - name: an hour later the bot looks the order up
            http:
              - url: https://shop.example.com/api/orders/1
                json: {status: shipped}
            conversation:
              - user: order
              - bot: Order placed.
              - wait: 1h
              - bot: Your order is shipped.
          - name: a call no canned answer expects fails at the wait line
            conversation:
              - user: order
              - bot: Order placed.
              - wait: 2h
              - bot: Your order is .
        """)  # fmt: skip
    out = StringIO()
    assert run_tests(path, stories, out=out) == 1
    lines = out.getvalue().replace(f"{path}", "order.yml").splitlines()
    assert lines[0] == "order.yml:15: FAIL a call no canned answer expects fails at the wait line"
    assert "no http call after wait 2h" in lines[1]
    assert lines[-1].startswith("FAILED: 1 of 2 tests failed")
