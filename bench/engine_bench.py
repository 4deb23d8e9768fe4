"""Engine figures: handle() throughput, and load+check of a big bot.

Run: ``.venv/bin/python bench/engine_bench.py`` (one process, so one core). Prints messages/s of the
support-ticket conversation of the example stories (which hold expressions: the quiz counts); of an
expression-heavy story (arithmetic, functions, conditions with and/or/contains on every message) beside
the same story computing nothing (plain substitutions and comparisons); the time a turn takes with a
hostile 1 MiB message (bounded work: expressions read at most 64 Ki characters of a value); and the
seconds to load and validate 1,000 stories of 10 steps each.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.core.schema import Inbound  # noqa: E402
from gateway.core.store.base import Session  # noqa: E402
from worker.engine import Engine, Turn, load_stories  # noqa: E402

# Every message runs: 4 computed values, a condition with and/or/contains/comparisons, a computed message.
EXPRESSION_STORY = """\
stories:
  tally:
    triggers: [tally]
    steps:
      - id: start
        actions:
          - set_session: {Count: "0", Total: "0"}
          - message: Send me anything; I keep count.
        next: add
      - id: add
        actions:
          - set_session:
              Count: "{{(@session.Count || 0) + 1}}"
              Total: "{{(@session.Total || 0) + length(@message) * 2 - 1}}"
              Average: "{{round(@session.Total / @session.Count, 2)}}"
              Name: "{{upper(trim(@user.FirstName || 'friend'))}}"
          - message: "{{@session.Name}}: {{@session.Count}} messages, {{max(@session.Total % 7, 1) * 3}} pts"
            if: '@session.Count > 1 and (@session.Average >= 10 or @message contains "help")'
          - message: "{{lower(@session.Name)}}, that was short ({{min(@session.Average, 100)}})."
            unless: '@session.Count > 1 and (@session.Average >= 10 or @message contains "help")'
        next: add
"""
# The baseline: the same story, the same actions, conditions and substitutions, computing nothing.
PLAIN_STORY = """\
stories:
  tally:
    triggers: [tally]
    steps:
      - id: start
        actions:
          - set_session: {Count: "0", Total: "0"}
          - message: Send me anything; I keep count.
        next: add
      - id: add
        actions:
          - set_session:
              Count: "{{@session.Total || 0}}"
              Total: "{{@message}}"
              Average: "{{@session.Count}}"
              Name: "{{@user.FirstName || 'friend'}}"
          - message: "{{@session.Name}}: {{@session.Count}} messages, {{@session.Average}} pts"
            if: '@session.Count == "ok" and (@session.Average != "42" or @message == "help")'
          - message: "{{@session.Name}}, that was short ({{@session.Average}})."
            unless: '@session.Count == "ok" and (@session.Average != "42" or @message == "help")'
        next: add
