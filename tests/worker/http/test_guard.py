"""Which addresses a story's call may reach, IPv4 and IPv6, and what GATEWAY_HTTP_ALLOW opens."""

from __future__ import annotations

import pytest

from worker.http.guard import AddressPolicy, parse_address

REFUSED = [
    "127.0.0.1", "127.255.0.9", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.2.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "ff0e::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped
    "2002:7f00:1::", "2002:a00:1::",  # 6to4 of 127.0.0.1 and 10.0.0.1
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",  # NAT64 of 127.0.0.1 and 169.254.169.254
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1
    "fe80::1%eth0",
]  # fmt: skip
PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("text", REFUSED)
def test_private_loopback_link_local_multicast_and_unspecified_addresses_are_refused(text: str) -> None:
    address = parse_address(text)
    assert address is not None
    assert not AddressPolicy().allows_address(address)


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_are_allowed(text: str) -> None:
    address = parse_address(text)
    assert address is not None and AddressPolicy().allows_address(address)


def test_the_allow_list_opens_host_names_and_ranges_and_nothing_more() -> None:
    policy = AddressPolicy(["10.0.0.0/8", "127.0.0.1/32", "fd00::/8", "Api.Internal.", "localhost"])
    assert policy.allows_host("api.internal") and policy.allows_host("LOCALHOST.")
    assert not policy.allows_host("other.internal")
    for allowed in ("10.1.2.3", "127.0.0.1", "::ffff:127.0.0.1", "fd00::5"):
        assert policy.allows_address(parse_address(allowed)), allowed  # type: ignore[arg-type]
    for refused in ("127.0.0.2", "192.168.0.1", "::1", "fe80::1"):
        assert not policy.allows_address(parse_address(refused)), refused  # type: ignore[arg-type]


def test_only_addresses_parse_as_addresses() -> None:
    assert parse_address("[::1]") == parse_address("::1")
    for name in ("localhost", "example.com", "127.1", "0x7f000001", ""):
        assert parse_address(name) is None
