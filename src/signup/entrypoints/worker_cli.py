"""`signup worker …`: run a `user.new` consumer, inspect and requeue its parked messages.

Mounted by the main CLI as `app.add_typer(worker_app, name="worker")`. The consumer is
built by the composition root (`signup.bootstrap.build_consumer`); `run_worker` runs it
as a process does, until a signal (tests call it with their own settings and a stop
event).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import typer
from rich.console import Console
from rich.table import Table

from signup.adapters.consumer import (
    DEFAULT_PREFIX,
    WorkersStillRunning,
    list_dead_letters,
    migrate_queues,
    requeue_dead_letters,
)
from signup.adapters.consumer_metrics import ConsumerStats
from signup.adapters.database import migrate
from signup.log_config import configure_logging
from signup.service_layer.consumers import CONSUMERS, CRM_SYNC, WELCOME_EMAIL
from signup.service_layer.ports import Crm, Mailer
from signup.settings import Settings

worker_app = typer.Typer(
    help=(
        "Consumers of `user.new` events. Each owns the durable queue `signup.NAME`, bound "
        "to the exchange; failed messages are retried with growing delays "
        "(SIGNUP_WORKER_RETRY_DELAYS_SECONDS), then parked in `signup.NAME.dead`."
    ),
    no_args_is_help=True,
    add_completion=False,
)

PREFIX_OPTION = typer.Option(
    DEFAULT_PREFIX,
    "--queue-prefix",
    help="First part of the queue names (`PREFIX.NAME`, `PREFIX.NAME.dead`, …).",
    show_default=True,
)


async def run_worker(
    name: str,
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    prefix: str = DEFAULT_PREFIX,
    mailer: Mailer | None = None,
    crm: Crm | None = None,
    apply_migrations: bool = True,
) -> ConsumerStats:
    """Run consumer NAME until `stop` is set (by default: until SIGTERM or SIGINT)."""
    from signup.bootstrap import build_consumer  # not at import: `signup --help` stays quick

    if apply_migrations:  # idempotent; alembic runs its own event loop, so in a thread
        await asyncio.to_thread(migrate, settings.database_url)
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
                handled.append(signum)
    try:
        async with build_consumer(
            name, settings, prefix=prefix, mailer=mailer, crm=crm
        ) as consumer:
            await consumer.run(stop)
            return consumer.stats
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


METRICS_PORT_OPTION = typer.Option(
    None, "--metrics-port", help="Serve Prometheus metrics on this port (127.0.0.1)."
)


def _run(name: str, prefix: str, metrics_port: int | None = None) -> None:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    try:
        asyncio.run(run_worker(name, settings, prefix=prefix))
    except ImportError as exc:  # a missing module is an error, never a quiet exit
        Console(stderr=True).print(f"[red]error:[/red] cannot load the worker: {exc!r}")
        raise typer.Exit(1) from exc
    except ValueError as exc:  # missing or invalid settings
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


@worker_app.command("welcome-email")
def welcome_email(
    prefix: str = PREFIX_OPTION, metrics_port: int | None = METRICS_PORT_OPTION
) -> None:
    """Send the welcome e-mail for every new user (SMTP: SIGNUP_SMTP_*, SIGNUP_MAIL_FROM).

    Runs until SIGTERM or SIGINT, then finishes the messages in hand. A refused
    recipient (5xx) is parked; a busy or unreachable server is retried.
    """
    _run(WELCOME_EMAIL, prefix, metrics_port)


@worker_app.command("crm-sync")
def crm_sync(prefix: str = PREFIX_OPTION, metrics_port: int | None = METRICS_PORT_OPTION) -> None:
    """Push every new user to the CRM as a signed webhook (SIGNUP_CRM_URL, SIGNUP_CRM_SECRET).

    Runs until SIGTERM or SIGINT, then finishes the messages in hand. 2xx is done;
    408, 429, 5xx and network faults are retried; other 4xx answers are parked.
    """
    _run(CRM_SYNC, prefix, metrics_port)


def _check_name(name: str) -> str:
    if name not in CONSUMERS:
        raise typer.BadParameter(f"one of: {', '.join(CONSUMERS)}")
    return name


NAME_ARGUMENT = typer.Argument(
    ..., metavar="NAME", help=f"The consumer: {' or '.join(CONSUMERS)}.", callback=_check_name
)


@worker_app.command("dead-letters")
def dead_letters(
    name: str = NAME_ARGUMENT,
    limit: int = typer.Option(100, "--limit", min=1, help="Show at most this many."),
    prefix: str = PREFIX_OPTION,
) -> None:
    """List the messages parked in `signup.NAME.dead`: event id, reason, attempts.

    Read-only: the messages stay where they are.
    """
    from signup.bootstrap import topology_for

    settings = Settings()
    topology = topology_for(name, settings, prefix=prefix)
    try:
        letters, total = asyncio.run(
            list_dead_letters(settings.amqp_url.get_secret_value(), topology, limit=limit)
        )
    except Exception as exc:
        Console(stderr=True).print(f"[red]error:[/red] cannot read {topology.dead_queue}: {exc}")
        raise typer.Exit(1) from exc
    console = Console()
    if not letters:
        console.print(f"No parked messages in {topology.dead_queue}.")
        return
    table = Table(title=f"{topology.dead_queue}: {total} parked", title_justify="left")
    table.add_column("event id", no_wrap=True)
    table.add_column("reason", overflow="fold")
    table.add_column("attempts", justify="right")
    table.add_column("parked at", no_wrap=True)
    for letter in letters:
        table.add_row(
            letter.event_id or "?", letter.reason, str(letter.attempts), letter.parked_at or ""
        )
    console.print(table)
    if total > len(letters):
        console.print(f"… and {total - len(letters)} more (use --limit).")


@worker_app.command("requeue")
def requeue(
    name: str = NAME_ARGUMENT,
    all_: bool = typer.Option(False, "--all", help="Move every parked message."),
    event_id: str | None = typer.Option(
        None, "--event-id", help="Move only the parked message(s) of this event id."
    ),
    prefix: str = PREFIX_OPTION,
) -> None:
    """Move parked messages from `signup.NAME.dead` back to `signup.NAME` to be processed.

    Give exactly one of --all or --event-id. Requeued messages get the full retry
    schedule again; events already processed are still skipped.
    """
    if all_ == (event_id is not None):
        raise typer.BadParameter("give exactly one of --all or --event-id")
    from signup.bootstrap import topology_for

    settings = Settings()
    topology = topology_for(name, settings, prefix=prefix)
    try:
        moved = asyncio.run(
            requeue_dead_letters(settings.amqp_url.get_secret_value(), topology, event_id=event_id)
        )
    except Exception as exc:
        Console(stderr=True).print(f"[red]error:[/red] requeue from {topology.dead_queue}: {exc}")
        raise typer.Exit(1) from exc
    Console().print(f"Moved {moved} message(s) from {topology.dead_queue} to {topology.queue}.")
    if event_id is not None and moved == 0:
        raise typer.Exit(1)


@worker_app.command("migrate-queues")
def migrate_queues_command(name: str = NAME_ARGUMENT, prefix: str = PREFIX_OPTION) -> None:
    """Move NAME's queues that an earlier version declared with other arguments (classic
    retry and parking queues) over to quorum queues, keeping every message.

    Stop the workers of NAME first (refused while its queue has a consumer). Queues that
    are already current are left alone; running it twice does nothing the second time.
    """
    from signup.bootstrap import topology_for

    settings = Settings()
    topology = topology_for(name, settings, prefix=prefix)
    try:
        done = asyncio.run(migrate_queues(settings.amqp_url.get_secret_value(), topology))
    except WorkersStillRunning as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    except Exception as exc:
        Console(stderr=True).print(f"[red]error:[/red] migrating {topology.queue}: {exc}")
        raise typer.Exit(1) from exc
    console = Console()
    for queue, moved in done.moved.items():
        console.print(f"{queue}: declared again as this version does; {moved} message(s) kept.")
    if not done.moved:
        console.print(f"Every queue of {topology.name} is already current.")
