"""The behaviour rules of STORIES.md, one test each, run through Engine.handle."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.schema import Button, ButtonPress, Inbound
from gateway.core.store.base import Session
from tests.support.engine import NOW, Chat, load, write
from worker.engine import Engine, Stories, load_stories
from worker.engine.engine import MAX_HOPS

BOT = """\
bot:
  session_ttl: 10m
  fallback: lost

stories:
  welcome:
    triggers: ["/start", Hi, "re:^good (morning|evening)"]
    session_ttl: 2h
    steps:
      - id: start
        actions:
          - message: 'Hello {{@user.FirstName || "there"}}!'
          - goto: ask_city
            if: "@user.FirstName"
          - message: What's your first name?
        next: save_name
      - id: save_name
        actions:
          - set_user: {FirstName: "{{@message}}"}
          - goto: ask_city
      - id: ask_city
        actions:
          - message: Where do you live?
            quick_replies:
              - Paris
              - London
              - {title: Somewhere else, goto: other}
              - {title: Help me, jump: support}
        next: save_city
      - id: save_city
        actions:
          - set_session: {City: "{{@message}}"}
          - message: "{{@user.FirstName}}, you live in {{@session.City}}."
          - jump: support
      - id: other
        actions:
          - message: Tell us where, then.
        next: save_city

  support:
    triggers: [help]
    steps:
      - id: ask
        actions:
          - message: What can we help you with?
        next: ticket
      - id: ticket
        actions:
          - message: 'Noted: {{@message}}'

  lost:
    steps:
      - id: sorry
        actions:
          - message: 'Sorry, I did not get "{{@message}}".'
