"""Malformed stories: every problem is reported at once, each as ``FILE:LINE:COL: message``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.engine import problems, write
from worker.engine import StoriesError, load_stories

OK_STORY = """\
stories:
  ok:
    steps:
      - id: one
        actions:
          - message: fine
"""


def one(tmp_path: Path, text: str, emails: dict[str, str] | None = None) -> list[str]:
    return problems(tmp_path, {"bot.yml": text}, emails)


def test_unknown_keys_everywhere_with_a_hint(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        bots: {}
        stories:
          s:
            trigers: [x]
            steps:
              - id: a
                action: []
                actions:
                  - message: hi
                    quick_replys: [x]
                  - email: {to: a@example.com, subject: s, body: b, bcc: x@example.com}
                  - message: pick
                    quick_replies: [{title: A, gotoo: a}]
        """,
    )
    assert found == [
        "stories/bot.yml:1:1: unknown key 'bots' in the file; did you mean 'bot'?",
        "stories/bot.yml:4:5: unknown key 'trigers' in story 's'; did you mean 'triggers'?",
        "stories/bot.yml:7:9: unknown key 'action' in a step; did you mean 'actions'?",
        "stories/bot.yml:10:13: unknown key 'quick_replys' in an action; did you mean 'quick_replies'?",
        "stories/bot.yml:11:61: unknown key 'bcc' in email; did you mean 'cc'?",
        "stories/bot.yml:13:40: unknown key 'gotoo' in a quick reply; did you mean 'goto'?",
    ]