"""
WHEN = 1_700_000_000.0


def converse(engine: Engine, texts: list[str], rounds: int, user: dict[str, str]) -> tuple[float, Turn]:
    """Messages per second over ``rounds`` times ``texts``, and the last turn."""
    messages = [
        Inbound(id=f"webchat:{n}", channel="webchat", chat="c1", user="u1", text=text, sent_at=0.0)
        for n, text in enumerate(texts * rounds)
    ]
    session: Session | None = None
    started = time.perf_counter()
    for message in messages:
        turn = engine.handle(session, user, message, WHEN)
        session = turn.session
    elapsed = time.perf_counter() - started
    return len(messages) / elapsed, turn


def support_conversation(engine: Engine, rounds: int) -> float:
    """Messages per second over ``rounds`` support tickets ("help", then the question)."""
    texts = ["help", "My printer prints everything twice, can you help?"]
    rate, turn = converse(engine, texts, rounds, {"FirstName": "Ada", "City": "London"})
    assert turn.emails, "the conversation should end with a ticket email"
    return rate


def tally_conversation(engine: Engine, rounds: int, last_reply: str) -> float:
    """Messages per second through a tally story ("tally", then 9 messages)."""
    texts = ["tally", *(["My printer prints everything twice, can you help?", "ok", "42"] * 3)]
    rate, turn = converse(engine, texts, rounds, {"FirstName": " Ada "})
    assert [reply.text for reply in turn.replies] == [last_reply], turn.replies
    return rate


def hostile_turn(engine: Engine, start: str, user: dict[str, str]) -> float:
    """Seconds of the worst of 5 turns answering a 1 MiB message (the ingress limit) after ``start``."""
    huge = "é" * (1 << 20)  # not ASCII: case-folding and upper-casing are at their slowest
    first = Inbound(id="x:0", channel="webchat", chat="c", user="u", text=start, sent_at=0.0)
    started = engine.handle(None, user, first, WHEN)
    worst = 0.0
    for n in range(5):
        message = Inbound(id=f"x:{n + 1}", channel="webchat", chat="c", user="u", text=huge, sent_at=0.0)
        began = time.perf_counter()
        engine.handle(started.session, user, message, WHEN)
        worst = max(worst, time.perf_counter() - began)
    return worst


def big_bot(stories: int, steps: int) -> str:
    """``stories`` stories of ``steps`` steps, each step with a message, a conditional set and a next."""
    lines = ["bot:", "  session_ttl: 30m", "stories:"]
    for s in range(stories):
        lines += [f"  story{s}:", f'    triggers: [start{s}, "re:^go {s}$"]', "    steps:"]
        for t in range(steps):
            lines += [
                f"      - id: s{t}",
                "        actions:",
                f"          - message: 'Hello {{{{@user.FirstName || \"there\"}}}}, this is step {t} of {s}'",
                "            quick_replies: [Yes, No, {title: Back, goto: s0}]",
                f'          - set_session: {{V{t}: "{{{{@message}}}}"}}',
                "            if: '@session.City == \"Paris\"'",
            ]
            if t < steps - 1:
                lines.append(f"        next: s{t + 1}")
            else:
                lines.append("          - jump: story0")
    return "\n".join(lines) + "\n"


def load_time(stories: int, steps: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stories"
        path.mkdir()
        text = big_bot(stories, steps)
        (path / "big.yml").write_text(text)
        started = time.perf_counter()
        loaded = load_stories(path)
        elapsed = time.perf_counter() - started
        assert loaded.step_count == stories * steps
        return elapsed, len(text)


def tally_engine(story: str) -> Engine:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stories"
        path.mkdir()
        (path / "tally.yml").write_text(story)
        return Engine(load_stories(path))


def tally_rate(engine: Engine, last_reply: str) -> float:
    tally_conversation(engine, 400, last_reply)  # warm up
    return max(tally_conversation(engine, 4_000, last_reply) for _ in range(3))


def main() -> None:
    engine = Engine(load_stories(ROOT / "config" / "stories", ROOT / "config" / "emails"))
    support_conversation(engine, 2_000)  # warm up
    rates = [support_conversation(engine, 20_000) for _ in range(3)]
    print(f"engine.handle, support-ticket conversation: {max(rates):,.0f} messages/s (best of 3, one core)")
    tally = tally_engine(EXPRESSION_STORY)
    heavy_rate = tally_rate(tally, "ADA: 9 messages, 3 pts")
    plain_rate = tally_rate(tally_engine(PLAIN_STORY), " Ada : ok messages, ok pts")
    print(
        f"engine.handle, expression-heavy story: {heavy_rate:,.0f} messages/s; the same story computing"
        f" nothing: {plain_rate:,.0f} messages/s ({heavy_rate / plain_rate:.2f}x; best of 3, one core)"
    )
    plain = hostile_turn(engine, "help", {})
    heavy = hostile_turn(tally, "tally", {})
    print(
        f"a 1 MiB message (the ingress limit): {plain * 1000:.1f} ms in the support story (no expression"
        f" reads it), {heavy * 1000:.1f} ms in the expression-heavy story (worst of 5)"
    )
    seconds, size = min(load_time(1_000, 10) for _ in range(3))
    print(f"load + check 1,000 stories x 10 steps ({size / 1e6:.1f} MB of YAML): {seconds:.2f} s (best of 3)")


if __name__ == "__main__":
    main()
