"""A DNS resolver for aiohttp that hands the connector only the addresses the policy allows.

The check and the connection use the same answer: aiohttp connects to the addresses a resolver returns
(and caches those), so a name that resolves to a public address when checked and to a private one a moment
later (DNS rebinding) is never connected to the second. A name whose every address is refused raises
:class:`Refused`, which aiohttp passes on as it is.
"""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from worker.http.guard import AddressPolicy, parse_address


class Refused(Exception):
    """A call the address policy does not allow; ``reason`` is what ``@session.http_error`` says."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class VettedResolver(AbstractResolver):
    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        if self.policy.allows_host(host):
            return found
        vetted = []
        for result in found:
            address = parse_address(result["host"])
            if address is not None and self.policy.allows_address(address):
                vetted.append(result)
        if not vetted:
            shown = ", ".join(result["host"] for result in found)
            raise Refused("refused address", f"{host} resolves to {shown}: not a public address")
        return vetted

    async def close(self) -> None:
        await self.inner.close()
