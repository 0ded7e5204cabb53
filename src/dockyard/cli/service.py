"""``dockyard server`` and ``dockyard agent``: the CI service and its build hosts."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import click

from dockyard.cli.users import DatabaseUsers, user_group


def parse_labels(text: str | None) -> dict[str, str]:
    """``k=v,k2=v2`` as a dict."""
    labels: dict[str, str] = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--labels")
        labels[key.strip()] = value.strip()
    return labels


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A ``--gc-keep-storage`` size (10GB, 512MiB) in bytes."""
    from dockyard.check.policy import parse_bytes

    if value is None:
        return None
    try:
        return parse_bytes(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _agent_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An agent name the server takes: letters, digits, ``._-``, at most 100."""
    from dockyard.service.api.common import NAME_RE

    if value is not None and not NAME_RE.match(value):
        raise click.BadParameter(f"{value!r}: letters, digits, '._-' (first a letter or digit)")
    return value


gc_option = click.option(
    "--gc-keep-storage",
    metavar="SIZE",
    callback=_size,
    help="After each run, if the store takes more than SIZE (10GB, 512MiB), prune it "
    "under SIZE: garbage, then the least recently used build cache, cache mounts and "
    "pipeline runs and caches (as dockyard prune --keep-storage).",
)


data_option = click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DOCKYARD_SERVER_DATA",
    help="State directory: the SQLite database, the secret key, the first admin token.",
)
database_option = click.option(
    "--database", metavar="URL", help="SQLAlchemy URL [default: SQLite in --data]."
)


@click.group(invoke_without_command=True)
@click.option("--addr", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to serve.")
@data_option
@database_option
@click.option(
    "--secret-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="AES key for secrets at rest, made 0600 if missing [default: DATA/secret.key].",
)
@click.option("--no-local-agent", is_flag=True, help="Do not start the built-in agent.")
@click.option("--local-agent-labels", metavar="K=V,...", help="Labels of the built-in agent.")
@click.option(
    "--local-agent-name",
    metavar="NAME",
    callback=_agent_name,
    help="Name of the built-in agent, one per server [default: local-HOST-HASH, HASH of "
    "--data's path].",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="Seconds without a heartbeat before a run's agent is taken for dead.",
)
@click.option(
    "--keep-runs",
    type=click.IntRange(min=1),
    metavar="N",
    help="Delete ended runs (logs, artifacts) beyond each repository's newest N.",
)
@click.option(
    "--keep-days",
    type=click.FloatRange(min=0, min_open=True),
    metavar="DAYS",
    help="Delete runs (logs, artifacts) that ended more than DAYS ago.",
)
@gc_option
@click.pass_context
def server(
    ctx: click.Context,
    addr: str,
    data: Path | None,
    database: str | None,
    secret_key_file: Path | None,
    no_local_agent: bool,
    local_agent_labels: str | None,
    local_agent_name: str | None,
    lease: float,
    keep_runs: int | None,
    keep_days: float | None,
    gc_keep_storage: int | None,
) -> None:
    """Run the CI service: REST API, webhooks, run queue, and a local agent.

    The agent keeps the store under --gc-keep-storage. With --keep-runs and/or
    --keep-days, a run goes when either says so (queued and running ones never).

    "dockyard server user ..." manages the web UI's users in the database directly,
    with no server running (the first admin)."""
    if ctx.invoked_subcommand is not None:
        return
    if data is None:
        raise click.UsageError("Missing option '--data'.", ctx)
    from dockyard.service.retention import Retention
    from dockyard.service.server import ServerConfig, serve

    serve(
        ServerConfig(
            addr=addr,
            data=data,
            database=database,
            key_file=secret_key_file,
            local_agent=not no_local_agent,
            local_agent_labels=parse_labels(local_agent_labels),
            local_agent_name=local_agent_name,
            lease=lease,
            store_root=ctx.obj.root if ctx.obj else None,
            gc_keep_storage=gc_keep_storage,
            retention=Retention(keep_runs=keep_runs, keep_days=keep_days),
        )
    )


def _local_users(data: Path | None, database: str | None) -> DatabaseUsers:
    """The users in the database of the server whose state is in ``data``."""
    from dockyard.service.database import sqlite_url

    if database is not None:
        return DatabaseUsers(database)
    if data is None:
        raise click.UsageError("Missing option '--data' (or '--database').")
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    return DatabaseUsers(sqlite_url(data))


server.add_command(user_group(_local_users, (data_option, database_option)))


@click.command()
@click.option("--server", "server_url", required=True, metavar="URL", help="The server.")
@click.option(
    "--token",
    envvar="DOCKYARD_AGENT_TOKEN",
    required=True,
    help="An agent token [env DOCKYARD_AGENT_TOKEN, which keeps it out of ps].",
)
@click.option("--labels", metavar="K=V,...", help="What this host offers: os=linux,arch=amd64.")
@click.option(
    "--capacity", type=click.IntRange(min=1), default=1, show_default=True, help="Runs at a time."
)
@click.option("--name", help="This agent's name [default: the host name].")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where checkouts go [default: /var/lib/dockyard-agent].",
)
@gc_option
@click.pass_context
def agent(
    ctx: click.Context,
    server_url: str,
    token: str,
    labels: str | None,
    capacity: int,
    name: str | None,
    workdir: Path | None,
    gc_keep_storage: int | None,
) -> None:
    """Run pipelines for a dockyard server: take the runs whose labels this host has."""
    import logging

    from dockyard.service.agent import Agent, AgentConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per poll and report
    workdir = workdir or Path("/var/lib/dockyard-agent")
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = AgentConfig(
        server=server_url,
        token=token,
        name=name or socket.gethostname(),
        workdir=workdir,
        labels=parse_labels(labels),
        capacity=capacity,
        store_root=ctx.obj.root if ctx.obj else None,
        gc_keep_storage=gc_keep_storage,
    )
    os.environ.pop("DOCKYARD_AGENT_TOKEN", None)  # not for the pipelines' processes
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM: as Ctrl-C
    try:
        Agent(config).run()
    except KeyboardInterrupt:
        click.echo("dockyard agent: stopped", err=True)
