"""A JSON API that answers every request after a fixed delay, in a process of its own (for benchmarks).

.venv/bin/python bench/slow_api.py PORT DELAY_SECONDS
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

BODY = b'{"status": "shipped", "delivery": {"eta": "on Friday"}}'


def main() -> None:
    port, delay = int(sys.argv[1]), float(sys.argv[2])

    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        loop = None
    else:
        loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
