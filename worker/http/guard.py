"""Which addresses a story's call may reach: public ones, and what ``GATEWAY_HTTP_ALLOW`` lists.

Loopback, private, link-local, multicast, unspecified and reserved addresses (IPv4 and IPv6) are refused,
including IPv4 addresses inside IPv6 ones (IPv4-mapped ``::ffff:a.b.c.d``, 6to4, Teredo, NAT64), which would
otherwise reach the same hosts. An allow-list entry is a host name (matched as the URL names it) or a CIDR
range (matched against the address, or the IPv4 address inside it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def parse_address(text: str) -> Address | None:
    """An IP address written as an address (``[::1]``'s brackets and a ``%zone`` allowed); None otherwise."""
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def embedded(address: Address) -> Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo's client, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: Address) -> bool:
    """A globally routable unicast address (and so is the IPv4 address inside it)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)  # the IPv4 address itself, whatever its IPv6 form
    inner = embedded(address)
    if inner is not None and not is_public(inner):
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_unspecified
        or address.is_reserved
    )


class AddressPolicy:
    """Decides, for a host name and each address it resolves to, whether a call may connect."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.hosts: frozenset[str] = frozenset()
        networks: list[Network] = []
        hosts: set[str] = set()
        for entry in allow:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        self.hosts = frozenset(hosts)
        self.networks = tuple(networks)
        self._decided: dict[Address, bool] = {}

    def allows_host(self, host: str) -> bool:
        """The host name itself is listed: every address it resolves to may be reached."""
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, address: Address) -> bool:
        allowed = self._decided.get(address)
        if allowed is None:
            allowed = self._decide(address)
            if len(self._decided) >= 4096:  # an address written in a URL is checked at every call
                self._decided.clear()
            self._decided[address] = allowed
        return allowed

    def _decide(self, address: Address) -> bool:
        if is_public(address):
            return True
        inner = embedded(address)
        return any(
            candidate in network
            for network in self.networks
            for candidate in (address, inner)
            if candidate is not None and candidate.version == network.version
        )
