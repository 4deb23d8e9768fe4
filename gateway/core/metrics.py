"""Prometheus metrics of one process, on a registry of its own (so tests can run many apps at once)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhooks = Counter(
            "gateway_webhook_requests",
            "Webhook requests by channel and outcome",
            ["channel", "outcome"],
            registry=r,
        )
        self.inbound_published = Counter(
            "gateway_inbound_published", "Inbound messages accepted onto the bus", ["channel"], registry=r
        )
        self.handled = Counter(
            "gateway_messages_handled", "Inbound messages handled by story workers", ["outcome"], registry=r
        )
        self.handle_seconds = Histogram(
            "gateway_handle_seconds",
            "Time to handle one inbound message in a worker",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.replies = Counter(
            "gateway_replies", "Replies delivered to channels", ["channel", "outcome"], registry=r
        )
        self.emails = Counter("gateway_emails", "Email jobs by outcome", ["outcome"], registry=r)
        self.ready = Gauge("gateway_ready", "1 when the broker and the store answer", registry=r)
        self.timers_pending = Gauge(
            "gateway_timers_pending",
            "Timers waiting to fall due in the schedule partitions this process polls (sum over processes)",
            registry=r,
        )
        self.timers_fired = Counter(
            "gateway_timers_fired", "Timers that fell due and ran their target", ["kind"], registry=r
        )
        self.timers_cancelled = Counter(
            "gateway_timers_cancelled",
            "Timers cancelled before they fell due (reply, new_story, replaced) or dropped (target_gone)",
            ["reason"],
            registry=r,
        )
        self.timer_lateness = Histogram(
            "gateway_timer_lateness_seconds",
            "From a timer's due time to its turn in a worker",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.http_calls = Counter(
            "gateway_http_calls",
            "Calls of the stories' http actions by host and outcome (ok, status, timeout, network, ...)",
            ["host", "outcome"],
            registry=r,
        )
        self.http_call_seconds = Histogram(
            "gateway_http_call_seconds",
            "Time of one http action's call, retries included, by host",
            ["host"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.handoffs_open = Gauge(
            "gateway_handoffs_open",
            "Conversations handed over to a person now (read from the store at each scrape)",
            registry=r,
        )
        self.handoffs = Counter(
            "gateway_handoffs",
            "Conversations handed over (opened) and handed back, by how",
            ["event"],
            registry=r,
        )
        self.staff_replies = Counter(
            "gateway_staff_replies",
            "Answers of a person passed on to the user, by desk",
            ["desk"],
            registry=r,
        )
        self.desk_messages = Counter(
            "gateway_desk_messages", "Messages of users passed on to a desk, by desk", ["desk"], registry=r
        )
        self.inbox_refused = Counter(
            "gateway_inbox_refused",
            "Inbound mails the inbox refused, by reason (not_staff, bad_token, handed_back, too_big, "
            "unparseable, no_text, duplicate)",
            ["reason"],
            registry=r,
        )
        self.inbox_accepted = Counter(
            "gateway_inbox_accepted", "Staff replies the inbox accepted onto the bus", registry=r
        )
        self.first_staff_answer = Histogram(
            "gateway_handoff_first_answer_seconds",
            "From a conversation's handoff to the first answer of a person",
            registry=r,
            buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600, 86400),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
