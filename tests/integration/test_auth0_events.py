"""POST /hooks/auth0 over HTTP, with the Auth0 stand-in's event stream delivering to it, on
SQLite and PostgreSQL (issue 19): one `user.new` per account whatever arrives, the form's
event winning the race with Auth0's, and nothing written without the credential."""

from __future__ import annotations

import asyncio
import base64
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from sqlalchemy import func, select

from signup.adapters import tables as t
from signup.adapters.database import create_engine
from signup.adapters.sql import SqlUnitOfWork
from signup.bootstrap import bootstrap
from signup.domain.events import UserRegistered
from signup.settings import Settings
from signup.testing.auth0_standin import Auth0Standin, running_standin
from signup.testing.server import serving

pytestmark = pytest.mark.timeout(120)

TOKEN = "hook-token-0123456789abcdef"


@dataclass
class Hooked:
    url: str
    http: aiohttp.ClientSession
    uow: SqlUnitOfWork
    standin: Auth0Standin
    settings: Settings

    async def events(self) -> list[UserRegistered]:
        entries = await self.uow.read(lambda tx: tx.outbox.unpublished(10_000))
        return [UserRegistered.from_json(e.payload) for e in entries]

    async def count(self, table: Any) -> int:
        async with self.uow.reader.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())

    async def written(self) -> int:
        return sum(
            [
                await self.count(t.outbox),
                await self.count(t.announced_accounts),
                await self.count(t.account_sightings),
            ]
        )

    async def post(self, body: bytes, headers: dict[str, str]) -> aiohttp.ClientResponse:
        async with self.http.post(f"{self.url}/hooks/auth0", data=body, headers=headers) as r:
            await r.read()
            return r


