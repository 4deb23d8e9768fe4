"""`gateway check` warns (FILE:LINE:COL: warning: ...) about steps no conversation can reach; exit stays 0."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest

from designer.check import run_check
from tests.support.designer import gateway, write
from tests.support.paths import EMAILS, STORIES
from worker.engine import load_stories
from worker.engine.reachability import reachable_steps

REACH = """\
bot: {fallback: lost}
stories:
  main:
    triggers: [go]
    steps:
      - id: start
        actions:
          - message: Pick one
            quick_replies: [{title: B, goto: b}, {title: Side, jump: side}]
          - goto: c
            if: '@session.x'
        next: d
      - id: b
        actions: [{message: b}, {goto: e}, {goto: never_run}]
      - id: c
        actions: [{message: c}]
      - id: d
        actions: [{goto: e}]
        next: dead_next
      - id: e
        actions: [{message: e}]
      - id: never_run
        actions: [{message: only after an unconditional goto}]
      - id: dead_next
        actions: [{message: the next of a step that always goes elsewhere}]
      - id: orphan
        actions: [{message: nothing leads here}]
        next: start
  side:
    steps:
      - id: one
        actions: [{message: reached by a button's jump}]
  lost:
    steps:
      - id: sorry
        actions: [{message: "?", quick_replies: [Go]}]
  unused:
    steps:
      - id: first
        actions: [{message: nobody starts this}]
        next: second
      - id: second
        actions: [{message: nor this}]
"""


def test_reachability_follows_the_engine_rules(tmp_path: Path) -> None:
    stories = load_stories(write(tmp_path / "s" / "bot.yml", REACH).parent)
    assert reachable_steps(stories) == {
        ("main", "start"), ("main", "b"), ("main", "c"), ("main", "d"), ("main", "e"),
        ("side", "one"), ("lost", "sorry"),
    }  # fmt: skip


def test_check_prints_positioned_warnings_and_still_exits_0(tmp_path: Path) -> None:
    folder = write(tmp_path / "s" / "bot.yml", REACH).parent
    out, warnings = StringIO(), StringIO()
    assert run_check(folder, None, out, warnings) == 0
    assert out.getvalue() == "OK: 4 stories, 12 steps in 1 file\n"
    assert warnings.getvalue().replace(f"{folder}/", "").splitlines() == [
        "bot.yml:22:9: warning: step 'never_run' of story 'main' is never reached: "
        "no next, goto, jump or button leads to it",
        "bot.yml:24:9: warning: step 'dead_next' of story 'main' is never reached: "
        "no next, goto, jump or button leads to it",
        "bot.yml:26:9: warning: step 'orphan' of story 'main' is never reached: "
        "no next, goto, jump or button leads to it",
        "bot.yml:37:3: warning: story 'unused' is never started: it has no triggers, it is not the "
        "fallback, and no jump or button leads to it",
    ]


def test_the_examples_have_no_warnings() -> None:
    warnings = StringIO()
    assert run_check(STORIES, EMAILS, StringIO(), warnings) == 0
    assert warnings.getvalue() == ""


def test_errors_come_without_warnings(tmp_path: Path) -> None:
    folder = write(tmp_path / "s" / "bot.yml", REACH + "      - id: bad\n        next: nowhere\n").parent
    out, warnings = StringIO(), StringIO()
    assert run_check(folder, None, out, warnings) == 1
    assert out.getvalue().endswith("story 'unused' has no step 'nowhere'\n")
    assert warnings.getvalue() == ""


def test_gateway_check_warns_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write(tmp_path / "s" / "bot.yml", REACH).parent
    code, out, err = gateway(["check", str(folder)], capsys, monkeypatch)
    assert code == 0
    assert out == "OK: 4 stories, 12 steps in 1 file\n"
    assert err.count(": warning: ") == 4
    assert err.startswith(f"{folder}/bot.yml:22:9: warning: step 'never_run'")
