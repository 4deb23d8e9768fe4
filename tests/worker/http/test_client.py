"""The real HTTP client against a local fake API: limits, retries, redirects, refused addresses, metrics."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.core.metrics import Metrics
from tests.support.fakes.json_api import Answer, FakeJsonApi
from worker.engine.calls import HttpAnswer, HttpRequest
from worker.http import AddressPolicy, HttpClient

MiB = 1024 * 1024
LOCAL = AddressPolicy(["127.0.0.1"])


@pytest.fixture
async def api() -> AsyncIterator[FakeJsonApi]:
    async with FakeJsonApi() as fake:
        yield fake


def request(
    url: str,
    *,
    method: str = "GET",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes | None = None,
    timeout: float = 3.0,
    key: str = "tg:1/h0",
    secret_headers: frozenset[str] = frozenset(),
) -> HttpRequest:
    return HttpRequest(method, url, headers, body, timeout, key, "127.0.0.1", "bot.yml:1:1", secret_headers)


async def call(client: HttpClient, req: HttpRequest) -> HttpAnswer:
    try:
        return await client.call(req)
    finally:
        await client.close()


async def test_a_call_sends_its_request_with_the_idempotency_key(api: FakeJsonApi) -> None:
    api.script("/orders", Answer(201, json={"id": 7}, headers={"Set-Cookie": "s=1"}))
    client = HttpClient(LOCAL, retry_base=0.01)
    body = json.dumps({"note": "hé"}).encode()
    headers = (("Authorization", "Bearer t"), ("Content-Type", "application/json"))
    first = await client.call(request(api.url("/orders?a=1"), method="POST", headers=headers, body=body))
    second = await call(client, request(api.url("/orders"), method="POST", body=b"plain", key="tg:1/h1"))
    assert (first.status, first.error, json.loads(first.body)) == (201, None, {"id": 7})
    assert second.ok
    one, two = api.requests
    assert (one.method, one.query, one.json(), one.headers["Idempotency-Key"]) == (
        "POST", {"a": "1"}, {"note": "hé"}, "tg:1/h0"
    )  # fmt: skip
    assert one.headers["Authorization"] == "Bearer t"
    assert one.headers["Content-Type"] == "application/json"
    assert (two.body, two.headers["Idempotency-Key"]) == (b"plain", "tg:1/h1")
    assert "Cookie" not in two.headers  # nothing kept between calls (conversations share the client)


async def test_503_then_200_is_one_call_retried_with_the_same_key(api: FakeJsonApi) -> None:
    api.script("/x", Answer(503), Answer(json={"ok": True}))
    metrics = Metrics()
    answer = await call(HttpClient(LOCAL, retry_base=0.01, metrics=metrics), request(api.url("/x")))
    assert (answer.status, answer.error) == (200, None)
    assert [r.headers["Idempotency-Key"] for r in api.requests] == ["tg:1/h0", "tg:1/h0"]
    assert metrics.http_calls.labels("127.0.0.1", "ok")._value.get() == 1
    assert metrics.http_call_seconds.labels("127.0.0.1")._sum.get() > 0


async def test_a_429_waits_for_its_retry_after(api: FakeJsonApi) -> None:
    api.script("/x", Answer(429, headers={"Retry-After": "0.3"}), Answer(json={}))
    started = time.perf_counter()
    answer = await call(HttpClient(LOCAL, retry_base=0.001, retry_cap=0.001), request(api.url("/x")))
    assert answer.ok
    assert time.perf_counter() - started >= 0.3


async def test_a_permanent_500_is_retried_within_the_timeout_then_fails(api: FakeJsonApi) -> None:
    api.script("/x", Answer(500, json={"error": "boom"}))
    metrics = Metrics()
    started = time.perf_counter()
    client = HttpClient(LOCAL, retry_base=0.05, metrics=metrics)
    answer = await call(client, request(api.url("/x"), timeout=1.0))
    elapsed = time.perf_counter() - started
    assert (answer.status, answer.error) == (500, "status 500")
    assert len(api.requests) >= 3
    assert {r.headers["Idempotency-Key"] for r in api.requests} == {"tg:1/h0"}
    assert elapsed < 2.0  # its timeout (1 s), give or take a loaded machine: it did not wait for a success
    assert metrics.http_calls.labels("127.0.0.1", "status")._value.get() == 1


async def test_a_4xx_is_not_retried(api: FakeJsonApi) -> None:
    api.script("/x", Answer(404))
    answer = await call(HttpClient(LOCAL), request(api.url("/x")))
    assert (answer.error, len(api.requests)) == ("status 404", 1)


async def test_a_slow_api_times_out_at_the_timeout(api: FakeJsonApi) -> None:
    api.script("/x", Answer(hold=asyncio.Event()))
    metrics = Metrics()
    started = time.perf_counter()
    answer = await call(HttpClient(LOCAL, metrics=metrics), request(api.url("/x"), timeout=0.3))
    assert answer.error == "timeout"
    assert 0.3 <= time.perf_counter() - started < 2.0  # not the held answer, which never comes
    assert metrics.http_calls.labels("127.0.0.1", "timeout")._value.get() == 1


@pytest.mark.parametrize("stream", [False, True], ids=["with a length", "chunked"])
async def test_an_answer_over_1_mib_fails(api: FakeJsonApi, stream: bool) -> None:
    api.script("/big", Answer(body=b"x" * (MiB + 1), stream=stream))
    api.script("/fits", Answer(body=b"[" + b"0," * (MiB // 2 - 2) + b"0]", stream=stream))
    client = HttpClient(LOCAL)
    big = await client.call(request(api.url("/big")))
    fits = await call(client, request(api.url("/fits")))
    assert big.error == "answer too large"
    assert fits.ok and len(fits.body) <= MiB


async def test_a_dropped_connection_is_a_network_error_retried(api: FakeJsonApi) -> None:
    api.script("/x", Answer(drop=True), Answer(json={"fine": 1}))
    assert (await call(HttpClient(LOCAL, retry_base=0.01), request(api.url("/x")))).ok
    api.script("/y", Answer(drop=True))
    answer = await call(HttpClient(LOCAL, retry_base=0.01), request(api.url("/y"), timeout=0.5))
    assert answer.error == "network error"
    assert len(api.to("/y")) >= 2


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "refused address"),
        ("localhost", "refused address"),  # a name: refused once resolved
        ("[::1]", "refused address"),
        ("[::ffff:127.0.0.1]", "refused address"),  # IPv4-mapped
        ("0.0.0.0", "refused address"),
        ("[::]", "refused address"),
        ("127.1", "bad URL"),  # legacy IPv4 forms: aiohttp refuses them before any resolver
        ("2130706433", "bad URL"),
    ],
)
async def test_a_loopback_or_unspecified_host_is_refused(api: FakeJsonApi, host: str, reason: str) -> None:
    answer = await call(HttpClient(AddressPolicy()), request(api.url("/x", host=host)))
    assert answer.error == reason
    assert api.requests == []


async def test_an_allowed_host_name_may_be_private_but_a_redirect_to_an_unlisted_address_is_refused(
    api: FakeJsonApi,
) -> None:
    api.script("/start", Answer(redirect=api.url("/inside", host="127.0.0.1")))
    client = HttpClient(AddressPolicy(["localhost"]))
    answer = await call(client, request(api.url("/start", host="localhost")))
    assert answer.error == "refused address"
    assert [r.path for r in api.requests] == ["/start"]


async def test_three_redirects_are_followed_and_a_fourth_is_refused(api: FakeJsonApi) -> None:
    for n in range(4):
        api.script(f"/r{n}", Answer(307, redirect=f"/r{n + 1}"))
    api.script("/r4", Answer(json={"end": True}))
    client = HttpClient(LOCAL)
    three = await client.call(request(api.url("/r1"), method="PUT", body=b"b"))
    four = await call(client, request(api.url("/r0")))
    assert three.ok and json.loads(three.body) == {"end": True}
    assert [(r.path, r.method, r.body) for r in api.requests[:4]] == [
        ("/r1", "PUT", b"b"), ("/r2", "PUT", b"b"), ("/r3", "PUT", b"b"), ("/r4", "PUT", b"b")
    ]  # fmt: skip
    assert four.error == "too many redirects"
    assert [r.path for r in api.requests[4:]] == ["/r0", "/r1", "/r2", "/r3"]


async def test_a_redirect_to_another_origin_drops_the_secret_headers(api: FakeJsonApi) -> None:
    api.script("/a", Answer(303, redirect=api.url("/b", host="127.0.0.1")))
    headers = (("Authorization", "Bearer s"), ("X-Key", "k"), ("X-Plain", "p"))
    client = HttpClient(AddressPolicy(["localhost", "127.0.0.1"]))
    req = request(api.url("/a", host="localhost"), method="POST", body=b"x", headers=headers,
                  secret_headers=frozenset({"x-key"}))  # fmt: skip
    assert (await call(client, req)).ok
    first, second = api.requests
    assert (first.method, first.headers["Authorization"], first.headers["X-Key"]) == ("POST", "Bearer s", "k")
    assert (second.method, second.body) == ("GET", b"")  # 303: GET without the body
    assert "Authorization" not in second.headers and "X-Key" not in second.headers
    assert second.headers["X-Plain"] == "p"


async def test_calls_in_flight_are_limited_per_client(api: FakeJsonApi) -> None:
    release = asyncio.Event()
    api.script("/slow", Answer(hold=release))
    client = HttpClient(LOCAL, concurrency=2)
    calls = [asyncio.create_task(client.call(request(api.url("/slow"), key=f"k{n}"))) for n in range(5)]
    await api.wait_for(2)
    await asyncio.sleep(0.1)  # give a third request time to arrive, were the limit broken
    assert len(api.requests) == 2
    release.set()
    answers = await asyncio.gather(*calls)
    await client.close()
    assert all(answer.ok for answer in answers)
    assert api.most_in_flight == 2


class FakeDns(AbstractResolver):
    """Names to addresses, as a DNS server would answer."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)
            for address in self.names[host]
        ]

    async def close(self) -> None:
        pass


