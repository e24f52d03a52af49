"""Reconciliation runs beside the relay: a slow provider never holds up publishing.

Inside the relay's loop a round of reconciliation (up to 500 look-ups, each allowed
`SIGNUP_AUTH0_TIMEOUT_SECONDS`) stopped every event meanwhile (issue 18, item 4). Here
the Auth0 stand-in, over HTTP, answers each Management API call after `LOOKUP_LATENCY`
seconds; the events written while the reconciler waits on its first look-up all reach
the real broker's queue before that look-up is answered.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from pydantic import SecretStr

from signup.bootstrap import bootstrap
from signup.domain.events import UserRegistered, UserRegisteredData
from signup.domain.model import Applicant, SignUp, SignUpStatus
from signup.service_layer.unit_of_work import Transaction
from signup.settings import Settings
from signup.testing.auth0_standin import Auth0Standin, running_standin

LOOKUP_LATENCY = 3.0  # seconds the stand-in takes for each call once the relay runs
EVENTS = 20


def now() -> datetime:
    return datetime.now(UTC)


def stale_intent(n: int) -> SignUp:
    """A sign-up whose provider outcome was never learnt (its answer lost, a crash)."""
    return SignUp(
        id=str(uuid.uuid4()),
        applicant=Applicant(f"stale{n}@example.com", "Ada", None),
        status=SignUpStatus.PENDING,
        provider="auth0",
        requested_at=now() - timedelta(minutes=5),
        idempotency_key=None,
        fingerprint="f" * 64,
    )


def event(n: int) -> UserRegistered:
    data = UserRegisteredData(
        user_id=f"auth0|beside{n}",
        email=f"beside{n}@example.com",
        email_verified=False,
        given_name=None,
        family_name=None,
        name=f"beside{n}",
        created_at=now(),
        identity_provider="auth0",
    )
    return UserRegistered(id=str(uuid.uuid4()), source="urn:test", time=now(), data=data)


def answered_lookups(standin: Auth0Standin) -> int:
    return sum(standin.state.counters.lookup_status.values())


def open_lookups(standin: Auth0Standin) -> int:
    return standin.state.counters.lookup_calls - answered_lookups(standin)


async def poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until `condition` holds; fail, saying `what`, after `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout:.0f} s") from None


async def test_events_are_published_while_reconciliation_waits_on_a_slow_provider(
    make_settings: Callable[..., Settings], bound_queue: AbstractQueue
) -> None:
    received: dict[str, dict[str, Any]] = {}

    async def on_message(message: AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        received[str(body["data"]["user_id"])] = body

    await bound_queue.consume(on_message, no_ack=True)
    async with running_standin() as standin:
        settings = make_settings(
            identity_provider="auth0",
            auth0_domain=standin.domain,
            auth0_client_id=standin.client_id,
            auth0_client_secret=SecretStr(standin.client_secret),
            auth0_base_url=standin.url,
            auth0_timeout_seconds=LOOKUP_LATENCY * 3,
            reconcile_every_seconds=0.2,
            reconcile_after_seconds=0,
        )
        container = bootstrap(settings)
        try:
            intents = [stale_intent(n) for n in range(3)]
            for intent in intents:
                await container.uow.run(lambda tx, s=intent: tx.signups.add(s))
            # The first intent's request did make its account; its answer was lost.
            made = await container.provider.create_user(
                Applicant(intents[0].applicant.email, "Ada", intent_id=intents[0].id),
                "violet tractor anthem",
            )
            standin.configure(latency=LOOKUP_LATENCY)

            container.start_relay()
            await poll(lambda: open_lookups(standin) == 1, 10, "the reconciler's first look-up")
            for n in range(EVENTS):
                await container.uow.run(lambda tx, n=n: tx.outbox.add(event(n)))
            await poll(
                lambda: all(f"auth0|beside{n}" in received for n in range(EVENTS)),
                LOOKUP_LATENCY * 2,
                "every event on the queue",
            )
            assert answered_lookups(standin) == 0, (
                "the events went out only after the reconciler's look-up was answered"
            )

            # And the reconciler did its work meanwhile: the account it found gets its
            # event, the two intents that made none are abandoned.
            async def statuses(tx: Transaction) -> list[SignUpStatus]:
                found = [await tx.signups.get(s.id) for s in intents]
                return [s.status for s in found if s is not None]

            async def settled() -> bool:
                return SignUpStatus.PENDING not in await container.uow.read(statuses)

            async with asyncio.timeout(LOOKUP_LATENCY * 3 + 10):
                while not await settled():
                    await asyncio.sleep(0.1)
            assert await container.uow.read(statuses) == [
                SignUpStatus.CREATED,
                SignUpStatus.ABANDONED,
                SignUpStatus.ABANDONED,
            ]
            await poll(lambda: made.user_id in received, 10, "the adopted account's event")
            assert received[made.user_id]["data"]["email"] == intents[0].applicant.email
        finally:
            await container.aclose()
