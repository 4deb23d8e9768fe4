"""Where things are: the project root (where `gateway` runs from) and its example configuration."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STORIES = ROOT / "config" / "stories"
EMAILS = ROOT / "config" / "emails"
TESTS = ROOT / "config" / "tests"
