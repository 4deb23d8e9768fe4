"""Conversation tests of handoffs: `agent:` is a person's answer from the desk, `hand_back` the desk's
button, `desk:` what the desk got; the user's copy of an answer is a `bot:` line like any message."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

from designer.conversation_tests import read_test_file, run_tests
from designer.conversation_tests.model import AgentSays, ExpectDesk, HandBack
from tests.support.designer import write

STORIES = """\
stories:
  human:
    triggers: [human]
    steps:
      - id: ask
        actions:
          - message: What is it about?
        next: over
      - id: over
        actions:
          - set_session: {Problem: "{{@message}}"}
          - message: Passing you on.
          - handoff:
              desk: email
              to: desk-team@example.com
              subject: Chat about {{@session.Problem}}
              summary: "Problem: {{@session.Problem}}"
              until: 2h
              resume: csat
  slack_human:
    triggers: [slack human]
    steps:
      - id: over
        actions:
          - message: Someone will answer here.
          - handoff: {desk: slack, to: C0DESK, summary: On Slack, until: 1h}
  csat:
    steps:
      - id: ask
        actions:
          - message: How did we do?
            quick_replies: [Good, Bad]
        next: done
      - id: done
        actions:
          - message: "Noted: {{@message}}, about {{@session.Problem}}."
"""

HANDED_OVER = """\
      - user: human
      - bot: What is it about?
      - user: My printer
      - bot: Passing you on.
      - desk: Chat about My printer
