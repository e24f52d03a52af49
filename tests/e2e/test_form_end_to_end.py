"""Issue 21's proof, end to end with real processes: a sign-up with the site's form
(docs/form.example.toml) in German reaches the Auth0 stand-in (`user_metadata`), the
`user.new` message and the CRM receiver (through `signup worker crm-sync`) with the same
fields and the same consent record; a sign-up without the required consent is refused
and writes nothing anywhere.

The expected consent record is computed here from the TOML file itself (the hash of the
German text as the file writes it), not from the service's code.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import tomllib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractQueue
from worker_fixtures import CRM_SECRET, CrmReceiver
from worker_fixtures import crm_receiver as crm_receiver

from signup.adapters.consumer import Topology, delete_topology
from signup.testing.auth0_standin import Auth0Standin, running_standin
from signup.testing.processes import ServiceProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FORM_FILE = ROOT / "docs" / "form.example.toml"
PASSWORD = "Violet Tractor 42 anthem"
RETRY_DELAYS = "0.5,1"
WORKER = "crm-sync"
# Tables a sign-up writes to (the workers' own bookkeeping, leases and checkpoints aside).
SIGNUP_TABLES = (
    "signups",
    "users",
    "outbox",
    "consent_records",
    "announced_accounts",
    "account_sightings",
    "attempt_notices",
)

FORM = tomllib.loads(FORM_FILE.read_text(encoding="utf-8"))
CONSENTS = {c["id"]: c for c in FORM["consents"]}
# Read off the file: only `terms` is required, the two others are optional and marketing
# (an optional consent is marketing unless the file says otherwise; see form.md).
assert [c["id"] for c in FORM["consents"] if c.get("required")] == ["terms"]
MARKETING_IDS = {"marketing", "partner_offers"}


def german_sha256(consent_id: str) -> str:
    return hashlib.sha256(CONSENTS[consent_id]["text"]["de"].encode("utf-8")).hexdigest()


ADA: dict[str, Any] = {
    "email": "ada@example.com",
    "password": PASSWORD,
    "given_name": "Ada",
    "family_name": "Lovelace",
    "fields": {
        "company": "Analytical Engines Ltd",
        "vat_id": "GB123456789",
        "role": "developer",
        "team_size": "2-10",
        "birthday": "1815-12-10",
        "country": "GB",
        "newsletter_digest": True,
    },
    "consents": {"terms": True, "marketing": True, "partner_offers": False},
}
GRACE: dict[str, Any] = {
    "email": "grace@example.com",
    "password": PASSWORD,
    "given_name": "Grace",
    "family_name": "Hopper",
    "fields": {
        "company": "Remington Rand",
        "vat_id": "US98765ZZ",
        "role": "manager",
        "team_size": "11+",
        "birthday": "1906-12-09",
        "country": "US",
        "newsletter_digest": False,
    },
    "consents": {"terms": True, "marketing": False, "partner_offers": True},
}
# Everything filled and marketing given, but the terms not accepted.
CAROL: dict[str, Any] = {
    "email": "carol@example.com",
    "password": PASSWORD,
    "given_name": "Carol",
    "fields": {**ADA["fields"], "company": "Nobody"},
    "consents": {"terms": False, "marketing": True, "partner_offers": True},
}


@pytest.fixture
async def standin() -> AsyncIterator[Auth0Standin]:
    async with running_standin() as s:
        yield s


async def wait_for_consumer(amqp_url: str, queue: str, seconds: float = 30) -> None:
    """The worker is ready once its queue exists and has a consumer."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for _ in range(int(seconds * 10)):
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
                if (declared.declaration_result.consumer_count or 0) > 0:
                    return
            except aio_pika.exceptions.ChannelClosed:
                pass  # not declared yet (a passive declare closes the channel)
            finally:
                if not channel.is_closed:
                    await channel.close()
            await asyncio.sleep(0.1)
    raise AssertionError(f"no consumer on {queue}")


async def next_message(queue: AbstractQueue, seconds: float = 30) -> dict[str, Any]:
    for _ in range(int(seconds * 20)):
        message = await queue.get(fail=False)
        if message is not None:
            await message.ack()
            body: dict[str, Any] = orjson.loads(message.body)
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("no user.new message arrived")


async def until_calls(receiver: CrmReceiver, count: int, seconds: float = 45) -> None:
    for _ in range(int(seconds * 10)):
        if len(receiver.calls) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the CRM got {len(receiver.calls)} calls, not {count}")


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", "Accept-Language": "de"}
    async with http.post(f"{url}/user/signup", data=orjson.dumps(body), headers=headers) as r:
        return r.status, await r.json(content_type=None)


def table_counts(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in SIGNUP_TABLES}


def expected_consents(body: dict[str, Any], at: str) -> list[dict[str, Any]]:
    """The record of every consent in the file, as the person answered, in German."""
    return [
        {
            "id": consent["id"],
            "version": consent["version"],
            "accepted": body["consents"].get(consent["id"], False),
            "at": at,
            "language": "de",
            "text_sha256": german_sha256(consent["id"]),
            "marketing": consent["id"] in MARKETING_IDS,
        }
        for consent in FORM["consents"]
    ]


def by_id(consents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in consents}


