"""The template language of STORIES.md § Templates: syntax, values, escapes and positioned errors."""

from __future__ import annotations

import pytest

from worker.engine.templates import Expr, Template, TemplateError, compile_template

SESSION = {"City": "Paris", "email": "ada@example.com", "Empty": "", "a_b-9": "named"}
USER = {"FirstName": "Ada", "firstname": "lower"}


def render(source: str, message: str = "hi there", escape: bool = False) -> str:
    return compile_template(source, escape).render(SESSION, USER, message)


def error(source: str) -> tuple[int, str]:
    with pytest.raises(TemplateError) as caught:
        compile_template(source)
    return caught.value.offset, caught.value.message


def test_both_delimiters_mean_the_same() -> None:
    assert render("{{@session.City}}") == render("<<@session.City>>") == "Paris"
    assert render("Hi {{@user.FirstName}} from <<@session.City>>!") == "Hi Ada from Paris!"


def test_message_is_the_text_being_handled() -> None:
    assert render("You said: {{@message}}", message="hello") == "You said: hello"


def test_first_alternative_set_and_not_empty_wins() -> None:
    assert render('Hello {{@user.FirstName || @session.email || "there"}}') == "Hello Ada"
    assert render('{{@user.Missing || @session.email || "there"}}') == "ada@example.com"
    assert render('{{@user.Missing || @session.Empty || "there"}}') == "there"


def test_no_alternative_set_gives_the_empty_string() -> None:
    assert render("[{{@user.Missing || @session.Empty}}]") == "[]"


def test_names_are_case_sensitive_and_allow_digits_underscore_dash() -> None:
    assert render("{{@user.FirstName}}/{{@user.firstname}}/{{@user.FIRSTNAME}}") == "Ada/lower/"
    assert render("{{@session.a_b-9}}") == "named"


def test_whitespace_inside_delimiters_is_free() -> None:
    assert render("{{   @session.City\t||\n'x'   }}") == "Paris"
    assert render("<<@session.City||'x'>>") == "Paris"


def test_quoted_strings_with_escapes() -> None:
    assert render(r'{{"say \"hi\""}}') == 'say "hi"'
    assert render(r"{{'it\'s'}}") == "it's"
    assert render(r'{{"back\\slash"}}') == "back\\slash"
    assert render("{{'}} and >> inside'}}") == "}} and >> inside"


def test_escaped_delimiters_are_literal() -> None:
    assert render(r"\{{@message}} and \<<@message>>") == "{{@message}} and <<@message>>"
    assert render("a }} b >> c") == "a }} b >> c"
    assert render(r"a \ b") == "a \\ b"


def test_a_substituted_value_is_never_parsed_again() -> None:
    typed = "{{@user.FirstName}} <<@session.City>> \\{{x}}"
    assert render("You said: {{@message}}", message=typed) == f"You said: {typed}"
    template = compile_template("{{@user.Email}}")
    assert template.render({}, {"Email": "{{@session.City}}"}, "") == "{{@session.City}}"


def test_html_escape_applies_to_substituted_values_only() -> None:
    out = render("<b>{{@message}}</b>", message="<script>&\"'", escape=True)
    assert out == "<b>&lt;script&gt;&amp;&quot;&#x27;</b>"
    assert render("{{@message}}", message="<i>", escape=True) == "&lt;i&gt;"  # a template of one expression


def test_compiled_once_into_parts() -> None:
    template = compile_template('Hi {{@user.FirstName || "you"}}, {{"constant"}}!')
    assert isinstance(template, Template)
    assert [isinstance(part, Expr) for part in template.parts] == [False, True, False]
    assert template.parts[2] == ", constant!"
    assert compile_template("plain").constant == "plain"


def test_render_tolerates_non_text_values() -> None:
    template = compile_template("{{@session.n}}")
    assert template.render({"n": 5}, {}, "") == "5"  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("source", "offset", "fragment"),
    [
        ("Hello {{@user.FirstName", 6, "never closed with '}}'"),
        ("Hello <<@message", 6, "never closed with '>>'"),
        ("x {{ }}", 2, "empty expression"),
        ("x {{@message>>", 12, "'{{' closes with '}}', not '>>'"),
        ("{{ FirstName }}", 3, "expected @session.NAME"),
        ("{{@foo.bar}}", 2, "unknown variable @foo"),
        ("{{@session}}", 10, "@session needs a name"),
        ("{{@user.}}", 8, "needs a name"),
        ("{{@message.text}}", 10, "@message has no fields"),
        ('{{"open}}', 2, 'never closed with "'),
        (r'{{"a\n"}}', 4, "unknown escape \\n"),
        ("{{@user.First Name}}", 14, "expected an operator or '}}'"),
        ("{{@user.A ||}}", 12, "expected @session.NAME"),
        ("ok \\{{ then {{@message", 12, "never closed"),
    ],
)
def test_malformed_expressions_give_the_offset(source: str, offset: int, fragment: str) -> None:
    found_offset, message = error(source)
    assert (found_offset, fragment in message) == (offset, True), message


def test_a_backslash_or_brace_right_before_an_expression_is_written_as_a_string() -> None:
    assert render('{{"\\\\"}}{{@message}} {{"{"}}{{@message}}}', message="x") == "\\x {x}"
