"""`gateway run` and `gateway chat` with no services: the zero-setup mode a newcomer starts with."""

from __future__ import annotations

import signal
import subprocess
import sys
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import aiohttp

from tests.support.deployment import write_stories
from tests.support.paths import ROOT
from tests.support.processes import GatewayProcess


def stories_dir(tmp_path: Path) -> Path:
    return write_stories(tmp_path / "stories")


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "GATEWAY_AMQP_URL": "",
        "GATEWAY_REDIS_URL": "",
        "GATEWAY_SMTP_URL": "",
        "GATEWAY_STORIES": str(stories_dir(tmp_path)),
        "GATEWAY_OUTBOX": str(tmp_path / "outbox"),
        "GATEWAY_PORT": "0",
        **extra,
    }


async def test_run_serves_health_ready_metrics_and_stops_on_sigterm(tmp_path: Path) -> None:
    gateway = await GatewayProcess("run", env=clean_env(tmp_path)).start()
    try:
        address = (await gateway.wait_for(r"listening on (http://\S+)")).group(1)
        await gateway.wait_for(r"INFO .*ready$")
        log = gateway.output()
        assert "bus: embedded (in-process)" in log and "store: in-memory" in log
        assert "channels:" in log and f"emails: written as .eml files to {tmp_path / 'outbox'}/" in log
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{address}/healthz") as response:
                assert response.status == 200
            async with http.get(f"{address}/readyz") as response:
                assert response.status == 200 and (await response.json())["status"] == "ready"
            async with http.get(f"{address}/metrics") as response:
                assert response.status == 200 and "gateway_ready 1.0" in await response.text()
            async with http.get(f"{address}/map") as response:
                page = await response.text()
                assert response.status == 200 and "<svg" in page and "greet" in page and "ticket" in page
            async with http.post(f"{address}/webhooks/telegram", data=b"{}") as response:
                assert response.status == 404, "a channel that is not configured serves no webhook"
        gateway.signal(signal.SIGTERM)
        assert await gateway.wait(10) == 0
        assert "stopped" in gateway.output()
    finally:
        await gateway.stop()


def run_chat(
    tmp_path: Path, lines: str, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, **clean_env(tmp_path), **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gateway.app.cli", "chat", *args],
        input=lines,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def outbox_messages(tmp_path: Path) -> list[Message]:
    return [message_from_bytes(p.read_bytes()) for p in sorted((tmp_path / "outbox").glob("*.eml"))]


def test_chat_converses_with_piped_input_and_buttons_by_number(tmp_path: Path) -> None:
    result = run_chat(tmp_path, "hi\n2\nwhat?\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "What's your name?",
        "[1] Ada  [2] Grace",
        "Nice to meet you, Grace.",
        "Sorry, try hi or help.",
    ]


def test_chat_runs_in_process_even_with_broker_and_redis_settings(tmp_path: Path) -> None:
    """A shared .env naming RabbitMQ and Redis must not turn `chat` into a traceback (issue 11, point 2)."""
    services = {
        "GATEWAY_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/",
        "GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    result = run_chat(tmp_path, "hi\nAda\n", extra_env=services)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines() == ["What's your name?", "[1] Ada  [2] Grace", "Nice to meet you, Ada."]


def test_chat_sends_emails_to_the_outbox_before_exiting(tmp_path: Path) -> None:
    result = run_chat(tmp_path, "hi\nAda\nhelp\nmy printer is on {{fire}} <b>\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "Ticket sent."
    (email,) = outbox_messages(tmp_path)
    assert email["To"] == "support@example.com" and email["Subject"] == "Ticket from Ada"
    body = (
        email.get_payload(decode=True)
        if not email.is_multipart()
        else email.get_payload(0).get_payload(decode=True)
    )  # type: ignore[union-attr]
    assert b"The user wrote: my printer is on {{fire}} <b>" in body


def test_chat_refuses_broken_stories_with_positioned_lines(tmp_path: Path) -> None:
    folder = stories_dir(tmp_path)
    (folder / "broken.yml").write_text(
        "stories:\n  oops:\n    steps:\n      - id: a\n        next: nowhere\n"
    )
    result = run_chat(tmp_path, "hi\n")
    assert result.returncode == 1
    assert f"{folder / 'broken.yml'}:5:" in result.stderr and "Traceback" not in result.stderr
