"""Entities a step can expect, and the address handling of email fields."""

from __future__ import annotations

import pytest

from worker.engine.entities import (
    clean_address,
    find_email,
    find_number,
    find_phone,
    find_text,
    region_of,
    split_addresses,
)


def test_text_is_any_non_blank_reply() -> None:
    assert find_text("  hello ") == "hello"
    assert find_text("   ") is None


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("it's ada@example.com.", "ada@example.com"),
        ("mail: First.Last+tag@mail.example.co.uk, thanks", "First.Last+tag@mail.example.co.uk"),
        ("no address here", None),
        ("ada@localhost", None),
        ("@example.com", None),
    ],
)
def test_email(text: str, found: str | None) -> None:
    assert find_email(text) == found


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("8", "8"),
        ("I think 8 legs", "8"),
        ("-3 degrees", "-3"),
        ("1.5 kg", "1.5"),
        ("1,5 kg", "1.5"),
        ("12,345.6 dollars", "12345.6"),
        ("1,000", "1000"),
        ("room12 and 7", "7"),
        ("many", None),
        ("1.2.3", None),
    ],
)
def test_number(text: str, found: str | None) -> None:
    assert find_number(text) == found


def test_phone_is_stored_as_e164() -> None:
    assert find_phone("call me on +44 20 7123 4567 please") == "+442071234567"
    assert find_phone("06 12 34 56 78", "FR") == "+33612345678"
    assert find_phone("06 12 34 56 78") is None  # no +country and no region
    assert find_phone("12") is None
    assert region_of("+442071234567") == "GB"
    assert region_of("not a number") is None


def test_addresses_are_split_trimmed_and_invalid_ones_dropped() -> None:
    written = " a@example.com , bad, Bob <bob@example.com>,,a@example.com, ops@localhost "
    assert split_addresses(written) == ["a@example.com", "bob@example.com", "ops@localhost"]
    assert split_addresses("nobody, @x, y@") == []
    assert clean_address("evil@example.com\r\nBcc: x@example.com") is None
