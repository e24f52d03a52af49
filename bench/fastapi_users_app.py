"""fastapi-users' register endpoint, set up as its documentation's SQLAlchemy example.

The documented full example (SQLite through aiosqlite, `SQLAlchemyBaseUserTableUUID`,
a `UserManager`, a JWT backend, `get_register_router` under `/auth`), with one change:
the password hasher is pwdlib's Argon2id with the service's parameters (m=19 MiB, t=2,
p=1) instead of pwdlib's recommended defaults. Served by `bench.serve_app` with the same
uvicorn settings and worker count as the service; the database file is BENCH_FAPIU_DB.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy
from fastapi_users.password import PasswordHelper
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

SECRET = "bench-secret-not-used-for-anything"
ARGON2 = {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class UserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UserCreate(schemas.BaseUserCreate):
    pass


def database_url() -> str:
    return f"sqlite+aiosqlite:///{os.environ.get('BENCH_FAPIU_DB', './fastapi_users.db')}"


async def create_db_and_tables() -> None:
    engine = create_async_engine(database_url())
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


def create_app() -> FastAPI:
    engine = create_async_engine(database_url())
    async_session_maker = async_sessionmaker(engine, expire_on_commit=False)
    password_helper = PasswordHelper(PasswordHash((Argon2Hasher(**ARGON2),)))

    async def get_async_session() -> AsyncGenerator[AsyncSession, None]:
        async with async_session_maker() as session:
            yield session

    async def get_user_db(
        session: AsyncSession = Depends(get_async_session),
    ) -> AsyncGenerator[SQLAlchemyUserDatabase[User, uuid.UUID], None]:
        yield SQLAlchemyUserDatabase(session, User)

    class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
        reset_password_token_secret = SECRET
        verification_token_secret = SECRET

    async def get_user_manager(
        user_db: SQLAlchemyUserDatabase[User, uuid.UUID] = Depends(get_user_db),
    ) -> AsyncGenerator[UserManager, None]:
        yield UserManager(user_db, password_helper)

    def get_jwt_strategy() -> JWTStrategy[Any, Any]:
        return JWTStrategy(secret=SECRET, lifetime_seconds=3600)

    auth_backend = AuthenticationBackend(
        name="jwt",
        transport=BearerTransport(tokenUrl="auth/jwt/login"),
        get_strategy=get_jwt_strategy,
    )
    fastapi_users = FastAPIUsers[User, uuid.UUID](get_user_manager, [auth_backend])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(
        fastapi_users.get_register_router(UserRead, UserCreate), prefix="/auth", tags=["auth"]
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    import asyncio

    asyncio.run(create_db_and_tables())
