"""A sign-up's status changes are its own: what each makes of it, and what each refuses."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from signup.domain.errors import SignUpError, StatusChangeRefused
from signup.domain.model import Applicant, SignUp, SignUpStatus

ANSWER: dict[str, object] = {"user_id": "auth0|1", "email": "ada@example.com"}


def signup(status: SignUpStatus = SignUpStatus.PENDING) -> SignUp:
    return SignUp(
        id="s-1",
        applicant=Applicant("ada@example.com", "Ada", "Lovelace"),
        status=status,
        provider="auth0",
        requested_at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
        idempotency_key="key-1",
        fingerprint="f" * 64,
    )


Change = Callable[[SignUp], SignUp]
CHANGES: dict[SignUpStatus, Change] = {
    SignUpStatus.CREATED: lambda s: s.completed("auth0|1", "e-1", ANSWER),
    SignUpStatus.EXISTING: lambda s: s.existing(409, {}),
    SignUpStatus.REJECTED: lambda s: s.rejected("password", "Too weak."),
    SignUpStatus.ABANDONED: lambda s: s.abandoned(),
}
ALLOWED = {
    (SignUpStatus.PENDING, SignUpStatus.CREATED),
    (SignUpStatus.PENDING, SignUpStatus.EXISTING),
    (SignUpStatus.PENDING, SignUpStatus.REJECTED),
    (SignUpStatus.PENDING, SignUpStatus.ABANDONED),
    # An account found after the sign-up was given up for lost still gets its one event.
    (SignUpStatus.ABANDONED, SignUpStatus.CREATED),
    (SignUpStatus.ABANDONED, SignUpStatus.EXISTING),
}
EVERY_MOVE = [(start, wanted) for start in SignUpStatus for wanted in CHANGES]


def test_completed_records_the_account_its_event_and_the_answer() -> None:
    pending = signup()
    created = pending.completed("auth0|1", "e-1", ANSWER)
    assert created.status is SignUpStatus.CREATED
    assert (created.user_id, created.event_id) == ("auth0|1", "e-1")
    assert (created.response_status, created.response_body) == (201, ANSWER)
    # Who asked, and with which key, stay as they were: the key replays the 201.
    assert created.idempotency_key == "key-1"
    assert (created.id, created.applicant, created.requested_at) == (
        pending.id,
        pending.applicant,
        pending.requested_at,
    )


def test_existing_queues_no_event_and_keeps_the_answer_to_replay() -> None:
    refused = signup().existing(409, {})
    assert refused.status is SignUpStatus.EXISTING
    assert (refused.user_id, refused.event_id) == (None, None)
    assert (refused.response_status, refused.response_body) == (409, {})
    assert refused.idempotency_key == "key-1"


def test_existing_as_the_duplicate_of_another_sign_up_names_its_account() -> None:
    # Whatever event id the copy in hand carries, an existing sign-up queued none.
    attempted = replace(signup(), event_id="e-9")
    duplicate = attempted.existing(201, ANSWER, user_id="auth0|1")
    assert duplicate.status is SignUpStatus.EXISTING
    assert duplicate.user_id == "auth0|1" and duplicate.event_id is None
    assert (duplicate.response_status, duplicate.response_body) == (201, ANSWER)


def test_rejected_replays_the_refused_field() -> None:
    rejected = signup().rejected("password", "Too weak.")
    assert rejected.status is SignUpStatus.REJECTED
    assert rejected.response_status == 422
    assert rejected.response_body == {"field": "password", "message": "Too weak."}
    assert rejected.user_id is None and rejected.event_id is None


def test_abandoned_releases_the_key_so_a_retry_starts_afresh() -> None:
    abandoned = signup().abandoned()
    assert abandoned.status is SignUpStatus.ABANDONED
    assert abandoned.idempotency_key is None
    assert abandoned.response_status is None and abandoned.response_body is None
    assert abandoned.user_id is None and abandoned.event_id is None


@pytest.mark.parametrize(("start", "wanted"), EVERY_MOVE)
def test_every_move_is_allowed_or_refused_as_the_rules_say(
    start: SignUpStatus, wanted: SignUpStatus
) -> None:
    before = signup(start)
    if (start, wanted) in ALLOWED:
        assert CHANGES[wanted](before).status is wanted
        return
    with pytest.raises(StatusChangeRefused) as refused:
        CHANGES[wanted](before)
    assert (refused.value.signup_id, refused.value.current, refused.value.wanted) == (
        "s-1",
        start.value,
        wanted.value,
    )


@pytest.mark.parametrize(("start", "wanted"), EVERY_MOVE)
def test_a_change_leaves_the_sign_up_it_was_made_from_as_it_was(
    start: SignUpStatus, wanted: SignUpStatus
) -> None:
    # A unit of work may run its work twice: the state it read must not have moved.
    before = signup(start)
    snapshot = replace(before)
    with contextlib.suppress(StatusChangeRefused):
        CHANGES[wanted](before)
    assert before == snapshot


def test_a_refused_change_is_a_bug_not_a_refusal_the_api_answers() -> None:
    with pytest.raises(StatusChangeRefused) as refused:
        signup(SignUpStatus.CREATED).abandoned()
    assert not isinstance(refused.value, SignUpError)
    assert str(refused.value) == "sign-up s-1: created cannot become abandoned"
