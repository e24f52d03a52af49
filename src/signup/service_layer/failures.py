"""How a consumer's side effect failed: the runtime parks one and retries the other.

Part of the `Mailer` and `Crm` ports (`signup.service_layer.ports`): their adapters
(SMTP, CRM) raise these with a short human reason; the use cases let them through or
raise their own; the worker runtime (`signup.adapters.consumer`) maps
`PermanentFailure` to "park in `<queue>.dead` now" and `TransientFailure` (and any
unexpected exception) to "retry later with a growing delay".
"""

from __future__ import annotations


class DeliveryFailure(Exception):
    """A side effect did not happen; `reason` is safe to put in a header or a log line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PermanentFailure(DeliveryFailure):
    """Trying again cannot help (the recipient was refused, the CRM rejected the contact)."""


class TransientFailure(DeliveryFailure):
    """A later try may work (server busy, timeout, connection refused, 5xx)."""
