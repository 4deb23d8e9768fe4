"""Test-only crash points, so that a test can SIGKILL a process exactly between two steps of the
exactly-once protocol (commit → publish → ack in the worker; send → record → ack in the mailer).

``GATEWAY_TEST_FREEZE_AT=<point>`` or ``<point>@<message id>``: at that point the process prints
``FROZEN <point> <id>`` and stops itself with SIGSTOP. Unset (the default) it costs one comparison.
"""

from __future__ import annotations

import os
import signal


class FaultPoints:
    def __init__(self) -> None:
        point, _, message = os.environ.get("GATEWAY_TEST_FREEZE_AT", "").partition("@")
        self.point = point
        self.message = message

    def reach(self, point: str, message_id: str) -> None:
        if self.point == point and self.message in ("", message_id):
            print(f"FROZEN {point} {message_id}", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