@pytest.fixture
def start(database_url: str, make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    @asynccontextmanager
    async def started(*, relay: bool = False, **overrides: Any) -> AsyncIterator[Hooked]:
        async with AsyncExitStack() as stack:
            standin = await stack.enter_async_context(running_standin())
            values: dict[str, Any] = {
                "database_url": database_url,
                "identity_provider": "auth0",
                "auth0_domain": standin.domain,
                "auth0_client_id": standin.client_id,
                "auth0_client_secret": standin.client_secret,
                "auth0_base_url": standin.url,
                "auth0_events_token": TOKEN,
                **overrides,
            }
            # The relay stays off unless asked: every event written stays in the outbox.
            url = await stack.enter_async_context(serving(make_settings(**values), run_relay=relay))
            standin.configure(stream_url=f"{url}/hooks/auth0", stream_token=TOKEN)
            http = await stack.enter_async_context(aiohttp.ClientSession())
            uow = SqlUnitOfWork(
                writer=create_engine(database_url, writer=True),
                reader=create_engine(database_url),
                clock=lambda: datetime.now(UTC),
            )
            try:
                yield Hooked(url, http, uow, standin, make_settings(**values))
            finally:
                await uow.close()
                await uow.writer.dispose()
                await uow.reader.dispose()

    return started


def by_user(events: list[UserRegistered]) -> dict[str, list[UserRegistered]]:
    out: dict[str, list[UserRegistered]] = {}
    for event in events:
        out.setdefault(event.data.user_id, []).append(event)
    return out


async def test_social_and_dashboard_accounts_each_get_one_event_from_a_sloppy_stream(
    start: Callable[..., Any],
) -> None:
    async with start() as site:
        site.standin.configure(stream_share_duplicate=0.5, stream_max_delay=0.2)
        made = [
            site.standin.create_outside("social", f"s{n}@example.com", given_name="Grace")
            for n in range(10)
        ] + [site.standin.create_outside("dashboard", f"d{n}@example.com") for n in range(10)]
        async with asyncio.timeout(60):
            await site.standin.stream.drained()
        # Replays of what was sent (Auth0 retries after a lost answer), in reverse order.
        for event in reversed(site.standin.stream.sent):
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            assert (await site.post(orjson.dumps(event), headers)).status == 204
        seen = by_user(await site.events())
        assert sorted(seen) == sorted(u["user_id"] for u in made)
        assert all(len(events) == 1 for events in seen.values())
        assert site.standin.stream.counters.delivered > 20  # duplicates were delivered
        social = seen[made[0]["user_id"]][0]
        assert (social.data.connection, social.data.is_social, social.data.origin) == (
            "google-oauth2",
            True,
            "auth0-event",
        )
        assert social.data.given_name == "Grace"
        assert social.auth0eventid is not None and social.auth0eventid.startswith("evt_")
        dashboard = seen[made[-1]["user_id"]][0]
        assert dashboard.data.connection == "Username-Password-Authentication"
        assert dashboard.data.is_social is False
        assert await site.count(t.announced_accounts) == 20


async def test_the_forms_event_wins_when_auth0s_arrives_while_the_form_is_in_flight(
    start: Callable[..., Any],
) -> None:
    async with start() as site:
        # Auth0 makes the account and holds its answer; its event goes out at once.
        site.standin.configure(share_create_then_hang=1.0, hang_seconds=1.5)
        body = {"email": "ada@example.com", "password": "violet tractor anthem"}
        body["given_name"] = "Ada"
        form = asyncio.ensure_future(site.http.post(f"{site.url}/user/signup", json=body))
        async with asyncio.timeout(10):
            while site.standin.stream.counters.delivered < 1:
                await asyncio.sleep(0.01)
        assert not form.done()  # the form's request is still waiting for Auth0
        assert await site.events() == []  # nothing announced behind the form's back
        assert await site.count(t.account_sightings) == 1  # but the 204 was durable
        async with await form as answer:
            assert answer.status == 201
            user_id = (await answer.json())["user_id"]
        [event] = await site.events()
        assert event.data.user_id == user_id
        assert event.data.origin == "form" and event.data.given_name == "Ada"
        assert event.auth0eventid is None
        # Auth0 delivers again: still the one event.
        [sent] = site.standin.stream.sent
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        assert (await site.post(orjson.dumps(sent), headers)).status == 204
        assert len(await site.events()) == 1


def event_body(user_id: str = "google-oauth2|42", type_: str = "user.created") -> bytes:
    return orjson.dumps(
        {
            "id": "evt_1",
            "type": type_,
            "specversion": "1.0",
            "source": "urn:auth0:x:users",
            "data": {
                "object": {
                    "user_id": user_id,
                    "email": "eve@example.com",
                    "created_at": "2026-12-05T10:00:00.000Z",
                    "identities": [{"connection": "google-oauth2", "isSocial": True}],
                }
            },
        }
    )


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-0123456789", f"Bearer {TOKEN}x", basic("auth0", TOKEN), TOKEN],
)
async def test_a_forged_or_replayed_delivery_without_the_credential_writes_nothing(
    start: Callable[..., Any], authorization: str | None
) -> None:
    async with start() as site:
        headers = {"Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        async with site.http.post(
            f"{site.url}/hooks/auth0", data=event_body(), headers=headers
        ) as r:
            assert r.status == 401
            assert r.headers["Content-Type"].startswith("application/problem+json")
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert TOKEN not in await r.text()
        assert await site.written() == 0


async def test_basic_credentials_are_taken_when_configured(start: Callable[..., Any]) -> None:
    async with start(
        auth0_events_token=None, auth0_events_username="auth0", auth0_events_password="pw-" * 6
    ) as site:
        headers = {"Content-Type": "application/json"}
        bad = await site.post(event_body(), {**headers, "Authorization": basic("auth0", "nope")})
        assert bad.status == 401 and await site.written() == 0
        good = await site.post(
            event_body(), {**headers, "Authorization": basic("auth0", "pw-" * 6)}
        )
        assert good.status == 204
        assert len(await site.events()) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[]", "application/json", 400),
        (b'{"type": "user.created"}', "application/json", 400),
        (b'{"id": "e", "type": "user.created", "data": {}}', "application/json", 400),
        (event_body(), "text/plain", 415),
        (
            b'{"id": "e", "type": "user.created", "pad": "' + b"x" * 70_000 + b'"}',
            "application/json",
            413,
        ),
    ],
)
async def test_a_malformed_body_gets_a_problem_and_nothing_is_written(
    start: Callable[..., Any], body: bytes, content_type: str, status: int
) -> None:
    async with start() as site:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
        async with site.http.post(f"{site.url}/hooks/auth0", data=body, headers=headers) as r:
            assert r.status == status
            assert r.headers["Content-Type"].startswith("application/problem+json")
        assert await site.written() == 0


