"""The `signup` command: serve, relay, migrate, outbox, reconcile, worker."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.exc import DBAPIError

from signup.adapters.database import migrate as apply_migrations
from signup.log_config import configure_logging
from signup.settings import Settings

app = typer.Typer(
    help="Branded sign-up service: accounts in the identity provider, one `user.new` event each.",
    no_args_is_help=True,
    add_completion=False,
)
outbox_app = typer.Typer(help="See and re-send the events in the outbox.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")
console = Console()


def _settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:  # a configuration mistake: say which, no traceback
        for error in exc.errors(include_url=False, include_input=False):
            message = error["msg"].removeprefix("Value error, ")
            prefix = f"SIGNUP_{str(error['loc'][0]).upper()}: " if error["loc"] else ""
            typer.echo(f"signup: invalid settings: {prefix}{message}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_format, settings.log_level)
    return settings


def _check_form(settings: Settings) -> None:
    """A form definition with a mistake stops start-up, saying where (exit status 2)."""
    from signup.bootstrap import FormFileError, form_definition

    try:
        form_definition(settings)
    except FormFileError as exc:
        typer.echo(f"signup: invalid SIGNUP_FORM_FILE: {exc}", err=True)
        raise typer.Exit(2) from None


def _check_consent_texts(settings: Settings) -> None:
    """A consent text changed without a new version stops start-up (exit status 2)."""
    from datetime import UTC, datetime

    from signup.bootstrap import bootstrap, form_definition
    from signup.service_layer.consent_texts import ConsentTextChanged, check_consent_texts

    form = form_definition(settings)
    if not form.consents:
        return

    async def check() -> None:
        container = bootstrap(settings)
        try:
            await check_consent_texts(container.uow, form, datetime.now(UTC))
        finally:
            await container.aclose()

    try:
        asyncio.run(check())
    except ConsentTextChanged as exc:
        typer.echo(f"signup: SIGNUP_FORM_FILE: {exc}", err=True)
        raise typer.Exit(2) from None


async def _until_signalled(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_relay: Annotated[
        bool, typer.Option("--no-relay", help="Don't publish the outbox here (run `signup relay`).")
    ] = False,
) -> None:
    """Serve the sign-up page and API (applies migrations first; runs the outbox relay too)."""
    import uvicorn

    from signup.entrypoints.web.ops_socket import OpsPortUnavailable, check_ops_port
    from signup.entrypoints.web.ready import announce_when_ready

    settings = _settings()
    _check_form(settings)
    try:
        check_ops_port(settings)  # before any worker starts (they would crash-loop)
    except OpsPortUnavailable as exc:
        typer.echo(f"signup serve: {exc}", err=True)
        raise typer.Exit(1) from exc
    _migrate_in_child()
    _check_consent_texts(settings)
    os.environ["SIGNUP_RUN_RELAY"] = "0" if no_relay else "1"
    # Request head size, header timeout and connection cap (worker processes uvicorn
    # starts read the same settings from the environment they inherit).
    from signup.entrypoints.web import server as server_limits

    server_limits.configure(server_limits.ServerLimits.from_settings(settings))
    announce_when_ready(host, port)  # `ready: <url>` once the page answers
    uvicorn.run(
        "signup.entrypoints.web.factory:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=settings.web_concurrency,
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,  # X-Forwarded-For is read by the app (web/client_ip.py) alone
        timeout_graceful_shutdown=10,
        http=server_limits.LimitedHttpToolsProtocol,
        timeout_keep_alive=settings.keep_alive_seconds,
    )


def _migrate_in_child() -> None:
    """Alembic (with Mako and Pygments) stays out of the long-lived process
    (docs/decisions/0015)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "signup", "migrate", "--quiet"], check=False)
    if done.returncode != 0:
        raise typer.Exit(done.returncode)


