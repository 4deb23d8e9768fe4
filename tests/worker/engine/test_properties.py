"""Property tests: templates and conditions either compile or fail with a position, rendering is literal, and
no value (of the session, the user or the message) makes a compiled expression raise or grow unbounded."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from worker.engine import StoriesError, load_stories
from worker.engine.conditions import compile_condition
from worker.engine.expressions.limits import MAX_VALUE
from worker.engine.templates import TemplateError, compile_template

TOKENS = ["{{", "}}", "<<", ">>", "\\{{", "\\<<", "@session.", "@user.", "@message", "@", ".", "||", "==",
          "!=", '"', "'", "\\", "\\\"", " ", "\n", "Name", "x-1", "}", "{", "<", ">", "+", "-", "*", "/", "%",
          "(", ")", ",", "<=", ">=", "1", "2.5", "0", " and ", " or ", "not ", " contains ", "upper(",
          "round(", "min(", "length(", "trim(", "lower(", "max("]  # fmt: skip
template_like = st.lists(st.sampled_from(TOKENS) | st.text(max_size=3), max_size=25).map("".join)
any_text = st.text() | template_like
names = st.text("abcXYZ09_-", min_size=1, max_size=6)
values = st.dictionaries(names, st.text(max_size=20) | template_like, max_size=6)


DEEP = ["{{" + "(" * 500 + "1" + ")" * 500 + "}}", "{{" + "-" * 2000 + "1}}", "{{" + "upper(" * 500 + "}}",
        "{{" + "1+" * 5000 + "1}}", "not " * 2000 + "@message", "(" * 2000,
        "{{'" + "x" * 100_000]  # fmt: skip


@given(any_text)
@example(DEEP[0])
@example(DEEP[1])
@example(DEEP[2])
@example(DEEP[3])
@example(DEEP[6])
def test_any_string_compiles_or_gives_a_positioned_error(source: str) -> None:
    try:
        template = compile_template(source)
    except TemplateError as exc:
        assert 0 <= exc.offset <= len(source)
        assert exc.message
    else:
        assert template.render({}, {}, "") is not None


@given(any_text)
@example(DEEP[4])
@example(DEEP[5])
def test_any_string_is_a_condition_or_a_positioned_error(source: str) -> None:
    try:
        compile_condition(source)
    except TemplateError as exc:
        assert 0 <= exc.offset <= len(source)


@given(template_like, values, values, st.text() | template_like)
def test_rendering_never_raises(
    source: str, session: dict[str, str], user: dict[str, str], message: str
) -> None:
    try:
        template = compile_template(source)
    except TemplateError:
        return
    assert isinstance(template.render(session, user, message), str)
    assert isinstance(compile_template(source, escape=True).render(session, user, message), str)


# A template built from known parts, rendered against an oracle: substituted values come out verbatim.

Alternative = tuple[str, str]  # ("session" | "user" | "message" | "text", name or text)
alternatives = st.lists(
    st.tuples(st.sampled_from(["session", "user"]), names)
    | st.just(("message", ""))
    | st.tuples(st.just("text"), st.text(max_size=8)),
    min_size=1,
    max_size=4,
)
segments = st.lists(st.text(max_size=10) | alternatives, max_size=8)


def quote(text: str, mark: str) -> str:
    return mark + text.replace("\\", "\\\\").replace(mark, "\\" + mark) + mark


def write_template(parts: list[str | list[Alternative]], delimiters: tuple[str, str]) -> str:
    """Template source for ``parts``; every '{', '<' and '\\' of literal text goes through a quoted string."""
    out = []
    opener, closer = delimiters
    for part in parts:
        if isinstance(part, str):
            for char in part:
                out.append(f"{opener}{quote(char, chr(34))}{closer}" if char in "{<\\" else char)
            continue
        written = []
        for kind, name in part:
            written.append(
                quote(name, "'") if kind == "text" else "@message" if kind == "message" else f"@{kind}.{name}"
            )
        out.append(opener + " || ".join(written) + closer)
    return "".join(out)


def oracle(
    parts: list[str | list[Alternative]], session: dict[str, str], user: dict[str, str], message: str
) -> str:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        for kind, name in part:
            value = {"session": session.get(name), "user": user.get(name), "message": message, "text": name}[
                kind
            ]
            if value:
                out.append(value)
                break
    return "".join(out)


@given(segments, values, values, st.text() | template_like, st.sampled_from([("{{", "}}"), ("<<", ">>")]))
def test_rendering_substitutes_values_verbatim_and_never_reexpands(
    parts: list[str | list[Alternative]],
    session: dict[str, str],
    user: dict[str, str],
    message: str,
    delimiters: tuple[str, str],
) -> None:
    template = compile_template(write_template(parts, delimiters))
    assert template.render(session, user, message) == oracle(parts, session, user, message)


# At load time: any string written as a message gives a template problem at its exact line and column.


def yaml_double_quoted(value: str) -> tuple[str, list[int]]:
    """``value`` as a YAML double-quoted scalar, and where each of its characters starts in it."""
    out = ['"']
    starts = []
    for char in value:
        starts.append(sum(len(piece) for piece in out))
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif (
            code < 0x20
            or 0x7F <= code <= 0x9F
            or 0xD800 <= code <= 0xDFFF
            or char in "\ufeff\ufffe\uffff\u2028\u2029"
        ):
            out.append(f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out), starts


PREFIX = "stories:\n  s:\n    steps:\n      - id: a\n        actions:\n          - message: "


@settings(max_examples=60, deadline=None)
@given(any_text)
@example("{{@user.")  # the problem is just past the last character
@example('Say "{{ \\"hi\\" || @x }}"\t\u00e9')
def test_a_template_problem_is_reported_at_its_character(source: str) -> None:
    try:
        compile_template(source)
        expected = None
    except TemplateError as exc:
        expected = exc
    scalar, starts = yaml_double_quoted(source)
    with tempfile.TemporaryDirectory() as folder:
        stories = Path(folder) / "stories"
        stories.mkdir()
        (stories / "bot.yml").write_text(PREFIX + scalar + "\n")
        try:
            load_stories(stories)
        except StoriesError as error:
            assert expected is not None, str(error)
            [problem] = error.problems
            column = len("          - message: ") + 1 + [*starts, len(scalar) - 1][expected.offset]
            assert (problem.line, problem.col) == (6, column)
            assert problem.message == f"bad template in message: {expected.message}"
        else:
            assert expected is None


# Run time: whatever the values, every compiled expression and condition gives text (or a truth) and never
# raises; a computed value is never longer than MAX_VALUE characters.

EXPRESSIONS = [
    "{{(@session.Score || 0) + 1}}", "{{@session.a + @user.b - @message}}", "{{@session.a * @session.b}}",
    "{{@session.a / @session.b}}", "{{@session.a % @user.b}}", "{{-@message}}", "{{round(@session.a)}}",
    "{{round(@session.a, @session.b)}}", "{{round(@message, @message)}}", "{{min(@session.a, @user.b, 3)}}",
    "{{max(@message, @session.a)}}", "{{upper(@message)}}", "{{lower(@session.a)}}", "{{trim(@user.b)}}",
    "{{length(@message) * length(@session.a)}}", "{{upper(lower(upper(@message))) || 'x'}}",
    "{{@session.a / 0 || 'none'}}", "{{round(@session.a * @session.a * @session.a, -@session.b)}}",
]  # fmt: skip
CONDITIONS = [
    "@session.a == @session.b", "@session.a != @message", '@message == "yes"', "@message == 8",
    "@session.a < @session.b", "@user.b >= @message", "@message contains @session.a", '@message contains "é"',
    "not (@session.a > 1 and @session.b <= 2) or @message", "(@session.a + 1) * 2 > @user.b",
    "upper(@message) == lower(@session.a)", "length(@message) > 10 and round(@session.a, 2) == @session.b",
]  # fmt: skip
COMPILED = [compile_template(source) for source in EXPRESSIONS]
ESCAPED = [compile_template(source, escape=True) for source in EXPRESSIONS]
TESTS = [compile_condition(source) for source in CONDITIONS]

SPECIAL = ["0", "-0", "1e5", "NaN", "Infinity", "-inf", "1" + "0" * 39, "9" * 40, "0." + "0" * 88 + "1", "٣",
           "1000000", "-1000000", "1E+999999", "ß" * 3, "İ", "ﬃ", "\u0000", "\ud800"]  # fmt: skip
number_like = st.from_regex(r"\s*-?[0-9]{0,60}(\.[0-9]{0,95})?\s*", fullmatch=True) | st.sampled_from(SPECIAL)
hostile = st.text() | number_like | st.integers().map(str) | st.decimals(allow_nan=True).map(str)
hostile_values = st.fixed_dictionaries({}, optional={"a": hostile, "b": hostile, "Score": hostile})


@settings(max_examples=300)
@given(hostile_values, hostile_values, hostile)
@example({"a": "9" * 40, "b": "-88"}, {"b": "1" + "0" * 39}, "9" * 40)
@example({"a": "0." + "0" * 87 + "1", "b": "88"}, {"b": "-0.0000001"}, "-" + "9" * 40)
@example({"a": "é" * 1_048_576}, {"b": "ß" * 70_000}, "ﬃ" * 1_048_576)  # 1 MiB values
@example({"a": "7", "b": "1000000"}, {}, "1000000")
def test_no_value_makes_an_expression_raise(
    session: dict[str, str], user: dict[str, str], message: str
) -> None:
    for template, escaped in zip(COMPILED, ESCAPED, strict=True):
        value = template.render(session, user, message)
        assert isinstance(value, str)
        assert len(value) <= MAX_VALUE
        assert isinstance(escaped.render(session, user, message), str)
    for condition in TESTS:
        assert isinstance(condition.holds(session, user, message), bool)