async def test_fields_and_consents_reach_auth0_the_event_and_the_crm_and_a_refusal_writes_nothing(
    tmp_path: Path,
    amqp_url: str,
    exchange_name: str,
    bound_queue: AbstractQueue,
    standin: Auth0Standin,
    crm_receiver: CrmReceiver,
) -> None:
    prefix = f"test-e2e-form-{uuid.uuid4().hex[:8]}"
    database = tmp_path / "signup.db"
    env = {
        "SIGNUP_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "SIGNUP_AMQP_URL": amqp_url,
        "SIGNUP_EXCHANGE": exchange_name,
        "SIGNUP_FORM_FILE": str(FORM_FILE),
        "SIGNUP_IDENTITY_PROVIDER": "auth0",
        "SIGNUP_AUTH0_DOMAIN": standin.domain,
        "SIGNUP_AUTH0_CLIENT_ID": standin.client_id,
        "SIGNUP_AUTH0_CLIENT_SECRET": standin.client_secret,
        "SIGNUP_AUTH0_BASE_URL": standin.url,
        "SIGNUP_RATE_LIMIT_PER_IP": "",
        "SIGNUP_RATE_LIMIT_PER_EMAIL": "",
        "SIGNUP_RELAY_POLL_SECONDS": "0.2",
        "SIGNUP_CRM_URL": crm_receiver.url,
        "SIGNUP_CRM_SECRET": CRM_SECRET,
        "SIGNUP_WORKER_RETRY_DELAYS_SECONDS": RETRY_DELAYS,
    }
    worker_log = tmp_path / f"{WORKER}.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "signup", "worker", WORKER, "--queue-prefix", prefix],
        env={**os.environ, **env},
        stdout=worker_log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    service = ServiceProcess(env, tmp_path / "serve.log")
    try:
        await wait_for_consumer(amqp_url, f"{prefix}.{WORKER}")
        # Blocking while it waits for /healthz: the stand-in on this loop is not asked then.
        service.start()
        async with aiohttp.ClientSession() as http:
            before = datetime.now(UTC) - timedelta(milliseconds=1)
            status, created_ada = await post(http, service.url, ADA)
            assert status == 201, created_ada
            ada_event = await next_message(bound_queue)
            await until_calls(crm_receiver, 1)

            # (b) between the two good ones: had it been written, its message would come
            # before Grace's (the outbox is relayed in order).
            counts = table_counts(database)
            creates = standin.state.counters.create_calls
            status, problem = await post(http, service.url, CAROL)
            assert status == 422, problem
            assert [(e["field"], e["code"]) for e in problem["errors"]] == [
                ("consents.terms", "consent.required")
            ]
            assert table_counts(database) == counts, "the refused sign-up wrote a row"
            assert standin.state.counters.create_calls == creates, "Auth0 was asked"

            status, created_grace = await post(http, service.url, GRACE)
            assert status == 201, created_grace
            after = datetime.now(UTC)
            grace_event = await next_message(bound_queue)
            await until_calls(crm_receiver, 2)
        await asyncio.sleep(1.5)  # a late message or CRM call would show up now
        assert await bound_queue.get(fail=False) is None
        assert len(crm_receiver.calls) == 2
    finally:
        service.stop()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            await asyncio.to_thread(worker.wait, 30)
        delays = tuple(float(d) for d in RETRY_DELAYS.split(","))
        await delete_topology(
            amqp_url,
            Topology(
                name=WORKER, exchange=exchange_name, retry_delays_seconds=delays, prefix=prefix
            ),
        )

    # (b) nothing of Carol anywhere: no account, no row, no message, no contact.
    assert sorted(u["email"] for u in standin.state.users.values()) == [
        "ada@example.com",
        "grace@example.com",
    ]
    assert standin.state.counters.create_calls == 2
    with sqlite3.connect(database) as conn:
        outbox = [orjson.loads(p) for (p,) in conn.execute("SELECT payload FROM outbox")]
        carol_rows = conn.execute(
            "SELECT count(*) FROM signups WHERE email = 'carol@example.com'"
        ).fetchone()[0]
    assert sorted(e["data"]["email"] for e in outbox) == ["ada@example.com", "grace@example.com"]
    assert carol_rows == 0
    assert [e["data"]["email"] for e in (ada_event, grace_event)] == [
        "ada@example.com",
        "grace@example.com",
    ]
    assert sorted(c["json"]["email"] for c in crm_receiver.calls) == [
        "ada@example.com",
        "grace@example.com",
    ]

    # (a) the same values and the same consent record in all three places.
    for body, created, event in (
        (ADA, created_ada, ada_event),
        (GRACE, created_grace, grace_event),
    ):
        user_id = created["user_id"]
        assert user_id.startswith("auth0|")
        metadata = standin.state.users[user_id]["user_metadata"]
        data = event["data"]
        assert data["user_id"] == user_id
        at = data["consents"][0]["at"]
        # Recorded at the sign-up, in UTC with milliseconds, one time for all its consents.
        assert at.endswith("Z")
        assert before <= datetime.fromisoformat(at) <= after
        expected = expected_consents(body, at)

        assert metadata == {"fields": body["fields"], "consents": expected}
        assert data["fields"] == body["fields"]
        assert data["consents"] == expected

        [call] = [c for c in crm_receiver.calls if c["json"]["email"] == body["email"]]
        assert call["valid"], "the CRM call's signature does not verify"
        contact = call["json"]
        assert contact["user_id"] == user_id
        assert contact["fields"] == body["fields"]
        # Only the marketing consents, as given or refused; never the terms.
        assert by_id(contact["consents"]) == {
            c["id"]: {k: v for k, v in c.items() if k != "marketing"}
            for c in expected
            if c["id"] in MARKETING_IDS
        }
        assert len(contact["consents"]) == len(MARKETING_IDS)
        assert by_id(contact["consents"])["marketing"]["accepted"] is body["consents"]["marketing"]

    for log in tmp_path.glob("*.log"):
        assert PASSWORD not in log.read_text(errors="replace")
