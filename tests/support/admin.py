"""The admin API from a test: a client holding a token, the OpenAPI document's schemas to check answers
against, and a scan of the test's Redis for anything naming a user."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from jsonschema import Draft202012Validator

TOKEN = "ops-token-0123456789abcdef"
OTHER_TOKEN = "ci-token-ZYXWVUTSRQPONMLK"
ADMIN_TOKENS = f"ops:{TOKEN},ci:{OTHER_TOKEN}"


class Admin:
    """Calls ``{address}/api...`` with ``Authorization: Bearer <token>``; answers are (status, JSON)."""

    def __init__(self, http: aiohttp.ClientSession, address: str, token: str | None = TOKEN) -> None:
        self.http = http
        self.address = address
        self.token = token

    def headers(self, **extra: str) -> dict[str, str]:
        found = {"Authorization": f"Bearer {self.token}"} if self.token is not None else {}
        return {**found, **extra}

    async def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None, **headers: str
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        async with self.http.request(
            method, f"{self.address}/api{path}", data=data, headers=self.headers(**headers)
        ) as response:
            found = await response.json(content_type=None) if response.content_length != 0 else None
            return response.status, found

    async def until_done(self, broadcast_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll the broadcast's progress until it is done (the API's own way to follow one)."""
        deadline = time.monotonic() + timeout
        while True:
            status, found = await self.call("GET", f"/broadcasts/{broadcast_id}")
            assert status == 200, found
            if found["status"] == "done":
                return dict(found)
            assert time.monotonic() < deadline, f"broadcast not done in {timeout} s: {found}"
            await asyncio.sleep(0.1)


class Schemas:
    """Validates answers against the schemas of the OpenAPI document the gateway serves."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def check(self, name: str, instance: Any) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": self.document["components"]}
        Draft202012Validator(schema).validate(instance)


async def keys_naming(redis_url: str, prefix: str, needle: str) -> list[str]:
    """Every key of the test (``prefix:*``) whose name, or whose content, holds ``needle`` as a whole word:
    a user id inside a longer run of letters and digits (a timestamp in milliseconds, a random holder id) is
    not that user."""
    word = re.compile(rb"(?<![0-9A-Za-z])" + re.escape(needle.encode()) + rb"(?![0-9A-Za-z])")
    client = aioredis.from_url(redis_url)
    found = []
    try:
        async for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
            name = raw.decode(errors="replace")
            kind = (await client.type(raw)).decode()
            if kind == "string":
                content = [await client.get(raw)]
            elif kind == "hash":
                content = [part for pair in (await client.hgetall(raw)).items() for part in pair]
            elif kind == "zset":
                content = await client.zrange(raw, 0, -1)
            elif kind == "set":
                content = list(await client.smembers(raw))
            elif kind == "list":
                content = await client.lrange(raw, 0, -1)
            else:
                content = []
            if word.search(raw) or any(word.search(part or b"") for part in content):
                found.append(name)
    finally:
        await client.aclose()
    return found
