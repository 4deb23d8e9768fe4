"""Buttons as numbered choices, shared by the console and SMS."""

from __future__ import annotations

from channels.console import ConsoleChannel, render_text
from channels.text import button_by_number, numbered_choices
from gateway.core.schema import Button, ButtonPress, Reply

BUTTONS = (
    Button(title="Paris", payload="p"),
    Button(title="London", payload="l"),
    Button(title="Else", payload="e"),
)


def test_numbered_choices() -> None:
    assert numbered_choices(BUTTONS) == "1. Paris 2. London 3. Else"
    assert (
        numbered_choices(BUTTONS, template="[{n}] {title}", separator="  ")
        == "[1] Paris  [2] London  [3] Else"
    )
    assert numbered_choices(()) == ""


def test_button_by_number() -> None:
    assert button_by_number(" 2 ", BUTTONS) == BUTTONS[1]
    for text in ("0", "4", "two", "", "1.", "²", "-1"):
        assert button_by_number(text, BUTTONS) is None


async def test_console_keeps_its_rendering() -> None:
    lines: list[str] = []
    console = ConsoleChannel(lines.append)
    await console.send(
        Reply(id="c/r0", channel="console", chat="c", user="u", text="Where?", buttons=BUTTONS)
    )
    assert lines == ["Where?\n[1] Paris  [2] London  [3] Else"]
    assert console.press("3") == ButtonPress(payload="e", title="Else")
    assert console.press("9") is None
    assert render_text(Reply(id="c/r1", channel="console", chat="c", user="u", text="hi")) == "hi"
