"""Chat through the example stories in config/stories, as the README quick start does."""

from __future__ import annotations

import pytest

from designer.check import run_check
from tests.support.engine import Chat
from tests.support.paths import ROOT
from worker.engine import Stories, load_stories

STORIES = ROOT / "config" / "stories"
EMAILS = ROOT / "config" / "emails"


@pytest.fixture(scope="module")
def stories() -> Stories:
    return load_stories(STORIES, EMAILS)


def test_the_examples_pass_the_check() -> None:
    from io import StringIO

    out = StringIO()
    assert run_check(STORIES, EMAILS, out) == 0
    assert out.getvalue() == "OK: 7 stories, 26 steps in 6 files\n"


def test_welcome_asks_the_name_once_then_the_city(stories: Stories) -> None:
    chat = Chat(stories)
    assert chat.say("hi") == ["Hello there! 👋", "I'm the demo bot of this gateway. What's your first name?"]
    assert chat.say("Ada") == ["Nice to meet you, Ada!", "Where do you live?"]
    assert chat.buttons == ["Paris", "London", "Somewhere else"]
    assert chat.press("Somewhere else") == ["Tell us where, then."]
    assert chat.say("Lyon") == [
        "Ada, we are really glad you live in Lyon, such a great city!",
        "What would you like to do next?",
    ]
    assert chat.buttons == ["Ask for help", "Take the quiz"]
    assert chat.user == {"FirstName": "Ada", "City": "Lyon"}
    chat.session = None  # another day
    assert chat.say("Good morning!") == ["Hello Ada! 👋", "Where do you live?"]  # no name question
    assert chat.press("Paris") == [
        "Ada, we are really glad you live in Paris, such a great city!",
        "What would you like to do next?",
    ]


def test_support_emails_a_ticket_quoting_the_message(stories: Stories) -> None:
    chat = Chat(stories)
    chat.say("hi")
    chat.say("Ada")
    chat.say("London")
    assert chat.press("Ask for help") == ["Of course, Ada. What can we help you with?"]
    question = "My <printer> prints {{@user.FirstName}} twice"
    assert chat.say(question) == ["Thanks! A ticket is on its way to our team, we'll get back to you soon."]
    [job] = chat.emails
    assert job.to == ("support@example.com",)
    assert job.subject == "Support question from Ada"
    assert job.reply_to is None
    assert job.text.startswith(f"Support question from Ada in London:\n\n{question}\n")
    assert "<blockquote>My &lt;printer&gt; prints {{@user.FirstName}} twice</blockquote>" in (job.html or "")
    assert chat.session is not None and chat.session.step is None


def test_support_for_a_stranger(stories: Stories) -> None:
    chat = Chat(stories)
    assert chat.say("HELP") == ["What can we help you with?"]
    chat.say("Where is my order?")
    [job] = chat.emails
    assert job.subject == "Support question from a user"
    assert job.text.startswith("Support question from a user in an unknown city:\n\nWhere is my order?\n")


def test_quiz_records_each_answer_and_reports_the_score(stories: Stories) -> None:
    chat = Chat(stories, user={"FirstName": "Ada"})
    assert chat.say("quiz") == ["Three questions, let's go! 1) What is the capital of France?"]
    assert chat.press("Paris") == ["Right, Paris!", "2) How many legs does a spider have?"]
    assert chat.say("lots") == ["Please answer with a number, like 4."]
    assert chat.say("I'd say 8") == [
        "Right, eight legs!",
        "3) Can you see the Great Wall of China from the Moon with the naked eye?",
    ]
    assert chat.say("hmm") == [
        "Just yes or no, please.",
        "3) Can you see the Great Wall of China from the Moon with the naked eye?",
    ]
    assert chat.say("no") == [
        "Right, that's a myth!",
        "Your score: 3/3, 100% (1: correct, 2: correct, 3: correct).",
        "Perfect, well done Ada! 🎉",
        "Play again?",
    ]
    assert (chat.values["Q1"], chat.values["Q2"], chat.values["Q3"]) == ("correct", "correct", "correct")
    assert chat.values["Score"] == "3"


def test_quiz_with_wrong_answers(stories: Stories) -> None:
    chat = Chat(stories, channel="sms")
    chat.say("play")
    assert chat.say("1") == [
        "Not quite, it's Paris.",
        "2) How many legs does a spider have?",
    ]  # button 1: Lyon
    assert chat.say("6") == [
        "No, spiders have 8 legs (not 6).",
        "3) Can you see the Great Wall of China from the Moon with the naked eye?",
    ]
    assert chat.say("2") == [
        "Right, that's a myth!",
        "Your score: 1/3, 33% (1: false, 2: false, 3: correct).",
        "2 more right for a perfect score.",
        "Play again?",
    ]
    assert chat.values["Score"] == "1"
    assert chat.say("Quiz") == ["Three questions, let's go! 1) What is the capital of France?"]
    assert chat.values == {}  # a new session: the score is unset until a right answer counts


def test_fallback_offers_the_way_back(stories: Stories) -> None:
    chat = Chat(stories)
    assert chat.say("blah") == ["Sorry, I didn't understand that. Here is what I can do:"]
    assert chat.buttons == ["Hi", "Help", "Quiz"]
    assert chat.press("Help") == ["What can we help you with?"]
