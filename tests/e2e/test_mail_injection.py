"""Security issue 16, item 1: headers and body written into the welcome e-mail by a name.

The attack as reported, and its variants, performed against the running service:

- over real HTTP against the web app (in process, real SQLite and RabbitMQ), with the
  local provider and with the Auth0 stand-in: every payload is refused with a 422
  problem+json on the field at fault, creates no account and publishes no event;
- against the welcome-e-mail worker (real RabbitMQ, a real aiosmtpd server) with the
  payloads inside `user.new` events, as events written before the fix carry them: the
  bytes the SMTP server receives carry exactly the headers we wrote, one recipient in
  the envelope and in To, and nothing of the names but a fit greeting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractQueue
from mail_fixtures import ATTACKS, RawSmtpSink, assert_only_what_we_wrote, raw_smtp
from pydantic import SecretStr
from worker_fixtures import Broker, broker, make_event, wait_for, worker

from signup.domain.events import UserRegistered
from signup.domain.names import ADDRESS_MESSAGE, ENCODED_MESSAGE, INVISIBLE_MESSAGE, LINK_MESSAGE
from signup.settings import Settings
from signup.testing.auth0_standin import Auth0Standin, running_standin
from signup.testing.server import serving

__all__ = ["broker", "raw_smtp"]  # fixtures

pytestmark = pytest.mark.e2e

PASSWORD = "Str0ng-enough-pass!"  # the report's
NAME_MESSAGES = {ENCODED_MESSAGE, ADDRESS_MESSAGE, LINK_MESSAGE, INVISIBLE_MESSAGE}
SITE_URL = "https://brand.test/start"


# --- the web app: refused at sign-up ------------------------------------------------------


@dataclass
class Service:
    url: str
    standin: Auth0Standin | None


@pytest.fixture(params=["local", "auth0"])
async def service(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., Settings],
    bound_queue: AbstractQueue,
) -> AsyncIterator[Service]:
    if request.param == "local":
        async with serving(make_settings()) as url:
            yield Service(url, None)
        return
    async with running_standin() as standin:
        settings = make_settings(
            identity_provider="auth0",
            auth0_domain=standin.domain,
            auth0_client_id=standin.client_id,
            auth0_client_secret=SecretStr(standin.client_secret),
            auth0_base_url=standin.url,
        )
        async with serving(settings) as url:
            yield Service(url, standin)


async def sign_up(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, str, dict[str, Any]]:
    async with http.post(f"{url}/user/signup", data=orjson.dumps(body), headers={
        "Content-Type": "application/json"
    }) as response:  # fmt: skip
        answer = await response.json(content_type=None)
        return response.status, response.headers.get("Content-Type", ""), answer


def signup_attacks() -> list[tuple[str, dict[str, str]]]:
    """Each payload in the given name, in the family name, and split over both (so only
    the full name the service builds from them would hold the whole encoded-word)."""
    cases: list[tuple[str, dict[str, str]]] = []
    for attack, payload in sorted(ATTACKS.items()):
        cases.append((f"{attack} in given_name", {"given_name": payload, "family_name": "L"}))
        cases.append((f"{attack} in family_name", {"given_name": "Ada", "family_name": payload}))
        if payload.startswith("=?"):
            half = len(payload) // 2
            both = {"given_name": payload[:half], "family_name": payload[half:]}
            cases.append((f"{attack} split over both names", both))
    # The report's request, verbatim: both fields carry an encoded-word.
    cases.append(
        (
            "the report",
            {
                "given_name": ATTACKS["b-given-report"],
                "family_name": ATTACKS["b-family-report"],
            },
        )
    )
    return cases


async def test_every_payload_is_refused_at_sign_up_with_a_field_error(
    service: Service, bound_queue: AbstractQueue
) -> None:
    failures: list[str] = []
    async with aiohttp.ClientSession() as http:
        for index, (case, names) in enumerate(signup_attacks()):
            body = {"email": f"ewl{index}@example.com", "password": PASSWORD, **names}
            status, content_type, problem = await sign_up(http, service.url, body)
            if status != 422 or not content_type.startswith("application/problem+json"):
                failures.append(f"{case}: {status} {content_type} {problem}")
                continue
            errors = {e["field"]: e["message"] for e in problem.get("errors", [])}
            faulty = {field for field in ("given_name", "family_name") if field in names}
            # Every name field that carries (part of) a payload is named, with the name
            # rule's message, and the payload is not echoed back.
            named = {f for f in faulty if f in errors and errors[f] in NAME_MESSAGES}
            expected = {f for f in faulty if names[f] not in ("Ada", "L")}
            if named != expected or set(errors) - faulty:
                failures.append(f"{case}: errors {errors}")
            if any(names[f] in orjson.dumps(problem).decode() for f in expected):
                failures.append(f"{case}: the payload is echoed")
            if problem.get("status") != 422 or not {"type", "title", "detail"} <= set(problem):
                failures.append(f"{case}: not RFC 9457: {problem}")

        # A clean sign-up afterwards: the relay publishes in outbox order, so its event
        # being the first on the queue shows no refused sign-up left an event behind.
        clean = {"email": "clean@example.com", "password": PASSWORD, "given_name": "Ada"}
        status, _, created = await sign_up(http, service.url, clean)
    assert failures == [], "\n".join(failures)
    assert status == 201, created
    async with bound_queue.iterator() as delivered:
        message = await asyncio.wait_for(anext(delivered), timeout=30)
        await message.ack()
    event = orjson.loads(message.body)
    assert event["data"]["email"] == "clean@example.com"
    if service.standin is not None:
        assert service.standin.state.counters.create_calls == 1  # Auth0 was asked once
        assert [u["email"] for u in service.standin.state.users.values()] == ["clean@example.com"]


# --- the worker: events written before the fix ---------------------------------------------


def old_events() -> dict[str, tuple[UserRegistered, str]]:
    """Recipient -> (event, expected greeting): each payload in the given, the family and
    the full name, shaped as the service built events before names were checked."""
    events: dict[str, tuple[UserRegistered, str]] = {}
    for index, payload in enumerate(ATTACKS[attack] for attack in sorted(ATTACKS)):
        shapes = {
            "given": ({"given_name": payload, "family_name": "Lovelace"}, f"{payload} Lovelace"),
            "family": ({"given_name": "Ada", "family_name": payload}, f"Ada {payload}"),
            "full": ({"given_name": None, "family_name": None}, payload),
        }
        for shape, (names, full) in shapes.items():
            email = f"victim-{index}-{shape}@example.com"
            greeting = "Ada" if shape == "family" else "there"
            events[email] = (make_event(email=email, name=full, **names), greeting)
    # Controls: a fit name is still greeted, so "Hi there" above is the rule's doing.
    control = make_event(email="control@example.com", given_name="Zo\u00eb", name="Zo\u00eb L")
    events["control@example.com"] = (control, "Zo\u00eb")
    return events


async def test_old_events_carrying_payloads_reach_smtp_with_only_our_headers(
    broker: Broker, sqlite_url: str, raw_smtp: RawSmtpSink
) -> None:
    events = old_events()
    settings = broker.settings(
        database_url=sqlite_url,
        smtp_host=raw_smtp.host,
        smtp_port=raw_smtp.port,
        mail_from="hello@brand.test",
        site_name="Test Brand",
        site_url=SITE_URL,
    )
    async with worker(broker, "welcome-email", settings) as consumer:
        for event, _ in events.values():
            await broker.publish_event(event)
        await wait_for(
            lambda: consumer.stats.processed + consumer.stats.dead_lettered >= len(events),
            timeout=60,
            what="every e-mail",
        )
    assert consumer.stats.dead_lettered == 0
    assert consumer.stats.processed == len(events)
    assert len(raw_smtp.raw) == len(events)  # one message per event, no extra copies
    failures: list[str] = []
    for mail_from, recipients, raw in raw_smtp.raw:
        try:
            assert mail_from == "hello@brand.test"
            assert len(recipients) == 1, recipients  # one RCPT TO in the envelope
            event, greeting = events[recipients[0]]
            assert_only_what_we_wrote(raw, recipients[0], site_url=SITE_URL, greeting=greeting)
            assert f"Message-ID: <{event.id}@signup>".encode() in raw
            assert b"\r\nSubject: Welcome to Test Brand\r\n" in raw
        except (AssertionError, KeyError) as exc:
            failures.append(f"{recipients}: {exc!r}")
    assert failures == [], "\n".join(failures)
    assert sorted(r for _, [r], _ in raw_smtp.raw) == sorted(events)
