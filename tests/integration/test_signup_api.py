"""POST /user/signup over real HTTP, local provider, SQLite or PostgreSQL, real RabbitMQ."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractQueue

from signup.settings import Settings
from signup.testing.server import serving

PASSWORD = "violet tractor anthem"


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    """The app on each supported database (conftest's `database_url`: SQLite, PostgreSQL)."""
    return make_settings(database_url=database_url)


@pytest.fixture
async def base(settings: Settings, bound_queue: AbstractQueue) -> AsyncIterator[str]:
    async with serving(settings) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    async with http.post(f"{url}/user/signup", data=data, headers=all_headers) as response:
        return response.status, await response.json(content_type=None), dict(response.headers)


def assert_problem(
    status: int, body: dict[str, Any], headers: dict[str, str], expected: int
) -> None:
    assert status == expected, body
    assert headers["Content-Type"].startswith("application/problem+json")
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == expected
    assert "Traceback" not in orjson.dumps(body).decode()


async def next_event(queue: AbstractQueue, timeout: float = 10) -> Any:
    message = await queue.get(timeout=timeout, fail=True)
    assert message is not None
    await message.ack()
    return message


async def test_signup_creates_account_and_publishes_exactly_the_designed_message(
    base: str, http: aiohttp.ClientSession, bound_queue: AbstractQueue, exchange_name: str
) -> None:
    body = {
        "email": " Ada@Example.COM",
        "password": PASSWORD,
        "given_name": "Ada",
        "family_name": "Lovelace",
    }
    status, answer, _ = await post(http, base, body)
    assert status == 201, answer
    assert answer["email"] == "ada@example.com" and answer["user_id"].startswith("local|")
    assert set(answer) == {"user_id", "email"}

    message = await _get_with_retry(bound_queue)
    assert message.message_id and message.delivery_mode == 2
    assert message.content_type == "application/cloudevents+json"
    assert message.type == "user.new" and message.app_id == "signup"
    assert message.timestamp is not None
    assert message.routing_key == "user.new" and message.exchange == exchange_name
    event = orjson.loads(message.body)
    assert set(event) == {"specversion", "id", "source", "type", "time", "datacontenttype", "data"}
    assert event["specversion"] == "1.0" and event["type"] == "user.new"
    assert event["id"] == message.message_id
    assert event["source"] == "urn:signup:naked-coders"
    assert event["datacontenttype"] == "application/json"
    assert event["time"].endswith("Z") and len(event["time"]) == 24
    assert event["data"] == {
        "user_id": answer["user_id"],
        "email": "ada@example.com",
        "email_verified": False,
        "given_name": "Ada",
        "family_name": "Lovelace",
        "name": "Ada Lovelace",
        "created_at": event["data"]["created_at"],
        "identity_provider": "local",
        # Additive (issue 19): the local store has no Auth0 connection.
        "connection": None,
        "is_social": False,
        "origin": "form",
        "language": "en",
    }
    assert PASSWORD.encode() not in message.body


async def _get_with_retry(queue: AbstractQueue, seconds: float = 15) -> Any:
    for _ in range(int(seconds * 10)):
        message = await queue.get(fail=False)
        if message is not None:
            await message.ack()
            return message
        await asyncio.sleep(0.1)
    raise AssertionError("no user.new message arrived")


async def test_duplicate_email_is_409_with_a_field_error(
    base: str, http: aiohttp.ClientSession
) -> None:
    body = {"email": "grace@example.com", "password": PASSWORD}
    assert (await post(http, base, body))[0] == 201
    status, problem, headers = await post(http, base, {**body, "email": "grace@EXAMPLE.com"})
    assert_problem(status, problem, headers, 409)
    assert problem["errors"][0]["field"] == "email"
    assert problem["errors"][0]["code"] == "email.registered"


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"email": "not-an-email", "password": PASSWORD}, "email", "email.invalid"),
        ({"email": "a@example.com", "password": "x1y2z"}, "password", "password.too_short"),
        ({"email": "a@example.com", "password": "password123"}, "password", "password.too_common"),
        ({"email": "a@example.com", "password": "a@example.com"}, "password", "password.is_email"),
        (
            {"email": "a@example.com", "password": PASSWORD, "given_name": "x" * 101},
            "given_name",
            "given_name.too_long",
        ),
        ({"email": "a@example.com", "password": PASSWORD, "admin": True}, "admin", "field.unknown"),
        ({"password": PASSWORD}, "email", "email.required"),
        ([1, 2], "body", "body.malformed"),
    ],
)
async def test_invalid_input_is_422_with_field_errors(
    base: str, http: aiohttp.ClientSession, body: Any, field: str, code: str
) -> None:
    status, problem, headers = await post(http, base, body)
    assert_problem(status, problem, headers, 422)
    assert (field, code) in {(e["field"], e["code"]) for e in problem["errors"]}
    if isinstance(body, dict) and "password" in body:
        assert body["password"] not in orjson.dumps(problem).decode()