async def test_types_we_ignore_are_acknowledged_and_not_written(
    start: Callable[..., Any],
) -> None:
    async with start() as site:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        for type_ in ("user.updated", "user.deleted"):
            assert (await site.post(event_body(type_=type_), headers)).status == 204
        assert await site.written() == 0
        created = await site.post(event_body(type_="com.auth0.user.created"), headers)
        assert created.status == 204 and len(await site.events()) == 1


async def test_the_hook_is_off_while_no_credential_is_configured(
    start: Callable[..., Any],
) -> None:
    async with start(auth0_events_token=None) as site:
        response = await site.post(event_body(), {"Content-Type": "application/json"})
        assert response.status == 404
        assert await site.written() == 0


async def test_a_cross_site_looking_post_is_not_refused_by_the_browser_guard(
    start: Callable[..., Any],
) -> None:
    # Server to server: an Origin header is no reason to refuse; the credential decides.
    async with start() as site:
        headers = {
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/json",
            "Origin": "https://elsewhere.example",
        }
        assert (await site.post(event_body(), headers)).status == 204
        forged = {**headers, "Authorization": "Bearer nope"}
        assert (await site.post(event_body("google-oauth2|43"), forged)).status == 401
        assert len(await site.events()) == 1


ACTIONS = Path(__file__).parents[2] / "docs" / "actions"
RUN_ACTION = """
const [file, trigger, url, token, event] = process.argv.slice(1);
const action = require(file);
const e = JSON.parse(event);
e.secrets = {SIGNUP_HOOK_URL: url, SIGNUP_HOOK_TOKEN: token};
action[trigger](e, {}).then(
  () => console.log("done"),
  (err) => { console.error(err); process.exit(1); },
);
"""


