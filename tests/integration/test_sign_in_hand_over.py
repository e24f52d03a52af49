"""The 409 "already registered" answer points to the site's sign-in, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from aio_pika.abc import AbstractQueue

from signup.settings import Settings
from signup.testing.server import serving

PASSWORD = "violet tractor anthem"


async def _sign_up(
    http: aiohttp.ClientSession, base: str, email: str
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{base}/user/signup",
        data=orjson.dumps({"email": email, "password": PASSWORD}),
        headers={"Content-Type": "application/json"},
    ) as response:
        return response.status, await response.json(content_type=None)


async def test_the_409_carries_the_sign_in_url(
    make_settings: Callable[..., Settings], bound_queue: AbstractQueue
) -> None:
    settings = make_settings(sign_in_url="https://nc.example/login")
    async with serving(settings) as base, aiohttp.ClientSession() as http:
        assert (await _sign_up(http, base, "ada@example.com"))[0] == 201
        status, problem = await _sign_up(http, base, "ADA@example.com")
        page = await (await http.get(f"{base}/signup")).text()
    assert status == 409
    assert problem["sign_in_url"] == "https://nc.example/login"
    assert problem["errors"][0]["code"] == "email.registered"
    assert 'id="sign-in-link" href="https://nc.example/login"' in page


async def test_without_a_sign_in_the_409_names_none(
    make_settings: Callable[..., Settings], bound_queue: AbstractQueue
) -> None:
    async with serving(make_settings()) as base, aiohttp.ClientSession() as http:
        assert (await _sign_up(http, base, "grace@example.com"))[0] == 201
        status, problem = await _sign_up(http, base, "grace@example.com")
    assert status == 409 and "sign_in_url" not in problem