async def test_malformed_json_is_422(base: str, http: aiohttp.ClientSession) -> None:
    status, problem, headers = await post(http, base, b'{"email": "a@b.c", "password": ')
    assert_problem(status, problem, headers, 422)
    assert problem["errors"] == [
        {
            "field": "body",
            "message": "Send a JSON object with email and password.",
            "code": "body.malformed",
        }
    ]


async def test_not_json_is_415(base: str, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{base}/user/signup",
        data="email=a@b.c&password=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as response:
        assert_problem(
            response.status, await response.json(content_type=None), dict(response.headers), 415
        )


async def test_body_over_16_kib_is_413(base: str, http: aiohttp.ClientSession) -> None:
    huge = {"email": "a@example.com", "password": PASSWORD, "given_name": "x" * 17_000}
    status, problem, headers = await post(http, base, huge)
    assert_problem(status, problem, headers, 413)


async def test_chunked_body_over_16_kib_is_413(base: str, http: aiohttp.ClientSession) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "a@example.com", "given_name": "'
        for _ in range(20):
            yield b"x" * 1024
        yield b'"}'

    async with http.post(
        f"{base}/user/signup", data=chunks(), headers={"Content-Type": "application/json"}
    ) as response:
        assert_problem(
            response.status, await response.json(content_type=None), dict(response.headers), 413
        )


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}],
)
async def test_cross_site_browser_requests_are_403(
    base: str, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    status, problem, response_headers = await post(
        http, base, {"email": "x@example.com", "password": PASSWORD}, headers
    )
    assert_problem(status, problem, response_headers, 403)


async def test_start_up_objects_are_frozen_out_of_collections_while_serving(
    settings: Settings, bound_queue: AbstractQueue
) -> None:
    before = gc.get_freeze_count()
    async with serving(settings):
        assert gc.get_freeze_count() > before + 10_000
    assert gc.get_freeze_count() == 0


async def test_an_allowed_origin_gets_cors_answers_and_others_none(
    make_settings: Callable[..., Settings],
    database_url: str,
    bound_queue: AbstractQueue,
    http: aiohttp.ClientSession,
) -> None:
    partner = "https://www.partner.example"
    async with serving(make_settings(database_url=database_url, allowed_origins=[partner])) as url:
        preflight = {
            "Origin": partner,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key",
        }
        async with http.options(f"{url}/user/signup", headers=preflight) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == partner
            assert "POST" in response.headers["Access-Control-Allow-Methods"]
        status, _, headers = await post(
            http, url, {"email": "partner@example.com", "password": PASSWORD}, {"Origin": partner}
        )
        assert status == 201
        assert headers["Access-Control-Allow-Origin"] == partner
        status, _, headers = await post(
            http, url, {"email": "other@example.com", "password": PASSWORD}
        )
        assert status == 201 and "Access-Control-Allow-Origin" not in headers
        foreign = {**preflight, "Origin": "https://evil.example"}
        async with http.options(f"{url}/user/signup", headers=foreign) as response:
            assert "Access-Control-Allow-Origin" not in response.headers


async def test_with_no_other_origin_allowed_no_cors_answers_are_given(
    base: str, http: aiohttp.ClientSession
) -> None:
    preflight = {"Origin": "https://www.partner.example", "Access-Control-Request-Method": "POST"}
    async with http.options(f"{base}/user/signup", headers=preflight) as response:
        assert response.status >= 400
        assert "Access-Control-Allow-Origin" not in response.headers
    status, _, headers = await post(
        http, base, {"email": "plain@example.com", "password": PASSWORD}
    )
    assert status == 201 and "Access-Control-Allow-Origin" not in headers
    # No CORS layer at all: its mark, `Vary: Origin` on every answer, is absent.
    assert "origin" not in headers.get("Vary", "").lower()


async def test_same_origin_and_non_browser_clients_need_no_token(
    base: str, http: aiohttp.ClientSession, settings: Settings
) -> None:
    status, _, _ = await post(
        http,
        base,
        {"email": "same@example.com", "password": PASSWORD},
        # The own origin is SIGNUP_SITE_URL's, never the Host the request names.
        {"Origin": settings.site_url, "Sec-Fetch-Site": "same-origin"},
    )
    assert status == 201


async def test_idempotency_key_replays_and_refuses_another_body(
    base: str, http: aiohttp.ClientSession
) -> None:
    body = {"email": "key@example.com", "password": PASSWORD}
    first = await post(http, base, body, {"Idempotency-Key": "k-1"})
    again = await post(http, base, body, {"Idempotency-Key": "k-1"})
    assert first[0] == again[0] == 201 and first[1] == again[1]
    status, problem, headers = await post(
        http, base, {**body, "given_name": "Other"}, {"Idempotency-Key": "k-1"}
    )
    assert_problem(status, problem, headers, 422)


async def test_security_headers_on_page_and_api(base: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{base}/signup") as page:
        assert page.status == 200
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert page.headers["X-Request-ID"]


async def test_health_and_readiness_but_no_operations_endpoints(
    base: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{base}/healthz") as r:
        assert r.status == 200
    async with http.get(f"{base}/readyz") as r:
        ready = await r.json()
        assert r.status == 200 and ready["database"] == "ok" and "broker" in ready
    # Metrics, schema and docs live on the operations port (tests/e2e/test_ops_port.py).
    for path in ("/metrics", "/openapi.json", "/docs", "/redoc"):
        async with http.get(f"{base}{path}") as r:
            assert_problem(r.status, await r.json(content_type=None), dict(r.headers), 404)


async def test_operations_endpoints_on_the_public_port_when_asked(
    make_settings: Callable[..., Settings], database_url: str, http: aiohttp.ClientSession
) -> None:
    on_public = make_settings(database_url=database_url, ops_on_public_port=True)
    async with serving(on_public, run_relay=False) as base:
        await post(http, base, {"email": "metric@example.com", "password": PASSWORD})
        async with http.get(f"{base}/metrics") as r:
            text = await r.text()
            assert 'signup_signups_total{outcome="created"}' in text
            assert "signup_outbox_pending" in text
        async with http.get(f"{base}/openapi.json") as r:
            spec = await r.json()
            schema = spec["paths"]["/user/signup"]["post"]["requestBody"]["content"][
                "application/json"
            ]["schema"]
            assert set(schema["required"]) == {"email", "password"}
        async with http.get(f"{base}/docs") as r:
            page = await r.text()
            assert r.status == 200 and "POST /user/signup" in page and "<script" not in page
            assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")


async def test_unknown_path_and_method_are_problems(base: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{base}/nope") as r:
        assert_problem(r.status, await r.json(content_type=None), dict(r.headers), 404)
    async with http.put(f"{base}/user/signup", data=b"{}") as r:
        assert_problem(r.status, await r.json(content_type=None), dict(r.headers), 405)


async def test_rate_limits_per_address_and_per_email(
    make_settings: Callable[..., Settings], database_url: str, http: aiohttp.ClientSession
) -> None:
    limited = make_settings(
        database_url=database_url, rate_limit_per_ip="5/minute", rate_limit_per_email="2/hour"
    )
    async with serving(limited, run_relay=False) as url:
        body = {"email": "rl@example.com", "password": PASSWORD}
        statuses = [(await post(http, url, body))[0] for _ in range(3)]
        assert statuses == [201, 409, 429]
        status, problem, headers = await post(http, url, body)
        assert_problem(status, problem, headers, 429)
        assert int(headers["Retry-After"]) >= 1
        other = [
            (await post(http, url, {"email": f"o{i}@example.com", "password": "x"}))[0]
            for i in range(2)
        ]
        assert other[-1] == 429, "the address limit (5/minute) counts every attempt"


# What the outside attack found holding (docs/security.md, "What already held"): odd
# bodies get a clean problem answer, never a 500, and never an account.
ODD_BODIES = {
    "duplicate keys": b'{"email": "dup@example.com", "email": "x", "password": "%s"}',
    "deep nesting": b'{"email": ' + b"[" * 5_000 + b"]" * 5_000 + b', "password": "%s"}',
    "huge number": b'{"email": 1' + b"0" * 5_000 + b', "password": "%s"}',
    "NaN": b'{"email": NaN, "password": "%s"}',
    "UTF-16": '{"email": "u16@example.com", "password": "%s"}'.encode("utf-16"),
}


@pytest.mark.parametrize("kind", sorted(ODD_BODIES))
async def test_odd_bodies_get_a_clean_refusal(
    kind: str, base: str, http: aiohttp.ClientSession
) -> None:
    raw = ODD_BODIES[kind]
    body = raw.replace(b"%s", PASSWORD.encode()) if kind != "UTF-16" else raw
    async with http.post(
        f"{base}/user/signup", data=body, headers={"Content-Type": "application/json"}
    ) as response:
        assert 400 <= response.status < 500, (kind, response.status)
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert PASSWORD not in await response.text()


async def test_a_gzipped_body_is_refused_and_static_traversal_is_404(
    base: str, http: aiohttp.ClientSession
) -> None:
    import gzip

    body = gzip.compress(b'{"email": "gz@example.com", "password": "%s"}' % PASSWORD.encode())
    async with http.post(
        f"{base}/user/signup",
        data=body,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    ) as response:
        assert 400 <= response.status < 500
    for path in ("/static/../pyproject.toml", "/static/%2e%2e/%2e%2e/settings.py"):
        async with http.get(f"{base}{path}") as response:
            assert response.status == 404, path