@app.command()
def relay() -> None:
    """Publish the outbox to RabbitMQ, alone (for deployments that scale it apart)."""
    from signup.bootstrap import bootstrap

    settings = _settings()
    apply_migrations(settings.database_url)

    async def run() -> None:
        container = bootstrap(settings)
        # On SQLite, commits of the web processes wake this relay within milliseconds;
        # elsewhere it polls (SIGNUP_RELAY_POLL_SECONDS).
        container.start_relay(follow_commits=True)
        await _until_signalled(asyncio.Event())
        await container.aclose()

    asyncio.run(run())


@app.command()
def migrate(
    quiet: Annotated[bool, typer.Option("--quiet", help="Print nothing on success.")] = False,
) -> None:
    """Apply database migrations (idempotent; `serve` does this too)."""
    settings = _settings()
    apply_migrations(settings.database_url)
    if not quiet:
        console.print("[green]database is up to date[/green]")


@app.command()
def reconcile(
    older_than: Annotated[
        float, typer.Option(help="Settle sign-ups pending longer than this many seconds.")
    ] = 120.0,
) -> None:
    """Finish or abandon sign-ups whose outcome was left unknown (crash, timeout)."""
    from signup.bootstrap import bootstrap

    settings = _settings()
    apply_migrations(settings.database_url)

    async def run() -> dict[str, int]:
        container = bootstrap(settings)
        try:
            return await container.registration.reconcile(timedelta(seconds=older_than))
        finally:
            await container.aclose()

    report = asyncio.run(run())
    console.print(
        f"completed {report['completed']}, abandoned {report['abandoned']}, "
        f"could not settle {report['failed']}"
    )
    if report["failed"]:
        raise typer.Exit(1)


@app.command()
def sweep(
    since: Annotated[
        str | None,
        typer.Option(
            help="Look at Auth0 accounts created since this time (ISO 8601; UTC without a "
            "zone). Default: the last sweep's checkpoint, less SIGNUP_AUTH0_SWEEP_OVERLAP_SECONDS."
        ),
    ] = None,
) -> None:
    """Announce every Auth0 account created since TIME that has no user.new yet."""
    from signup.bootstrap import bootstrap
    from signup.domain.errors import ProviderUnavailable

    settings = _settings()
    start = _parse_time(since) if since else None
    if settings.identity_provider != "auth0":
        typer.echo("signup: the sweep needs SIGNUP_IDENTITY_PROVIDER=auth0", err=True)
        raise typer.Exit(2)
    apply_migrations(settings.database_url)

    async def run() -> dict[str, int]:
        container = bootstrap(settings)
        try:
            assert container.sweep is not None
            report = await container.sweep.run(start)
            return {"searches": report.searches, "seen": report.seen, **report.outcomes}
        finally:
            await container.aclose()

    try:
        report = asyncio.run(run())
    except ProviderUnavailable as exc:
        typer.echo(f"signup: the sweep stopped: {exc.reason}", err=True)
        raise typer.Exit(1) from None
    console.print(
        f"searched {report['searches']} pages, saw {report['seen']} accounts: "
        f"announced {report['announced']}, already announced {report['repeat']}, "
        f"left to the form {report['deferred'] + report['form']}, "
        f"without an e-mail address {report['unannounceable']}"
    )


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        typer.echo(f"signup: not an ISO 8601 time: {text}", err=True)
        raise typer.Exit(2) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _read_only(settings: Settings) -> None:
    """A look, not a change: no migrations; a database never migrated is an error."""
    from signup.adapters.schema_state import SchemaMissing, check_readable

    try:
        behind = check_readable(settings.database_url)
    except SchemaMissing as exc:
        typer.echo(f"signup: {exc}", err=True)
        raise typer.Exit(1) from None
    if behind:
        typer.echo(f"signup: warning: {behind}", err=True)


