"""The web chat in a real browser: Debian's headless Chromium driven by Playwright, against `gateway run`.

Nothing is downloaded: Playwright drives the system's /usr/bin/chromium (never `playwright install`). The
screenshot is kept in test-artifacts/webchat.png; with UPDATE_DOCS_SCREENSHOT=1 it is also copied to
docs/webchat.png, the one the README shows.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright, expect

from tests.support.faults import free_port
from tests.support.paths import EMAILS, ROOT, STORIES
from tests.support.processes import GatewayProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 5000


def stories_with_a_picture(folder: Path, port: int) -> Path:
    """The example stories plus one that sends an image (served by the gateway itself: nothing external)."""
    shutil.copytree(STORIES, folder)
    (folder / "picture.yml").write_text(
        "stories:\n"
        "  picture:\n"
        "    triggers: [picture]\n"
        "    steps:\n"
        "      - id: show\n"
        "        actions:\n"
        f"          - image: http://127.0.0.1:{port}/webchat/bot.svg\n"
        "            caption: Our <mascot>\n"
    )
    return folder


async def start_gateway(tmp_path: Path, port: int) -> GatewayProcess:
    env = {
        "GATEWAY_AMQP_URL": "",
        "GATEWAY_REDIS_URL": "",
        "GATEWAY_SMTP_URL": "",
        "GATEWAY_PORT": str(port),
        "GATEWAY_STORIES": str(tmp_path / "stories"),
        "GATEWAY_EMAILS": str(EMAILS),
        "GATEWAY_OUTBOX": str(tmp_path / "outbox"),
    }
    gateway = await GatewayProcess("run", env=env).start()
    await gateway.wait_for(r"INFO .*: ready$")
    return gateway


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    assert os.access(CHROMIUM, os.X_OK), "install Debian's chromium: apt-get install -y chromium"
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 520, "height": 760},
        )
        try:
            yield context
        finally:
            await context.close()


async def send(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


async def test_a_conversation_in_chromium_with_a_click_a_reload_and_a_restart(
    browser: BrowserContext, tmp_path: Path
) -> None:
    port = free_port()
    stories_with_a_picture(tmp_path / "stories", port)
    gateway = await start_gateway(tmp_path, port)
    try:
        assert f"web chat: http://127.0.0.1:{port}/" in gateway.output()
        page = browser.pages[0] if browser.pages else await browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        await page.goto(f"http://127.0.0.1:{port}/")
        status = page.locator("#status")
        await expect(status).to_have_attribute("data-state", "online")
        bot = page.locator(".message.bot .bubble")

        await send(page, "hi")
        await expect(bot).to_have_text(
            ["Hello there! 👋", "I'm the demo bot of this gateway. What's your first name?"]
        )
        await send(page, "Ada")
        await expect(bot.nth(3)).to_have_text("Where do you live?")
        await page.locator(".message.bot").last.get_by_role("button", name="Paris").click()
        await expect(bot.nth(5)).to_have_text("What would you like to do next?")
        await expect(bot.nth(4)).to_have_text("Ada, we are really glad you live in Paris, such a great city!")
        await expect(page.locator(".message.user .bubble").last).to_have_text("Paris")
        await expect(page.locator(".message.user.pending")).to_have_count(0)  # every message acknowledged
        user = await page.evaluate("localStorage.getItem('gateway.webchat.user')")
        assert user

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "webchat.png"
        await page.screenshot(path=str(shot))
        if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
            shutil.copyfile(shot, ROOT / "docs" / "webchat.png")

        # A reload keeps the user: the welcome story knows the name and skips the question.
        await page.reload()
        await expect(status).to_have_attribute("data-state", "online")
        assert await page.evaluate("localStorage.getItem('gateway.webchat.user')") == user
        await send(page, "hi")
        await expect(bot).to_have_text(["Hello Ada! 👋", "Where do you live?"])

        # Text is rendered as text, the bot's and the user's.
        await send(page, "<b>Lyon</b><img src=x onerror=alert(1)>")
        await expect(bot.nth(2)).to_contain_text("live in <b>Lyon</b><img src=x onerror=alert(1)>, such")
        assert await page.locator(".message b, .message .bubble img").count() == 0

        await send(page, "picture")
        picture = page.locator(".message.bot .picture img")
        await expect(picture).to_have_attribute("src", f"http://127.0.0.1:{port}/webchat/bot.svg")
        await expect(page.locator(".picture figcaption")).to_have_text("Our <mascot>")
        assert await picture.evaluate("img => img.complete && img.naturalWidth > 0")

        # A restarted gateway is found again by the page on its own.
        gateway.signal(signal.SIGTERM)
        assert await gateway.wait(10) == 0
        await expect(status).to_have_attribute("data-state", "offline")
        gateway = await start_gateway(tmp_path, port)
        await expect(status).to_have_attribute("data-state", "online", timeout=10_000)
        await send(page, "hi")  # the embedded store started empty: a stranger again
        await expect(bot.last).to_have_text("I'm the demo bot of this gateway. What's your first name?")
        assert await page.evaluate("localStorage.getItem('gateway.webchat.user')") == user
    finally:
        await gateway.stop()
