"""Helpers for the designer-tool tests: write stories and test files, run `gateway ...` in-process."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.app.cli import main
from tests.support.paths import ROOT


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def gateway(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """Run `gateway ARGS` in this process from the project root; (exit code, stdout, stderr)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("GATEWAY_STORIES", raising=False)
    monkeypatch.delenv("GATEWAY_EMAILS", raising=False)
    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