@outbox_app.command("status")
def outbox_status() -> None:
    """Pending (unconfirmed) events, the oldest one's age, and how many were published."""
    from signup.bootstrap import bootstrap

    settings = _settings()
    _read_only(settings)

    async def run() -> None:
        container = bootstrap(settings)
        try:
            status = await container.uow.read(lambda tx: tx.outbox.status(count_published=True))
            try:
                origins = await container.uow.read(lambda tx: tx.announced.count_by_origin())
            except DBAPIError:  # a schema older than 0009: nothing recorded by origin yet
                origins = None
        finally:
            await container.aclose()
        table = Table(title="outbox")
        table.add_column("pending", justify="right")
        table.add_column("oldest pending", justify="right")
        table.add_column("published", justify="right")
        age = (
            f"{(datetime.now(UTC) - status.oldest_pending_at).total_seconds():.1f} s"
            if status.oldest_pending_at
            else "-"
        )
        table.add_row(str(status.pending), age, str(status.published))
        console.print(table)
        # Which path announced each account first (issue 19): the form, Auth0's events,
        # the sweep.
        if origins is None:
            return
        by_origin = Table(title="accounts announced, by origin")
        by_origin.add_column("origin")
        by_origin.add_column("accounts", justify="right")
        for origin in ("form", "auth0-event", "sweep"):
            by_origin.add_row(origin, str(origins.get(origin, 0)))
        console.print(by_origin)

    asyncio.run(run())


@outbox_app.command("replay")
def outbox_replay(
    since: Annotated[
        datetime | None,
        typer.Option(help="Re-send events created at or after this time (ISO 8601, UTC)."),
    ] = None,
    event_id: Annotated[str | None, typer.Option(help="Re-send this one event.")] = None,
) -> None:
    """Re-send events (with their original ids: consumers deduplicate) and show progress."""
    from signup.bootstrap import bootstrap

    if since is None and event_id is None:
        raise typer.BadParameter("give --since or --event-id")
    settings = _settings()
    _read_only(settings)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)

    async def run() -> tuple[int, int]:
        container = bootstrap(settings)
        sent = failed = 0
        try:
            after = 0
            columns = (
                TextColumn("replaying"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=console) as progress:
                task = progress.add_task("replay", total=None)
                while True:
                    page = await container.uow.read(
                        lambda tx, after=after: tx.outbox.select_for_replay(  # type: ignore[misc]
                            since, event_id, 500, after
                        )
                    )
                    if not page:
                        break
                    after = page[-1][0]
                    result = await container.publisher.publish([entry for _, entry in page])
                    sent += len(result.confirmed)
                    failed += len(result.failed)
                    progress.update(task, advance=len(page), total=sent + failed)
        finally:
            await container.aclose()
        return sent, failed

    sent, failed = asyncio.run(run())
    console.print(f"re-sent {sent} event(s), {failed} failed")
    kept_since = datetime.now(UTC) - timedelta(days=settings.outbox_retention_days)
    if since is not None and since < kept_since:
        # Published rows past the retention were deleted: they cannot be sent again.
        console.print(
            f"events published before {kept_since:%Y-%m-%d %H:%M} UTC are pruned "
            f"(SIGNUP_OUTBOX_RETENTION_DAYS={settings.outbox_retention_days:g}): "
            "only later ones and unpublished ones were re-sent"
        )
    if failed or sent == 0:
        raise typer.Exit(1)


def _mount_workers() -> None:
    try:
        from signup.entrypoints.worker_cli import worker_app
    except ImportError as exc:
        # Not a silent absence: `signup worker …` says why it cannot run and exits 1
        # (a supervisor would otherwise restart a command that does not exist).
        reason = f"{type(exc).__name__}: {exc}"

        @app.command(
            "worker",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
            help=f"Unavailable: the workers could not be loaded ({reason}).",
        )
        def worker_unavailable() -> None:
            typer.echo(f"signup worker: cannot load the workers: {reason}", err=True)
            raise typer.Exit(1)

        return
    app.add_typer(worker_app, name="worker", help="Run and manage the consumers of `user.new`.")


_mount_workers()


def main() -> None:
    app()
