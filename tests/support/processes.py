"""Gateway processes for end-to-end tests: start a real `gateway` command, watch its log, signal it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from tests.support.paths import ROOT


class GatewayProcess:
    """One `python -m gateway.app.cli ...` child; its stderr and stdout lines are collected as they come."""

    def __init__(self, *args: str, env: Mapping[str, str], cwd: Path = ROOT) -> None:
        self.args = args
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.cwd = cwd
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self.process: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> GatewayProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.app.cli",
            *self.args,
            env=self.env,
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self.process.stdout)),
            asyncio.create_task(self._read(self.process.stderr)),
        ]
        return self

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            async with self._changed:
                self.lines.append(line.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    def output(self) -> str:
        return "\n".join(self.lines)

    async def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first log line matching ``pattern``; fails with the whole log if it does not come."""
        regex = re.compile(pattern)
        checked = 0
        try:
            async with asyncio.timeout(timeout), self._changed:
                while True:
                    for line in self.lines[checked:]:
                        if match := regex.search(line):
                            return match
                    checked = len(self.lines)
                    if self.process is not None and self.process.returncode is not None:
                        raise AssertionError(
                            f"exited {self.process.returncode} before {pattern!r}:\n{self.output()}"
                        )
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"no line matching {pattern!r} within {timeout} s:\n{self.output()}"
            ) from None

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.gather(*self._readers, return_exceptions=True)
        return code

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go; for fixture teardown."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
        try:
            await self.wait(12)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.wait(5)


Start = Callable[..., Awaitable[GatewayProcess]]
"""The type of the ``start_role`` fixtures: ``await start_role("worker", GATEWAY_X="...")``."""
