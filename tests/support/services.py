"""The machine's RabbitMQ and Redis the tests run on (overridable by environment variables)."""

from __future__ import annotations

import os
import shutil
import subprocess

RABBIT_HOST = os.environ.get("TEST_RABBIT_HOST", "127.0.0.1")
RABBIT_PORT = int(os.environ.get("TEST_RABBIT_PORT", "5672"))
REDIS_BASE_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([ctl, "-q", *args], check=True, capture_output=True, timeout=60)