"""


def run(tmp_path: Path, conversation: str, channel: str = "test") -> tuple[int, str]:
    stories = write(tmp_path / "stories" / "bot.yml", STORIES).parent
    lines = "\n".join("            " + line for line in conversation.strip("\n").splitlines())
    text = f"tests:\n  - name: t\n    channel: {channel}\n    conversation:\n{lines}\n"
    path = tmp_path / "tests" / "t.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    out = StringIO()
    code = run_tests(path, stories, out=out)
    return code, out.getvalue().replace(f"{path}", "t.yml")


def test_email_desk_answers_reach_the_user_and_hash_bot_hands_back_to_resume(tmp_path: Path) -> None:
    code, out = run(tmp_path, HANDED_OVER + """\
      - user: It jams
      - desk: "tester (test): It jams"
      - agent: Try turning it off and on.
      - bot: Try turning it off and on.
      - agent: "Glad it works!\\n#bot"
      - bot: Glad it works!
      - bot: How did we do?
        buttons: [Good, Bad]
      - press: Good
      - bot: "Noted: Good, about My printer."
    """)  # fmt: skip
    assert code == 0, out
    assert out.startswith("OK: 1 test passed")


def test_the_ticket_email_is_a_desk_message_with_the_summary_and_transcript(tmp_path: Path) -> None:
    code, out = run(tmp_path, """\
      - user: human
      - bot: What is it about?
      - user: My printer
      - bot: Passing you on.
      - desk: 're:(?s)^Chat about My printer\\nProblem: My printer\\n.*user: human\\n.*bot: Passing you on\\.'
    """)  # fmt: skip
    assert code == 0, out


def test_a_ticket_no_desk_line_expects_fails_at_the_user_line(tmp_path: Path) -> None:
    code, out = run(tmp_path, """\
      - user: human
      - bot: What is it about?
      - user: My printer
      - bot: Passing you on.
      - user: hello?
    """)  # fmt: skip
    assert code == 1
    lines = out.splitlines()
    assert lines[:2] == [
        "t.yml:7: FAIL t",
        "  expected: nothing more to the desk after user 'My printer' (add a 'desk:' line for it)",
    ]
    assert lines[2].startswith(
        "  desk got: email to desk-team@example.com, subject 'Chat about My printer', body "
        "'Problem: My printer\\n\\nUser: tester (test)\\n"
    )
    assert lines[2].endswith(" more characters)")


def test_a_desk_line_that_does_not_match_or_finds_nothing_fails_there(tmp_path: Path) -> None:
    code, out = run(tmp_path, HANDED_OVER + "      - desk: something else\n")
    assert code == 1
    assert out.splitlines()[1:3] == [
        "  expected: the desk gets a message containing 'something else'",
        "  desk got: nothing more after user 'My printer'",
    ]
    code, out = run(tmp_path, HANDED_OVER.replace("Chat about My printer", "re:^Chat about a cat"))
    assert code == 1
    assert out.splitlines()[1] == "  expected: the desk gets a message matching re:^Chat about a cat"
    assert out.splitlines()[2].startswith("  desk got: email to desk-team@example.com, subject 'Chat about")


def test_the_bot_says_nothing_while_handed_over(tmp_path: Path) -> None:
    code, out = run(tmp_path, HANDED_OVER + """\
      - user: human
      - bot: What is it about?
    """)  # fmt: skip
    assert code == 1
    assert out.splitlines()[:3] == [
        "t.yml:11: FAIL t",
        "  expected: 'What is it about?'",
        "  bot said: nothing more after user 'human'",
    ]


def test_an_agent_answer_no_bot_line_expects_fails_at_the_agent_line_showing_its_author(
    tmp_path: Path,
) -> None:
    code, out = run(tmp_path, HANDED_OVER + """\
      - agent: On it.
      - user: thanks
    """)  # fmt: skip
    assert code == 1
    assert out.splitlines()[:3] == [
        "t.yml:10: FAIL t",
        "  expected: nothing more from the bot after agent 'On it.' (add a 'bot:' line for what it says)",
        "  bot said: 'On it.' (from Agent)",
    ]
    code, out = run(tmp_path, HANDED_OVER + "      - agent: On it.\n      - bot: On it!\n")
    assert out.splitlines()[1:3] == ["  expected: 'On it!'", "  bot said: 'On it.' (from Agent)"]


def test_an_agent_answer_to_a_conversation_not_handed_over_reaches_nobody(tmp_path: Path) -> None:
    code, out = run(tmp_path, """\
      - user: human
      - bot: What is it about?
      - agent: Hello from the desk
      - bot: Hello from the desk
    """)  # fmt: skip
    assert code == 1
    assert out.splitlines()[1:3] == [
        "  expected: 'Hello from the desk'",
        "  bot said: nothing more after agent 'Hello from the desk'",
    ]


def test_the_hand_back_button_and_until_hand_back_then_resume_runs(tmp_path: Path) -> None:
    code, out = run(tmp_path, HANDED_OVER + """\
      - hand_back
      - bot: How did we do?
      - user: Bad
      - bot: "Noted: Bad, about My printer."
    """)  # fmt: skip
    assert code == 0, out
    code, out = run(tmp_path, HANDED_OVER + """\
      - wait: 1h
      - agent: Still looking.
      - bot: Still looking.
      - wait: 119m
      - wait: 1m
      - bot: How did we do?
    """)  # fmt: skip
    assert code == 0, out
    code, out = run(tmp_path, HANDED_OVER + "      - wait: 2h\n")
    assert code == 1
    assert out.splitlines()[1:3] == [
        "  expected: nothing more from the bot after wait 2h (add a 'bot:' line for what it says)",
        "  bot said: 'How did we do?' [Good | Bad]",
    ]


def test_slack_desk_posts_are_desk_messages_not_the_users_even_on_slack(tmp_path: Path) -> None:
    conversation = """\
      - user: slack human
      - bot: Someone will answer here.
      - desk: re:^On Slack
      - user: are you there?
      - desk: "tester (slack): are you there?"
      - agent: Yes!
      - bot: Yes!
      - hand_back
      - desk: Handed back to the bot (the Hand back button).
      - user: human
      - bot: What is it about?
    """
    for channel in ("test", "slack"):
        code, out = run(tmp_path, conversation.replace("(slack)", f"({channel})"), channel)
        assert code == 0, (channel, out)
    code, out = run(tmp_path, """\
      - user: slack human
      - bot: Someone will answer here.
      - desk: On Slack
      - press: Hand back
    """, "slack")  # fmt: skip
    assert code == 1  # the desk's button is not the user's to press
    assert "  bot offered: no buttons so far" in out.splitlines()


def test_the_reader_knows_agent_desk_and_hand_back_and_the_hash_comment_trap(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yml", """\
        tests:
          - name: t
            conversation:
              - user: human
              - agent: "#bot"
              - hand_back
              - desk: re:^Chat
        """)  # fmt: skip
    read, problems = read_test_file(path)
    assert problems == []
    items = read.tests[0].items
    assert isinstance(items[1], AgentSays) and items[1].text == "#bot"
    assert isinstance(items[2], HandBack) and items[2].where.line == 6
    assert isinstance(items[3], ExpectDesk) and items[3].text.pattern is not None
    path = write(tmp_path / "t.yml", """\
        tests:
          - name: t
            conversation:
              - user: human
              - agent: #bot
              - hand back
              - desk: "re:(("
        """)  # fmt: skip
    _, problems = read_test_file(path)
    assert [(p.line, p.col, p.message) for p in problems] == [
        (5, 15, "agent: needs the person's answer; to hand back write agent: \"#bot\" (quoted: an unquoted "
         "# starts a YAML comment) or a 'hand_back' line"),
        (6, 9, "a conversation line is 'KEY: value' (user, press, bot, image, email, wait, agent, desk), "
         "'session_expires' or 'hand_back' (did you mean 'hand_back'?)"),
        (7, 20, "bad regular expression: missing ), unterminated subpattern"),
    ]  # fmt: skip
