"""The example stories' conversation tests (config/tests) pass, through the CLI, quickly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.support.designer import gateway
from tests.support.paths import ROOT, TESTS


def test_gateway_test_runs_the_examples_in_process_in_well_under_a_second(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.perf_counter()
    code, out, _ = gateway(["test"], capsys, monkeypatch)
    elapsed = time.perf_counter() - started
    assert code == 0, out
    tests = sum(text.count("  - name:") for text in (p.read_text() for p in TESTS.glob("*.yml")))
    assert tests >= 12
    files = len(list(TESTS.glob("*.yml")))
    assert re.fullmatch(rf"OK: {tests} tests passed \({files} files, \d+\.\d\d s\)\n", out)
    assert elapsed < 0.5, f"{tests} conversation tests took {elapsed:.2f} s"


def test_every_example_story_has_conversation_tests() -> None:
    assert sorted(p.stem for p in TESTS.glob("*.yml")) == sorted(
        p.stem for p in (ROOT / "config" / "stories").glob("*.yml")
    )


def test_gateway_test_as_a_command() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "gateway.app.cli", "test", "config/tests"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: ") and result.stdout.count("\n") == 1
    assert result.stderr == ""
