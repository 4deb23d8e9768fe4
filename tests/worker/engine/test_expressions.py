"""Expressions of STORIES.md § Expressions: decimal arithmetic, functions, unset values, bounds, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.engine import Chat, load, problems
from worker.engine.expressions.limits import MAX_DEPTH, MAX_EXPRESSION, MAX_VALUE
from worker.engine.templates import TemplateError, compile_template

SESSION = {"Score": "2", "Total": "10", "Total-1": "named", "Word": "abc", "Decimal": " 8.50 ", "Empty": ""}
USER = {"FirstName": "  Ada ", "Big": "1" + "0" * 39}


def render(source: str, message: str = "hello") -> str:
    return compile_template(source).render(SESSION, USER, message)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{0.1 + 0.2}}", "0.3"),  # decimal, not binary floating point
        ("{{ 2 * 3 + 4 }}", "10"),  # precedence
        ("{{ 2 * (3 + 4) }}", "14"),
        ("{{ 10 - 2 - 3 }}", "5"),  # left to right
        ("{{ 10 / 4 }}", "2.5"),
        ("{{ 1 / 3 }}", "0.3333333333"),  # / rounds to 10 decimals
        ("{{ 2 / 3 }}", "0.6666666667"),  # half away from zero
        ("{{ -2 / 3 }}", "-0.6666666667"),
        ("{{ 1 / 3 * 3 }}", "0.9999999999"),
        ("{{ 7 % 3 }}", "1"),
        ("{{ -7 % 3 }}", "-1"),  # the sign of the left side, as Python's decimal
        ("{{ 7.5 % 2 }}", "1.5"),
        ("{{ --5 }}", "5"),
        ("{{ -(2 - 5) }}", "3"),
        ("{{ 1.50 }}", "1.5"),  # written without trailing zeros
        ("{{ 007 }}", "7"),
        ("{{ 2.50 * 2 }}", "5"),
        ("{{ 0 * -1 }}", "0"),  # never -0
        ("{{ 100 * 100 }}", "10000"),  # never an exponent
        ("{{ 0.001 / 1000 }}", "0.000001"),
        ("{{ 123456789012345678901234567890 * 1000000000 }}", "123456789012345678901234567890000000000"),
    ],
)
def test_decimal_arithmetic(source: str, expected: str) -> None:
    assert render(source) == expected


def test_values_that_read_as_numbers_compute() -> None:
    assert render("{{@session.Score + 1}}") == "3"
    assert render("{{@session.Decimal * 2}}") == "17"  # trimmed, then read
    assert render("{{@message * 2}}", message="-4.25") == "-8.5"
    assert render("{{@session.Total - 1}}") == "9"
    assert render("{{@session.Total-1}}") == "named"  # a name may contain '-': subtraction needs a space


def test_counting_from_unset() -> None:
    template = compile_template("{{(@session.Score || 0) + 1}}")
    assert template.render({}, {}, "") == "1"
    assert template.render({"Score": "1"}, {}, "") == "2"
    assert template.render({"Score": ""}, {}, "") == "1"


@pytest.mark.parametrize(
    "source",
    [
        "{{@session.Missing + 1}}",  # unset
        "{{@session.Empty + 1}}",  # empty
        "{{@session.Word + 1}}",  # not a number
        "{{1 + @session.Word}}",
        "{{ 1 / 0 }}",  # division by zero
        "{{ 1 % 0 }}",
        "{{ -@session.Word }}",
        "{{ 'x' * 2 }}",  # no text arithmetic
        "{{ @message + 1 }}",  # "1e5", "+1", ".5", "1." and "1,5" are not numbers
        "{{ @user.Big * 10 }}",  # 10^40 or more: too large
        "{{ round(@session.Word) }}",
        "{{ round(1.5, 0.5) }}",  # digits must be whole
        "{{ round(1.5, @session.Word) }}",
        "{{ min(1, @session.Word) }}",
        "{{ max(@session.Missing, 2) }}",
    ],
)
def test_arithmetic_on_what_is_not_a_number_is_unset(source: str) -> None:
    for message in ("hello", "1e5", "+1", ".5", "1.", "1,5", "١٢"):
        assert render(source, message) == ""
    assert render(source[:-2] + " || 'default'}}") == "default"


def test_numbers_are_read_trimmed_with_an_optional_minus() -> None:
    template = compile_template("{{@message + 0}}")
    for typed, value in [(" 12 ", "12"), ("-3", "-3"), ("0.50", "0.5"), ("-0", "0"), ("00012.000", "12")]:
        assert template.render({}, {}, typed) == value


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{round(2.5)}}", "3"),  # half away from zero, not to even
        ("{{round(3.5)}}", "4"),
        ("{{round(-2.5)}}", "-3"),
        ("{{round(2.4999)}}", "2"),
        ("{{round(1.005, 2)}}", "1.01"),
        ("{{round(1.25, 1)}}", "1.3"),
        ("{{round(2, 3)}}", "2"),
        ("{{round(1234.5, -2)}}", "1200"),
        ("{{round(1250, -2)}}", "1300"),
        ("{{round(2.345, 1000000)}}", "2.345"),  # beyond what a number holds: no change, no work
        ("{{round(2.345, -1000000)}}", "0"),
        ("{{round(@session.Total / 3, 2)}}", "3.33"),
        ("{{min(3, 1, 2)}}", "1"),
        ("{{max(3, 1.5, -2)}}", "3"),
        ("{{max(@session.Score, @session.Decimal)}}", "8.5"),
        ("{{min(-0, 0)}}", "0"),
        ("{{upper(@user.FirstName)}}", "  ADA "),
        ("{{lower('ÉTÉ')}}", "été"),
        ("{{trim(@user.FirstName)}}", "Ada"),
        ("{{upper(trim(@user.FirstName))}}!", "ADA!"),
        ("{{length(@user.FirstName)}}", "6"),
        ("{{length('été 👍')}}", "5"),  # characters (code points), not bytes
        ("{{length(@session.Missing)}}", "0"),
        ("{{length(@message) * 2}}", "10"),
        ("{{upper(@session.Missing) || 'none'}}", "none"),
        ("{{upper(@session.Score + 1)}}", "3"),
        ("{{trim(@session.Decimal) + 1}}", "9.5"),
    ],
)
def test_functions(source: str, expected: str) -> None:
    assert render(source) == expected


def test_a_computed_value_is_never_parsed_again() -> None:
    typed = "{{@session.Score}} 1 + 1"
    assert render("{{upper(@message)}}", message=typed) == typed.upper()
    assert render("{{trim(@message) || 'x'}}", message=typed) == typed
    assert render("{{@message + 1 || @message}}", message=typed) == typed


def test_constant_expressions_are_worked_out_once() -> None:
    template = compile_template("{{1 + 2}} of {{upper('x')}} {{round(1 / 3, 2)}}")
    assert template.constant == "3 of X 0.33"
    assert compile_template("<b>{{'<' || @message}}</b>", escape=True).constant == "<b>&lt;</b>"


def test_html_bodies_escape_computed_values() -> None:
    template = compile_template("<p>{{upper(@message)}}</p>", escape=True)
    assert template.render({}, {}, "<i>&") == "<p>&lt;I&gt;&amp;</p>"


# Bounds: whatever the values, every function and operator does a bounded amount of work.


def test_text_functions_read_and_return_at_most_max_value_characters() -> None:
    huge = "é" * (MAX_VALUE * 16)  # a 1 MiB message
    assert render("{{upper(@message)}}", message=huge) == "É" * MAX_VALUE
    assert render("{{trim(@message)}}", message=" " + huge) == "é" * (MAX_VALUE - 1)
    assert render("{{upper(@message)}}", message="ß" * MAX_VALUE) == "SS" * (MAX_VALUE // 2)
    assert render("{{length(@message)}}", message=huge) == str(len(huge))  # length counts all
    assert render("{{@message}}", message=huge) == huge  # a value passed through whole is not cut


def test_huge_digit_strings_are_not_numbers() -> None:
    assert render("{{@message + 1 || 'no'}}", message="9" * 1_000_000) == "no"
    assert render("{{@message + 1 || 'no'}}", message="0" * 300 + "1") == "no"  # over 200 characters
    assert render("{{@message + 1}}", message="0" * 190 + "1") == "2"


def test_numbers_keep_50_significant_digits_and_stay_below_10_to_the_40() -> None:
    forty = "9" * 40  # the largest integer
    assert render("{{@message + 0}}", message=forty) == forty
    assert render(f"{{{{{forty} + 1 || 'too large'}}}}") == "too large"
    assert render("{{@message * @message || 'too large'}}", message="1" + "0" * 20) == "too large"
    assert render("{{@message + 0}}", message="1." + "1" * 60) == "1." + "1" * 49  # rounded to 50 digits
    assert render("{{@message + 0}}", message="0." + "0" * 100 + "1") == "0"  # too small: 0


def test_division_and_remainder_are_exact_before_rounding() -> None:
    assert render("{{ 1 / 7 }}") == "0.1428571429"
    assert render("{{ 12345678901234567890123456789 / 7 }}") == "1763668414462081127160493827"
    assert render("{{ 0.00000000005 / 1 }}") == "0.0000000001"  # half away from zero at the 10th decimal
    assert render("{{ -0.00000000005 / 1 }}") == "-0.0000000001"
    assert render("{{ 0.00000000004 / 1 }}") == "0"
    huge, tiny = "1" + "0" * 37, "0." + "0" * 36 + "3"
    assert render(f"{{{{ {huge} % {tiny} }}}}") == "0." + "0" * 36 + "1"


# Errors: every mistake is found when the stories load, at its character.


@pytest.mark.parametrize(
    ("source", "offset", "message"),
    [
        ("{{ uper(@message) }}", 3, "unknown function uper(); did you mean upper()?"),
        ("{{ x(1) }}", 3, "unknown function x(); the functions are upper, lower, trim, length, round, min, "),
        ("{{ upper }}", 3, "upper is a function: write upper(...)"),
        ("{{ upper() }}", 3, "upper() takes 1 argument, not 0"),
        ("{{ upper(1, 2) }}", 3, "upper() takes 1 argument, not 2"),
        ("{{ round(1, 2, 3) }}", 3, "round() takes 1 or 2 arguments, not 3"),
        ("{{ min(1) }}", 3, "min() takes at least 2 arguments, not 1"),
        ("{{ (1 + 2 }}", 3, "'(' is never closed with ')'"),
        ("{{ upper(1 }}", 8, "'(' is never closed with ')'"),
        ("{{ 1 + 2) }}", 8, "')' without a '(' before it"),
        ("{{ upper(1 2) }}", 11, "expected an operator, ',' or ')'"),
        ("{{ (1 2) }}", 6, "expected an operator or ')'"),
        ("{{ @message == 'x' }}", 12, "'==' belongs in conditions (if: / unless:), not inside {{ }}"),
        ("<< @message < 'x' >>", 12, "'<' belongs in conditions (if: / unless:), not inside << >>"),
        ("{{ @message contains 'x' }}", 12, "'contains' belongs in conditions (if: / unless:), not inside"),
        ("{{ @message and 1 }}", 12, "'and' belongs in conditions"),
        ("{{ not @message }}", 3, "'not' belongs in conditions"),
        (
            "{{ 1 + }}",
            7,
            "expected @session.NAME, @user.NAME, @message, a quoted string, a number, a function or '(' "
            "after '+'",
        ),
        ("{{ 1 +", 0, "'{{' is never closed with '}}'"),
        ("{{ upper(", 0, "'{{' is never closed with '}}'"),
        ("{{ 1e5 }}", 4, "expected an operator or '}}'"),
        ("{{ 1. }}", 4, "unexpected character '.'"),
        ("{{ .5 }}", 3, "unexpected character '.'"),
        ("{{ a }}", 3, '(for the text a, write "a")'),
        ("{{ 1 = 1 }}", 5, "'=' is not an operator; compare with '=='"),
        ("{{ @message | 'a' }}", 12, "'|' is not an operator; use '||' for 'else'"),
        ("{{ @message & 'a' }}", 12, "'&' is not an operator; use 'and'"),
        ("{{ 1 # 2 }}", 5, "unexpected character '#'"),
        ("{{@message-1}}", 2, "(to subtract, put spaces around '-')"),
        ("{{ " + "9" * 41 + " }}", 3, "is out of range: at most 50 significant digits and less than 10^40"),
        ("{{ 1." + "1" * 50 + " }}", 3, "is out of range"),
        ("{{" + "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1) + "}}", 2 + MAX_DEPTH, "nested too deep"),
        ("{{" + "-" * (MAX_DEPTH + 1) + "1}}", 2 + MAX_DEPTH, "nested too deeply"),
        ("{{" + "upper(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1) + "}}", 7 + 6 * MAX_DEPTH, "nested"),
        ("x {{" + "1 + " * MAX_EXPRESSION + "1}}", 2, f"expression longer than {MAX_EXPRESSION} characters"),
        ("x {{'" + "a" * MAX_EXPRESSION + "'}}", 2, "expression longer than"),
    ],
)
def test_mistakes_are_positioned(source: str, offset: int, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(source)
    assert (caught.value.offset, message in caught.value.message) == (offset, True), caught.value.message


def test_limits_allow_what_they_promise() -> None:
    nested = "{{" + "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH + "}}"
    assert compile_template(nested).constant == "1"
    long = "{{" + "1+" * ((MAX_EXPRESSION - 1) // 2) + "1}}"
    assert len(long) - 4 <= MAX_EXPRESSION
    assert compile_template(long).constant == str((MAX_EXPRESSION - 1) // 2 + 1)
    sum_of_many = "{{" + " + ".join(["@session.Score"] * 200) + "}}"  # a long chain does not nest
    assert compile_template(sum_of_many).render(SESSION, {}, "") == "400"


def test_an_expression_problem_is_a_positioned_load_problem(tmp_path: Path) -> None:
    text = """\
    stories:
      s:
        steps:
          - id: a
            actions:
              - set_session: {Score: "{{(@session.Score || 0) + 1"}
              - message: 'You have {{ round(@session.Score, 1, 2) }} points'
              - message: x
                if: '@session.Score > 1 and (@message contains "a"'
              - message: "{{ @session.Score >= 3 }}"
    """
    assert problems(tmp_path, {"bot.yml": text}) == [
        "stories/bot.yml:6:35: bad template in set_session.Score: '{{' is never closed with '}}'",
        "stories/bot.yml:7:35: bad template in message: round() takes 1 or 2 arguments, not 3",
        "stories/bot.yml:9:41: bad condition in if: '(' is never closed with ')'",
        "stories/bot.yml:10:41: bad template in message: '>=' belongs in conditions (if: / unless:), "
        "not inside {{ }}",
    ]


def test_a_story_that_computes(tmp_path: Path) -> None:
    stories = load(
        tmp_path,
        """\
        stories:
          cart:
            triggers: [buy]
            steps:
              - id: ask
                actions:
                  - message: How many, at 2.50 each?
                next: add
              - id: add
                actions:
                  - set_session:
                      Items: "{{(@session.Items || 0) + @message}}"
                      Price: "{{round(@session.Items * 2.5 * 1.2, 2)}}"
                    if: "@message > 0 and @message <= 10"
                  - message: "{{@session.Items || 0}} items: {{@session.Price || 0}} with VAT."
                  - message: Give me a number from 1 to 10.
                    unless: "@message > 0 and @message <= 10"
                next: add
        """,
    )
    chat = Chat(stories)
    assert chat.say("buy") == ["How many, at 2.50 each?"]
    assert chat.say("3") == ["3 items: 9 with VAT."]
    assert chat.say("two") == ["3 items: 9 with VAT.", "Give me a number from 1 to 10."]
    assert chat.say(" 1.5 ") == ["4.5 items: 13.5 with VAT."]
    assert chat.say("11") == ["4.5 items: 13.5 with VAT.", "Give me a number from 1 to 10."]
    assert (chat.values["Items"], chat.values["Price"]) == ("4.5", "13.5")
