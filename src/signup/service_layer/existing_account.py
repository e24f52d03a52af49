"""What a sign-up of an address that already has an account answers and keeps.

A 409, or with existing accounts hidden a 201 that makes nothing (a decoy user id) and a
notice to the address's owner; either answer is kept for an Idempotency-Key's replay.
The honeypot answers with the same decoy ids.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from signup.domain.model import SignUp, SignUpStatus
from signup.service_layer.sign_up_identity import Registered
from signup.service_layer.unit_of_work import Transaction, UnitOfWork, Work


def decoy_answer(provider: str, key: bytes, email: str, idempotency_key: str | None) -> Registered:
    """A success's answer with a user id of `provider`'s form that names nobody. With an
    Idempotency-Key the id is an HMAC (under the secret `key`) of the key and address."""
    if not idempotency_key:
        return Registered(f"{provider}|{secrets.token_hex(12)}", email)
    message = f"{idempotency_key}\n{email}".encode()
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()
    return Registered(f"{provider}|{digest[:24]}", email)


async def keep_existing(
    uow: UnitOfWork, settled: SignUp, *, new: bool, keep: bool, notify: Work[None] | None
) -> None:
    """Write the settled answer of a sign-up of a registered address, and the owner's
    notice (`notify`) in the same transaction. `new`: the sign-up has no row yet (it gets
    one only when `keep`, i.e. a replay needs it); else its pending row is settled."""
    if new:
        if keep or notify:

            async def add(tx: Transaction) -> None:
                if keep:
                    await tx.signups.add(settled)
                if notify is not None:
                    await notify(tx)

            await uow.run(add)
        return

    async def settle(tx: Transaction) -> None:
        if await tx.signups.settle(settled, expected=SignUpStatus.PENDING) and notify:
            await notify(tx)

    await uow.run(settle)
