"""A retry with an Idempotency-Key the service has seen: the first attempt's answer again.

A settled attempt answers as it did (201, 409 or 422, from the stored body); a pending
one is settled first, unless a live request still works on it (then 409, retry later).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from signup.domain.errors import (
    EmailAlreadyRegistered,
    FieldRejected,
    IdempotencyKeyReused,
    RequestInProgress,
)
from signup.domain.model import SignUp, SignUpStatus
from signup.service_layer.ports import Liveness
from signup.service_layer.sign_up_identity import Registered
from signup.service_layer.unit_of_work import Transaction, UnitOfWork


async def replay(
    uow: UnitOfWork,
    earlier: SignUp,
    print_: str,
    *,
    settle: Callable[[SignUp], Awaitable[object]],
    clock: Callable[[], datetime],
    in_flight_for: timedelta,
    liveness: Liveness | None,
) -> Registered | None:
    """The answer of `earlier`, the attempt of the same key; None when it made nothing
    (the caller then tries afresh). `settle` settles a pending attempt as reconciliation
    would."""
    if earlier.fingerprint != print_:
        raise IdempotencyKeyReused(earlier.idempotency_key or "")
    if earlier.status is SignUpStatus.PENDING:
        await _unless_in_flight(uow, earlier, clock, in_flight_for, liveness)
        # Settled here as reconciliation would; both go through the guarded settle,
        # so a reconciliation running meanwhile cannot make it settle twice.
        await settle(earlier)
        return await _replay_settled(uow, earlier.id)
    return _answer(earlier)


async def _unless_in_flight(
    uow: UnitOfWork,
    earlier: SignUp,
    clock: Callable[[], datetime],
    in_flight_for: timedelta,
    liveness: Liveness | None,
) -> None:
    """Raise `RequestInProgress` while a live request still works on `earlier`."""
    if liveness is None:
        age = clock() - earlier.requested_at
        if age < in_flight_for:
            raise RequestInProgress(str((in_flight_for - age).total_seconds()))
        return

    async def worker_of(tx: Transaction) -> str | None:
        return await tx.signups.worker_of(earlier.id)

    worker = await uow.read(worker_of, quick=True)
    if worker is not None and await liveness.alive(worker):
        # It ends within the provider's time-out; then a retry settles it at once.
        raise RequestInProgress("1")


async def _replay_settled(uow: UnitOfWork, signup_id: str) -> Registered | None:
    async def get(tx: Transaction) -> SignUp | None:
        return await tx.signups.get(signup_id)

    settled = await uow.read(get, quick=True)
    if settled is None or settled.status is SignUpStatus.ABANDONED:
        return None  # nothing was made: the caller tries again afresh
    return _answer(settled)


def _answer(signup: SignUp) -> Registered:
    body = signup.response_body or {}
    if signup.response_status == 201:
        return Registered(str(body["user_id"]), str(body["email"]), replayed=True)
    if signup.response_status == 422:
        field = str(body.get("field", "body"))
        # Rows written before codes existed replay with the field's default code.
        code = body.get("code")
        raise FieldRejected(
            field, str(body.get("message", "")), str(code) if code is not None else None
        )
    if signup.response_status == 409:
        raise EmailAlreadyRegistered(signup.applicant.email)
    raise RequestInProgress("1")
