"""Property tests: templates either compile or fail with a position, and rendering is literal and total."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from worker.engine import StoriesError, load_stories
from worker.engine.conditions import compile_condition
from worker.engine.templates import TemplateError, compile_template

TOKENS = ["{{", "}}", "<<", ">>", "\\{{", "\\<<", "@session.", "@user.", "@message", "@", ".", "||", "==",
          "!=", '"', "'", "\\", "\\\"", " ", "\n", "Name", "x-1", "}", "{", "<", ">"]  # fmt: skip
template_like = st.lists(st.sampled_from(TOKENS) | st.text(max_size=3), max_size=25).map("".join)
any_text = st.text() | template_like
names = st.text("abcXYZ09_-", min_size=1, max_size=6)
values = st.dictionaries(names, st.text(max_size=20) | template_like, max_size=6)


@given(any_text)
def test_any_string_compiles_or_gives_a_positioned_error(source: str) -> None:
    try:
        template = compile_template(source)
    except TemplateError as exc:
        assert 0 <= exc.offset <= len(source)
        assert exc.message
    else:
        assert template.render({}, {}, "") is not None


@given(any_text)
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
