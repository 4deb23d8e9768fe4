"""Helpers for engine tests: write stories to a folder, and chat through Engine.handle like a worker."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

from gateway.core.schema import Button, ButtonPress, EmailJob, Inbound
from gateway.core.store.base import Session
from worker.engine import Engine, Stories, StoriesError, Turn, load_stories
from worker.engine.calls import HttpAnswer, HttpRequest

NOW = 1_700_000_000.0


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return folder


def load(tmp_path: Path, text: str, emails: dict[str, str] | None = None) -> Stories:
    folder = write(tmp_path / "stories", {"bot.yml": text})
    emails_dir = write(tmp_path / "emails", emails or {})
    return load_stories(folder, emails_dir)


def problems(tmp_path: Path, files: dict[str, str], emails: dict[str, str] | None = None) -> list[str]:
    """The problem lines, with the folder prefix removed ("bot.yml:3:5: ...")."""
    folder = write(tmp_path / "stories", files)
    emails_dir = write(tmp_path / "emails", emails or {})
    try:
        load_stories(folder, emails_dir)
    except StoriesError as exc:
        return [str(p).replace(f"{tmp_path}/", "") for p in exc.problems]
    raise AssertionError("the stories loaded without problems")


Api = Callable[[HttpRequest], HttpAnswer]


def no_api(request: HttpRequest) -> HttpAnswer:
    raise AssertionError(f"unexpected call {request}")


class Chat:
    """One conversation: threads the session and the user attributes between turns like the worker, and
    answers the turns' http calls with ``api`` (recording each request in ``requests``)."""

    def __init__(
        self,
        stories: Stories,
        channel: str = "webchat",
        user: dict[str, str] | None = None,
        *,
        api: Api = no_api,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = Engine(stories, secrets)
        self.api = api
        self.requests: list[HttpRequest] = []
        self.channel = channel
        self.session: Session | None = None
        self.user: dict[str, str] = dict(user or {})
        self.turns: list[Turn] = []
        self.emails: list[EmailJob] = []
        self.count = 0

    def send(self, text: str = "", payload: str | None = None, title: str | None = None) -> Turn:
        button = ButtonPress(payload=payload, title=title) if payload is not None else None
        message = Inbound(
            id=f"{self.channel}:{self.count}", channel=self.channel, chat="chat-1", user="+442071234567",
            text=text, button=button, meta={"thread": "t1"}, sent_at=NOW,
        )  # fmt: skip
        self.count += 1
        answers: list[HttpAnswer] = []
        turn = self.engine.handle(self.session, self.user, message, NOW + self.count)
        while turn.call is not None:
            self.requests.append(turn.call)
            answers.append(self.api(turn.call))
            turn = self.engine.handle(self.session, self.user, message, NOW + self.count, answers)
        self.session = turn.session
        for name, value in turn.user_changes.items():
            if value is None:
                self.user.pop(name, None)
            else:
                self.user[name] = value
        self.turns.append(turn)
        self.emails.extend(turn.emails)
        return turn

    def say(self, text: str = "", payload: str | None = None, title: str | None = None) -> list[str]:
        """The texts of the bot's replies to ``text`` (or to a pressed button)."""
        return [reply.text for reply in self.send(text, payload, title).replies]

    def press(self, title: str) -> list[str]:
        """Press the offered button with this title (by its payload, as a channel would)."""
        button = self.button(title)
        return self.say(payload=button.payload, title=button.title)

    def button(self, title: str) -> Button:
        assert self.session is not None
        for button in self.session.buttons:
            if button.title == title:
                return button
        raise AssertionError(f"no button {title!r} in {[b.title for b in self.session.buttons]}")

    @property
    def values(self) -> dict[str, str]:
        return dict(self.session.values) if self.session is not None else {}

    @property
    def buttons(self) -> list[str]:
        return [b.title for b in self.session.buttons] if self.session is not None else []
