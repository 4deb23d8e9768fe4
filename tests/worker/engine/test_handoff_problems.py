"""A malformed ``handoff`` action, or a step that would go on after one: every problem at its
``FILE:LINE:COL``, all reported at once."""

from __future__ import annotations

from pathlib import Path

from tests.support.engine import load, problems
from worker.engine.model import HandOff


def one(tmp_path: Path, text: str) -> list[str]:
    return problems(tmp_path, {"bot.yml": text})


def test_every_bad_field_of_a_handoff(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        stories:
          s:
            triggers: [go]
            steps:
              - id: a
                actions:
                  - handoff: {to: support@example.com}
                    if: '@session.a'
                  - handoff: {desk: phone, to: support@example.com}
                    if: '@session.b'
                  - handoff: {desk: slack}
                    if: '@session.c'
                  - handoff: {desk: email, to: 'support@example.com, not an address', channel: x}
                    if: '@session.d'
                  - handoff: {desk: slack, to: '#support', subject: Help}
                    if: '@session.e'
                  - handoff: {desk: slack, to: c0123}
                    if: '@session.f'
                  - handoff: {desk: email, to: a@example.com, until: 45d}
                    if: '@session.g'
                  - handoff: {desk: email, to: a@example.com, until: 0s}
                    if: '@session.h'
                  - handoff: {desk: email, to: a@example.com, until: soon}
                    if: '@session.i'
                  - handoff: {desk: email, to: a@example.com, resume: csatt}
                    if: '@session.j'
                  - handoff: {desk: email, to: a@example.com, resume: two words}
                    if: '@session.k'
                  - handoff: {desk: email, to: a@example.com, summary: '{{@session.x', subject: '{{ }}'}
                    if: '@session.l'
                  - handoff: email
                    if: '@session.m'
                  - handoff: {desk: [email], to: {a: b}}
          csat:
            steps:
              - id: rate
                actions:
                  - message: How did we do?
        """,
    )
    assert found == [
        "stories/bot.yml:7:22: handoff needs 'desk': email or slack",
        "stories/bot.yml:9:29: handoff desk must be email or slack, not 'phone'",
        "stories/bot.yml:11:22: handoff needs 'to' (a Slack channel id such as C0123ABCD)",
        "stories/bot.yml:13:40: handoff to: 'not an address' is not an email address",
        "stories/bot.yml:13:79: unknown key 'channel' in handoff "
        "(expected one of: desk, to, subject, summary, until, resume)",
        "stories/bot.yml:15:40: handoff to: '#support' is not a Slack channel id (C, G or D and capital "
        "letters or digits, such as C0123ABCD; not a #name)",
        "stories/bot.yml:15:52: 'subject' belongs to an email desk; a Slack thread has none",
        "stories/bot.yml:17:40: handoff to: 'c0123' is not a Slack channel id (C, G or D and capital "
        "letters or digits, such as C0123ABCD; not a #name)",
        "stories/bot.yml:19:62: until '45d' is out of range: a handoff lasts from 1s to 30d",
        "stories/bot.yml:21:62: until '0s' is out of range: a handoff lasts from 1s to 30d",
        "stories/bot.yml:23:62: bad duration 'soon': use a number with s, m, h or d, such as 24h",
        "stories/bot.yml:25:63: resume: there is no story 'csatt'; did you mean 'csat'?",
        "stories/bot.yml:27:63: resume story 'two words' may only use letters, digits, '_' and '-'",
        "stories/bot.yml:29:65: bad template in handoff summary: '{{' is never closed with '}}'",
        "stories/bot.yml:29:90: bad template in handoff subject: empty expression {{}}; write one such as "
        "{{@message}}",
        "stories/bot.yml:31:22: handoff must be a mapping (NAME: value)",
        "stories/bot.yml:33:29: handoff desk must be text",
        "stories/bot.yml:33:42: handoff to must be text",
    ]


def test_nothing_may_follow_an_unconditional_handoff_and_its_step_cannot_wait(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        stories:
          s:
            triggers: [go]
            steps:
              - id: a
                actions:
                  - message: Pick one
                    quick_replies: [{title: Yes, goto: b}, No]
                  - handoff: {desk: email, to: desk@example.com}
                  - message: never said
                  - goto: b
                next: b
              - id: b
                actions:
                  - message: b
        """,
    )
    assert found == [
        "stories/bot.yml:8:13: quick replies before an unconditional handoff are never answered by the bot: "
        "the conversation goes to a person",
        "stories/bot.yml:10:13: actions after an unconditional handoff never run: move them before it, or "
        "give the handoff an 'if' or 'unless'",
        "stories/bot.yml:12:9: 'next' is never used: the step hands the conversation to a person (handoff) "
        "and does not wait",
    ]


def test_a_conditional_handoff_may_be_followed_and_its_step_may_wait(tmp_path: Path) -> None:
    stories = load(
        tmp_path,
        """\
        stories:
          s:
            triggers: [go]
            steps:
              - id: a
                actions:
                  - handoff:
                      desk: email
                      to: "{{@user.Desk}}"
                      subject: 'Chat with {{@user.FirstName || "a user"}}'
                    unless: '@user.Desk == ""'
                  - message: Nobody is here; ask me.
                    quick_replies: [{title: Again, goto: a}]
                next: a
              - id: b
                actions:
                  - handoff: {desk: slack, to: "{{@user.Channel}}", until: 1.5h, resume: s}
        """,
    )
    first, second = stories.stories["s"].steps["a"].actions[0], stories.stories["s"].steps["b"].actions[0]
    assert isinstance(first, HandOff) and isinstance(second, HandOff)
    assert (first.desk, first.to.source, first.summary, first.until.seconds, first.resume) == (
        "email", "{{@user.Desk}}", None, 86400.0, None
    )  # fmt: skip
    assert first.subject is not None and len(first.when) == 1
    assert (second.desk, second.subject, second.until.seconds, second.until.written, second.resume) == (
        "slack", None, 5400.0, "1.5h", "s"
    )  # fmt: skip
