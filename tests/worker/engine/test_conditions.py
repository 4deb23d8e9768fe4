"""Conditions of STORIES.md § Conditions: comparisons of text and numbers, and / or / not, contains, ()."""

from __future__ import annotations

import pytest

from worker.engine.conditions import compile_condition
from worker.engine.templates import TemplateError

SESSION = {"City": " paris ", "Blank": "", "Other": "PARIS", "Score": "2", "Eight": " 8.0 ", "Word": "abc"}


def holds(source: str, message: str = "", negate: bool = False) -> bool:
    return compile_condition(source, negate).holds(SESSION, {"Name": "Ada"}, message)


def test_a_lone_chain_is_true_when_its_value_is_not_empty() -> None:
    assert holds("@user.Name")
    assert not holds("@user.Missing")
    assert not holds("@session.Blank")
    assert holds('@session.Blank || "fallback"')
    assert not holds("@message", message="")


def test_equality_ignores_case_and_surrounding_whitespace() -> None:
    assert holds('@session.City == "Paris"')
    assert holds("@session.City == @session.Other")
    assert holds("@message == 'yes'", message="  YES ")
    assert not holds('@session.City == "Par is"')


def test_inequality() -> None:
    assert holds('@session.City != "London"')
    assert not holds('@session.City != "PARIS"')
    assert holds('@session.Missing != "x"')


def test_chains_on_both_sides() -> None:
    assert holds('@session.Missing || @session.City == @user.Missing || "paris"')


def test_unless_negates() -> None:
    assert not holds('@session.City == "Paris"', negate=True)
    assert holds("@user.Missing", negate=True)


@pytest.mark.parametrize(
    ("source", "offset", "fragment"),
    [
        ("{{@session.City}}", 0, "without {{ }}"),
        ("  <<@message>>", 2, "without {{ }}"),
        ("", 0, "empty condition"),
        ("@session.City = 'x'", 14, "compare with '=='"),
        ("@session.City == 'x' &&", 21, "use 'and'"),
        ("@session.A == @session.B == 'x'", 25, "comparisons do not chain"),
        ("@session.A > 1 and", 18, "after 'and'"),
        ("not", 3, "after 'not'"),
        ("(@session.A == 1", 0, "'(' is never closed with ')'"),
        ("(@session.A == 1 'x')", 17, "expected an operator, 'and', 'or' or ')'"),
        ("@session.A)", 10, "')' without a '(' before it"),
        ("(@session.A == 1) + 1", 18, "a condition in parentheses cannot be followed by '+'"),
        ("(not @session.A) == 1", 17, "a condition in parentheses cannot be followed by '=='"),
        ("@session.A == (@session.B == 1)", 26, "expected an operator or ')'"),
        ("@session.A AND @session.B", 11, "expected an operator, 'and', 'or' or the end"),
        ("upper(@message == 'x')", 15, "expected an operator, ',' or ')'"),
        ("@message contains", 17, "expected something to compare after 'contains'"),
        ("@message < ", 11, "expected something to compare after '<'"),
        ("@message == {{x}}", 12, "without {{ }}"),
        ("'" + "a" * 5000 + "' == @message", 0, "expression longer than 4096 characters"),
        ("not " * 33 + "@message", 128, "nested too deeply"),
        ("@session.City == ", 17, "expected something to compare"),
        ("@session.City == 'a' 'b'", 21, "expected an operator, 'and', 'or' or the end"),
        ("City == 'Paris'", 0, "expected @session.NAME"),
        ("@session.City == Paris", 17, "expected @session.NAME"),
    ],
)
def test_malformed_conditions_give_the_offset(source: str, offset: int, fragment: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_condition(source)
    assert (caught.value.offset, fragment in caught.value.message) == (offset, True), caught.value.message


def test_ignoring_case_is_unicode_case_folding() -> None:
    assert compile_condition('@message == "STRASSE"').holds({}, {}, "Straße")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('@session.Eight == "8"', True),  # both read as numbers: compared as numbers
        ("@session.Eight == 8", True),
        ("@session.Eight == 8.00", True),
        ('"8" == "8.0"', True),
        ('"-0" == "0"', True),
        ('"8" == "8a"', False),  # not both numbers: compared as text
        ('@session.Word == " ABC "', True),
        ("@session.Score + 1 == 3", True),  # arithmetic on both sides
        ("(@session.Score || 0) * 2 == 4", True),
        ("@session.Missing + 1 == ''", True),  # unset arithmetic is the empty string
        ("upper(@session.City) == 'PARIS'", True),
        ("length(@session.Word) == 3", True),
    ],
)
def test_equality_compares_numbers_as_numbers(source: str, expected: bool) -> None:
    assert holds(source) is expected
    assert holds(source.replace("==", "!=", 1)) is (not expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("@session.Score < 3", True),
        ("@session.Score <= 2", True),
        ("@session.Score > 2", False),
        ("@session.Score >= 2", True),
        ("3 > @session.Score", True),
        ("@session.Eight > 10", False),
        ('"10" > "9"', True),  # numbers, not text order
        ("-1 < 0", True),
        ("0.1 + 0.2 == 0.3", True),
        ("@session.Word < 3", False),  # only numbers are ordered
        ("@session.Word >= 3", False),
        ("@session.Missing < 3", False),
        ("3 < @session.Word", False),
        ("not @session.Word < 3", True),
        ("@message < 3", False),
    ],
)
def test_order_holds_only_between_numbers(source: str, expected: bool) -> None:
    assert holds(source, message="") is expected


