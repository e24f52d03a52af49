"""Small helpers shared by the browser tests."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from playwright.async_api import Page, Request, ViewportSize

AMQP_URL = os.environ.get("SIGNUP_TEST_AMQP_URL", "amqp://guest:guest@localhost:5672/")
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
AXE_JS = Path(__file__).resolve().parent / "axe.min.js"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = ViewportSize(width=1280, height=860)
PHONE = ViewportSize(width=375, height=812)
SIGNUP_PATH = "/user/signup"


async def open_form(page: Page) -> None:
    await page.goto("/signup")
    # signup.js reveals the password toggle once it has wired up the form.
    await page.locator("#password-toggle").wait_for(state="visible")


async def fill_form(
    page: Page,
    email: str,
    password: str,
    given_name: str = "",
    family_name: str = "",
) -> None:
    await page.fill("#email", email)
    await page.fill("#password", password)
    await page.fill("#given_name", given_name)
    await page.fill("#family_name", family_name)


async def active_id(page: Page) -> str:
    value = await page.evaluate("() => document.activeElement && document.activeElement.id")
    return str(value or "")


def is_signup_post(request: Request) -> bool:
    return request.method == "POST" and request.url.endswith(SIGNUP_PATH)


def record_signup_posts(page: Page) -> list[Request]:
    """Every POST to the sign-up endpoint that the page sends from now on."""
    seen: list[Request] = []

    def on_request(request: Request) -> None:
        if is_signup_post(request):
            seen.append(request)

    page.on("request", on_request)
    return seen


def unique_email(label: str = "ada") -> str:
    return f"{label}.{uuid.uuid4().hex[:10]}@example.com"


async def next_event_for(
    queue: aio_pika.abc.AbstractQueue, email: str, timeout: float = 20.0
) -> tuple[aio_pika.abc.AbstractIncomingMessage, dict[str, Any]]:
    """The first `user.new` message on the queue about this e-mail address."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with queue.iterator() as messages:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                pytest.fail(f"no user.new message for {email} within {timeout}s")
            try:
                message = await asyncio.wait_for(messages.__anext__(), remaining)
            except TimeoutError:
                pytest.fail(f"no user.new message for {email} within {timeout}s")
            async with message.process():
                event = json.loads(message.body)
                if event.get("data", {}).get("email") == email:
                    return message, event