async def run_action(file: str, trigger: str, url: str, token: str, event: dict[str, Any]) -> str:
    node = shutil.which("node")
    assert node is not None, "Node.js runs the Actions shipped in docs/actions"
    process = await asyncio.create_subprocess_exec(
        node,
        "-e",
        RUN_ACTION,
        str(ACTIONS / file),
        trigger,
        url,
        token,
        orjson.dumps(event).decode(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode() + err.decode()


async def test_the_shipped_actions_post_what_the_hook_takes_once_per_account(
    start: Callable[..., Any],
) -> None:
    async with start() as site:
        hook = f"{site.url}/hooks/auth0"
        social = {
            "user_id": "github|7",
            "email": "linus@example.com",
            "email_verified": True,
            "name": "Linus",
            "created_at": "2026-12-05T10:00:00.000Z",
            "identities": [
                {"connection": "github", "provider": "github", "isSocial": True, "user_id": "7"}
            ],
        }
        login = {"stats": {"logins_count": 1}, "tenant": {"id": "nc"}, "user": social}
        await run_action("post-login.js", "onExecutePostLogin", hook, TOKEN, login)
        await run_action("post-login.js", "onExecutePostLogin", hook, TOKEN, login)  # again
        later = {**login, "stats": {"logins_count": 2}, "user": {**social, "user_id": "x|1"}}
        await run_action("post-login.js", "onExecutePostLogin", hook, TOKEN, later)
        staff = {
            "user": {"user_id": "auth0|abc", "email": "staff@example.com", "name": "Staff"},
            "connection": {"name": "Username-Password-Authentication"},
            "tenant": {"id": "nc"},
        }
        trigger = "onExecutePostUserRegistration"
        await run_action("post-user-registration.js", trigger, hook, TOKEN, staff)
        said = await run_action("post-user-registration.js", trigger, hook, "wrong-token", staff)
        assert "401" in said  # logged, given up at once, the registration not failed
        seen = {e.data.user_id: e for e in await site.events()}
        assert sorted(seen) == ["auth0|abc", "github|7"]
        assert seen["github|7"].data.is_social and seen["github|7"].data.connection == "github"
        assert seen["auth0|abc"].data.origin == "auth0-event"
        assert seen["github|7"].auth0eventid == "act_login_github|7"


async def test_every_path_in_any_order_gives_one_message_per_account_on_the_broker(
    start: Callable[..., Any], bound_queue: Any
) -> None:
    """Social, dashboard and form accounts, told by the stream (duplicated, out of order),
    the Action, the sweep and the form, some several times: one event each on RabbitMQ."""
    async with start(relay=True) as site:
        site.standin.configure(stream_share_duplicate=0.5, stream_max_delay=0.3)
        social = [site.standin.create_outside("social", f"s{n}@example.com") for n in range(5)]
        staff = [site.standin.create_outside("dashboard", f"d{n}@example.com") for n in range(5)]
        forms = []
        for n in range(3):
            body = {"email": f"f{n}@example.com", "password": "violet tractor anthem"}
            async with site.http.post(f"{site.url}/user/signup", json=body) as answer:
                assert answer.status == 201
                forms.append((await answer.json())["user_id"])
        hook = f"{site.url}/hooks/auth0"
        for user in social[:2]:  # the Action too, for some
            login = {"stats": {"logins_count": 1}, "tenant": {"id": "nc"}, "user": user}
            await run_action("post-login.js", "onExecutePostLogin", hook, TOKEN, login)
        container = bootstrap(site.settings)  # the sweep, as `signup sweep` would run it
        try:
            assert container.sweep is not None
            await container.sweep.run(datetime.now(UTC) - timedelta(minutes=5))
        finally:
            await container.aclose()
        async with asyncio.timeout(60):
            await site.standin.stream.drained()
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        for event in reversed(site.standin.stream.sent):  # Auth0 retrying, in another order
            assert (await site.post(orjson.dumps(event), headers)).status == 204
        expected = {u["user_id"] for u in social + staff} | set(forms)
        received: dict[str, set[str]] = {}
        messages = 0

        async def take() -> bool:
            nonlocal messages
            message = await bound_queue.get(fail=False)
            if message is None:
                return False
            await message.ack()
            event = UserRegistered.from_json(message.body)
            received.setdefault(event.data.user_id, set()).add(event.id)
            messages += 1
            return True

        # Until the outbox is empty (every event confirmed) and every account arrived.
        for _ in range(1200):
            pending = (await site.uow.read(lambda tx: tx.outbox.status())).pending
            if not pending and set(received) == expected:
                break
            if not await take():
                await asyncio.sleep(0.05)
        assert not pending, f"{pending} events left in the outbox; {len(received)} arrived"
        await asyncio.sleep(0.5)
        while await take():
            pass
        assert set(received) == expected
        assert all(len(ids) == 1 for ids in received.values()), received
        assert messages == len(expected)
        origins = await site.uow.read(lambda tx: tx.announced.count_by_origin())
        assert origins["form"] == 3 and sum(origins.values()) == 13


async def test_a_burst_of_1000_deliveries_is_all_2xx_and_each_account_announced_once(
    start: Callable[..., Any],
) -> None:
    """1,000 deliveries at once (500 accounts, each delivered twice), as fast as the client
    sends them: every one answered 2xx, and one event per account. How fast: bench/."""
    async with start() as site:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        bodies = [event_body(f"google-oauth2|{n}") for n in range(500)] * 2
        connector = aiohttp.TCPConnector(limit=100)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def deliver(body: bytes) -> int:
                async with http.post(f"{site.url}/hooks/auth0", data=body, headers=headers) as r:
                    await r.read()
                    return r.status

            async with asyncio.timeout(10):
                statuses = await asyncio.gather(*(deliver(b) for b in bodies))
        assert set(statuses) == {204}
        seen = by_user(await site.events())
        assert len(seen) == 500 and all(len(e) == 1 for e in seen.values())


async def test_deliveries_while_the_broker_is_unreachable_are_all_kept(
    start: Callable[..., Any],
) -> None:
    """The hook waits on the database only: with the broker away every delivery is 2xx and
    its event waits in the outbox, one per account."""
    async with start(relay=True, amqp_url="amqp://guest:guest@127.0.0.1:1/") as site:
        site.standin.configure(stream_share_duplicate=1.0, stream_max_delay=0.1)
        made = [site.standin.create_outside("social", f"o{n}@example.com") for n in range(20)]
        async with asyncio.timeout(30):
            await site.standin.stream.drained()
        assert site.standin.stream.counters.statuses == {"204": 40}
        seen = by_user(await site.events())
        assert sorted(seen) == sorted(u["user_id"] for u in made)
        assert all(len(e) == 1 for e in seen.values())