def test_contains_is_a_case_insensitive_substring_test() -> None:
    assert holds('@message contains "HELP"', message="I need help please")
    assert not holds('@message contains "help"', message="hel p")
    assert holds("@message contains @session.Other", message="Paris is nice")
    assert holds('@message contains "strasse"', message="Hauptstraße 1")
    assert holds('@message contains ""', message="anything")  # every text contains the empty text
    assert not holds('"abc" contains @message', message="x")
    assert holds('"abc" contains @message', message="B")


def test_and_or_not_with_their_precedence() -> None:
    assert holds("@session.Score == 2 and @user.Name == 'ada'")
    assert not holds("@session.Score == 2 and @user.Name == 'bob'")
    assert holds("@session.Score == 3 or @user.Name == 'ada'")
    assert holds("@session.Missing or @session.Blank or @session.Word")
    assert not holds("not @session.Word")
    assert holds("not not @session.Word")
    assert holds("not @session.Score == 3")  # not applies to the comparison
    assert holds("@session.Blank and @session.Missing or @session.Word")  # and binds tighter than or
    assert not holds("@session.Blank and (@session.Missing or @session.Word)")
    assert holds("not @session.Blank and @session.Word")  # not binds tighter than and
    assert not holds("not (@session.Blank or @session.Word)")


def test_parentheses_group_conditions_and_expressions() -> None:
    assert holds("(@session.Score == 2)")
    assert holds("((@session.Score == 2) and (@session.Word))")
    assert holds("(@session.Score) + 1 == 3")  # a parenthesis opens an expression that goes on
    assert holds("((@session.Score)) * (1 + 1) == 4")
    assert holds("(@session.Score || 5) >= 2")
    assert holds("(@session.Word) contains 'B'")
    assert holds("not (@session.Score) > 2")
    assert holds("(@session.Missing) || 'x' == 'X'")


def test_words_are_operators_only_outside_quotes() -> None:
    assert holds('@message == "not and or contains"', message="NOT AND OR CONTAINS")
    assert holds('@message contains "and"', message="this and that")


def test_a_huge_message_is_compared_without_reading_all_of_it() -> None:
    huge = "É" * 1_000_000
    assert not holds('@message == "yes"', message=huge)
    assert holds('@message contains "é"', message=huge)
    assert not holds("@message > 1", message="9" * 1_000_000)  # too long to be a number
    assert holds("@message == @message", message=huge)
