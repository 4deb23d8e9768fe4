"""The shared dispatcher (gateway/core/bus/dispatch.py), whose rules both buses use: concurrency, keys
released and resumed, stop, backoff, and work resuming after an outage."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from gateway.core.bus.base import Delivery, RunHandler, RunStopped, Topic
from gateway.core.bus.dispatch import Backoff, Dispatcher, RawDelivery
from gateway.core.errors import Rejected, Unavailable
from tests.support.bus import Watch, envelope


class Acks:
    def __init__(self) -> None:
        self.done: list[str] = []
        self.buried: list[tuple[str, str, int]] = []
        self.changed = asyncio.Event()

    def raw(self, key: str, n: int, source: int = 0) -> RawDelivery:
        env = envelope(key, n)

        async def ack() -> None:
            self.done.append(env.message_id)
            self.changed.set()

        return RawDelivery(env, source, False, ack)

    async def bury(self, raw: RawDelivery, reason: str, attempts: int) -> None:
        self.buried.append((raw.envelope.message_id, reason, attempts))
        self.changed.set()


async def turns(count: int = 20) -> None:
    """Let every ready task run (no time passes); used to show something does NOT start."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_dispatcher_runs_at_most_concurrency_calls_and_forgets_idle_keys() -> None:
    acks = Acks()
    gate = asyncio.Event()
    started: list[str] = []

    async def handler(delivery: Delivery) -> None:
        started.append(delivery.envelope.key)
        await gate.wait()

    dispatcher = Dispatcher(Topic.INBOUND, handler, concurrency=2, max_attempts=3, dead_letter=acks.bury)
    for n in range(4):
        dispatcher.submit(acks.raw(f"key-{n}", 0))
    await turns()
    assert started == ["key-0", "key-1"]
    assert dispatcher.lane_count == 4
    gate.set()
    await turns()
    assert len(acks.done) == 4
    assert dispatcher.lane_count == 0  # the per-key map shrinks back to nothing
    assert await dispatcher.stop(1.0) == []


async def test_dispatcher_release_yields_one_source_and_keeps_the_others_running() -> None:
    acks = Acks()
    gate = asyncio.Event()
    started: list[str] = []

    async def handler(delivery: Delivery) -> None:
        started.append(delivery.envelope.message_id)
        if delivery.envelope.key == "held":
            await gate.wait()

    dispatcher = Dispatcher(Topic.INBOUND, handler, concurrency=8, max_attempts=3, dead_letter=acks.bury)
    for n in range(3):
        dispatcher.submit(acks.raw("held", n, source=1))
    await turns()
    releasing = asyncio.create_task(dispatcher.release(1, timeout=5.0))
    await turns()
    dispatcher.submit(acks.raw("other", 0, source=2))
    dispatcher.submit(acks.raw("held", 3, source=1))
    await turns()
    assert not releasing.done() and started == ["held/0", "other/0"]
    gate.set()
    given_back = await releasing
    assert given_back is not None
    assert [raw.envelope.message_id for raw in given_back] == ["held/1", "held/2", "held/3"]
    assert acks.done == ["other/0", "held/0"]
    dispatcher.submit(acks.raw("held", 4, source=1))
    await turns()
    assert started == ["held/0", "other/0"]  # still held until resumed
    dispatcher.resume(1)
    await turns()
    assert started[-1] == "held/4"


async def test_dispatcher_stop_cancels_calls_that_outlive_the_timeout_and_gives_them_back() -> None:
    acks = Acks()
    never = asyncio.Event()

    async def stuck(delivery: Delivery) -> None:
        await never.wait()

    dispatcher = Dispatcher(Topic.EMAIL, stuck, concurrency=1, max_attempts=3, dead_letter=acks.bury)
    dispatcher.submit(acks.raw("", 0))
    dispatcher.submit(acks.raw("", 1))
    await turns()
    given_back = await dispatcher.stop(timeout=0.05)
    assert [raw.envelope.message_id for raw in given_back] == ["/0", "/1"]
    assert acks.done == []


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial=0.05, maximum=2.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert backoff.delay(500) == 2.0


