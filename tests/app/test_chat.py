"""`gateway chat` in this process: `/wait` skips time, and the timers due meanwhile print in order."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gateway.app.chat import chat
from gateway.core.settings import Settings
from tests.support.designer import write

STORIES = """\
bot:
  session_ttl: 30m
  fallback: lost
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
          - follow_up: {after: 1h, goto: later}
        expect: email
        next: thanks
      - id: thanks
        actions:
          - message: Thanks.
      - id: later
        actions:
          - message: Maybe later, then.
  lost:
    steps:
      - id: sorry
        actions:
          - message: Say signup.
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


async def test_wait_skips_time_and_the_timers_due_meanwhile_print_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = "signup\n/wait 9m\n/wait 2h\nhello\n"
    code, out, err = await chatting(tmp_path, lines, monkeypatch, capsys)
    assert code == 0, err
    assert out == ["What's your email?", "Still there?", "Maybe later, then.", "Say signup."]
    assert "(9m later)" in err and "(2h later)" in err


async def test_a_reply_in_time_cancels_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await chatting(
        tmp_path, "signup\n/wait 9m\nada@example.com\n/wait 1d\n", monkeypatch, capsys
    )
    assert code == 0
    assert out == ["What's your email?", "Thanks."]


async def test_a_bad_wait_says_how_to_write_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await chatting(tmp_path, "/wait soon\n/wait\n", monkeypatch, capsys)
    assert code == 0 and out == []
    assert err.count("usage: /wait DURATION, such as /wait 10m") == 2
