"""When to try again: exponential backoff with full jitter, and a server's own ``Retry-After``.

Full jitter (a uniform wait between 0 and the capped exponential) spreads the retries of many callers that
failed together, so a service coming back is not hit by all of them at once.
"""

from __future__ import annotations

import random


def full_jitter(tries: int, base: float, cap: float) -> float:
    """A wait before try ``tries + 1``: uniform in [0, min(cap, base * 2 ** (tries - 1))]."""
    return random.uniform(0.0, min(cap, base * 2.0 ** min(tries - 1, 62)))


def retry_after_seconds(value: object) -> float | None:
    """A ``Retry-After`` header in seconds (the HTTP-date form is not used by the APIs we call), or None
    when absent, malformed or beyond an hour."""
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 3600 else None
