"""Hot reload of the stories: check the changed folder and swap it in between two messages.

A watcher (polling the stories and email-template folders once a second: no extra dependency, works on
every file system and in containers) is on by default for ``gateway run``, the development mode; SIGHUP
reloads in any role that runs stories, the production way. A broken edit keeps the previous stories
running and logs every problem as ``FILE:LINE:COL: message``. A conversation waiting on a step that the
new stories removed simply has nothing waiting any more: its next message goes through the triggers and
the fallback (see :meth:`worker.engine.engine` ``waiting``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from gateway.core.settings import Settings
from worker.engine import Engine, StoriesError, load_stories

log = logging.getLogger("gateway.reload")

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(*folders: Path) -> Fingerprint:
    """Name, size and modification time of every file under the folders: any edit changes it."""
    entries = []
    for folder in folders:
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                with contextlib.suppress(OSError):
                    if path.is_file():
                        stat = path.stat()
                        entries.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


def load_engine(settings: Settings) -> Engine:
    """An engine on the stories folder of ``settings``; :class:`StoriesError` lists every problem."""
    return Engine(load_stories(settings.stories, settings.emails_dir), settings.secrets)


class StoriesReloader:
    def __init__(
        self,
        settings: Settings,
        swap: Callable[[Engine], None],
        *,
        watch: bool,
        interval: float = 1.0,
    ) -> None:
        self.settings = settings
        self.swap = swap
        self.watch = watch
        self.interval = interval
        self.reloads = 0  # successful swaps, for tests and logs
        self._seen = fingerprint(settings.stories, settings.emails_dir)
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        if self.watch:
            self._spawn(self._watch())

    async def stop(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_sighup(self) -> None:
        log.info("SIGHUP: reloading the stories")
        self._spawn(self.reload())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            now = await asyncio.to_thread(fingerprint, self.settings.stories, self.settings.emails_dir)
            if now != self._seen:
                self._seen = now
                log.info("the stories changed on disk: reloading")
                await self.reload()

    async def reload(self) -> bool:
        """Load and check the stories again; swap them in only when they pass. True when swapped."""
        async with self._lock:
            try:
                engine = await asyncio.to_thread(load_engine, self.settings)
            except StoriesError as exc:
                for problem in exc.problems:
                    log.error("%s", problem)
                log.error(
                    "the new stories have %d problem(s); keeping the previous stories", len(exc.problems)
                )
                return False
            self.swap(engine)
            self.reloads += 1
            log.info("stories reloaded from %s", self.settings.stories)
            return True
