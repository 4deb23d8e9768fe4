"""`gateway check`: every problem on its own line and exit 1, or a one-line summary and exit 0."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

from designer.check import run_check
from tests.support.engine import write
from worker.engine import Problem, StoriesError


def test_problem_lines_are_file_line_col_message() -> None:
    assert (
        str(Problem("config/stories/a.yml", 3, 7, "unknown key 'x'"))
        == "config/stories/a.yml:3:7: unknown key 'x'"
    )
    error = StoriesError(
        [Problem("b.yml", 1, 1, "two"), Problem("a.yml", 9, 2, "one"), Problem("b.yml", 1, 1, "two")]
    )
    assert str(error) == "a.yml:9:2: one\nb.yml:1:1: two"


def test_check_prints_every_problem_and_exits_1(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "stories",
        {
            "a.yml": "stories:\n  s:\n    steps: [{id: a, next: nowhere}]\n    colour: red\n",
            "b.yml": "bot: {session_ttl: forever}\n",
        },
    )
    out = StringIO()
    assert run_check(folder, tmp_path / "emails", out) == 1
    assert out.getvalue() == (
        f"{folder}/a.yml:3:27: story 's' has no step 'nowhere'\n"
        f"{folder}/a.yml:4:5: unknown key 'colour' in story 's' "
        "(expected one of: triggers, session_ttl, steps)\n"
        f"{folder}/b.yml:1:20: bad duration 'forever': use a number with s, m, h or d, such as 30m\n"
    )


def test_check_prints_a_summary_and_exits_0(tmp_path: Path) -> None:
    folder = write(tmp_path / "stories", {"a.yml": "stories:\n  s:\n    steps: [{id: a}]\n"})
    out = StringIO()
    assert run_check(folder, None, out) == 0
    assert out.getvalue() == "OK: 1 story, 1 step in 1 file\n"
