"""The ``timers`` record: small, read back exactly, and an unreadable one is no timers rather than a
conversation stuck failing."""

from __future__ import annotations

import logging

import pytest

from gateway.core.schema import ConversationKey
from worker.engine.model import TimerTarget
from worker.timers.pending import PendingTimer, PendingTimers, firing, firing_id, timer_id

KEY = ConversationKey("telegram", "4711", "4711")


def test_the_record_reads_back_as_written() -> None:
    pending = PendingTimers(
        (
            PendingTimer("AbCd-_Ef0", 1_700_000_600_000, "timeout", TimerTarget("support", "nudge")),
            PendingTimer("AbCd-_Ef1", 1_700_172_800_000, "follow_up", TimerTarget("quiz", None)),
            PendingTimer(
                "Zz0123456", 1_700_000_660_000, "follow_up", TimerTarget("a", "b"), keep_on_reply=True
            ),
        ),
        {"thread_ts": "1712.5", "note": 'ü "quoted"\nline'},
    )
    assert PendingTimers.decode(pending.encode(), KEY) == pending
    assert PendingTimers.decode(None, KEY) == PendingTimers()


def test_one_timeout_fits_a_small_redis_string() -> None:
    """Up to 44 bytes Redis stores a string inside its object header: one allocation, not two."""
    one = PendingTimers((PendingTimer(timer_id("telegram:update:123456789", 0), 1_700_000_600_000, "timeout",
                                      TimerTarget("support", "nudge")),))  # fmt: skip
    assert len(one.encode()) <= 44, one.encode()


@pytest.mark.parametrize("raw", [b"v9\nx", b"v1\nnot enough fields", b"v1\nid 12 z s t", b"\xff\xfe"])
def test_an_unreadable_record_is_no_timers(raw: bytes, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.timers"):
        assert PendingTimers.decode(raw, KEY) == PendingTimers()
    assert "unreadable pending timers of telegram/4711/4711 dropped" in caplog.text


def test_ids_are_deterministic_short_and_distinct() -> None:
    assert timer_id("telegram:update:1", 0) == timer_id("telegram:update:1", 0)
    assert timer_id("telegram:update:1", 0) != timer_id("telegram:update:2", 0)
    assert timer_id("telegram:update:1", 0)[:-1] == timer_id("telegram:update:1", 1)[:-1]
    assert len(timer_id("x" * 500, 3)) == 9
    assert firing_id(KEY, "t0") == "timer:telegram/4711/4711:t0"
    long_key = ConversationKey("webchat", "c" * 400, "u" * 400)
    assert len(firing_id(long_key, "t0")) <= 512 and firing_id(long_key, "t0") != firing_id(KEY, "t0")
    message = firing(KEY, "t0", 1_700_000_600_123)
    assert (message.timer, message.sent_at, message.text) == ("t0", 1_700_000_600.123, "")
