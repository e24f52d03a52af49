"""Sending e-mail: the SMTP adapter (aiosmtplib) of the `Mailer` port
(`signup.service_layer.ports`).

Failures are sorted for the worker runtime:
- `PermanentFailure`: the server refused this recipient or this message for good
  (a 5xx answer to RCPT TO or DATA); trying again cannot help, the message is parked;
- `TransientFailure`: everything else (4xx answers, connection refused or lost,
  timeouts, login or sender refused, which are the server's or our settings' fault,
  not the message's): retried later.
"""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from signup.service_layer.failures import PermanentFailure, TransientFailure
from signup.settings import Settings


def _is_permanent(code: int) -> bool:
    return 500 <= code < 600


class SmtpMailer:
    """One SMTP session per message: connect, optional STARTTLS and login, send, quit."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self._host = host
        self._port = port
        self._username = username or None
        self._password = password if username else None
        self._starttls = starttls
        self._timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpMailer:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )

    async def send(self, message: EmailMessage) -> None:
        try:
            await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                # Exactly as configured: no opportunistic upgrade when it is off.
                start_tls=self._starttls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            if codes and all(_is_permanent(code) for code in codes):
                raise PermanentFailure(f"SMTP refused the recipient: {detail}") from exc
            raise TransientFailure(f"SMTP deferred the recipient: {detail}") from exc
        except aiosmtplib.SMTPDataError as exc:
            if _is_permanent(exc.code):
                raise PermanentFailure(
                    f"SMTP refused the message: {exc.code} {exc.message}"
                ) from exc
            raise TransientFailure(f"SMTP deferred the message: {exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            # Sender refused, login failed, HELO refused: a server or settings problem.
            raise TransientFailure(f"SMTP error {exc.code}: {exc.message}") from exc
        except aiosmtplib.SMTPException as exc:
            raise TransientFailure(f"SMTP unavailable: {type(exc).__name__}: {exc}") from exc
        except (OSError, TimeoutError) as exc:
            raise TransientFailure(f"SMTP unreachable: {type(exc).__name__}: {exc}") from exc
