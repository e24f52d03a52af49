"""The CRM-sync worker end to end: RabbitMQ → worker → a real HTTP receiver that checks
the Standard Webhooks signature with its own implementation."""

from __future__ import annotations

import pytest
from worker_fixtures import (
    AMQP_URL,
    CRM_SECRET,
    Broker,
    CrmReceiver,
    broker,
    crm_receiver,
    free_port,
    make_event,
    sqlite_url,
    wait_for,
    worker,
)

from signup.adapters.consumer import list_dead_letters
from signup.bootstrap import build_consumer
from signup.domain.events import iso_millis
from signup.settings import Settings

__all__ = ["broker", "crm_receiver", "sqlite_url"]  # fixtures

NAME = "crm-sync"


def settings_for(broker: Broker, sqlite_url: str, url: str) -> Settings:
    return broker.settings(database_url=sqlite_url, crm_url=url, crm_secret=CRM_SECRET)


async def test_contact_is_posted_signed(
    broker: Broker, sqlite_url: str, crm_receiver: CrmReceiver
) -> None:
    event = make_event(given_name="Ada", family_name="Lovelace", name="Ada Lovelace")
    async with worker(broker, NAME, settings_for(broker, sqlite_url, crm_receiver.url)) as c:
        await broker.publish_event(event)
        await wait_for(lambda: c.stats.processed == 1, what="the CRM call")

    assert len(crm_receiver.calls) == 1
    call = crm_receiver.calls[0]
    assert call["valid"], "signature checked by the test's own implementation"
    assert call["id"] == event.id
    assert call["content_type"] == "application/json"
    assert call["json"] == {
        "user_id": event.data.user_id,
        "email": "ada@example.com",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "name": "Ada Lovelace",
        "created_at": iso_millis(event.data.created_at),
        "source": "urn:signup:test",
    }


async def test_server_errors_are_retried(
    broker: Broker, sqlite_url: str, crm_receiver: CrmReceiver
) -> None:
    crm_receiver.statuses = [503, 503, 429]
    event = make_event()
    settings = settings_for(broker, sqlite_url, crm_receiver.url).model_copy(
        update={"worker_retry_delays_seconds": [0.2, 0.2, 0.4]}
    )
    async with worker(broker, NAME, settings) as c:
        await broker.publish_event(event)
        await wait_for(lambda: c.stats.processed == 1, what="success after retries")
    assert c.stats.retried == 3
    assert [call["id"] for call in crm_receiver.calls] == [event.id] * 4
    assert all(call["valid"] for call in crm_receiver.calls)


async def test_client_errors_are_parked(
    broker: Broker, sqlite_url: str, crm_receiver: CrmReceiver
) -> None:
    crm_receiver.statuses = [400]
    event = make_event()
    async with worker(broker, NAME, settings_for(broker, sqlite_url, crm_receiver.url)) as c:
        await broker.publish_event(event)
        await wait_for(lambda: c.stats.dead_lettered == 1, what="parking")
        letters, total = await list_dead_letters(AMQP_URL, c.topology)
    assert len(crm_receiver.calls) == 1
    assert c.stats.retried == 0
    assert total == 1
    assert letters[0].event_id == event.id
    assert letters[0].reason.startswith("CRM answered 400")


async def test_duplicate_delivery_makes_one_call(
    broker: Broker, sqlite_url: str, crm_receiver: CrmReceiver
) -> None:
    event = make_event()
    async with worker(broker, NAME, settings_for(broker, sqlite_url, crm_receiver.url)) as c:
        await broker.publish_event(event)
        await broker.publish_event(event)
        await wait_for(
            lambda: c.stats.processed + c.stats.duplicates_skipped == 2, what="both copies"
        )
        await broker.publish_event(event)
        await wait_for(lambda: c.stats.duplicates_skipped == 2, what="the replay")
    assert len(crm_receiver.calls) == 1


async def test_network_faults_are_retried_then_parked(broker: Broker, sqlite_url: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/contacts"  # nobody listens
    async with worker(broker, NAME, settings_for(broker, sqlite_url, url)) as c:
        await broker.publish_event(make_event())
        await wait_for(lambda: c.stats.dead_lettered == 1, what="parking")
        letters, _ = await list_dead_letters(AMQP_URL, c.topology)
    assert c.stats.retried == 2
    assert letters[0].reason.startswith("gave up after 3 attempts: CRM unreachable")


async def test_the_worker_needs_url_and_secret(broker: Broker, sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="SIGNUP_CRM_URL"):
        async with build_consumer(NAME, broker.settings(database_url=sqlite_url)):
            pass
