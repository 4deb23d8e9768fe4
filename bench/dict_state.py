"""The state of the baseline bots: the story engine on dicts, gone when the process ends."""

from __future__ import annotations

from pathlib import Path

from gateway.core.schema import Inbound, Reply
from gateway.core.store.base import Session
from worker.engine import Engine, load_stories


class DictStories:
    def __init__(self, stories: Path) -> None:
        self.engine = Engine(load_stories(stories))
        self.sessions: dict[str, Session | None] = {}
        self.users: dict[str, dict[str, str]] = {}

    def handle(self, inbound: Inbound) -> list[Reply]:
        """Run one message through the stories; the replies to send."""
        attributes = self.users.setdefault(inbound.user, {})
        turn = self.engine.handle(self.sessions.get(inbound.chat), attributes, inbound, 0.0)
        self.sessions[inbound.chat] = turn.session
        for name, value in turn.user_changes.items():
            if value is None:
                attributes.pop(name, None)
            else:
                attributes[name] = value
        return list(turn.replies)
