"""The conversation test runner: what passes, what fails (and where it says it failed), broken files."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest

from designer.conversation_tests import run_tests
from tests.support.designer import gateway, write

STORIES = """\
bot:
  session_ttl: 10m
  fallback: lost
stories:
  order:
    triggers: [order]
    steps:
      - id: what
        actions:
          - message: 'What would you like, {{@user.Name || "friend"}}?'
            quick_replies: [Tea, Coffee, {title: Nothing, goto: bye}]
        next: confirm
      - id: confirm
        actions:
          - set_session: {Drink: "{{@message}}"}
          - email:
              to: "kitchen@example.com, bar@example.com"
              reply_to: "{{@user.Email}}"
              subject: "Order: {{@session.Drink}}"
              body: "{{@user.Name || 'Someone'}} wants {{@session.Drink}}."
              html: "<p>{{@session.Drink}}</p>"
          - message: One {{@session.Drink}}, coming up.
          - image: https://example.com/{{@session.Drink}}.png
            caption: Your {{@session.Drink}}
      - id: bye
        actions:
          - message: Maybe later.
  lost:
    steps:
      - id: sorry
        actions:
          - message: Say order.
"""


@pytest.fixture
def stories(tmp_path: Path) -> Path:
    write(tmp_path / "stories" / "bot.yml", STORIES)
    return tmp_path / "stories"


def run(tmp_path: Path, stories: Path, text: str) -> tuple[int, str, Path]:
    path = write(tmp_path / "tests" / "order.yml", text)
    out = StringIO()
    code = run_tests(path, stories, out=out)
    return code, out.getvalue().replace(f"{path}", "order.yml"), path


def test_a_passing_conversation_with_buttons_email_and_image(tmp_path: Path, stories: Path) -> None:
    code, out, _ = run(tmp_path, stories, """\
        tests:
          - name: tea for Ada
            channel: telegram
            user_id: "42"
            user_attributes: {Name: Ada, Email: ada@example.org}
            conversation:
              - user: order
              - bot: What would you like, Ada?
                buttons: [Tea, Coffee, "re:^Noth"]
              - press: tea
              - bot: One Tea, coming up.
                buttons: []
              - image: https://example.com/Tea.png
                caption: re:Tea$
              - email:
                  to: [bar@example.com, KITCHEN@example.com]
                  reply_to: ada@example.org
                  subject: "Order: Tea"
                  body_contains: Ada wants Tea.
                  html_contains: <p>Tea</p>
        """)  # fmt: skip
    assert code == 0, out
    assert out.startswith("OK: 1 test passed (1 file, ")


@pytest.mark.parametrize(
    ("line", "expected", "said"),
    [
        ("- bot: What would you like, Bob?", "'What would you like, Bob?'", "'What would you like, friend?'"),
        ("- bot: re:^Which", "re:^Which", "'What would you like, friend?'"),
    ],
)
def test_a_wrong_reply_fails_at_its_line_with_what_the_bot_said(
    tmp_path: Path, stories: Path, line: str, expected: str, said: str
) -> None:
    code, out, _ = run(tmp_path, stories, f"""\
        tests:
          - name: greeting
            conversation:
              - user: order
              {line}
        """)  # fmt: skip
    assert code == 1
    assert out.splitlines()[:3] == [
        "order.yml:5: FAIL greeting",
        f"  expected: {expected}",
        f"  bot said: {said}",
    ]
    assert out.splitlines()[-1].startswith("FAILED: 1 of 1 test failed (1 file, ")


def test_only_the_failing_test_fails_and_later_lines_are_not_checked(tmp_path: Path, stories: Path) -> None:
    code, out, _ = run(tmp_path, stories, """\
        tests:
          - name: passes
            conversation:
              - user: order
              - bot: re:What would you like
          - name: fails
            conversation:
              - user: order
              - bot: re:What would you like
              - press: Nothing
              - bot: Never mind.
              - bot: this line is never compared
        """)  # fmt: skip
    assert code == 1
    assert out.splitlines()[0:3] == [
        "order.yml:11: FAIL fails",
        "  expected: 'Never mind.'",
        "  bot said: 'Maybe later.'",
    ]
    assert "FAILED: 1 of 2 tests failed" in out


def test_a_missing_reply_and_an_unexpected_one(tmp_path: Path, stories: Path) -> None:
    code, out, _ = run(tmp_path, stories, """\
        tests:
          - name: missing
            conversation:
              - user: hello
              - bot: Say order.
              - bot: And something else.
          - name: unexpected
            conversation:
              - user: order
              - user: Nothing
        """)  # fmt: skip
    assert code == 1
    lines = out.splitlines()
    assert lines[0:4] == [
        "order.yml:6: FAIL missing",
        "  expected: 'And something else.'",
        "  bot said: nothing more after user 'hello'",
        "  its replies after user 'hello': 'Say order.'",
    ]
    assert lines[4:7] == [
        "order.yml:9: FAIL unexpected",
        "  expected: nothing more from the bot after user 'order' (add a 'bot:' line for what it says)",
        "  bot said: 'What would you like, friend?' [Tea | Coffee | Nothing]",
    ]


def test_buttons_are_checked_and_only_offered_ones_can_be_pressed(tmp_path: Path, stories: Path) -> None:
    code, out, _ = run(tmp_path, stories, """\
        tests:
          - name: wrong buttons
            conversation:
              - user: order
              - bot: re:What
                buttons: [Tea, Coffee]
          - name: no such button
            conversation:
              - user: order
              - bot: re:What
              - press: Juice
          - name: nothing offered yet
            conversation:
              - press: Tea
        """)  # fmt: skip
    assert code == 1
    lines = out.splitlines()
    assert lines[0:3] == [
        "order.yml:5: FAIL wrong buttons",
        "  expected:    buttons [Tea | Coffee]",
        "  bot offered: [Tea | Coffee | Nothing]",
    ]
    assert lines[3:6] == [
        "order.yml:11: FAIL no such button",
        "  expected:    a button 'Juice' to press",
        "  bot offered: [Tea | Coffee | Nothing]",
    ]
    assert lines[6:9] == [
        "order.yml:14: FAIL nothing offered yet",
        "  expected:    a button 'Tea' to press",
        "  bot offered: no buttons so far",
    ]


def test_a_pressed_button_takes_its_goto(tmp_path: Path, stories: Path) -> None:
    code, out, _ = run(tmp_path, stories, """\
        tests:
          - name: goto button
            conversation:
              - user: order
              - bot: re:What
              - press: NOTHING
              - bot: Maybe later.
        """)  # fmt: skip
    assert code == 0, out


def test_session_expiry_is_simulated_time(tmp_path: Path, stories: Path) -> None:
    code, out, _ = run(tmp_path, stories, """\
        tests:
          - name: kept under the ttl
            conversation:
              - user: order
              - bot: re:What
              - wait: 9m
              - user: Coffee
              - bot: One Coffee, coming up.
              - image: re:Coffee
              - email: {subject: "Order: Coffee"}
          - name: forgotten after it
            conversation:
              - user: order
              - bot: re:What
              - session_expires
              - user: Coffee
              - bot: Say order.
          - name: forgotten after a long wait
            conversation:
              - user: order
              - bot: re:What
              - wait: 11m
              - user: Coffee
              - bot: One Coffee, coming up.
        """)  # fmt: skip
    assert code == 1
    assert out.splitlines()[0:3] == [
        "order.yml:24: FAIL forgotten after a long wait",
        "  expected: 'One Coffee, coming up.'",
        "  bot said: 'Say order.'",
    ]
    assert "FAILED: 1 of 3 tests failed" in out


def test_emails_are_checked_field_by_field(tmp_path: Path, stories: Path) -> None:
    code, out, _ = run(tmp_path, stories, """\
        tests:
          - name: wrong subject
            conversation:
              - user: order
              - bot: re:What
              - user: Tea
              - bot: re:Tea
              - image: re:Tea
              - email:
                  to: kitchen@example.com, bar@example.com
                  subject: "Order: Coffee"
          - name: body
            conversation:
              - user: order
              - bot: re:What
              - user: Tea
              - bot: re:Tea
              - image: re:Tea
              - email:
                  body_contains: [wants Tea, wants Coffee]
          - name: no email sent
            conversation:
              - user: order
              - bot: re:What
              - email: {to: kitchen@example.com}
          - name: email not expected
            conversation:
              - user: order
              - bot: re:What
              - user: Tea
              - bot: re:Tea
              - image: re:Tea
        """)  # fmt: skip
    assert code == 1
    lines = out.splitlines()
    assert lines[0:3] == [
        "order.yml:11: FAIL wrong subject",
        "  expected:      subject: 'Order: Coffee'",
        "  email subject: 'Order: Tea'",
    ]
    assert lines[3:6] == [
        "order.yml:20: FAIL body",
        "  expected:   body_contains: plain body containing 'wants Coffee'",
        "  email body: 'Someone wants Tea.'",
    ]
    assert lines[6:9] == [
        "order.yml:25: FAIL no email sent",
        "  expected: an email to kitchen@example.com",
        "  sent:     no more emails after user 'order'",
    ]
    assert lines[9:12] == [
        "order.yml:30: FAIL email not expected",
        "  expected: no email after user 'Tea' (add an 'email:' line for it)",
        "  sent:     to kitchen@example.com, bar@example.com, subject 'Order: Tea'",
    ]


def test_broken_test_files_get_positioned_problems(tmp_path: Path, stories: Path) -> None:
    write(tmp_path / "tests" / "good.yml", """\
        tests:
          - name: fine
            conversation:
              - user: hello
              - bot: Say order.
        """)  # fmt: skip
    write(tmp_path / "tests" / "bad.yml", """\
        tests:
          - name: bad
            colour: red
            conversation:
              - user: hi
                bot: hello
              - bot: "re:(unclosed"
              - wait: forever
              - sesion_expires
              - email: {to: x@example.com, subjekt: y}
              - bot: hi
                caption: x
          - conversation: []
        """)  # fmt: skip
    write(tmp_path / "tests" / "yaml.yml", "tests: [\n")
    out = StringIO()
    code = run_tests(tmp_path / "tests", stories, out=out)
    text = out.getvalue().replace(f"{tmp_path}/tests/", "")
    assert code == 1
    assert text.splitlines() == [
        "bad.yml:3:5: unknown key 'colour' in a test "
        "(expected one of: name, channel, user_id, user_attributes, http, conversation)",
        "bad.yml:6:9: a conversation line has only one of user, press, bot, image, email, wait, agent, desk; "
        "this one has both 'user' and 'bot' (start a new '- ' item)",
        "bad.yml:7:18: bad regular expression: missing ), unterminated subpattern",
        "bad.yml:8:15: bad duration 'forever': use a number with s, m, h or d, such as 10m",
        "bad.yml:9:9: a conversation line is 'KEY: value' (user, press, bot, image, email, wait, agent, "
        "desk), 'session_expires' or 'hand_back'",
        "bad.yml:10:36: unknown key 'subjekt' in email; did you mean 'subject'?",
        "bad.yml:12:9: 'caption' belongs to an 'image:' line, not to 'bot:'",
        "bad.yml:13:5: a test needs 'name'",
        "bad.yml:13:5: the conversation is empty",
        "yaml.yml:2:1: not valid YAML: while parsing a flow node; did not find expected node content",
        text.splitlines()[-1],
    ]
    assert text.splitlines()[-1].startswith("FAILED: 0 of 1 test failed; 2 test files could not be read")


def test_stories_that_do_not_load_stop_the_run(tmp_path: Path) -> None:
    broken = write(tmp_path / "stories" / "bot.yml", "stories:\n  s:\n    steps: [{id: a, next: b}]\n")
    path = write(tmp_path / "tests" / "t.yml", "tests: []\n")
    out = StringIO()
    assert run_tests(path, broken.parent, out=out) == 1
    assert out.getvalue() == (
        f"{broken}:3:27: story 's' has no step 'b'\n"
        f"error: the stories in {broken.parent} do not load (see `gateway check`); no test ran\n"
    )


def test_missing_path(tmp_path: Path, stories: Path) -> None:
    out = StringIO()
    assert run_tests(tmp_path / "nope", stories, out=out) == 1
    assert out.getvalue() == f"{tmp_path}/nope:1:1: no such test file or folder\n"


def test_gateway_test_with_a_failure_exits_1(
    tmp_path: Path, stories: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "t.yml", """\
        tests:
          - name: wrong
            conversation:
              - user: order
              - bot: Hello
        """)  # fmt: skip
    code, out, _ = gateway(["test", str(path), "--stories", str(stories)], capsys, monkeypatch)
    assert code == 1
    assert out.startswith(f"{path}:5: FAIL wrong\n")