def test_wrong_types(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        bot: [session_ttl]
        stories:
          s:
            triggers: help
            steps:
              - id: a
                actions:
                  - message: {text: hi}
                  - set_session: [a, b]
                  - goto: [b]
              - id: b
                actions: go
              - just a string
        """,
    )
    assert found == [
        "stories/bot.yml:1:6: bot must be a mapping (NAME: value)",
        "stories/bot.yml:4:15: triggers must be a list",
        "stories/bot.yml:8:22: message must be text",
        "stories/bot.yml:9:26: set_session must be a mapping (NAME: value)",
        "stories/bot.yml:10:19: goto step must be text",
        "stories/bot.yml:12:18: actions must be a list",
        "stories/bot.yml:13:9: a step must be a mapping (NAME: value)",
    ]


def test_duplicate_ids_and_keys(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "a.yml": OK_STORY,
            "b.yml": """\
            stories:
              ok:
                steps: [{id: x}]
              other:
                steps:
                  - id: x
                  - id: x
                triggers: [a]
                triggers: [b]
            """,
        },
    )
    assert found == [
        "stories/b.yml:2:3: duplicate story id 'ok'; it is already defined at stories/a.yml:2:3",
        "stories/b.yml:7:13: duplicate step id 'x' in story 'other'; the first is at stories/b.yml:6:9",
        "stories/b.yml:9:5: duplicate key 'triggers' in story 'other'",
    ]


def test_a_duplicate_step_still_has_its_contents_checked(tmp_path: Path) -> None:
    """Issue 11, point 4: one run shows every problem, the duplicate step's own included."""
    found = one(
        tmp_path,
        """\
        stories:
          s:
            steps:
              - id: a
                actions:
                  - message: first
              - id: a
                actions:
                  - jump: nowhere
                  - shout: loud
                next: missing
        """,
    )
    assert found == [
        "stories/bot.yml:7:13: duplicate step id 'a' in story 's'; the first is at stories/bot.yml:4:9",
        "stories/bot.yml:9:19: jump: there is no story 'nowhere'",
        "stories/bot.yml:10:13: unknown key 'shout' in an action (expected one of: message, image, "
        "set_session, set_user, email, goto, jump, http, follow_up, handoff, quick_replies, caption, if, "
        "unless)",
        "stories/bot.yml:10:13: an action needs one of message, image, set_session, set_user, email, goto, "
        "jump, http, follow_up, handoff",
        "stories/bot.yml:11:15: story 's' has no step 'missing'",
    ]


def test_dangling_targets(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        bot:
          fallback: nowhere
        stories:
          s:
            steps:
              - id: start
                actions:
                  - goto: strat
                    if: "@message"
                  - jump: suport
                    if: "@message"
                  - message: pick
                    quick_replies: [{title: A, goto: gone}, {title: B, jump: gone}]
                next: missing
          support:
            steps: [{id: a}]
        """,
    )
    assert found == [
        "stories/bot.yml:2:13: fallback: there is no story 'nowhere'",
        "stories/bot.yml:8:19: story 's' has no step 'strat'; did you mean 'start'?",
        "stories/bot.yml:10:19: jump: there is no story 'suport'; did you mean 'support'?",
        "stories/bot.yml:13:46: story 's' has no step 'gone'",
        "stories/bot.yml:13:70: jump: there is no story 'gone'",
        "stories/bot.yml:14:15: story 's' has no step 'missing'",
    ]


def test_bad_durations_and_regular_expressions(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        bot: {session_ttl: 30 minutes}
        stories:
          s:
            session_ttl: 0s
            triggers: ["re:^(unclosed", "re:", "", 're:a{2,1}']
            steps: [{id: a}]
        """,
    )
    assert found == [
        "stories/bot.yml:1:20: bad duration '30 minutes': use a number with s, m, h or d, such as 30m",
        "stories/bot.yml:4:18: bad duration '0s': it must be more than zero",
        "stories/bot.yml:5:21: bad regular expression: missing ), unterminated subpattern",
        "stories/bot.yml:5:33: empty regular expression after 're:'",
        "stories/bot.yml:5:40: empty trigger",
        "stories/bot.yml:5:50: bad regular expression: min repeat greater than max repeat",
    ]


def test_bad_templates_are_positioned_inside_the_scalar(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        stories:
          s:
            steps:
              - id: a
                actions:
                  - message: Hello {{@user.First Name}}
                  - message: 'It''s {{@foo}}'
                  - message: "Tab\\there {{@message.x}}"
                  - message: |
                      First line
                        second {{ }}
                  - message: plain
                      continued {{@nope}}
                  - message: >
                      folded {{@nope}}
                  - set_user: {Name: "{{@message"}
        """,
    )
    assert found == [
        "stories/bot.yml:6:42: bad template in message: expected an operator or '}}'",
        "stories/bot.yml:7:31: bad template in message: unknown variable @foo "
        "(use @session.NAME, @user.NAME or @message)",
        "stories/bot.yml:8:43: bad template in message: @message has no fields; use @message alone",
        "stories/bot.yml:11:24: bad template in message: empty expression {{}}; "
        "write one such as {{@message}}",
        "stories/bot.yml:13:27: bad template in message: unknown variable @nope "
        "(use @session.NAME, @user.NAME or @message)",
        "stories/bot.yml:14:22: bad template in message: unknown variable @nope "
        "(use @session.NAME, @user.NAME or @message)",
        "stories/bot.yml:16:31: bad template in set_user.Name: '{{' is never closed with '}}'",
    ]


def test_bad_conditions(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        stories:
          s:
            steps:
              - id: a
                actions:
                  - message: x
                    if: '@session.City = "Paris"'
                  - message: y
                    unless: "{{@message}}"
                  - message: z
                    if: [a]
        """,
    )
    assert found == [
        "stories/bot.yml:7:32: bad condition in if: '=' is not an operator; compare with '=='",
        "stories/bot.yml:9:22: bad condition in unless: write conditions without {{ }}, "
        "e.g. '@session.City == \"Paris\"'",
        "stories/bot.yml:11:17: if must be a condition written as text, such as '@session.City == \"Paris\"'",
    ]


def test_bad_email_fields(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        stories:
          s:
            steps:
              - id: a
                actions:
                  - email: {to: "ops@example.com, not an address", subject: s, body: b}
                  - email: {to: a@example.com, body: b}
                  - email: {to: a@example.com, subject: s}
                  - email: {to: a@example.com, subject: s, body: b, body_file: t.txt}
                  - email: {to: a@example.com, subject: s, body_file: missing.txt}
                  - email: {to: a@example.com, subject: s, body_file: /etc/passwd}
                  - email: {to: a@example.com, subject: s, body_file: bad.txt, reply_to: "x@"}
                  - email: {to: "{{@user.Email}}", cc: "{{@user.Boss", subject: s, body: b}
        """,
        emails={"bad.txt": "line one\nsee {{@user.Name"},
    )
    assert found == [
        "emails/bad.txt:2:5: bad template: '{{' is never closed with '}}'",
        "stories/bot.yml:6:25: email to: 'not an address' is not an email address",
        "stories/bot.yml:7:20: email needs 'subject'",
        "stories/bot.yml:8:20: email needs 'body' (or 'body_file')",
        "stories/bot.yml:9:61: email has both 'body' and 'body_file'; keep one",
        "stories/bot.yml:10:63: body_file: no such file 'emails/missing.txt'",
        "stories/bot.yml:11:63: body_file must name a file inside the emails folder emails",
        "stories/bot.yml:12:82: email reply_to: 'x@' is not an email address",
        "stories/bot.yml:13:49: bad template in email cc: '{{' is never closed with '}}'",
    ]


def test_files_that_are_not_stories(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "stories", {"a.yml": OK_STORY, "empty.yml": "# nothing yet\n", "list.yaml": "- a\n"}
    )
    (folder / "binary.yml").write_bytes(b"stories:\n  s: \xff\xfe\n")
    (folder / "broken.yml").write_text("stories:\n  s: [a, b\n  t: 1\n")
    (folder / "tabs.yml").write_text("stories:\n\t- x\n")
    (folder / "notes.txt").write_text("not a stories file: ignored")
    with pytest.raises(StoriesError) as caught:
        load_stories(folder, tmp_path / "emails")
    found = [str(p).replace(f"{tmp_path}/", "") for p in caught.value.problems]
    assert found == [
        "stories/binary.yml:2:6: not UTF-8 text (is this a YAML file?)",
        "stories/broken.yml:3:4: not valid YAML: "
        "while parsing a flow sequence; did not find expected ',' or ']'",
        "stories/empty.yml:1:1: the file is empty; expected 'stories:' (and 'bot:')",
        "stories/list.yaml:1:1: the file must be a mapping (NAME: value)",
        "stories/tabs.yml:2:1: not valid YAML: while scanning for the next token; "
        "found character that cannot start any token",
    ]


def test_a_story_with_no_steps(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        stories:
          a: {triggers: [x]}
          b:
            steps: []
          c:
            steps:
        """,
    )
    assert found == [
        "stories/bot.yml:2:3: story 'a' has no steps",
        "stories/bot.yml:4:5: story 'b' has no steps",
        "stories/bot.yml:6:5: story 'c' has no steps",
    ]


def test_bot_more_than_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path, {"a.yml": "bot: {session_ttl: 1h}\n" + OK_STORY, "b.yml": "bot: {fallback: ok}\n"}
    )
    assert found == ["stories/b.yml:1:1: 'bot:' is defined more than once; the first is at stories/a.yml:1:1"]


