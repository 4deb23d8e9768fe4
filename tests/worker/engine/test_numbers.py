"""Property tests of numbers in expressions: written and read back exactly, decimal arithmetic's identities,
and division, remainder and rounding against exact fractions."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Context, Decimal
from fractions import Fraction

from hypothesis import assume, example, given
from hypothesis import strategies as st

from worker.engine.conditions import compile_condition
from worker.engine.expressions.numbers import MAX_EXPONENT, PRECISION, read_number, write_number
from worker.engine.templates import compile_template

WRITTEN = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")  # no exponent, no trailing or leading zeros
LARGEST = Decimal(10) ** (MAX_EXPONENT + 1)


def number_from(coefficient: int, exponent: int) -> Decimal:
    return Decimal(f"{coefficient}E{exponent}")  # exact: no context rounds a string


# Any number the expressions can hold: up to 50 significant digits, less than 10^40, down to 10^-88.
any_number = st.builds(
    number_from, st.integers(-(10**PRECISION) + 1, 10**PRECISION - 1), st.integers(-88, MAX_EXPONENT)
).filter(lambda number: abs(number) < LARGEST)
# Numbers small enough that sums and products of three are exact (no rounding to 50 digits, below 10^40).
exact_number = st.builds(number_from, st.integers(-(10**9), 10**9), st.integers(-6, 3))


def session(**values: Decimal | str) -> dict[str, str]:
    return {name: value if isinstance(value, str) else write_number(value) for name, value in values.items()}


def computed(source: str, **values: Decimal | str) -> Decimal | None:
    """The value of ``{{source}}`` with ``@session.a``, ``b``, ``c`` set, read back as a number."""
    return read_number(compile_template("{{" + source + "}}").render(session(**values), {}, ""))


@given(any_number)
@example(Decimal("-0"))
@example(Decimal("1E+39"))
@example(Decimal("9" * 50 + "E-10"))
@example(Decimal("1E-88"))
def test_a_written_number_reads_back_as_itself(number: Decimal) -> None:
    written = write_number(number)
    assert WRITTEN.fullmatch(written), written
    assert read_number(written) == number
    assert read_number(f"  {written}\t") == number  # trimmed
    assert write_number(Decimal(written)) == written  # one way to write each number


@given(st.from_regex(r"-?[0-9]{1,25}(\.[0-9]{1,25})?", fullmatch=True))
def test_text_that_reads_as_a_number_is_written_canonically(text: str) -> None:
    number = read_number(text)
    assert number == Decimal(text)  # at most 50 digits, the numbers' precision: exact
    assert read_number(write_number(number)) == number


@given(st.from_regex(r"-?[0-9]{26,40}\.[0-9]{26,40}", fullmatch=True))
def test_text_with_more_digits_than_the_precision_is_rounded_to_it(text: str) -> None:
    number = read_number(text)
    assert number is not None and len(number.as_tuple().digits) <= PRECISION
    assert number == Context(prec=PRECISION, rounding=ROUND_HALF_UP).create_decimal(text)
    assert read_number(write_number(number)) == number


@given(st.text(max_size=12))
def test_only_the_contract_form_reads_as_a_number(text: str) -> None:
    reads = re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text.strip()) is not None
    assert (read_number(text) is not None) == reads


@given(any_number, any_number)
def test_addition_and_multiplication_commute(a: Decimal, b: Decimal) -> None:
    assert computed("@session.a + @session.b", a=a, b=b) == computed("@session.b + @session.a", a=a, b=b)
    assert computed("@session.a * @session.b", a=a, b=b) == computed("@session.b * @session.a", a=a, b=b)


@given(any_number)
def test_identities_of_zero_and_one(a: Decimal) -> None:
    assert computed("@session.a + 0", a=a) == a
    assert computed("0 + @session.a", a=a) == a
    assert computed("@session.a - 0", a=a) == a
    assert computed("@session.a * 1", a=a) == a
    assert computed("@session.a - @session.a", a=a) == 0
    assert computed("@session.a * 0", a=a) == 0
    assert computed("--@session.a", a=a) == a
    assert computed("0 - @session.a", a=a) == a.copy_negate()
    assert computed("round(@session.a, 88)", a=a) == a


@given(exact_number, exact_number, exact_number)
def test_exact_arithmetic_is_associative_and_distributive(a: Decimal, b: Decimal, c: Decimal) -> None:
    values = {"a": a, "b": b, "c": c}
    total, product = Fraction(a) + Fraction(b) + Fraction(c), Fraction(a) * Fraction(b) * Fraction(c)
    for source, expected in [
        ("(@session.a + @session.b) + @session.c", total),
        ("@session.a + (@session.b + @session.c)", total),
        ("(@session.a * @session.b) * @session.c", product),
        ("@session.a * (@session.b * @session.c)", product),
        ("@session.a * (@session.b + @session.c)", Fraction(a) * (Fraction(b) + Fraction(c))),
        ("@session.a * @session.b + @session.a * @session.c", Fraction(a) * (Fraction(b) + Fraction(c))),
        ("@session.a - @session.b", Fraction(a) - Fraction(b)),
        ("@session.a + -@session.b", Fraction(a) - Fraction(b)),
        ("@session.a / 1", Fraction(a)),  # at most 6 decimals: / 1 rounds nothing away
    ]:
        found = computed(source, **values)
        assert found is not None and Fraction(found) == expected, source


def half_away_from_zero(value: Fraction, decimals: int) -> Fraction:
    unit = Fraction(10) ** -decimals
    whole = int(abs(value) / unit + Fraction(1, 2))  # floor of a non-negative number
    return (whole if value >= 0 else -whole) * unit


@given(exact_number, exact_number)
@example(Decimal(2), Decimal(3))
@example(Decimal("-1"), Decimal("20000000000"))  # -0.00000000005: away from zero
def test_division_rounds_half_away_from_zero_to_10_decimals(a: Decimal, b: Decimal) -> None:
    found = computed("@session.a / @session.b", a=a, b=b)
    if b == 0:
        assert found is None
        return
    assert found is not None and Fraction(found) == half_away_from_zero(Fraction(a) / Fraction(b), 10)


@given(exact_number, exact_number)
@example(Decimal(-7), Decimal(3))
@example(Decimal(7), Decimal(-3))
def test_remainder_has_the_sign_of_the_left_side(a: Decimal, b: Decimal) -> None:
    found = computed("@session.a % @session.b", a=a, b=b)
    if b == 0:
        assert found is None
        return
    quotient = Fraction(a) / Fraction(b)
    truncated = int(quotient)  # towards zero
    assert found is not None and Fraction(found) == Fraction(a) - Fraction(b) * truncated


@given(any_number, st.integers(-45, 95))
@example(Decimal("2.5"), 0)
@example(Decimal("-2.5"), 0)
@example(Decimal("1.005"), 2)
def test_round_is_half_away_from_zero(a: Decimal, digits: int) -> None:
    found = computed("round(@session.a, @session.b)", a=a, b=Decimal(digits))
    expected = half_away_from_zero(Fraction(a), digits)
    assume(abs(expected) < LARGEST)
    assert found is not None
    assert Fraction(found) == expected or len(str(abs(expected.numerator))) > PRECISION
    if digits == 0:
        assert computed("round(@session.a)", a=a) == found


@given(st.lists(any_number, min_size=2, max_size=5))
def test_min_and_max(numbers: list[Decimal]) -> None:
    names = "abcde"[: len(numbers)]
    values = dict(zip(names, numbers, strict=True))
    arguments = ", ".join(f"@session.{name}" for name in names)
    assert computed(f"min({arguments})", **values) == min(numbers)
    assert computed(f"max({arguments})", **values) == max(numbers)


@given(any_number, any_number, st.sampled_from(["", " ", "0", "00"]))
def test_comparisons_compare_numbers_by_value(a: Decimal, b: Decimal, padding: str) -> None:
    zeros = padding.strip()
    trailing = "." + zeros if zeros and "." not in write_number(a) else ""  # 12.00 is 12
    written = {"a": write_number(a) + trailing, "b": padding.replace("0", " ") + write_number(b)}
    checks = [("==", a == b), ("!=", a != b), ("<", a < b), ("<=", a <= b), (">", a > b), (">=", a >= b)]
    for op, expected in checks:
        assert compile_condition(f"@session.a {op} @session.b").holds(written, {}, "") is expected
