"""The Auth0 stand-in's own contract, as docs/auth0.md documents Auth0."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from signup.testing.auth0_standin import (
    Auth0Standin,
    StandinConfig,
    free_port,
    password_meets_policy,
    running_standin,
)

PV = "Payload validation error: "
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@pytest.fixture
async def standin() -> AsyncIterator[Auth0Standin]:
    async with running_standin() as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


def token_body(standin: Auth0Standin, **changes: str) -> dict[str, str]:
    body = {
        "grant_type": "client_credentials",
        "client_id": standin.client_id,
        "client_secret": standin.client_secret,
        "audience": standin.audience,
    }
    body.update(changes)
    return body


async def get_token(standin: Auth0Standin, http: aiohttp.ClientSession) -> str:
    async with http.post(f"{standin.url}/oauth/token", json=token_body(standin)) as resp:
        assert resp.status == 200
        data = await resp.json()
    token: str = data["access_token"]
    return token


async def create(
    standin: Auth0Standin,
    http: aiohttp.ClientSession,
    body: dict[str, Any],
    token: str | None,
) -> tuple[int, Any, CIMultiDict[str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(f"{standin.url}/api/v2/users", json=body, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers.copy()


def user_body(email: str = "ada@example.com", **extra: Any) -> dict[str, Any]:
    body = {"connection": "Username-Password-Authentication", "email": email}
    body["password"] = "s3cret-enough"
    body.update(extra)
    return body


# -- token endpoint ----------------------------------------------------------------------


async def test_token_json_and_form(standin: Auth0Standin, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{standin.url}/oauth/token", json=token_body(standin)) as resp:
        assert resp.status == 200
        data = await resp.json()
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 86400
    assert data["scope"] == "create:users read:users"
    assert data["access_token"]

    async with http.post(f"{standin.url}/oauth/token", data=token_body(standin)) as resp:
        assert resp.status == 200
        assert (await resp.json())["access_token"] != data["access_token"]
    assert standin.state.counters.token_requests == 2


@pytest.mark.parametrize(
    ("changes", "config", "status", "error", "description"),
    [
        ({"client_secret": "wrong"}, {}, 401, "access_denied", "Unauthorized"),
        ({"client_id": "someone"}, {}, 401, "access_denied", "Unauthorized"),
        ({}, {"client_grant": False}, 403, "access_denied", "Client is not authorized"),
        ({"audience": "https://elsewhere/api/v2/"}, {}, 403, "access_denied", "Service not found"),
        ({}, {"allow_client_credentials": False}, 403, "unauthorized_client", "Grant type"),
        ({"grant_type": "password"}, {}, 403, "unsupported_grant_type", "Unsupported"),
    ],
)
async def test_token_errors(
    standin: Auth0Standin,
    http: aiohttp.ClientSession,
    changes: dict[str, str],
    config: dict[str, Any],
    status: int,
    error: str,
    description: str,
) -> None:
    standin.configure(**config)
    async with http.post(f"{standin.url}/oauth/token", json=token_body(standin, **changes)) as resp:
        assert resp.status == status
        data = await resp.json()
    assert data["error"] == error
    assert data["error_description"].startswith(description)


async def test_tokens_expire(standin: Auth0Standin, http: aiohttp.ClientSession) -> None:
    standin.configure(token_expires_in=1)
    token = await get_token(standin, http)
    status, _, _ = await create(standin, http, user_body("a@example.com"), token)
    assert status == 201
    await asyncio.sleep(1.05)
    status, data, _ = await create(standin, http, user_body("b@example.com"), token)
    assert status == 401
    assert data["message"] == "Expired token received for JSON Web Token validation"


# -- create user -------------------------------------------------------------------------


async def test_created_user_object(standin: Auth0Standin, http: aiohttp.ClientSession) -> None:
    token = await get_token(standin, http)
    status, user, headers = await create(
        standin,
        http,
        user_body("Ada.Lovelace@Example.com", given_name="Ada", family_name="Lovelace"),
        token,
    )

    assert status == 201
    assert re.fullmatch(r"auth0\|[0-9a-f]{24}", user["user_id"])
    assert user["email"] == "ada.lovelace@example.com"
    assert user["email_verified"] is False
    assert (user["given_name"], user["family_name"]) == ("Ada", "Lovelace")
    assert user["name"] == "ada.lovelace@example.com"  # defaults to the e-mail
    assert user["nickname"] == "ada.lovelace"
    assert user["picture"].startswith("https://")
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.fullmatch(iso, user["created_at"])
    assert re.fullmatch(iso, user["updated_at"])
    assert user["identities"] == [
        {
            "connection": "Username-Password-Authentication",
            "user_id": user["user_id"].removeprefix("auth0|"),
            "provider": "auth0",
            "isSocial": False,
        }
    ]
    assert user["user_metadata"] == {} and user["app_metadata"] == {}
    assert "password" not in user
    assert all(h in headers for h in RATE_HEADERS)
    assert standin.state.users[user["user_id"]] == user


@pytest.mark.parametrize(
    ("body", "status", "message", "code"),
    [
        (
            user_body(x="1"),
            400,
            "Payload validation error: 'Additional properties not allowed: x'",
            "invalid_body",
        ),
        (
            {"email": "a@example.com", "password": "s3cret-enough"},
            400,
            "Payload validation error: 'Missing required property: connection'",
            "invalid_body",
        ),
        (
            user_body(connection="Nope"),
            400,
            "The connection does not exist.",
            "inexistent_connection",
        ),
        (
            {"connection": "Username-Password-Authentication", "password": "s3cret-enough"},
            400,
            "Payload validation error: 'Missing required property: email'",
            "invalid_body",
        ),
        (
            {"connection": "Username-Password-Authentication", "email": "a@example.com"},
            400,
            "Payload validation error: 'Missing required property: password'",
            "invalid_body",
        ),
        (
            user_body("not-an-email"),
            400,
            PV + "'Object didn't pass validation for format email: not-an-email' on property email",
            "invalid_body",
        ),
        (
            user_body(given_name=7),
            400,
            PV + "'Expected type string but found type int' on property given_name",
            "invalid_body",
        ),
        (
            user_body(family_name="x" * 151),
            400,
            PV + "'String is too long (151 chars), maximum 150' on property family_name",
            "invalid_body",
        ),
        (user_body(password="short"), 400, "PasswordStrengthError: Password is too weak", None),
    ],
    ids=[
        "unknown-property",
        "no-connection",
        "inexistent-connection",
        "no-email",
        "no-password",
        "bad-email",
        "wrong-type",
        "too-long",
        "weak-password",
    ],
)
async def test_create_refusals(
    standin: Auth0Standin,
    http: aiohttp.ClientSession,
    body: dict[str, Any],
    status: int,
    message: str,
    code: str | None,
) -> None:
    token = await get_token(standin, http)
    got_status, data, headers = await create(standin, http, body, token)

    assert got_status == status
    assert data["statusCode"] == status
    assert data["error"] == "Bad Request"
    assert data["message"].startswith(message)
    assert data.get("errorCode") == code
    assert all(h in headers for h in RATE_HEADERS)
    assert standin.state.users == {}


async def test_duplicate_email_is_409_case_insensitive(
    standin: Auth0Standin, http: aiohttp.ClientSession
) -> None:
    token = await get_token(standin, http)
    assert (await create(standin, http, user_body("ada@example.com"), token))[0] == 201

    status, data, headers = await create(standin, http, user_body("ADA@example.com"), token)

    assert status == 409
    assert data == {
        "statusCode": 409,
        "error": "Conflict",
        "message": "The user already exists.",
        "errorCode": "auth0_idp_error",
    }
    assert all(h in headers for h in RATE_HEADERS)


async def test_username_in_use(standin: Auth0Standin, http: aiohttp.ClientSession) -> None:
    token = await get_token(standin, http)
    await create(standin, http, user_body("a@example.com", username="ada"), token)
    status, data, _ = await create(standin, http, user_body("b@example.com", username="Ada"), token)
    assert status == 400
    assert data["message"] == "The username provided is in use already."


@pytest.mark.parametrize(
    ("header", "message"),
    [(None, "Invalid token"), ("Bearer nope", "Invalid token"), ("Basic abc", "Invalid token")],
)
async def test_bad_tokens_are_401(
    standin: Auth0Standin, http: aiohttp.ClientSession, header: str | None, message: str
) -> None:
    headers = {"Authorization": header} if header else {}
    async with http.post(f"{standin.url}/api/v2/users", json=user_body(), headers=headers) as resp:
        assert resp.status == 401
        data = await resp.json()
        assert all(h in resp.headers for h in RATE_HEADERS)
    assert data["statusCode"] == 401 and data["message"] == message
    assert standin.state.counters.create_status[401] == 1


async def test_insufficient_scope(standin: Auth0Standin, http: aiohttp.ClientSession) -> None:
    standin.configure(token_scope="read:users")
    token = await get_token(standin, http)
    status, data, _ = await create(standin, http, user_body(), token)
    assert status == 403
    assert data["errorCode"] == "insufficient_scope"
    assert data["message"] == "Insufficient scope, expected any of: create:users"


@pytest.mark.parametrize(
    ("policy", "good", "bad"),
    [
        ("none", "x", ""),
        ("low", "sixsix", "five5"),
        ("fair", "Abcdefg1", "abcdefg1"),
        ("good", "abcdefg1!", "abcdefgh1"),
        ("excellent", "Abcdefgh1!", "Abbbcdefg1!"),
    ],
)
def test_password_policies(policy: str, good: str, bad: str) -> None:
    assert password_meets_policy(good, policy)
    assert not password_meets_policy(bad, policy)


async def test_dictionary_and_personal_info(
    standin: Auth0Standin, http: aiohttp.ClientSession
) -> None:
    standin.configure(password_dictionary=["Password1"], password_no_personal_info=True)
    token = await get_token(standin, http)
    _, data, _ = await create(standin, http, user_body(password="password1"), token)
    assert data["message"] == "PasswordDictionaryError: Password is too common"
    _, data, _ = await create(
        standin,
        http,
        user_body("a@example.com", given_name="Lovelace", password="xLovelace9"),
        token,
    )
    assert data["message"] == "PasswordNoUserInfoError: Password contains user information"


# -- look-up -----------------------------------------------------------------------------


async def test_users_by_email(standin: Auth0Standin, http: aiohttp.ClientSession) -> None:
    token = await get_token(standin, http)
    _, user, _ = await create(standin, http, user_body("ada@example.com"), token)
    auth = {"Authorization": f"Bearer {token}"}
    url = f"{standin.url}/api/v2/users-by-email"

    async with http.get(url, params={"email": "Ada@Example.com"}, headers=auth) as resp:
        assert resp.status == 200
        assert await resp.json() == [user]
        assert all(h in resp.headers for h in RATE_HEADERS)
    async with http.get(url, params={"email": "nobody@example.com"}, headers=auth) as resp:
        assert await resp.json() == []


async def test_app_metadata_is_kept_and_returned_by_the_look_up(
    standin: Auth0Standin, http: aiohttp.ClientSession
) -> None:
    token = await get_token(standin, http)
    body = user_body("grace@example.com", app_metadata={"signup_intent": "intent-1"})
    status, user, _ = await create(standin, http, body, token)
    assert status == 201
    assert user["app_metadata"] == {"signup_intent": "intent-1"}
    url = f"{standin.url}/api/v2/users-by-email"
    auth = {"Authorization": f"Bearer {token}"}
    async with http.get(url, params={"email": "grace@example.com"}, headers=auth) as resp:
        [found] = await resp.json()
    assert found["app_metadata"] == {"signup_intent": "intent-1"}
    status, data, _ = await create(standin, http, user_body(app_metadata="x"), token)
    assert (status, data["errorCode"]) == (400, "invalid_body")


async def test_which_password_an_account_holds_is_known_to_tests_only(
    standin: Auth0Standin, http: aiohttp.ClientSession
) -> None:
    token = await get_token(standin, http)
    _, user, _ = await create(standin, http, user_body(password="first-Password-1"), token)
    status, _, _ = await create(standin, http, user_body(password="second-Password-2"), token)
    assert status == 409
    assert standin.password_matches(user["user_id"], "first-Password-1")
    assert not standin.password_matches(user["user_id"], "second-Password-2")
    assert not standin.password_matches("auth0|nobody", "first-Password-1")
    async with http.get(f"{standin.url}/__standin/state") as resp:
        assert "first-Password-1" not in await resp.text()


# -- rate limit, latency, faults ---------------------------------------------------------


async def test_bucket_answers_429(standin: Auth0Standin, http: aiohttp.ClientSession) -> None:
    standin.configure(rate_per_second=1.0, burst=2)
    token = await get_token(standin, http)
    statuses = []
    for i in range(3):
        status, data, headers = await create(standin, http, user_body(f"u{i}@example.com"), token)
        statuses.append(status)
    assert statuses == [201, 201, 429]
    assert data == {
        "statusCode": 429,
        "error": "Too Many Requests",
        "message": "Global limit has been reached",
        "errorCode": "too_many_requests",
    }
    assert headers["x-ratelimit-limit"] == "2"
    assert headers["x-ratelimit-remaining"] == "0"
    assert int(headers["x-ratelimit-reset"]) >= time.time()
    assert standin.state.counters.rate_limited == 1


async def test_latency_applies_to_management_calls(
    standin: Auth0Standin, http: aiohttp.ClientSession
) -> None:
    standin.configure(latency=0.2)
    token = await get_token(standin, http)
    started = time.monotonic()
    await asyncio.gather(
        *(create(standin, http, user_body(f"l{i}@example.com"), token) for i in range(20))
    )
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 1.0  # concurrent, not serial


async def test_faults_are_reproducible_with_a_seed(
    standin: Auth0Standin, http: aiohttp.ClientSession
) -> None:
    standin.configure(share_500=0.3, share_503=0.2, seed=42)

    async def run() -> list[int]:
        standin.reset()  # forgets users and tokens, restarts the random sequence
        token = await get_token(standin, http)
        return [
            (await create(standin, http, user_body(f"f{i}@example.com"), token))[0]
            for i in range(20)
        ]

    first = await run()
    second = await run()

    assert first == second
    assert {201, 500, 503} == set(first)
    standin.configure(seed=7)
    assert await run() != first


async def test_create_then_500_creates(standin: Auth0Standin, http: aiohttp.ClientSession) -> None:
    standin.configure(share_create_then_500=1.0)
    token = await get_token(standin, http)
    status, _, _ = await create(standin, http, user_body(), token)
    assert status == 500
    assert len(standin.state.users_by_email("ada@example.com")) == 1
    assert standin.state.counters.faults["create_then_500"] == 1


# -- control over HTTP -------------------------------------------------------------------


async def test_control_endpoints(standin: Auth0Standin, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{standin.url}/__standin/config", json={"share_503": 1.0}) as resp:
        assert resp.status == 200
        assert (await resp.json())["share_503"] == 1.0
    token = await get_token(standin, http)
    assert (await create(standin, http, user_body(), token))[0] == 503

    async with http.post(f"{standin.url}/__standin/config", json={"nonsense": 1}) as resp:
        assert resp.status == 400
    async with http.post(f"{standin.url}/__standin/config", json={"share_503": 0}) as resp:
        assert resp.status == 200
    assert (await create(standin, http, user_body(), token))[0] == 201

    async with http.get(f"{standin.url}/__standin/state") as resp:
        state = await resp.json()
    assert [u["email"] for u in state["users"]] == ["ada@example.com"]
    assert state["counters"]["create_calls"] == 2
    assert state["counters"]["create_status"] == {"503": 1, "201": 1}
    assert state["counters"]["token_requests"] == 1

    async with http.post(f"{standin.url}/__standin/reset") as resp:
        assert resp.status == 200
    assert standin.state.users == {}
    assert standin.state.counters.create_calls == 0


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="shares"):
        StandinConfig(share_500=0.6, share_503=0.6)
    with pytest.raises(ValueError, match="password_policy"):
        StandinConfig(password_policy="strong")  # type: ignore[arg-type]


# -- CLI ---------------------------------------------------------------------------------


async def test_cli_runs_in_the_foreground_and_prints_its_url(
    http: aiohttp.ClientSession,
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "signup.testing.auth0_standin",
            "--port",
            str(port),
            "--latency",
            "0.01",
            "--client-id",
            "cli-client",
            "--client-secret",
            "cli-secret",
            "--password-policy",
            "fair",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 10)
        assert f"http://127.0.0.1:{port}" in line
        body = {
            "grant_type": "client_credentials",
            "client_id": "cli-client",
            "client_secret": "cli-secret",
            "audience": "https://standin.auth0.local/api/v2/",
        }
        async with http.post(f"http://127.0.0.1:{port}/oauth/token", data=body) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(5)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