async def test_a_name_resolving_to_private_addresses_is_refused_and_only_vetted_addresses_are_used(
    api: FakeJsonApi,
) -> None:
    dns = FakeDns({
        "internal.example": ["10.1.2.3"],
        "mixed.example": ["169.254.169.254", "127.0.0.1"],  # the second is allowed by the policy below
        "rebind.example": ["192.168.1.1", "fe80::1"],
    })  # fmt: skip
    client = HttpClient(AddressPolicy(["127.0.0.1"]), resolver=dns)
    internal = await client.call(request(f"http://internal.example:{api.port}/x"))
    rebind = await client.call(request(f"http://rebind.example:{api.port}/x"))
    mixed = await call(client, request(f"http://mixed.example:{api.port}/x"))
    assert (internal.error, rebind.error) == ("refused address", "refused address")
    assert mixed.ok  # connected to 127.0.0.1 only: 169.254.169.254 was never offered to the connector
    assert len(api.requests) == 1


class BrokenDns(FakeDns):
    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise RuntimeError(f"resolver bug while resolving {host}")


async def test_an_unexpected_error_fails_the_call_once_instead_of_escaping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = HttpClient(AddressPolicy(), resolver=BrokenDns({}))
    answer = await call(client, request("http://api.example/x?key=s3cret", timeout=1.0))
    assert answer.error == "network error"
    assert "failed unexpectedly: RuntimeError('resolver bug while resolving api.example')" in caplog.text
