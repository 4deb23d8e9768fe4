"""A broadcast's start message runs its story like a trigger: a new session, in order with the user's
own messages; a story the stories no longer have starts nothing."""

from __future__ import annotations

from pathlib import Path

from gateway.core.schema import Inbound
from tests.support.engine import NOW, Chat, load

STORIES = """
stories:
  promo:
    steps:
      - id: offer
        actions:
          - message: 'Hi {{@user.Name || "there"}}, {{@message || "no text"}}: want the offer?'
            quick_replies: [Yes, No]
        next: answer
      - id: answer
        actions:
          - set_session: {Answer: "{{@message}}"}
          - message: "Noted: {{@session.Answer}} (city {{@session.City || 'unknown'}})"
  city:
    triggers: [city]
    steps:
      - id: ask
        actions:
          - set_session: {City: Paris}
          - message: Where do you live?
        next: ask
"""


def start(chat: Chat, story: str) -> list[str]:
    message = Inbound(
        id=f"broadcast:b1:{chat.count}", channel=chat.channel, chat="chat-1", user="+442071234567",
        kind="broadcast", story=story, sent_at=NOW,
    )  # fmt: skip
    chat.count += 1
    turn = chat.engine.handle(chat.session, chat.user, message, NOW + chat.count)
    chat.session = turn.session
    chat.turns.append(turn)
    assert turn.route == ("broadcast" if turn.replies else None)
    return [reply.text for reply in turn.replies]


def test_a_broadcast_starts_its_story_with_a_new_session(tmp_path: Path) -> None:
    chat = Chat(load(tmp_path, STORIES), user={"Name": "Ada"})
    assert chat.say("city") == ["Where do you live?"]
    assert chat.values == {"City": "Paris"}
    assert start(chat, "promo") == ["Hi Ada, no text: want the offer?"]
    assert chat.buttons == ["Yes", "No"] and chat.values == {}, "the waiting step's session is replaced"
    assert chat.press("Yes") == ["Noted: Yes (city unknown)"]


def test_a_broadcast_of_a_story_that_is_gone_starts_nothing(tmp_path: Path) -> None:
    chat = Chat(load(tmp_path, STORIES))
    chat.say("city")
    assert start(chat, "removed") == []
    assert chat.values == {"City": "Paris"}, "the conversation goes on as it was"
    assert "no longer have" in chat.turns[-1].warnings[0]
