"""The `signup` command: serve, relay, migrate, outbox, reconcile, worker."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Branded sign-up service: accounts in the identity provider, one `user.new` event each.",
    no_args_is_help=True,
    add_completion=False,
)


def main() -> None:
    app()