"""


@pytest.fixture
def stories(tmp_path: Path) -> Stories:
    return load(tmp_path, BOT)


# -- files --------------------------------------------------------------------------------------------


def test_all_yml_and_yaml_files_under_the_folder_load_together(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "stories",
        {
            "a.yml": "bot: {fallback: b}\nstories:\n  a:\n    triggers: [go]\n"
            "    steps: [{id: s, actions: [jump: b]}]\n",
            "deeper/b.yaml": "stories:\n  b:\n    steps: [{id: s, actions: [message: from b]}]\n",
            "readme.md": "ignored",
        },
    )
    chat = Chat(load_stories(folder))
    assert chat.say("go") == ["from b"]
    assert chat.say("anything") == ["from b"]  # the fallback, defined in another file


def test_the_first_step_is_the_entry(stories: Stories) -> None:
    assert Chat(stories).say("help") == ["What can we help you with?"]


# -- which step handles a message ---------------------------------------------------------------------


def test_trigger_is_trimmed_and_case_folded(stories: Stories) -> None:
    assert Chat(stories).say("  hI  ") == ["Hello there!", "What's your first name?"]
    assert Chat(stories).say("/START") == ["Hello there!", "What's your first name?"]
    assert Chat(stories).say("hi there") == ['Sorry, I did not get "hi there".']


def test_regex_trigger_is_searched_ignoring_case(stories: Stories) -> None:
    assert Chat(stories).say("Good Evening to you") == ["Hello there!", "What's your first name?"]
    assert Chat(stories).say("well, good morning") == ['Sorry, I did not get "well, good morning".']


def test_next_handles_the_reply_to_a_waiting_step(stories: Stories) -> None:
    chat = Chat(stories)
    chat.say("hi")
    assert chat.say("Ada") == ["Where do you live?"]
    assert chat.user == {"FirstName": "Ada"}


def test_a_trigger_wins_over_the_waiting_step(stories: Stories) -> None:
    chat = Chat(stories)
    chat.say("hi")
    assert chat.say("help") == ["What can we help you with?"]
    assert chat.user == {}


def test_a_button_of_the_waiting_step_wins_over_a_trigger(tmp_path: Path) -> None:
    stories = load(
        tmp_path,
        """\
        stories:
          menu:
            triggers: [menu]
            steps:
              - id: ask
                actions:
                  - message: Pick
                    quick_replies: [{title: help, goto: chosen}]
                next: ask
              - id: chosen
                actions: [message: the button]
          support:
            triggers: [help]
            steps: [{id: s, actions: [message: the trigger]}]
        """,
    )
    chat = Chat(stories)
    chat.say("menu")
    assert chat.say(" HELP ") == ["the button"]  # by title, trimmed, ignoring case
    chat.say("menu")
    assert chat.say(payload="b:menu:ask:0") == ["the button"]  # by payload
    assert chat.say("help") == ["the trigger"]  # no button waits any more


def test_button_with_goto_and_with_jump(stories: Stories) -> None:
    chat = Chat(stories, user={"FirstName": "Ada"})
    chat.say("hi")
    assert chat.press("Somewhere else") == ["Tell us where, then."]
    assert chat.say("Lyon") == ["Ada, you live in Lyon.", "What can we help you with?"]
    chat.say("hi")
    assert chat.press("Help me") == ["What can we help you with?"]
    assert chat.session is not None and chat.session.story == "support"


def test_a_plain_button_is_the_same_as_typing_its_title(stories: Stories) -> None:
    chat = Chat(stories, user={"FirstName": "Ada"})
    chat.say("hi")
    assert chat.press("Paris") == ["Ada, you live in Paris.", "What can we help you with?"]
    assert chat.values == {"City": "Paris", "text": "Paris"}


def test_message_is_the_button_title_when_a_button_is_pressed(stories: Stories) -> None:
    chat = Chat(stories, user={"FirstName": "Ada"})
    chat.say("hi")
    chat.say(payload="b:welcome:ask_city:1", title="ignored title")
    assert chat.values["City"] == "London"


def test_buttons_match_by_number_on_sms_only(stories: Stories) -> None:
    sms = Chat(stories, channel="sms", user={"FirstName": "Ada"})
    sms.say("hi")
    assert sms.say("3") == ["Tell us where, then."]
    web = Chat(stories, channel="webchat", user={"FirstName": "Ada"})
    web.say("hi")
    assert web.say("3") == ["Ada, you live in 3.", "What can we help you with?"]
    sms.say("hi")
    assert sms.say("9") == ["Ada, you live in 9.", "What can we help you with?"]  # no 9th button


def test_a_button_from_an_old_message_counts_as_its_title(stories: Stories) -> None:
    chat = Chat(stories, user={"FirstName": "Ada"})
    chat.say("help")
    assert chat.say(payload="b:welcome:ask_city:3", title="Hi") == ["Hello Ada!", "Where do you live?"]


def test_a_story_without_next_or_button_targets_ends(stories: Stories) -> None:
    chat = Chat(stories)
    chat.say("help")
    assert chat.say("my printer") == ["Noted: my printer"]
    assert chat.session is not None and chat.session.step is None
    assert chat.say("my printer") == ['Sorry, I did not get "my printer".']  # triggers, then the fallback


def test_the_fallback_runs_when_nothing_matches(stories: Stories) -> None:
    assert Chat(stories).say("what?") == ['Sorry, I did not get "what?".']


def test_nothing_matched_without_a_fallback_gives_no_reply(tmp_path: Path) -> None:
    stories = load(
        tmp_path, "stories:\n  s:\n    triggers: [go]\n    steps: [{id: a, actions: [message: hi]}]\n"
    )
    chat = Chat(stories)
    turn = chat.send("what?")
    assert (turn.replies, turn.emails, turn.session, turn.route) == ([], [], None, None)
    chat.say("go")
    before = chat.session
    turn = chat.send("what?")
    assert turn.replies == [] and turn.session == before  # the session is kept, and extended


# -- steps --------------------------------------------------------------------------------------------


EXPECT = """\
stories:
  ask:
    triggers: [ask]
    steps:
      - id: email
        actions: [message: "Your email?"]
        expect: email
        next: phone
      - id: phone
        actions: [message: "Got {{@session.email}}. Your phone?"]
        expect: phone
        retry: "{{@message}} is not a phone number."
        next: number
      - id: number
        actions: [message: "Got {{@session.phone}}. How many?"]
        expect: number
        next: text
      - id: text
        actions: [message: "Got {{@session.number}}. Anything else?"]
        next: done
      - id: done
        actions: [message: "Got {{@session.text}}."]
