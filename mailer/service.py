"""The mailer role: take email jobs off the bus and deliver each one once.

Per job: parse it (a job that does not parse is dead-lettered), drop it when the store says it was
sent already, build the message, send it, and record it as sent *before* returning — the bus
acknowledges only after the handler returns, so a crash in between costs at most one repeat, never a
loss.

Temporary failures are retried inside the handler with exponential backoff and full jitter: a job
waiting for its next try holds only its own concurrency slot, so other jobs keep flowing. After
``max_tries`` tries, or at once on a permanent failure, the job is dead-lettered with the server's
reply as the reason (``gateway mailer dead`` shows it, ``gateway mailer replay`` retries it).

Two copies of one job handled at the same moment in this process are sent once: the second waits for
the first and then finds it recorded. Across processes (a worker re-published a job whose first copy
was still queued, and two mailers took one each) a lease in the store does the same: only the mailer
holding the job's lease looks for the record and sends; the other copy is retried in place by the bus
until the holder has recorded the job (then it is dropped as a duplicate) or its lease has run out (its
holder died before sending; then this copy goes ahead). Before waiting to retry, the holder extends the
lease over the wait and the next try, and drops its copy if it finds the job sent by a mailer that took
over meanwhile. A send that succeeded but could not be recorded (the store was away) is remembered here,
so the bus's retry records it instead of sending again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from email.message import EmailMessage
from typing import NoReturn

from gateway.core import timeline, tracing
from gateway.core.bus.base import Bus, Delivery, Subscription, Topic
from gateway.core.errors import Rejected, SchemaError, StoreUnavailable, Unavailable
from gateway.core.faults import FaultPoints
from gateway.core.metrics import Metrics
from gateway.core.retry import full_jitter
from gateway.core.schema import EmailJob, parse_email
from gateway.core.store.base import Store
from gateway.core.store.effects import SentRecords
from mailer.message import build_message, parse_sender
from mailer.transport import MailTransport, PermanentMailError, TemporaryMailError

log = logging.getLogger(__name__)

SEEN_NAMESPACE = "email"
LEASE_NAMESPACE = "email-sending"


class Mailer:
    """Consume :attr:`Topic.EMAIL` and deliver through ``transport``.

    ``counters`` counts ``sent``, ``retried`` (tries after a temporary failure), ``failed``
    (dead-lettered) and ``duplicate`` (dropped as already sent), as ``gateway_emails_total{outcome}`` of
    ``metrics`` does; ``handled`` counts finished handler calls, whatever their outcome, and
    :meth:`wait_handled` waits for it.
    """

    def __init__(
        self,
        bus: Bus,
        store: Store,
        transport: MailTransport,
        *,
        mail_from: str,
        max_recipients: int = 10,
        dedup_ttl: float = 86400.0,
        retry_base: float = 1.0,
        retry_max: float = 300.0,
        max_tries: int = 8,
        lease_ttl: float = 120.0,
        metrics: Metrics | None = None,
    ) -> None:
        parse_sender(mail_from)  # a bad GATEWAY_MAIL_FROM fails here, at start, not once per job
        if max_tries < 1:
            raise ValueError("max_tries must be at least 1")
        self.bus = bus
        self.store = store
        self.transport = transport
        self.mail_from = mail_from
        self.max_recipients = max_recipients
        self.dedup_ttl = dedup_ttl
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.max_tries = max_tries
        self.lease_ttl = lease_ttl
        self._faults = FaultPoints()
        self.metrics = metrics or Metrics()
        self.counters: dict[str, int] = {"sent": 0, "retried": 0, "failed": 0, "duplicate": 0}
        self.handled = 0
        self._progress = asyncio.Event()  # set and replaced after each handler call
        self._subscription: Subscription | None = None
        self._in_flight: dict[str, asyncio.Event] = {}
        self.sent = SentRecords(store, SEEN_NAMESPACE, dedup_ttl)
        self.holder = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"  # names its leases
        self._stopping = asyncio.Event()

    async def start(self, concurrency: int = 8) -> None:
        """Subscribe to the email topic; up to ``concurrency`` jobs are handled at once."""
        if self._subscription is None:
            self._subscription = await self.bus.subscribe(Topic.EMAIL, self.handle, concurrency=concurrency)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking jobs, let running sends finish (up to ``timeout``), close the transport.

        A job waiting to retry is not waited for: it goes back to the queue unacknowledged (the bus
        retries an :class:`Unavailable` elsewhere or later), so stopping is quick and loses nothing.
        """
        self._stopping.set()
        subscription, self._subscription = self._subscription, None
        try:
            if subscription is not None:
                await subscription.stop(timeout)
        finally:
            await self.transport.close()

    async def handle(self, delivery: Delivery) -> None:
        with tracing.consuming("send email", delivery.envelope):
            await self._handle(delivery)

    async def _handle(self, delivery: Delivery) -> None:
        """The bus handler: returns once the job is sent (or was already); Rejected when it never will be."""
        try:
            job = parse_email(delivery.envelope.body)
        except SchemaError as exc:
            self._count("failed")
            self._count_handled()
            raise Rejected(str(exc)) from None
        # Another copy of this job is being handled here right now: wait for it, then look again.
        while (running := self._in_flight.get(job.id)) is not None:
            await running.wait()
        done = self._in_flight[job.id] = asyncio.Event()
        try:
            await self._deliver_once(job)
        finally:
            del self._in_flight[job.id]
            done.set()
            self._count_handled()

    async def wait_handled(self, count: int) -> None:
        """Return once ``count`` handler calls have finished (sent, dropped, failed or raised)."""
        while self.handled < count:
            await self._progress.wait()

    def _count(self, outcome: str) -> None:
        self.counters[outcome] += 1
        self.metrics.emails.labels(outcome).inc()

    def _count_handled(self) -> None:
        self.handled += 1
        self._progress.set()
        self._progress = asyncio.Event()

    async def _deliver_once(self, job: EmailJob) -> None:
        try:
            if self.sent.unrecorded(job.id):
                await self._record(job)
                return
        except StoreUnavailable as exc:
            raise Unavailable(f"store unavailable: {exc}") from exc
        if not await self._keep_lease(job, self.lease_ttl):
            return
        try:
            try:
                message = build_message(job, self.mail_from, max_recipients=self.max_recipients)
            except PermanentMailError as exc:
                self._fail(job, str(exc))
            if not await self._send_with_retries(job, message):
                return
        except BaseException:
            await self._release(job)  # nothing went out: another copy may go ahead
            raise
        self._count("sent")
        timeline.mark("email.sent", job.id)
        log.info("email %s sent (%s)", job.id, message.get("Message-ID"))
        try:
            await self._record(job)
        except StoreUnavailable as exc:
            raise Unavailable(f"email {job.id} sent but not recorded, the store is away: {exc}") from exc
        self._faults.reach("after_record", job.id)

    async def _sent_by_another(self, job: EmailJob) -> bool:
        """Under the lease: was the job recorded as sent (by a copy handled before)? Then drop this one."""
        if not await self.sent.was_sent(job.id):
            return False
        await self._release(job)
        self._count("duplicate")
        log.info("email %s was sent already; dropped", job.id)
        return True

    async def _record(self, job: EmailJob) -> None:
        """Record the job as sent, then free its lease: whoever takes the lease next finds the record."""
        await self.sent.record(job.id)
        await self._release(job)

    async def _release(self, job: EmailJob) -> None:
        """Free the lease now; if the store is away it runs out by itself after ``lease_ttl``."""
        with contextlib.suppress(StoreUnavailable):
            await self.store.release(LEASE_NAMESPACE, job.id, self.holder)

    async def _keep_lease(self, job: EmailJob, seconds: float) -> bool:
        """Take or extend the lease for ``seconds`` from now; False if the job is recorded as sent (by a copy
        handled before, or by a mailer that took the lease over while this one waited): this copy is then
        dropped. Unavailable if another mailer holds the lease, or the store is away: the bus retries this
        copy later."""
        try:
            if not await self.store.lease(LEASE_NAMESPACE, job.id, self.holder, seconds):
                raise Unavailable(f"email {job.id} is being sent by another mailer; waiting for its record")
            return not await self._sent_by_another(job)
        except StoreUnavailable as exc:
            raise Unavailable(f"store unavailable: {exc}") from exc

    async def _send_with_retries(self, job: EmailJob, message: EmailMessage) -> bool:
        """Send, retrying temporary failures; True once sent, False if another mailer sent it meanwhile."""
        for tries in range(1, self.max_tries + 1):
            try:
                await self.transport.send(message)
                return True
            except PermanentMailError as exc:
                self._fail(job, str(exc))
            except TemporaryMailError as exc:
                if tries == self.max_tries:
                    self._fail(job, f"gave up after {tries} tries: {exc}")
                delay = self.backoff(tries)
                log.warning("email %s: try %d failed (%s); next in %.2fs", job.id, tries, exc, delay)
                # held through the wait and the next try: no other mailer can send it meanwhile
                if not await self._keep_lease(job, delay + self.lease_ttl):
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    raise Unavailable(f"mailer stopping; email {job.id} goes back to the queue") from exc
                self._count("retried")
        raise AssertionError("unreachable: the last try returns or fails")

    def backoff(self, tries: int) -> float:
        """Full jitter: uniform in [0, min(retry_max, retry_base * 2 ** (tries - 1))]."""
        return full_jitter(tries, self.retry_base, self.retry_max)

    def _fail(self, job: EmailJob, reason: str) -> NoReturn:
        self._count("failed")
        log.error("email %s dead-lettered: %s", job.id, reason)
        raise Rejected(reason)
