"""What the HTTP benchmark's users say: a story and the script of one conversation with it.

Two scenarios. ``realistic`` is the conversation measured from outside on 2026-12 (issue 18): a greeting
that asks for a name (2 replies), the name stored as a user attribute (2 replies, the second with
buttons), a city chosen with a button (3 replies, a session value and an attribute written), a problem
that files a ticket email (1 reply and an email job). Each conversation is a new user, so every one goes
the same way. ``echo`` is the one-step story the benchmark measured before: one reply per message.

Each step names what the bot must answer: how many replies, and how the last one starts. The load
generator checks both, so a reply lost, repeated or out of order shows as a failed step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Step:
    """One message of the user: a text, or a press of the button titled ``button`` on the last keyboard."""

    say: str
    replies: int  # how many replies the bot sends to it
    last: str  # how the last of them starts
    button: bool = False

    @property
    def label(self) -> str:
        pressed = "button " if self.button else ""
        return f"{pressed}{self.say!r} ({self.replies} repl{'y' if self.replies == 1 else 'ies'})"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    story: str  # the stories file (YAML)
    steps: tuple[Step, ...]
    new_user_each_time: bool  # a conversation is one pass through the steps, each by a new user

    @property
    def replies_per_message(self) -> float:
        return sum(step.replies for step in self.steps) / len(self.steps)


REALISTIC = Scenario(
    name="realistic",
    story="""\
bot:
  fallback: sorry
stories:
  sorry:
    steps:
      - id: sorry
        actions:
          - message: Sorry, I didn't understand that.
  welcome:
    triggers: [hi, hello, "/start"]
    steps:
      - id: start
        actions:
          - message: 'Hello {{@user.FirstName || "there"}}! 👋'
          - message: I'm the support bot of this shop. What's your first name?
        next: save_name
      - id: save_name
        actions:
          - set_user: {FirstName: "{{@message}}"}
          - message: "Nice to meet you, {{@user.FirstName}}!"
          - message: Where do you live?
            quick_replies: [Paris, London, Berlin, {title: Somewhere else, goto: other}]
        next: save_city
      - id: other
        actions:
          - message: Tell us where, then.
        next: save_city
      - id: save_city
        actions:
          - set_session: {City: "{{@message}}"}
          - set_user: {City: "{{@message}}"}
          - message: "{{@session.City}}, what a place!"
          - message: "{{@user.FirstName}}, we are really glad you live in {{@session.City}}."
          - jump: support
  support:
    triggers: [help, support]
    steps:
      - id: ask
        actions:
          - message: What can we help you with?
        next: ticket
      - id: ticket
        actions:
          - email:
              to: support@example.com
              subject: 'Support question from {{@user.FirstName || "a user"}} in {{@user.City}}'
              body: "{{@user.FirstName}} from {{@user.City}} writes: <<@message>>"
          - message: "Thanks {{@user.FirstName}}! A ticket is on its way to our team."
""",
    steps=(
        Step("hi", 2, "I'm the support bot"),
        Step("Alice", 2, "Where do you live?"),
        Step("Paris", 3, "What can we help you with?", button=True),
        Step("My order 1234 never arrived", 1, "Thanks Alice!"),
    ),
    new_user_each_time=True,
)

ECHO = Scenario(
    name="echo",
    story="""\
bot:
  fallback: echo
stories:
  echo:
    steps:
      - id: say
        actions:
          - set_session: {last: "{{@message}}"}
          - message: "You said {{@message}}"
""",
    steps=(Step("hello", 1, "You said hello"),),
    new_user_each_time=False,
)

SCENARIOS = {scenario.name: scenario for scenario in (REALISTIC, ECHO)}
