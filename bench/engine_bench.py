"""Engine figures: handle() throughput on the support-ticket conversation, and load+check of a big bot.

Run: ``.venv/bin/python bench/engine_bench.py`` (one process, so one core). Prints messages/s and the
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
from worker.engine import Engine, load_stories  # noqa: E402


def support_conversation(engine: Engine, rounds: int) -> float:
    """Messages per second over ``rounds`` support tickets ("help", then the question)."""
    user = {"FirstName": "Ada", "City": "London"}
    texts = ["help", "My printer prints everything twice, can you help?"]
    messages = [
        Inbound(id=f"webchat:{n}", channel="webchat", chat="c1", user="u1", text=texts[n % 2], sent_at=0.0)
        for n in range(2 * rounds)
    ]
    session: Session | None = None
    started = time.perf_counter()
    for message in messages:
        turn = engine.handle(session, user, message, 1_700_000_000.0)
        session = turn.session
    elapsed = time.perf_counter() - started
    assert turn.emails, "the conversation should end with a ticket email"
    return len(messages) / elapsed


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


def main() -> None:
    engine = Engine(load_stories(ROOT / "config" / "stories", ROOT / "config" / "emails"))
    support_conversation(engine, 2_000)  # warm up
    rates = [support_conversation(engine, 20_000) for _ in range(3)]
    print(f"engine.handle, support-ticket conversation: {max(rates):,.0f} messages/s (best of 3, one core)")
    seconds, size = min(load_time(1_000, 10) for _ in range(3))
    print(f"load + check 1,000 stories x 10 steps ({size / 1e6:.1f} MB of YAML): {seconds:.2f} s (best of 3)")


if __name__ == "__main__":
    main()
