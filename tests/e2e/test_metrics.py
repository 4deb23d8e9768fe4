"""Every metric family moves when its event happens, read from `/metrics` of the process that counts it.

`serve` counts webhooks, published inbound messages, replies and readiness; a `worker` counts handled
messages and their handling time; the `mailer` counts emails. Roles without webhooks serve `/metrics` on
``GATEWAY_METRICS_PORT``. (Issue 11, point 3: the mailer's counts used to be in a dict nothing exported.)
"""

from __future__ import annotations

import re

import aiohttp

from tests.support.deployment import TelegramUser
from tests.support.fakes import FakeTelegram
from tests.support.processes import GatewayProcess, Start
from tests.support.smtp_sink import SmtpSink


async def scrape(http: aiohttp.ClientSession, address: str) -> dict[str, float]:
    """One process's samples by name and labels, e.g. ``gateway_emails_total{outcome="sent"}``."""
    async with http.get(f"{address}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def health_address(role: GatewayProcess) -> str:
    return (await role.wait_for(r"health and metrics on (http://\S+)")).group(1)


async def test_each_metric_family_moves_when_its_event_happens(
    start_role: Start, telegram: FakeTelegram, smtp: SmtpSink
) -> None:
    serve = await start_role("serve")
    worker = await start_role("worker", GATEWAY_METRICS_PORT="0")
    mailer = await start_role("mailer", GATEWAY_METRICS_PORT="0")
    address = (await serve.wait_for(r"listening on (http://\S+)")).group(1)
    async with aiohttp.ClientSession() as http:
        worker_address, mailer_address = await health_address(worker), await health_address(mailer)
        before = await scrape(http, mailer_address)
        assert before.get('gateway_emails_total{outcome="sent"}', 0.0) == 0.0

        telegram.fail_next(1, 429, method="sendMessage", retry_after=0)
        user = TelegramUser(http, address, chat_id=4343, first_update=100)
        for text in ("help", "the printer"):
            assert await user.say(text) == 200
            await telegram.wait_for_calls(1, method="sendMessage", ok=True)
        await telegram.wait_for_calls(2, method="sendMessage", ok=True)
        await smtp.wait_for(1)
        assert await user.post({"update_id": 1, "message": {}}, secret="wrong") == 401

        served = await scrape(http, address)
        worked = await scrape(http, worker_address)
        mailed = await scrape(http, mailer_address)
        async with http.get(f"{worker_address}/readyz") as response:
            assert response.status == 200

    assert served['gateway_webhook_requests_total{channel="telegram",outcome="accepted"}'] == 2
    assert served['gateway_webhook_requests_total{channel="telegram",outcome="refused_401"}'] == 1
    assert served['gateway_inbound_published_total{channel="telegram"}'] == 2
    assert served['gateway_replies_total{channel="telegram",outcome="sent"}'] == 2
    assert served['gateway_replies_total{channel="telegram",outcome="retried"}'] == 1
    assert served["gateway_ready"] == 1
    assert worked['gateway_messages_handled_total{outcome="handled"}'] == 2
    assert worked["gateway_handle_seconds_count"] == 2
    assert mailed['gateway_emails_total{outcome="sent"}'] == 1
    assert not any(re.match(r"gateway_emails_total", name) for name in served), "serve sends no email"
