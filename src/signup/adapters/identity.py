"""The port every identity provider implements (Auth0, the local user store, test fakes)."""

from __future__ import annotations

from typing import Protocol

from signup.domain.model import Applicant, CreatedAccount


class IdentityProvider(Protocol):
    """Creates accounts and finds them by e-mail.

    `create_user` raises, from `signup.domain.errors`:
    - `EmailAlreadyRegistered` when the e-mail already has an account;
    - `FieldRejected` when the provider refuses a value (its password policy, say);
    - `ProviderUnavailable(retry_after=…)` when nothing was created and a later try may work;
    - `OutcomeUnknown` when the request may have been carried out but the answer was lost.
    """

    name: str
    # True when the provider writes the account inside the service's own transaction
    # (the local store): no intent record is needed, the outcome is never unknown.
    transactional: bool

    async def create_user(self, applicant: Applicant, password: str) -> CreatedAccount: ...

    async def find_by_email(self, email: str) -> list[CreatedAccount]: ...

    async def close(self) -> None: ...
