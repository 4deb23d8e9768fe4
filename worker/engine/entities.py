"""Entities a step can ``expect`` in the user's reply: text, email, number, phone (stored as E.164)."""

from __future__ import annotations

import re
from collections.abc import Callable

import phonenumbers

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LOCAL = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
# In free text an address needs a dotted domain with a letter TLD ("mail bob@example.com.").
_EMAIL_IN_TEXT = re.compile(rf"(?<![\w.+-]){_LOCAL}@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}(?![\w-])")
# An address field also takes a single-label domain (support@localhost) for local setups.
_ADDRESS = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})*")
_ANGLE = re.compile(r"<([^<>]*)>\s*$")
_NUMBER = re.compile(r"(?<![\w.,])(?:(?<!\w)-)?\d+(?:[.,]\d+)*")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DECIMAL = re.compile(r"-?\d+(?:[.,]\d+)?")


def find_text(text: str, region: str | None = None) -> str | None:
    stripped = text.strip()
    return stripped or None


def find_email(text: str, region: str | None = None) -> str | None:
    found = _EMAIL_IN_TEXT.search(text)
    return found.group() if found is not None else None


def find_number(text: str, region: str | None = None) -> str | None:
    """The first number: ``12``, ``-3``, ``1.5`` and ``1,5`` (→ 1.5), ``12,345.6`` (→ 12345.6)."""
    for found in _NUMBER.finditer(text):
        written = found.group()
        if _THOUSANDS.fullmatch(written):
            return written.replace(",", "")
        if _DECIMAL.fullmatch(written):
            return written.replace(",", ".")
    return None


def find_phone(text: str, region: str | None = None) -> str | None:
    """The first valid phone number, as E.164; without ``region`` only numbers written with +country."""
    try:
        for match in phonenumbers.PhoneNumberMatcher(text, region):
            formatted: str = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
            return formatted
    except Exception:  # the library must never take a conversation down
        return None
    return None


FINDERS: dict[str, Callable[[str, str | None], str | None]] = {
    "text": find_text,
    "email": find_email,
    "number": find_number,
    "phone": find_phone,
}


def region_of(number: str) -> str | None:
    """The region of an E.164 number (an SMS sender), so a local number it types can be understood."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    region: str | None = phonenumbers.region_code_for_number(parsed)
    return region if region and region != "ZZ" else None


def is_region(code: str) -> bool:
    return code.upper() in phonenumbers.SUPPORTED_REGIONS


def clean_address(written: str) -> str | None:
    """``bob@example.com`` or ``Bob <bob@example.com>`` → the bare address; None when it is not one."""
    candidate = written.strip()
    angle = _ANGLE.search(candidate)
    if angle is not None:
        candidate = angle.group(1).strip()
    if len(candidate) > 254 or not _ADDRESS.fullmatch(candidate):
        return None
    return candidate


def split_addresses(written: str) -> list[str]:
    """Comma-separated addresses, trimmed, invalid ones dropped, duplicates removed."""
    found: dict[str, None] = {}
    for part in written.split(","):
        address = clean_address(part)
        if address is not None:
            found.setdefault(address, None)
    return list(found)