"""


def test_expect_stores_the_entity_then_runs_next_or_retries(tmp_path: Path) -> None:
    chat = Chat(load(tmp_path, EXPECT))
    chat.say("ask")
    assert chat.say("no idea") == ["Sorry, I didn't get that."]
    assert chat.session is not None and chat.session.step == "email"
    assert chat.say("it is ada@example.com") == ["Got ada@example.com. Your phone?"]
    assert chat.say("call me") == ["call me is not a phone number."]
    assert chat.say("+33 6 12 34 56 78") == ["Got +33612345678. How many?"]
    assert chat.say("about 12,5") == ["Got 12.5. Anything else?"]
    assert chat.say("   ") == ["Sorry, I didn't get that."]  # text is the default
    assert chat.say(" no ") == ["Got no."]


def test_a_local_phone_number_on_sms_uses_the_sender_region(tmp_path: Path) -> None:
    chat = Chat(load(tmp_path, EXPECT), channel="sms")  # the sender is +44...
    chat.say("ask")
    chat.say("ada@example.com")
    assert chat.say("020 7123 4567") == ["Got +442071234567. How many?"]


def test_bot_phone_region(tmp_path: Path) -> None:
    chat = Chat(load(tmp_path, "bot: {phone_region: fr}\n" + EXPECT))
    chat.say("ask")
    chat.say("ada@example.com")
    assert chat.say("06 12 34 56 78") == ["Got +33612345678. How many?"]


def test_a_retry_keeps_the_buttons_offered(tmp_path: Path) -> None:
    chat = Chat(
        load(
            tmp_path,
            """\
            stories:
              s:
                triggers: [go]
                steps:
                  - id: a
                    actions: [{message: "How many?", quick_replies: ["1", "2"]}]
                    expect: number
                    next: b
                  - id: b
                    actions: [message: "{{@session.number}}"]
            """,
        )
    )
    chat.say("go")
    chat.say("lots")
    assert chat.buttons == ["1", "2"]
    assert chat.press("2") == ["2"]


# -- actions ------------------------------------------------------------------------------------------


def test_actions_run_in_order_and_goto_skips_the_rest(stories: Stories) -> None:
    chat = Chat(stories, user={"FirstName": "Ada"})
    assert chat.say("hi") == ["Hello Ada!", "Where do you live?"]  # "What's your first name?" skipped


def test_if_and_unless(tmp_path: Path) -> None:
    chat = Chat(
        load(
            tmp_path,
            """\
            stories:
              s:
                triggers: [go, stop]
                steps:
                  - id: a
                    actions:
                      - {message: going, if: '@message == "GO"'}
                      - {message: not going, unless: '@message == "go"'}
                      - {message: both hold, if: "@message", unless: '@message != "go"'}
            """,
        )
    )
    assert chat.say("go") == ["going", "both hold"]
    assert chat.say("stop") == ["not going"]


def test_quick_replies_make_one_reply_with_buttons(stories: Stories) -> None:
    chat = Chat(stories, user={"FirstName": "Ada"})
    reply = chat.send("hi").replies[1]
    assert reply.text == "Where do you live?"
    assert reply.buttons == (
        Button(title="Paris", payload="b:welcome:ask_city:0"),
        Button(title="London", payload="b:welcome:ask_city:1"),
        Button(title="Somewhere else", payload="b:welcome:ask_city:2"),
        Button(title="Help me", payload="b:welcome:ask_city:3"),
    )
    assert chat.session is not None and chat.session.buttons == reply.buttons


def test_image_with_caption(tmp_path: Path) -> None:
    chat = Chat(
        load(
            tmp_path,
            """\
            stories:
              s:
                triggers: [cat]
                steps:
                  - id: a
                    actions:
                      - {image: "https://example.com/{{@message}}.png", caption: "A {{@message}}"}
                      - image: "{{@message}}"
            """,
        )
    )
    turn = chat.send("cat")
    assert len(turn.replies) == 1
    image = turn.replies[0].image
    assert image is not None and (image.url, image.caption) == ("https://example.com/cat.png", "A cat")
    assert turn.warnings == ("image skipped: 'cat' is not an http(s) URL",)


def test_set_session_and_set_user_are_silent_and_null_deletes(tmp_path: Path) -> None:
    chat = Chat(
        load(
            tmp_path,
            """\
            stories:
              s:
                triggers: [set, clear]
                steps:
                  - id: a
                    actions:
                      - set_session: {A: "{{@message}}", B: x}
                        if: '@message == "set"'
                      - set_user: {Name: "{{@message}}", Keep: kept}
                        if: '@message == "set"'
                      - set_session: {A: null}
                        if: '@message == "clear"'
                      - set_user: {Name: null}
                        if: '@message == "clear"'
            """,
        ),
        user={"Old": "o"},
    )
    turn = chat.send("set")
    assert turn.replies == []
    assert chat.values == {"A": "set", "B": "x"}
    assert turn.user_changes == {"Name": "set", "Keep": "kept"}
    turn = chat.send("clear")
    assert turn.user_changes == {"Name": None}
    assert chat.user == {"Old": "o", "Keep": "kept"}
    assert chat.values == {}  # "clear" started the story again: a new session, then A deleted


EMAIL = """\
stories:
  s:
    triggers: ["re:."]
    steps:
      - id: a
        actions:
          - set_user: {Email: "{{@message}}"}
          - email:
              to: " {{@user.Email}} , ops@example.com,{{@session.Nobody}}"
              cc: "boss@example.com, {{@user.Email}}"
              reply_to: "{{@user.Email}}"
              subject: "Ticket: {{@message}}"
              body: "Text: {{@message}}"
              html_file: ticket.html
