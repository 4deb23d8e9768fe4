"""The wire format shared by every role: one definition of what travels on the bus.

Every message is JSON with a schema version ``v`` and a ``type``; readers accept exactly the version
they know, so a mixed deployment fails loudly (the message is dead-lettered with the reason) instead
of misreading a field. See ``docs/messages.md`` for the documented format.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.core.errors import SchemaError

SCHEMA_VERSION = 1

Id = Annotated[str, Field(min_length=1, max_length=512)]


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """One user in one chat on one channel: the unit of order and of session state."""

    channel: str
    chat: str
    user: str

    def __str__(self) -> str:
        return f"{self.channel}/{self.chat}/{self.user}"


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_defaults=False).encode()


class Attachment(_Wire):
    kind: Literal["image", "audio", "video", "file"] = "file"
    url: str
    mime: str | None = None
    name: str | None = None


class ButtonPress(_Wire):
    """A button the user pressed: the payload the bot attached to it and the title it showed."""

    payload: str
    title: str | None = None


class Button(_Wire):
    title: str
    payload: str


class Image(_Wire):
    url: str
    caption: str | None = None


# The key of Inbound.meta / Reply.meta naming the serve instance that must deliver the replies (the web
# chat's: only that process holds the browser's socket).
INSTANCE_META = "instance"


class Inbound(_Wire):
    """One message from a user, normalized from whatever channel it came on."""

    v: Literal[1] = 1
    type: Literal["inbound"] = "inbound"
    id: Id  # unique and deterministic per channel message, e.g. "telegram:update:1234"
    channel: Id
    chat: Id
    user: Id
    channel_message_id: str = ""
    text: str = ""
    button: ButtonPress | None = None
    attachments: tuple[Attachment, ...] = ()
    sent_at: float = Field(default_factory=time.time)
    user_name: str | None = None
    # Channel-specific routing data a reply must carry back (a Slack thread, a web chat instance).
    meta: dict[str, str] = Field(default_factory=dict)
    # Set on a timer's firing (not a message of the user): the id of the timer, among the conversation's
    # pending timers, that falls due; ``sent_at`` is then its due time.
    timer: str | None = None
    # "broadcast": not the user's message but an operator's broadcast starting ``story`` for them, in
    # order with their messages (id "broadcast:<broadcast id>:<user>", so a broadcast starts it once).
    # "staff": a person's answer from the desk of a handed-over conversation (STORIES.md, "Handing over
    # to a person"), its author in ``user_name``; "handback": the desk hands the conversation back.
    kind: Literal["message", "broadcast", "staff", "handback"] = "message"
    story: str | None = None

    def to_json(self) -> bytes:
        """A user's message is written without ``kind``, ``story`` and ``timer``, as before they existed, so
        that workers of the previous release still read every message but a broadcast's and a firing's."""
        left_out = {"kind", "story"} if self.kind == "message" else set()
        if self.timer is None:
            left_out.add("timer")
        if left_out:
            return self.model_dump_json(exclude=left_out).encode()
        return super().to_json()

    @model_validator(mode="after")
    def _story_of_a_broadcast(self) -> Inbound:
        if (self.kind == "broadcast") != (self.story is not None):
            raise ValueError("a broadcast names the story it starts, and only a broadcast does")
        return self

    @property
    def conversation(self) -> ConversationKey:
        return ConversationKey(self.channel, self.chat, self.user)


class Reply(_Wire):
    """One message from the bot to one conversation; a channel renders it natively."""

    v: Literal[1] = 1
    type: Literal["reply"] = "reply"
    id: Id  # "<inbound id>/r<n>": deterministic, so a re-published reply is recognised and dropped
    in_reply_to: str = ""
    channel: Id
    chat: Id
    user: Id
    text: str = ""
    image: Image | None = None
    buttons: tuple[Button, ...] = ()
    meta: dict[str, str] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)
    # Set on a person's answer from a support desk: the name it is shown with (the web chat labels it).
    author: str | None = None

    def to_json(self) -> bytes:
        """Written without ``author`` when it is None, as before it existed (deliverers of the previous
        release read every reply but a person's)."""
        if self.author is None:
            return self.model_dump_json(exclude={"author"}).encode()
        return super().to_json()

    @property
    def conversation(self) -> ConversationKey:
        return ConversationKey(self.channel, self.chat, self.user)


class EmailJob(_Wire):
    """One rendered email for the mailer; headers are already free of CR/LF."""

    v: Literal[1] = 1
    type: Literal["email"] = "email"
    id: Id  # "<inbound id>/e<n>"; also the basis of the Message-ID
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    reply_to: str | None = None
    subject: str = ""
    text: str = ""
    html: str | None = None
    channel: str = ""
    chat: str = ""
    user: str = ""
    created_at: float = Field(default_factory=time.time)
    # A support ticket's later messages: the id of the job that opened the ticket. The mailer threads the
    # email under it (In-Reply-To and References name that job's Message-ID).
    thread: str | None = None

    def to_json(self) -> bytes:
        """Written without ``thread`` when it is None, as before it existed."""
        if self.thread is None:
            return self.model_dump_json(exclude={"thread"}).encode()
        return super().to_json()


def parse(body: bytes | str, expect: type[Any]) -> Any:
    """Parse one bus message as ``expect``; any problem is a :class:`SchemaError` with the reason."""
    try:
        return expect.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "message"
        raise SchemaError(f"{expect.__name__}: {where}: {first.get('msg')}") from None


def parse_inbound(body: bytes | str) -> Inbound:
    result: Inbound = parse(body, Inbound)
    return result


def parse_reply(body: bytes | str) -> Reply:
    result: Reply = parse(body, Reply)
    return result


def parse_email(body: bytes | str) -> EmailJob:
    result: EmailJob = parse(body, EmailJob)
    return result