async def test_work_held_up_by_an_outage_resumes_as_soon_as_another_call_succeeds() -> None:
    """A delivery paused on Unavailable is woken by the first success of its dispatcher (the service is
    back), not left to its own backoff, so a whole backlog resumes together after an outage."""
    acks = Acks()
    service_up = False
    calls: dict[str, int] = defaultdict(int)
    watch = Watch()

    async def handler(delivery: Delivery) -> None:
        calls[delivery.envelope.message_id] += 1
        watch.changed()
        if not service_up:
            raise Unavailable("store away")

    slow_retries = Backoff(initial=30.0, maximum=30.0)  # left alone, the retry would come in 30 s
    dispatcher = Dispatcher(
        Topic.INBOUND, handler, concurrency=4, max_attempts=3, dead_letter=acks.bury, backoff=slow_retries
    )
    done: list[str] = []

    def raw(key: str) -> RawDelivery:
        async def ack() -> None:
            done.append(f"{key}/0")
            watch.changed()

        return RawDelivery(envelope(key, 0), 0, False, ack)

    for key in ("a", "b", "c"):
        dispatcher.submit(raw(key))
    await watch.until(lambda: len(calls) == 3)
    service_up = True
    dispatcher.submit(raw("d"))  # the first call after the outage
    await watch.until(lambda: sorted(done) == ["a/0", "b/0", "c/0", "d/0"], timeout=5.0)
    assert dict(calls) == {"a/0": 2, "b/0": 2, "c/0": 2, "d/0": 1}
    assert await dispatcher.stop(timeout=1.0) == []


