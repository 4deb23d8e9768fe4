"""Conditions of STORIES.md § Conditions: a lone chain, ``==`` and ``!=`` ignoring case and outer spaces."""

from __future__ import annotations

import pytest

from worker.engine.conditions import compile_condition
from worker.engine.templates import TemplateError

SESSION = {"City": " paris ", "Blank": "", "Other": "PARIS"}


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
