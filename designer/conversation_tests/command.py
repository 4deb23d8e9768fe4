"""``gateway test [PATH]``: run every conversation test file, print failures, exit 1 on any.

The stories are loaded once (a broken story is reported as ``gateway check`` does); each test then runs
on its own in-process gateway. Output: the problems of unreadable test files (``FILE:LINE:COL:``), one
block per failed test (``FILE:LINE: FAIL name``), then one summary line.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from designer.check import format_problems, load_or_report
from designer.conversation_tests.failure import Failure
from designer.conversation_tests.model import ConversationFile
from designer.conversation_tests.reader import read_test_file
from designer.conversation_tests.runner import run_conversation
from gateway.core.metrics import Metrics
from worker.engine import Engine
from worker.engine.loader import story_files
from worker.engine.problems import Problem

DEFAULT_MAIL_FROM = "gateway@localhost"


def test_files(path: Path) -> list[Path]:
    """``path`` itself when it is a file, else the ``*.yml``/``*.yaml`` files under it."""
    return [path] if path.is_file() else story_files(path)


def run_tests(
    path: Path | str,
    stories_dir: Path | str,
    emails_dir: Path | str | None = None,
    *,
    mail_from: str = DEFAULT_MAIL_FROM,
    out: TextIO | None = None,
    secrets: Mapping[str, str] | None = None,
) -> int:
    """Run the tests at ``path`` against the stories in ``stories_dir``; return the exit code.

    ``secrets`` are the values of ``@secret.NAME`` (the calls get canned answers: they never leave).
    """
    stream = out if out is not None else sys.stdout
    started = time.perf_counter()
    path = Path(path)
    if not path.exists():
        stream.write(f"{path}:1:1: no such test file or folder\n")
        return 1
    files = test_files(path)
    if not files:
        stream.write(f"{path}:1:1: no *.yml or *.yaml test files in this folder\n")
        return 1
    stories = load_or_report(stories_dir, emails_dir, stream)
    if stories is None:
        stream.write(f"error: the stories in {stories_dir} do not load (see `gateway check`); no test ran\n")
        return 1
    problems: list[Problem] = []
    readable: list[ConversationFile] = []
    for file in files:
        read, file_problems = read_test_file(file)
        if file_problems:
            problems.extend(file_problems)
        else:
            readable.append(read)
    stream.write(format_problems(problems))
    failures = asyncio.run(_run_all(readable, Engine(stories, secrets), mail_from))
    for failure in failures:
        stream.write(failure.format() + "\n")
    count = sum(len(file.tests) for file in readable)
    elapsed = time.perf_counter() - started
    stream.write(_summary(count, len(failures), len(files), len({p.file for p in problems}), elapsed) + "\n")
    return 1 if failures or problems else 0


async def _run_all(files: list[ConversationFile], engine: Engine, mail_from: str) -> list[Failure]:
    metrics = Metrics()  # one registry for the whole run: nobody reads it, building it costs time
    failures: list[Failure] = []
    for file in files:
        for test in file.tests:
            failure = await run_conversation(test, engine, mail_from=mail_from, metrics=metrics)
            if failure is not None:
                failures.append(failure)
    return failures


def _summary(tests: int, failed: int, files: int, broken: int, seconds: float) -> str:
    where = f"{files} file{'' if files == 1 else 's'}, {seconds:.2f} s"
    counted = f"{tests} test{'' if tests == 1 else 's'}"
    if not failed and not broken:
        return f"OK: {counted} passed ({where})"
    parts = [f"{failed} of {counted} failed"]
    if broken:
        parts.append(f"{broken} test file{'' if broken == 1 else 's'} could not be read")
    return f"FAILED: {'; '.join(parts)} ({where})"
