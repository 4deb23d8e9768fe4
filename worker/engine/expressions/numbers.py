"""Decimal numbers as expressions read, compute and write them, bounded so that nothing can blow up.

A value *reads as a number* when, trimmed, it is an optional ``-``, ASCII digits, and optionally ``.``
and digits. Numbers keep :data:`PRECISION` significant digits (more are rounded half away from zero) and
stay below 10**40 in size; a result beyond that, a division by zero, or a value that is no number gives
``None``: unset. Written numbers have no exponent and no trailing zeros (``3``, ``2.5``, ``-0.01``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Final

PRECISION: Final = 50
"""Significant digits of a number."""
MAX_EXPONENT: Final = 39
"""A number is less than ``10 ** (MAX_EXPONENT + 1)`` in size."""
MAX_NUMBER_TEXT: Final = 200
"""A longer value never reads as a number (a written number takes at most 91 characters)."""
DIVISION_DECIMALS: Final = 10
"""``/`` rounds its result to this many decimals."""

_CONTEXT: Final = Context(
    prec=PRECISION, rounding=ROUND_HALF_UP, Emax=MAX_EXPONENT, Emin=-MAX_EXPONENT, traps=[]
)  # no traps: overflow is Infinity, an impossible operation NaN; both become None
_WIDE: Final = Context(prec=4 * PRECISION, rounding=ROUND_HALF_UP, Emax=999, Emin=-999, traps=[])
_FINEST: Final = PRECISION + MAX_EXPONENT - 1  # decimals of the smallest number (Etiny = -88)
_COARSEST: Final = -(MAX_EXPONENT + 2)  # rounding to 10**41 or coarser always gives 0
_NUMBER: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


_read: dict[str, Decimal | None] = {}  # a memo of read_number: the same few values come again and again
_READ_MEMO: Final = 4096  # entries kept, at most MAX_NUMBER_TEXT characters each


def read_number(text: str) -> Decimal | None:
    """The number ``text`` reads as, or None."""
    if len(text) > MAX_NUMBER_TEXT:
        return None
    found = _read.get(text, _read)
    if found is not _read:
        return found  # type: ignore[return-value]
    number = None
    trimmed = text.strip()
    if _NUMBER.fullmatch(trimmed) is not None:
        number = _CONTEXT.create_decimal(trimmed)
        if not number.is_finite():
            number = None
    if len(_read) >= _READ_MEMO:
        _read.clear()
    _read[text] = number
    return number


def write_number(number: Decimal) -> str:
    """``number`` without exponent and trailing zeros; zero is ``0``, never ``-0``."""
    if not number:
        return "0"
    return format(number.normalize(_CONTEXT), "f")


def add(left: Decimal, right: Decimal) -> Decimal | None:
    result = _CONTEXT.add(left, right)
    return result if result.is_finite() else None


def subtract(left: Decimal, right: Decimal) -> Decimal | None:
    result = _CONTEXT.subtract(left, right)
    return result if result.is_finite() else None


def multiply(left: Decimal, right: Decimal) -> Decimal | None:
    result = _CONTEXT.multiply(left, right)
    return result if result.is_finite() else None


def negate(number: Decimal) -> Decimal:
    return _CONTEXT.minus(number)


def divide(left: Decimal, right: Decimal) -> Decimal | None:
    """``left / right`` rounded half away from zero to 10 decimals, exactly (integer arithmetic)."""
    if not right:
        return None
    left_numerator, left_denominator = left.as_integer_ratio()
    right_numerator, right_denominator = right.as_integer_ratio()
    numerator = left_numerator * right_denominator * 10**DIVISION_DECIMALS
    denominator = left_denominator * right_numerator
    quotient, rest = divmod(abs(numerator), abs(denominator))
    if 2 * rest >= abs(denominator):
        quotient += 1
    negative = (numerator < 0) != (denominator < 0)
    return _finite(_CONTEXT.create_decimal(f"{'-' if negative else ''}{quotient}E-{DIVISION_DECIMALS}"))


def remainder(left: Decimal, right: Decimal) -> Decimal | None:
    """``left % right`` with the sign of ``left``, as Python's decimal (``-7 % 3`` is ``-1``), exactly."""
    if not right:
        return None
    left_numerator, left_denominator = left.as_integer_ratio()
    right_numerator, right_denominator = right.as_integer_ratio()
    dividend = left_numerator * right_denominator  # both over left_denominator * right_denominator
    rest = abs(dividend) % abs(right_numerator * left_denominator)
    if dividend < 0:
        rest = -rest
    return _finite(_CONTEXT.divide(Decimal(rest), Decimal(left_denominator * right_denominator)))


def round_to(number: Decimal, digits: Decimal | None = None) -> Decimal | None:
    """``number`` rounded half away from zero to ``digits`` decimals (0 by default; negative: tens, ...).

    ``digits`` must be a whole number; beyond what a number can hold it changes nothing (``round(x,
    1000000)`` is ``x``, ``round(x, -1000000)`` is ``0``), so the work stays small.
    """
    places = 0
    if digits is not None:
        if digits != digits.to_integral_value():
            return None
        places = _COARSEST if digits < _COARSEST else _FINEST if digits > _FINEST else int(digits)
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or exponent >= -places:
        return number
    rounded = number.quantize(Decimal((0, (1,), -places)), ROUND_HALF_UP, _WIDE)
    return _finite(_CONTEXT.plus(rounded))


def smallest(numbers: Sequence[Decimal]) -> Decimal:
    return min(numbers)


def largest(numbers: Sequence[Decimal]) -> Decimal:
    return max(numbers)


def _finite(number: Decimal) -> Decimal | None:
    return number if number.is_finite() else None
