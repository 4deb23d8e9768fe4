"""GATEWAY_STAFF: whose replies the inbox accepts.

An entry is an address (``agent@example.com``) or a whole domain (``@example.com``, that domain only, not
its subdomains); case does not count. Only the address does: a display name ("Support <x@evil.test>")
never makes a sender staff.
"""

from __future__ import annotations

from collections.abc import Iterable


class StaffList:
    def __init__(self, entries: Iterable[str]) -> None:
        cleaned = [entry.strip().lower() for entry in entries if entry.strip()]
        self.addresses = frozenset(entry for entry in cleaned if not entry.startswith("@"))
        self.domains = frozenset(entry[1:] for entry in cleaned if entry.startswith("@"))

    def __bool__(self) -> bool:
        return bool(self.addresses or self.domains)

    def allows(self, address: str) -> bool:
        """Whether ``address`` (a bare address, as parsed from From) is staff."""
        address = address.strip().lower()
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain:
            return False
        return address in self.addresses or domain in self.domains
