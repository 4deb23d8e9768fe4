"""``GET /map``: the story map of the stories this gateway runs, drawn on demand and cached until they change.

A `serve` process without a worker role reads the stories folder itself (the same folder the workers use in
one image); a `run` process shows the stories its worker has loaded, hot reloads included.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.core.settings import Settings
from worker.reload import fingerprint

if TYPE_CHECKING:
    from worker.engine import Stories


class MapPage:
    def __init__(self, settings: Settings, running: Callable[[], Stories | None]) -> None:
        self.settings = settings
        self.running = running  # the stories a worker in this process runs, if any
        self._cache: tuple[tuple[object, ...], str, object] | None = None

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/map", self.handle)]

    async def handle(self, _: web.Request) -> web.Response:
        stories = self.running()
        if stories is not None:  # the cache holds the stories object, so its id cannot be reused
            key: tuple[object, ...] = ("running", id(stories))
        else:
            key = (
                "disk",
                await asyncio.to_thread(fingerprint, self.settings.stories, self.settings.emails_dir),
            )
        if self._cache is None or self._cache[0] != key:
            try:
                page = await asyncio.to_thread(self._draw, stories)
            except _Broken as exc:
                return web.Response(status=500, text=exc.page, content_type="text/html")
            self._cache = (key, page, stories)
        return web.Response(text=self._cache[1], content_type="text/html")

    def _draw(self, stories: Stories | None) -> str:
        from designer.story_map import map_page
        from worker.engine import StoriesError, load_stories

        if stories is None:
            try:
                stories = load_stories(self.settings.stories, self.settings.emails_dir)
            except StoriesError as exc:
                lines = "\n".join(html.escape(str(p)) for p in exc.problems)
                raise _Broken(f"<!doctype html><title>Story map</title><pre>{lines}</pre>") from None
        return map_page(stories)


class _Broken(Exception):
    def __init__(self, page: str) -> None:
        super().__init__("broken stories")
        self.page = page
