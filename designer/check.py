"""``gateway check``: print every problem as ``FILE:LINE:COL: message`` (exit 1) or a summary (exit 0).

Steps that no conversation can reach are printed as ``FILE:LINE:COL: warning: ...`` on the warnings
stream (stderr by default); they do not change the exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from worker.engine.loader import load_stories
from worker.engine.model import Stories
from worker.engine.problems import Problem, StoriesError
from worker.engine.reachability import unreachable_warnings


def format_problems(problems: list[Problem]) -> str:
    return "".join(f"{problem}\n" for problem in problems)


def load_or_report(folder: Path | str, emails_dir: Path | str | None, out: TextIO) -> Stories | None:
    """The stories in ``folder``, or None after writing every problem to ``out`` as `gateway check` does
    (what `check`, `map` and `test` do first)."""
    try:
        return load_stories(Path(folder), Path(emails_dir) if emails_dir is not None else None)
    except StoriesError as exc:
        out.write(format_problems(exc.problems))
        return None


def summary(stories: Stories) -> str:
    count = len(stories.stories)
    steps = stories.step_count
    files = len(stories.files)
    return (
        f"OK: {count} stor{'y' if count == 1 else 'ies'}, {steps} step{'' if steps == 1 else 's'} "
        f"in {files} file{'' if files == 1 else 's'}"
    )


def run_check(
    folder: Path | str,
    emails_dir: Path | str | None = None,
    out: TextIO | None = None,
    warnings: TextIO | None = None,
) -> int:
    """Load ``folder`` like the gateway does; print the problems or the summary; return the exit code."""
    stream = out if out is not None else sys.stdout
    stories = load_or_report(folder, emails_dir, stream)
    if stories is None:
        return 1
    (warnings if warnings is not None else sys.stderr).write(format_problems(unreachable_warnings(stories)))
    stream.write(summary(stories) + "\n")
    return 0
