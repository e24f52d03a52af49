"""The two ceilings of row 1, served on the same stack as `signup serve` (bench.serve_app).

- `bare_app`: validates the body exactly as the service does (the same
  `SignUpRequest` model and password policy, via `validate_signup`) and answers 201,
  doing nothing else.
- `passthrough_app`: the same validation, then forwards the call to the Auth0 stand-in
  (`POST /api/v2/users` with a bearer token fetched once at start-up) through one
  aiohttp session, and answers 201 with the user id it got back. Nothing else.

Both are built by `uvicorn --factory` in each worker; the stand-in's address and
credentials come from BENCH_AUTH0_* environment variables. Like the service
(`signup.entrypoints.web.factory` and the app's lifespan), each freezes what start-up
made out of the cyclic collector's sight and collects its young objects as rarely: without
the freeze a full collection stopped the pass-through for ~50 ms, 20 times in a run, a
cost of the stack that the service does not pay and the ceiling should not either.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from signup.entrypoints.web.factory import keep_collector_off_the_hot_path
from signup.entrypoints.web.schemas import PasswordPolicy, validate_signup

POLICY = PasswordPolicy("Naked Coders")
CONNECTION = "Username-Password-Authentication"


def _invalid(errors: object) -> Response:
    return Response(
        orjson.dumps({"errors": errors}), status_code=422, media_type="application/json"
    )


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/user/signup", status_code=201)
    async def sign_up(request: Request) -> Response:
        checked = validate_signup(orjson.loads(await request.body()), POLICY)
        if isinstance(checked, list):
            return _invalid(checked)
        return Response(
            orjson.dumps({"user_id": "bare|0", "email": checked.email}),
            status_code=201,
            media_type="application/json",
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return _frozen(app)


def _frozen(app: FastAPI) -> FastAPI:
    keep_collector_off_the_hot_path()  # as the service's worker does
    return app


def passthrough_app() -> FastAPI:
    base = os.environ["BENCH_AUTH0_URL"].rstrip("/")
    users_url = f"{base}/api/v2/users"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=10),
        )
        token_body = {
            "grant_type": "client_credentials",
            "client_id": os.environ["BENCH_AUTH0_CLIENT_ID"],
            "client_secret": os.environ["BENCH_AUTH0_CLIENT_SECRET"],
            "audience": os.environ["BENCH_AUTH0_AUDIENCE"],
        }
        async with session.post(f"{base}/oauth/token", json=token_body) as answer:
            answer.raise_for_status()
            token = (await answer.json())["access_token"]
        app.state.session = session
        app.state.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        gc.freeze()  # and the client, as the service's lifespan does
        try:
            yield
        finally:
            await session.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/user/signup", status_code=201)
    async def sign_up(request: Request) -> Response:
        checked = validate_signup(orjson.loads(await request.body()), POLICY)
        if isinstance(checked, list):
            return _invalid(checked)
        applicant = checked.applicant()
        payload = {
            "connection": CONNECTION,
            "email": applicant.email,
            "password": checked.password,
            "name": applicant.name,
        }
        if applicant.given_name is not None:
            payload["given_name"] = applicant.given_name
        if applicant.family_name is not None:
            payload["family_name"] = applicant.family_name
        session: aiohttp.ClientSession = request.app.state.session
        async with session.post(
            users_url, data=orjson.dumps(payload), headers=request.app.state.headers
        ) as answer:
            raw = await answer.read()
            status = answer.status
        if status != 201:
            return Response(raw, status_code=502, media_type="application/json")
        user = orjson.loads(raw)
        return Response(
            orjson.dumps({"user_id": user["user_id"], "email": user["email"]}),
            status_code=201,
            media_type="application/json",
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return _frozen(app)
