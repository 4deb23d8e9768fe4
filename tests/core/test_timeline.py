"""Stage marks for benchmarks (gateway/core/timeline.py): nothing kept while off; kept, saved and
forgotten while on; the dispatcher marks each delivery's arrival, start and ack."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core import timeline
from gateway.core.bus.base import Delivery, Topic
from gateway.core.bus.dispatch import Dispatcher, RawDelivery
from gateway.core.settings import Settings
from tests.support.bus import envelope


@pytest.fixture
def recording() -> Iterator[None]:
    timeline.start()
    yield
    timeline.stop()


def lines(path: Path) -> list[tuple[int, str, str]]:
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    return [(int(at), stage, item) for at, stage, item in rows]


def test_marks_are_not_kept_while_off(tmp_path: Path) -> None:
    timeline.mark("turn.loaded", "m1")
    assert not timeline.recording()
    assert timeline.save(tmp_path / "marks.tsv") == 0
    assert not (tmp_path / "marks.tsv").exists()


def test_marks_are_saved_in_order_then_forgotten(tmp_path: Path, recording: None) -> None:
    timeline.mark("webhook.received", "m1", 5)
    timeline.mark("inbound.confirmed", "m1")
    path = tmp_path / "sub" / "serve-1.tsv"
    assert timeline.save(path) == 2
    (at1, stage1, item1), (at2, stage2, item2) = lines(path)
    assert (at1, stage1, item1) == (5, "webhook.received", "m1")
    assert (stage2, item2) == ("inbound.confirmed", "m1") and at2 > 5
    timeline.mark("turn.loaded", "m2")
    assert timeline.save(path) == 1  # appended: the file keeps what an earlier save wrote
    assert [stage for _, stage, _ in lines(path)][-1] == "turn.loaded"


async def test_the_dispatcher_marks_arrival_start_and_ack(tmp_path: Path, recording: None) -> None:
    acked = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        timeline.mark("handled", delivery.envelope.message_id)

    async def ack() -> None:
        acked.set()

    async def bury(raw: RawDelivery, reason: str, attempts: int) -> None:
        raise AssertionError(reason)

    dispatcher = Dispatcher(Topic.OUTBOUND, handler, concurrency=4, max_attempts=1, dead_letter=bury)
    message = envelope("chat-1", 0)
    dispatcher.submit(RawDelivery(message, 0, False, ack))
    await acked.wait()
    await dispatcher.stop(1.0)
    timeline.save(tmp_path / "marks.tsv")
    marks = lines(tmp_path / "marks.tsv")
    assert [stage for _, stage, _ in marks] == [
        "outbound.arrived",
        "outbound.started",
        "handled",
        "outbound.acked",
    ]
    assert {item for _, _, item in marks} == {message.message_id}
    assert [at for at, _, _ in marks] == sorted(at for at, _, _ in marks)


def test_the_setting_names_a_folder() -> None:
    assert Settings.from_env({}, dotenv=None).timeline is None
    assert Settings.from_env({"GATEWAY_TIMELINE": "/tmp/marks"}, dotenv=None).timeline == Path("/tmp/marks")