"""


def test_email_job_fields(tmp_path: Path) -> None:
    chat = Chat(load(tmp_path, EMAIL, {"ticket.html": "<p>{{@message}}</p>\n"}))
    turn = chat.send("ada@example.com")
    [job] = turn.emails
    assert job.id == "webchat:0/e0"
    assert job.to == ("ada@example.com", "ops@example.com")
    assert job.cc == ("boss@example.com",)  # already in to
    assert (job.reply_to, job.subject, job.text) == (
        "ada@example.com",
        "Ticket: ada@example.com",
        "Text: ada@example.com",
    )
    assert job.html == "<p>ada@example.com</p>\n"
    assert (job.channel, job.chat, job.user, job.created_at) == (
        "webchat",
        "chat-1",
        "+442071234567",
        NOW + 1,
    )


def test_email_headers_never_carry_cr_or_lf_and_html_is_escaped(tmp_path: Path) -> None:
    chat = Chat(load(tmp_path, EMAIL, {"ticket.html": "<p>{{@message}}</p>"}))
    text = "x@example.com\r\nBcc: victim@example.com\n<b>&"
    [job] = chat.send(text).emails
    assert job.to == ("ops@example.com",)  # the injected address is invalid, so dropped
    assert job.reply_to is None
    assert job.subject == "Ticket: x@example.com Bcc: victim@example.com <b>&"
    assert job.html == "<p>x@example.com\r\nBcc: victim@example.com\n&lt;b&gt;&amp;</p>"
    assert job.text == f"Text: {text}"


def test_an_email_with_no_valid_recipient_is_not_sent(tmp_path: Path) -> None:
    chat = Chat(load(tmp_path, EMAIL.replace(", ops@example.com", ""), {"ticket.html": "x"}))
    turn = chat.send("not an address")
    assert turn.emails == []
    assert turn.warnings == ("email skipped: no valid address in 'to'",)


def test_email_is_rendered_with_the_message_of_that_moment(tmp_path: Path) -> None:
    chat = Chat(
        load(
            tmp_path,
            """\
            stories:
              s:
                triggers: [start]
                steps:
                  - id: a
                    actions: [message: "Question?"]
                    next: b
                  - id: b
                    actions:
                      - email: {to: ops@example.com, subject: "Q", body: "<<@message>>"}
            """,
        )
    )
    chat.say("start")
    assert chat.send("my question").emails[0].text == "my question"


def test_jump_keeps_the_session_and_takes_the_new_story_ttl(stories: Stories) -> None:
    chat = Chat(stories, user={"FirstName": "Ada"})
    chat.say("hi")
    assert chat.session is not None and chat.session.ttl == 7200.0  # welcome's own session_ttl
    assert chat.say("Lyon") == ["Ada, you live in Lyon.", "What can we help you with?"]
    assert chat.session is not None and chat.session.story == "support"
    assert chat.session.ttl == 600.0  # the bot's
    assert chat.values["City"] == "Lyon"


# -- sessions and user attributes ---------------------------------------------------------------------


def test_starting_a_story_discards_the_previous_session_values(stories: Stories) -> None:
    chat = Chat(stories, user={"FirstName": "Ada"})
    chat.say("hi")
    chat.say("Lyon")
    assert chat.values["City"] == "Lyon"
    assert chat.say("help") == ["What can we help you with?"]
    assert chat.values == {}


def test_the_fallback_starts_a_session_too(stories: Stories) -> None:
    chat = Chat(stories, user={"FirstName": "Ada"})
    chat.say("hi")
    chat.say("Lyon")
    chat.say("done")
    chat.say("nonsense")
    assert chat.session is not None and (chat.session.story, chat.values) == ("lost", {})


def test_an_expired_session_means_nothing_waits(stories: Stories) -> None:
    chat = Chat(stories)
    chat.say("hi")
    chat.session = None  # what the store gives after session_ttl with no message
    assert chat.say("Ada") == ['Sorry, I did not get "Ada".']
    assert chat.user == {}


def test_user_attributes_outlive_stories_and_sessions(stories: Stories) -> None:
    chat = Chat(stories)
    chat.say("hi")
    chat.say("Ada")
    chat.session = None
    assert chat.say("hi") == ["Hello Ada!", "Where do you live?"]


def test_every_session_carries_the_running_story_ttl(stories: Stories) -> None:
    chat = Chat(stories)
    chat.say("hi")
    assert chat.session is not None and chat.session.ttl == 7200.0
    chat.say("nonsense")  # the waiting step takes it as a name
    chat.say("help")
    assert chat.session is not None and chat.session.ttl == 600.0


def test_the_default_session_ttl_is_30_minutes(tmp_path: Path) -> None:
    chat = Chat(load(tmp_path, "stories:\n  s:\n    triggers: [go]\n    steps: [{id: a}]\n"))
    chat.say("go")
    assert chat.session is not None and chat.session.ttl == 1800.0


# -- the engine's contract with the worker ------------------------------------------------------------


def test_reply_ids_addresses_and_meta(stories: Stories) -> None:
    engine = Engine(stories)
    message = Inbound(id="tg:1", channel="telegram", chat="c", user="u", text="hi", meta={"thread": "9"})
    turn = engine.handle(None, {}, message, 123.0)
    assert [r.id for r in turn.replies] == ["tg:1/r0", "tg:1/r1"]
    for reply in turn.replies:
        assert (reply.channel, reply.chat, reply.user, reply.meta) == ("telegram", "c", "u", {"thread": "9"})
        assert (reply.in_reply_to, reply.created_at) == ("tg:1", 123.0)


def test_handling_the_same_message_twice_gives_the_same_turn(stories: Stories) -> None:
    engine = Engine(stories)
    session = Session(story="welcome", step="save_name", values={"x": "1"}, ttl=7200.0)
    message = Inbound(id="m-7", channel="webchat", chat="c", user="u", text="Ada", sent_at=5.0)
    first = engine.handle(session, {}, message, 99.0)
    assert engine.handle(session, {}, message, 99.0) == first
    assert session.values == {"x": "1"}  # the input is never changed


def test_a_goto_loop_with_conditions_is_cut_at_run_time(tmp_path: Path) -> None:
    chat = Chat(
        load(
            tmp_path,
            """\
            stories:
              s:
                triggers: [spin]
                steps:
                  - id: a
                    actions:
                      - message: round
                      - goto: b
                        if: "@message"
                  - id: b
                    actions:
                      - goto: a
                        if: "@message"
                    next: a
            """,
        )
    )
    turn = chat.send("spin")
    assert len(turn.replies) == (MAX_HOPS + 1) // 2
    assert turn.warnings == (f"stopped after {MAX_HOPS} goto/jump hops at s.a",)
    assert chat.session is not None and chat.session.step is None


def test_a_session_of_stories_that_no_longer_exist_is_harmless(stories: Stories) -> None:
    engine = Engine(stories)
    stale = Session(
        story="gone",
        step="old",
        values={"a": "b"},
        buttons=(Button(title="X", payload="b:gone:old:0"),),
        ttl=5.0,
    )
    message = Inbound(
        id="m", channel="webchat", chat="c", user="u", text="X", button=ButtonPress(payload="b:gone:old:0")
    )
    turn = engine.handle(stale, {}, message, 0.0)
    assert [r.text for r in turn.replies] == ['Sorry, I did not get "X".']
