"""The terminal as a channel, for ``gateway chat``: replies printed as text, buttons as numbered choices."""

from __future__ import annotations

from collections.abc import Callable

from channels.base import Channel, Progress
from channels.text import button_by_number, numbered_choices
from gateway.core.schema import Button, ButtonPress, Reply


def render_text(reply: Reply) -> str:
    """A reply as plain text: the text, an image line, then the buttons as numbered choices."""
    lines = [reply.text] if reply.text else []
    if reply.image is not None:
        caption = f" — {reply.image.caption}" if reply.image.caption else ""
        lines.append(f"[image] {reply.image.url}{caption}")
    if reply.buttons:
        lines.append(numbered_choices(reply.buttons, template="[{n}] {title}", separator="  "))
    return "\n".join(lines)


class ConsoleChannel(Channel):
    name = "console"

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.last_buttons: tuple[Button, ...] = ()

    async def send(self, reply: Reply, progress: Progress | None = None) -> None:
        self.last_buttons = reply.buttons or self.last_buttons
        self.write(render_text(reply))

    def press(self, text: str) -> ButtonPress | None:
        """A bare number picks that button of the last reply that offered buttons."""
        button = button_by_number(text, self.last_buttons)
        if button is None:
            return None
        return ButtonPress(payload=button.payload, title=button.title)