class Runs(RunHandler):
    """A run handler that records each call's message ids and stops once at the deliveries told to fail."""

    def __init__(self, failures: dict[str, Exception] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.attempts: list[tuple[str, int]] = []
        self.failures = dict(failures or {})

    def _handle(self, delivery: Delivery) -> None:
        self.attempts.append((delivery.envelope.message_id, delivery.attempt))
        error = self.failures.pop(delivery.envelope.message_id, None)
        if error is not None:
            raise error

    async def __call__(self, delivery: Delivery) -> None:
        self.calls.append([delivery.envelope.message_id])
        self._handle(delivery)

    async def run(self, deliveries: Sequence[Delivery]) -> None:
        self.calls.append([d.envelope.message_id for d in deliveries])
        for index, delivery in enumerate(deliveries):
            try:
                self._handle(delivery)
            except Exception as exc:
                raise RunStopped(index, exc) from None


def run_dispatcher(handler: Runs, acks: Acks, topic: Topic = Topic.OUTBOUND) -> Dispatcher:
    fast = Backoff(initial=0.001, maximum=0.001)
    return Dispatcher(topic, handler, concurrency=4, max_attempts=3, dead_letter=acks.bury, backoff=fast)


async def settled(acks: Acks, count: int) -> None:
    """Wait until ``count`` deliveries were acknowledged or buried."""
    async with asyncio.timeout(5):
        while len(acks.done) + len(acks.buried) < count:
            acks.changed.clear()
            await acks.changed.wait()


async def test_a_run_handler_gets_the_deliveries_of_a_key_that_wait_together_in_one_call() -> None:
    acks, runs = Acks(), Runs()
    dispatcher = run_dispatcher(runs, acks)
    for n in range(3):
        dispatcher.submit(acks.raw("chat-a", n))
    dispatcher.submit(acks.raw("chat-b", 0))
    await settled(acks, 4)
    assert runs.calls == [["chat-a/0", "chat-a/1", "chat-a/2"], ["chat-b/0"]]  # alone: called as a handler
    assert [m for m in acks.done if m.startswith("chat-a")] == ["chat-a/0", "chat-a/1", "chat-a/2"]
    await dispatcher.stop(1.0)


async def test_a_run_stopped_by_a_rejection_buries_that_delivery_and_goes_on_after_it() -> None:
    acks, runs = Acks(), Runs({"chat-a/1": Rejected("chat blocked")})
    dispatcher = run_dispatcher(runs, acks)
    for n in range(3):
        dispatcher.submit(acks.raw("chat-a", n))
    await settled(acks, 3)
    assert runs.calls == [["chat-a/0", "chat-a/1", "chat-a/2"], ["chat-a/2"]]
    assert acks.done == ["chat-a/0", "chat-a/2"]
    assert acks.buried == [("chat-a/1", "chat blocked", 1)]
    await dispatcher.stop(1.0)


async def test_a_run_stopped_by_an_outage_acknowledges_what_was_finished_and_resumes_at_the_stop() -> None:
    acks, runs = Acks(), Runs({"chat-a/1": Unavailable("store away"), "chat-a/2": ValueError("bug")})
    dispatcher = run_dispatcher(runs, acks)
    for n in range(4):
        dispatcher.submit(acks.raw("chat-a", n))
    await settled(acks, 4)
    assert runs.calls == [
        ["chat-a/0", "chat-a/1", "chat-a/2", "chat-a/3"],
        ["chat-a/1", "chat-a/2", "chat-a/3"],  # not acknowledged after the stop, so handled again
        ["chat-a/2", "chat-a/3"],
    ]
    # An outage is no failure (attempt 1 again); an exception is, as for a handler called on it alone.
    assert [a for a in runs.attempts if a[0] != "chat-a/0"][:4] == [
        ("chat-a/1", 1),
        ("chat-a/1", 1),
        ("chat-a/2", 1),
        ("chat-a/2", 2),
    ]
    assert acks.done == ["chat-a/0", "chat-a/1", "chat-a/2", "chat-a/3"] and acks.buried == []
    await dispatcher.stop(1.0)


async def test_an_unordered_topic_never_runs() -> None:
    acks, runs = Acks(), Runs()
    dispatcher = run_dispatcher(runs, acks, Topic.EMAIL)
    for n in range(3):
        dispatcher.submit(acks.raw("jobs", n))
    await settled(acks, 3)
    assert sorted(runs.calls) == [["jobs/0"], ["jobs/1"], ["jobs/2"]]
    await dispatcher.stop(1.0)


async def test_a_handler_waiting_aside_gives_its_slot_to_other_keys_and_keeps_its_own_order() -> None:
    """One slot: key a's first call waits on an API outside its slot; b runs meanwhile, a's second waits."""
    acks = Acks()
    api = asyncio.Event()
    log: list[str] = []

    async def handler(delivery: Delivery) -> None:
        name = delivery.envelope.message_id
        log.append(f"start {name}")
        if name == envelope("a", 0).message_id:
            async with delivery.aside():
                log.append("waiting on the api")
                await api.wait()
        log.append(f"end {name}")

    dispatcher = Dispatcher(Topic.INBOUND, handler, concurrency=1, max_attempts=3, dead_letter=acks.bury)
    a0, a1, b0 = acks.raw("a", 0), acks.raw("a", 1), acks.raw("b", 0)
    for raw in (a0, a1, b0):
        dispatcher.submit(raw)
    await turns()
    assert log == [f"start {a0.envelope.message_id}", "waiting on the api", f"start {b0.envelope.message_id}",
                   f"end {b0.envelope.message_id}"]  # fmt: skip
    assert acks.done == [b0.envelope.message_id]
    api.set()
    await turns()
    assert log[4:] == [f"end {a0.envelope.message_id}", f"start {a1.envelope.message_id}",
                       f"end {a1.envelope.message_id}"]  # fmt: skip
    assert acks.done == [b0.envelope.message_id, a0.envelope.message_id, a1.envelope.message_id]
    assert dispatcher._running == 0
    assert await dispatcher.stop(1.0) == []


async def test_a_handler_coming_back_from_aside_waits_for_a_free_slot() -> None:
    acks = Acks()
    api, busy = asyncio.Event(), asyncio.Event()
    running: list[int] = []
    peak: list[int] = []

    async def handler(delivery: Delivery) -> None:
        running.append(1)
        peak.append(len(running))
        if delivery.envelope.key == "a":
            running.pop()
            async with delivery.aside():
                await api.wait()
            running.append(1)
            peak.append(len(running))
        else:
            await busy.wait()
        running.pop()

    dispatcher = Dispatcher(Topic.INBOUND, handler, concurrency=1, max_attempts=3, dead_letter=acks.bury)
    dispatcher.submit(acks.raw("a", 0))
    dispatcher.submit(acks.raw("b", 0))
    await turns()
    api.set()  # a's answer comes while b holds the only slot: a waits for it
    await turns()
    assert acks.done == [] and max(peak) == 1
    busy.set()
    await turns()
    assert len(acks.done) == 2 and max(peak) == 1
    assert dispatcher._running == 0


async def test_a_handler_cancelled_while_aside_leaves_the_slot_count_right() -> None:
    acks = Acks()
    never = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        async with delivery.aside():
            await never.wait()

    dispatcher = Dispatcher(Topic.INBOUND, handler, concurrency=2, max_attempts=3, dead_letter=acks.bury)
    dispatcher.submit(acks.raw("a", 0))
    dispatcher.submit(acks.raw("b", 0))
    await turns()
    left = await dispatcher.stop(0.01)  # cancels both, waiting aside
    assert len(left) == 2
    assert dispatcher._running == 0


async def test_a_handler_back_from_aside_gets_the_next_slot_before_deliveries_not_started() -> None:
    acks = Acks()
    api, busy = asyncio.Event(), asyncio.Event()
    log: list[str] = []

    async def handler(delivery: Delivery) -> None:
        key = delivery.envelope.key
        log.append(f"start {key}")
        if key == "a":
            async with delivery.aside():
                await api.wait()
        elif key == "b":
            await busy.wait()
        log.append(f"end {key}")

    dispatcher = Dispatcher(Topic.INBOUND, handler, concurrency=1, max_attempts=3, dead_letter=acks.bury)
    for key in ("a", "b", "c"):
        dispatcher.submit(acks.raw(key, 0))
    await turns()
    assert log == ["start a", "start b"]  # a waits aside, b holds the slot, c waits for it
    api.set()
    await turns()
    busy.set()
    await turns()
    assert log == ["start a", "start b", "end b", "end a", "start c", "end c"]
