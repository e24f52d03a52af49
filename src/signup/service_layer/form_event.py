"""The `user.new` event of an account the sign-up form made (origin `form`)."""

from __future__ import annotations

from datetime import datetime

from signup.domain.events import ORIGIN_FORM, ConsentGiven, UserRegistered, UserRegisteredData
from signup.domain.model import Applicant, CreatedAccount


def form_event(
    account: CreatedAccount,
    applicant: Applicant,
    *,
    event_id: str,
    source: str,
    time: datetime,
    identity_provider: str,
) -> UserRegistered:
    # The form's names first; the profile's where the form gave none.
    given = applicant.given_name or account.given_name
    family = applicant.family_name or account.family_name
    return UserRegistered(
        id=event_id,
        source=source,
        time=time,
        data=UserRegisteredData(
            user_id=account.user_id,
            email=account.email,
            email_verified=account.email_verified,
            given_name=given,
            family_name=family,
            name=account.name or Applicant(account.email, given, family).name,
            created_at=account.created_at,
            identity_provider=identity_provider,
            fields=dict(applicant.fields) if applicant.fields else None,
            consents=[ConsentGiven.model_validate(r.as_data()) for r in applicant.consents] or None,
            connection=account.connection,
            is_social=account.is_social,
            origin=ORIGIN_FORM,
            language=applicant.language,
        ),
    )
