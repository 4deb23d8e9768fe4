"""The real client of the stories' http actions: aiohttp behind the address guard, with limits and retries.

- ``http``/``https`` only; every hop of a redirect (at most 3) is checked again, an IP written in the URL
  here, a host name by :class:`~worker.http.resolver.VettedResolver`, which hands aiohttp only the addresses
  it checked (no DNS rebinding between check and connect).
- A call's ``timeout`` covers everything: tries, waits between them, redirects, reading the answer.
- 429, 5xx and network errors are tried again with full-jitter backoff (or the server's ``Retry-After``)
  while the timeout leaves room; each try carries the same ``Idempotency-Key``.
- Answers over 1 MiB (after decompression) are refused; at most ``concurrency`` calls are in flight in
  this process (the others wait their turn: their timeout starts when their call does).
- No cookies are kept (conversations must not share them); no proxy from the environment is used.
- A redirect to another origin drops the headers that carry a secret (and Authorization, Cookie).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Final

import aiohttp
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict
from yarl import URL

from gateway.core.metrics import Metrics
from gateway.core.retry import full_jitter, retry_after_seconds
from worker.engine.calls import HttpAnswer, HttpRequest
from worker.http.base import Caller
from worker.http.guard import AddressPolicy, parse_address
from worker.http.resolver import Refused, VettedResolver

log = logging.getLogger("gateway.http")

MAX_ANSWER: Final = 1024 * 1024
MAX_REDIRECTS: Final = 3
REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
USER_AGENT: Final = "chat-gateway"
_PRIVATE_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})
_OUTCOMES: Final = {
    "timeout": "timeout",
    "network error": "network",
    "refused address": "refused",
    "too many redirects": "redirects",
    "bad redirect": "bad_url",
    "bad URL": "bad_url",
    "answer too large": "too_large",
}


class TooLarge(Exception):
    """The answer is bigger than the limit."""


def outcome_of(answer: HttpAnswer) -> str:
    """The metric label of an answer: ok, status, timeout, network, refused, redirects, bad_url, too_large."""
    if answer.error is None:
        return "ok"
    if answer.error.startswith("status "):
        return "status"
    return _OUTCOMES.get(answer.error, "other")


class HttpClient(Caller):
    def __init__(
        self,
        policy: AddressPolicy | None = None,
        *,
        concurrency: int = 100,
        metrics: Metrics | None = None,
        max_bytes: int = MAX_ANSWER,
        resolver: AbstractResolver | None = None,
        retry_base: float = 0.1,
        retry_cap: float = 2.0,
    ) -> None:
        self.policy = policy or AddressPolicy()
        self.concurrency = concurrency
        self.metrics = metrics or Metrics()
        self.max_bytes = max_bytes
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self._inner_resolver = resolver
        self._gate = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made in the running loop, on the first call
            connector = aiohttp.TCPConnector(
                resolver=VettedResolver(self.policy, self._inner_resolver), limit=self.concurrency
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, request: HttpRequest) -> HttpAnswer:
        async with self._gate:
            started = time.perf_counter()
            answer = await self._tries(request)
            elapsed = time.perf_counter() - started
        self.metrics.http_calls.labels(request.host, outcome_of(answer)).inc()
        self.metrics.http_call_seconds.labels(request.host).observe(elapsed)
        if answer.error is not None:
            log.warning("http call %s (at %s) failed: %s", request.shown, request.where, answer.error)
        else:
            shown, where, status = request.shown, request.where, answer.status
            log.debug("http call %s (at %s): status %d in %.3f s", shown, where, status, elapsed)
        return answer

    async def _tries(self, request: HttpRequest) -> HttpAnswer:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.timeout
        tries = 0
        while True:
            tries += 1
            retry_after: float | None = None
            try:
                async with asyncio.timeout_at(deadline):
                    answer, retry_after = await self._follow(request)
            except TimeoutError:
                return HttpAnswer.failed("timeout")
            except Refused as exc:
                shown = request.hide(str(exc))
                log.info("http call %s (at %s) refused: %s", request.shown, request.where, shown)
                return HttpAnswer.failed(exc.reason)
            except TooLarge:
                return HttpAnswer.failed("answer too large")
            except aiohttp.InvalidURL:
                return HttpAnswer.failed("bad URL")
            except (aiohttp.ClientError, OSError) as exc:
                log.info("http call %s try %d: %s", request.shown, tries, request.hide(repr(exc)))
                answer = HttpAnswer.failed("network error")
            except Exception as exc:  # not the API's doing: never retried by the bus (it would call again)
                shown = request.hide(repr(exc))
                log.error("http call %s (at %s) failed unexpectedly: %s", request.shown, request.where, shown)
                return HttpAnswer.failed("network error")
            else:
                if answer.status != 429 and answer.status < 500:
                    return answer
            wait = max(full_jitter(tries, self.retry_base, self.retry_cap), retry_after or 0.0)
            if loop.time() + wait >= deadline:
                return answer  # no room for another try: the last failure is the reason
            await asyncio.sleep(wait)

    async def _follow(self, request: HttpRequest) -> tuple[HttpAnswer, float | None]:
        """One try: the request and its redirects; the answer and the server's Retry-After."""
        session = self._client()
        hop = _Hop(URL(request.url, encoded=True), request.method, request.body, CIMultiDict(request.headers))
        hop.headers["Idempotency-Key"] = request.key
        for redirects in range(MAX_REDIRECTS + 1):
            self._check(hop.url)
            async with session.request(
                hop.method, hop.url, headers=hop.headers, data=hop.body, allow_redirects=False
            ) as response:
                location = response.headers.get("Location")
                if response.status not in REDIRECTS or not location:
                    data = await self._read(response)
                    error = f"status {response.status}" if response.status >= 400 else None
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    return HttpAnswer(response.status, data, error), retry_after
                if redirects == MAX_REDIRECTS:
                    raise Refused("too many redirects", f"more than {MAX_REDIRECTS} redirects")
                hop.redirect(response.status, location, request.secret_headers)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _check(self, url: URL) -> None:
        """Scheme and, for an address written in the URL (which no resolver sees), the address itself."""
        if url.scheme not in ("http", "https") or not url.host:
            raise Refused("bad redirect", f"{url.scheme or 'no'} scheme: http and https only")
        address = parse_address(url.host)
        if address is None or self.policy.allows_host(url.host):
            return
        if not self.policy.allows_address(address):
            raise Refused("refused address", f"{address} is not a public address")

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        length = response.content_length
        if length is not None and length > self.max_bytes:
            raise TooLarge()
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            total += len(chunk)
            if total > self.max_bytes:
                raise TooLarge()
            chunks.append(chunk)
        return b"".join(chunks)


@dataclass(slots=True)
class _Hop:
    """Where one try is going; a redirect changes it the way browsers do."""

    url: URL
    method: str
    body: bytes | None
    headers: CIMultiDict[str]

    def redirect(self, status: int, location: str, secret_headers: frozenset[str]) -> None:
        origin = self.url.origin()
        try:
            self.url = self.url.join(URL(location))
        except ValueError:
            raise Refused("bad redirect", f"redirect to {location!r}") from None
        if status == 303 or (status in (301, 302) and self.method == "POST"):
            self.method, self.body = "GET", None
            self.headers.popall("Content-Type", None)
        if self.url.scheme in ("http", "https") and self.url.origin() != origin:
            for name in list(self.headers):
                if name.lower() in _PRIVATE_HEADERS or name.lower() in secret_headers:
                    self.headers.popall(name, None)
