"""The `gateway` command as operators see it: a malformed setting, a role without the services it needs,
`gateway check` outside the project; one line each, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT


@pytest.mark.parametrize("command", ["run", "serve", "worker", "mailer", "chat"])
def test_cli_stops_with_one_line_and_no_traceback(command: str, tmp_path: Path) -> None:
    env = {**os.environ, "GATEWAY_PORT": "not-a-port"}
    result = subprocess.run(
        [sys.executable, "-m", "gateway.app.cli", command],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert result.stderr == "error: GATEWAY_PORT: not an integer: 'not-a-port'\n"


@pytest.mark.parametrize("command", ["serve", "worker", "mailer"])
def test_split_roles_refuse_the_embedded_bus(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "gateway.app.cli", command],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: GATEWAY_AMQP_URL: required by `gateway " + command)
    assert "Traceback" not in result.stderr


def test_check_with_a_path_works_outside_a_project_folder(tmp_path: Path) -> None:
    """`gateway check PATH` does not need GATEWAY_STORIES to exist; templates are read beside PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "gateway.app.cli", "check", str(ROOT / "config" / "stories")],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: ")
