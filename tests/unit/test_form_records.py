"""What the form's answers become downstream: the event's additive fields, the CRM contact
(marketing consents only), and nothing at all without a form."""

from __future__ import annotations

from datetime import UTC, datetime

from signup.domain.events import ConsentGiven, UserRegistered, UserRegisteredData
from signup.service_layer.consumers import contact_of

AT = datetime(2026, 12, 5, 10, tzinfo=UTC)


def event(**extra: object) -> UserRegistered:
    data = UserRegisteredData.model_validate(
        {
            "user_id": "local|1",
            "email": "ada@example.com",
            "email_verified": False,
            "given_name": "Ada",
            "family_name": None,
            "name": "Ada",
            "created_at": AT,
            "identity_provider": "local",
            **extra,
        }
    )
    return UserRegistered(id="e-1", source="urn:signup:test", time=AT, data=data)


def consent(consent_id: str, accepted: bool, marketing: bool) -> ConsentGiven:
    return ConsentGiven(
        id=consent_id,
        version="1",
        accepted=accepted,
        at="2026-12-05T10:00:00.000Z",
        language="en",
        text_sha256="0" * 64,
        marketing=marketing,
    )


def test_without_a_form_the_event_and_the_contact_are_as_before() -> None:
    plain = event()
    assert "fields" not in plain.as_dict()["data"] and "consents" not in plain.as_dict()["data"]
    assert set(contact_of(plain)) == {
        "user_id",
        "email",
        "given_name",
        "family_name",
        "name",
        "created_at",
        "source",
    }


def test_the_crm_gets_the_fields_and_only_the_marketing_consents() -> None:
    with_form = event(
        fields={"role": "developer", "newsletter_digest": True},
        consents=[consent("terms", True, False), consent("marketing", False, True)],
    )
    contact = contact_of(with_form)
    assert contact["fields"] == {"role": "developer", "newsletter_digest": True}
    assert contact["consents"] == [
        {
            "id": "marketing",
            "version": "1",
            "accepted": False,
            "at": "2026-12-05T10:00:00.000Z",
            "language": "en",
            "text_sha256": "0" * 64,
        }
    ]
    # The event itself round-trips for every consumer.
    again = UserRegistered.from_json(with_form.to_json())
    assert again == with_form
