"""A liveness signal for roles without an HTTP port (worker, mailer): a file the event loop touches.

``GATEWAY_HEARTBEAT_FILE`` names the file; ``gateway-healthcheck FILE MAX_AGE`` (the container health
check) exits 0 only when it was touched within MAX_AGE seconds, which proves the loop is not stuck.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

INTERVAL = 5.0


async def beat(path: Path, interval: float = INTERVAL) -> None:
    while True:
        path.touch()  # noqa: ASYNC240 - one tiny metadata write every few seconds
        await asyncio.sleep(interval)


def check_main() -> int:
    if len(sys.argv) != 3:
        print("usage: gateway-healthcheck FILE MAX_AGE_SECONDS", file=sys.stderr)
        return 2
    path, max_age = Path(sys.argv[1]), float(sys.argv[2])
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        print(f"unhealthy: {path} does not exist", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"unhealthy: last heartbeat {age:.0f} s ago", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(check_main())
