"""`gateway chat` makes the stories' http calls for real (to a local fake API, allowed explicitly), and
refuses them to a private address nobody allowed."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.support.engine import write
from tests.support.fakes.json_api import Answer, FakeJsonApi
from tests.support.paths import ROOT

STORIES = """\
stories:
  weather:
    triggers: [weather]
    steps:
      - id: ask
        actions:
          - http:
              url: "{api}/weather?city=Paris"
              headers: {{X-Key: "{{{{@secret.WEATHER}}}}"}}
              save: {{session: {{Sky: $.sky}}}}
              on_error: sorry
          - message: "The sky is {{{{@session.Sky}}}}."
      - id: sorry
        actions:
          - message: "No weather today ({{{{@session.http_error}}}})."
"""


async def chat(tmp_path: Path, api: FakeJsonApi, lines: str, **env: str) -> tuple[int, str, str]:
    stories = write(tmp_path / "stories", {"weather.yml": STORIES.format(api=api.url("").rstrip("/"))})
    environment = {
        **os.environ,
        "GATEWAY_AMQP_URL": "",
        "GATEWAY_REDIS_URL": "",
        "GATEWAY_STORIES": str(stories),
        "GATEWAY_OUTBOX": str(tmp_path / "outbox"),
        "GATEWAY_SECRET_WEATHER": "w-key",
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.app.cli", "chat",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=environment, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(lines.encode()), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_chat_calls_an_allowed_api_for_real(tmp_path: Path) -> None:
    async with FakeJsonApi() as api:
        api.script("/weather", Answer(json={"sky": "blue"}))
        code, out, err = await chat(tmp_path, api, "weather\n", GATEWAY_HTTP_ALLOW="127.0.0.1")
        assert code == 0, err
        assert out.splitlines() == ["The sky is blue."]
        (request,) = api.requests
        assert (request.query, request.headers["X-Key"]) == ({"city": "Paris"}, "w-key")


async def test_chat_refuses_a_loopback_api_nobody_allowed(tmp_path: Path) -> None:
    async with FakeJsonApi() as api:
        code, out, err = await chat(tmp_path, api, "weather\n", GATEWAY_HTTP_ALLOW="")
        assert code == 0, err
        assert out.splitlines() == ["No weather today (refused address)."]
        assert api.requests == []