def test_endless_goto_loops_are_rejected(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        stories:
          s:
            steps:
              - id: a
                actions:
                  - message: looping
                  - goto: b
              - id: b
                actions:
                  - goto: a
                    if: "@message"
                  - jump: t
          t:
            steps:
              - id: c
                actions:
                  - goto: c
          fine:
            steps:
              - id: d
                actions:
                  - goto: e
                    if: "@session.Again"
                  - goto: e
                    unless: "@session.Again"
              - id: e
                actions:
                  - set_session: {Again: null}
                  - goto: d
                    if: "@session.Again"
        """,
    )
    # s.a and s.b always end up in t.c's loop; the loop itself is reported, once. The "fine" story
    # loops only while a value it clears is set, so it is left to the run-time hop limit.
    assert found == [
        "stories/bot.yml:17:19: endless loop of goto/jump that never waits for the user: t.c → t.c"
    ]


def test_a_cycle_of_unconditional_gotos_is_rejected_once(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        stories:
          s:
            steps:
              - id: a
                actions:
                  - goto: b
              - id: b
                actions:
                  - message: hi
                  - goto: a
        """,
    )
    assert found == [
        "stories/bot.yml:6:19: endless loop of goto/jump that never waits for the user: s.a → s.b → s.a"
    ]


def test_other_step_and_action_problems(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        bot: {phone_region: Atlantis}
        stories:
          bad id:
            steps: [{id: a}]
          s:
            triggers: [hello]
            steps:
              - actions: []
              - id: "two words"
              - id: a
                expect: colour
                retry: again
                actions:
                  - {message: hi, goto: a}
                  - {goto: a, caption: no}
                  - {if: "@message"}
                  - image: ftp://example.com/x.png
                  - set_session: {}
                  - set_user: {"bad name": x}
                  - message: m
                    quick_replies: [{goto: a}, {title: T, goto: a, jump: s}]
          t:
            triggers: [HELLO]
            steps: [{id: b}]
        """,
    )
    assert found == [
        "stories/bot.yml:1:21: unknown phone_region 'Atlantis'; use a code like FR or US",
        "stories/bot.yml:3:3: story id 'bad id' may only use letters, digits, '_' and '-'",
        "stories/bot.yml:8:9: a step needs an 'id'",
        "stories/bot.yml:9:13: step id 'two words' may only use letters, digits, '_' and '-'",
        "stories/bot.yml:11:9: 'expect' needs a 'next' step to hand the reply to",
        "stories/bot.yml:11:17: expect must be one of text, email, number, phone, not 'colour'",
        "stories/bot.yml:12:9: 'retry' needs a 'next' step to hand the reply to",
        "stories/bot.yml:14:27: an action has exactly one of message, image, set_session, set_user, email, "
        "goto, jump, http, follow_up, handoff; this one has both 'message' and 'goto' (start a new '- ' "
        "item)",
        "stories/bot.yml:15:20: endless loop of goto/jump that never waits for the user: s.a → s.a",
        "stories/bot.yml:15:23: 'caption' belongs to an 'image' action, not to 'goto'",
        "stories/bot.yml:16:13: an action needs one of "
        "message, image, set_session, set_user, email, goto, jump, http, follow_up, handoff",
        "stories/bot.yml:17:20: image must be an http:// or https:// URL",
        "stories/bot.yml:18:26: set_session needs at least one NAME: value",
        "stories/bot.yml:19:24: name 'bad name' may only use letters, digits, '_' and '-'",
        "stories/bot.yml:21:29: a quick reply needs a 'title'",
        "stories/bot.yml:21:60: a quick reply has either 'goto' or 'jump', not both",
        "stories/bot.yml:23:16: trigger 'HELLO' already starts story 's' (stories/bot.yml:6:16)",
    ]


def test_every_problem_of_every_file_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "a.yml": "stories:\n  s:\n    steps: [{id: a, next: b}]\n",
            "sub/b.yml": "stories:\n  t:\n    steps: [{id: a, actions: [{message: '{{'}]}]\n",
            "c.yml": "nope: 1\n",
            ".hidden/d.yml": "this is: [not even yaml\n",
        },
    )
    assert found == [
        "stories/a.yml:3:27: story 's' has no step 'b'",
        "stories/c.yml:1:1: unknown key 'nope' in the file (expected one of: bot, stories)",
        "stories/sub/b.yml:3:42: bad template in message: '{{' is never closed with '}}'",
    ]


def test_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(StoriesError) as caught:
        load_stories(tmp_path / "nowhere")
    assert [str(p) for p in caught.value.problems] == [f"{tmp_path}/nowhere:1:1: no such stories folder"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoriesError) as caught:
        load_stories(tmp_path / "empty")
    assert str(caught.value) == f"{tmp_path}/empty:1:1: no *.yml or *.yaml stories files in this folder"


def test_anchors_and_merge_keys_are_followed(tmp_path: Path) -> None:
    text = """\
    stories:
      s:
        steps:
          - id: a
            actions:
              - &greet {message: "Hi {{@user.Name}}", if: "@user.Name"}
              - <<: *greet
                unless: "@user.Name"
                message: Hi you
              - {<<: *greet, typo: 1}
    """
    assert one(tmp_path, text) == [
        "stories/bot.yml:10:26: unknown key 'typo' in an action (expected one of: message, image, "
        "set_session, set_user, email, goto, jump, http, follow_up, handoff, quick_replies, caption, if, "
        "unless)"
    ]
