"""`gateway chat` plays the support desk too: what a handoff sends the desk prints as `[desk] ` lines,
`/agent TEXT` is a person's answer, `/agent #bot` hands back, and `/wait` lets `until` run out."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gateway.app.chat import chat
from gateway.core.settings import Settings
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
          - message: Passing you on.
          - handoff:
              desk: email
              to: team@example.com
              subject: Chat about {{@message}}
              summary: "Problem: {{@message}}"
              until: 1h
              resume: after
  slack_human:
    triggers: [slack]
    steps:
      - id: over
        actions:
          - handoff: {desk: slack, to: C0DESK, summary: Over to Slack, until: 1h, resume: after}
  after:
    steps:
      - id: back
        actions:
          - message: The bot again.
"""


async def chatting(
    tmp_path: Path, lines: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str], str]:
    stories = write(tmp_path / "stories" / "bot.yml", STORIES).parent
    settings = Settings(stories=stories, outbox=tmp_path / "outbox")
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    code = await chat(settings, user="ada")
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


async def test_the_terminal_sees_the_ticket_answers_as_the_agent_and_hands_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = "human\nMy printer\nhello?\n/agent On it.\n/agent Fixed!\\n#bot\nhello?\n"
    code, out, err = await chatting(tmp_path, lines, monkeypatch, capsys)
    assert code == 0, err
    ticket_start = out.index("[desk] email to team@example.com: Chat about My printer")
    assert out[:ticket_start] == ["What is it about?", "Passing you on."]
    assert out[ticket_start + 1] == "[desk] Problem: My printer"
    assert "[desk]   user: human" in out
    follow_up = out.index("[desk] email to team@example.com: Re: Chat about My printer")
    assert all(line.startswith("[desk] ") for line in out[ticket_start:follow_up])
    assert out[follow_up:] == [
        "[desk] email to team@example.com: Re: Chat about My printer",
        "[desk] ada (console): hello?",
        "(Agent) On it.",
        "(Agent) Fixed!",
        "The bot again.",
    ]  # the last "hello?" reached the bot again: nothing understands it, and no fallback is set
    emails = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(emails) == 2, "the desk's emails still go where the settings send them"
    assert "Reply-To: desk+" in emails[0].read_text() + emails[1].read_text()


async def test_a_slack_desk_prints_its_thread_with_the_hand_back_button(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await chatting(tmp_path, "slack\nhi there\n/agent #bot\n", monkeypatch, capsys)
    assert code == 0, err
    desk = [line for line in out if line.startswith("[desk] ")]  # the desk and the user: two chats
    assert desk[0] == "[desk] slack C0DESK: Over to Slack"
    assert desk[desk.index("[desk] [Hand back]") + 1 :] == [
        "[desk] slack C0DESK: ada (console): hi there",
        "[desk] slack C0DESK: Handed back to the bot (#bot).",
    ]
    assert [line for line in out if not line.startswith("[desk] ")] == ["The bot again."]


async def test_until_runs_out_with_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = "slack\n/wait 59m\nstill?\n/wait 2m\n"  # only a person's answer makes `until` start again
    code, out, err = await chatting(tmp_path, lines, monkeypatch, capsys)
    assert code == 0, err
    assert out[-3] == "[desk] slack C0DESK: ada (console): still?"
    assert sorted(out[-2:]) == [
        "The bot again.",
        "[desk] slack C0DESK: Handed back to the bot (no answer for a while).",
    ]
    assert err.index("(59m later)") < err.index("(2m later)")


async def test_agent_without_a_handoff_or_without_text_says_why_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await chatting(tmp_path, "/agent Hello\n/agent\nhuman\n", monkeypatch, capsys)
    assert code == 0
    assert out == ["What is it about?"]
    assert "(no person has this conversation: a story's handoff action hands it over first)" in err
    assert "usage: /agent TEXT (a person's answer from the desk); /agent #bot hands back" in err
