"""``dockyard server``: the API served by uvicorn, and one local agent beside it.

The database and key are set up first; the agent is a child process, so a pipeline
never stalls the API. Each server's local agent has a name of its own (several servers
share one PostgreSQL database), the same at each start of that server.

On first start the server makes an admin token and writes it to ``DATA/admin-token``
(0600): the one way in until more tokens are made through the API.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import logging
import os
import re
import secrets as random
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select

from dockyard.errors import DockyardError
from dockyard.service import queue, tokens
from dockyard.service.api import Service, create_app
from dockyard.service.artifacts import ArtifactStore
from dockyard.service.database import Database, open_engine, sqlite_url
from dockyard.service.models import Agent, Token
from dockyard.service.notify import Notifier
from dockyard.service.retention import Retention
from dockyard.service.secrets import SecretBox, load_or_create_key

log = logging.getLogger("dockyard.service")
ADMIN_TOKEN_FILE = "admin-token"
DEFAULT_LEASE = 30.0
PR_SET_PDEATHSIG = 1


@dataclass
class ServerConfig:
    addr: str
    data: Path
    database: str | None = None  # default: SQLite in ``data``
    key_file: Path | None = None  # default: ``data/secret.key``
    local_agent: bool = True
    local_agent_labels: dict[str, str] | None = None
    local_agent_name: str | None = None  # default: :func:`default_local_agent_name`
    lease: float = DEFAULT_LEASE  # seconds a run is kept without its agent's heartbeat
    store_root: Path | None = None  # the local agent's store (its images and caches)
    gc_keep_storage: int | None = None  # bytes: the local agent prunes past this
    # how long ended runs are kept (default: for ever)
    retention: Retention = dataclasses.field(default_factory=Retention)


def open_service(config: ServerConfig) -> Service:
    """The database migrated, the key loaded (or made), the first admin token written."""
    config.data.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = Database(open_engine(config.database or sqlite_url(config.data)))
    key = load_or_create_key(config.key_file or config.data / "secret.key")
    with db.transaction() as session:
        queue.extend_leases(session, config.lease)
        if session.scalar(select(Token.id).where(Token.role == tokens.ADMIN)) is None:
            _write_private(
                config.data / ADMIN_TOKEN_FILE, tokens.create_token(session, "admin", tokens.ADMIN)
            )
    return Service(
        db=db,
        box=SecretBox(key),
        lease=config.lease,
        work=Notifier(),
        logs=Notifier(),
        artifacts=ArtifactStore(config.data / "artifacts"),
        retention=config.retention,
    )


def _write_private(path: Path, text: str) -> None:
    """``text`` in ``path``, 0600 from the start, replacing it atomically."""
    temporary = path.with_name(f".{path.name}.{random.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def default_local_agent_name(data: Path) -> str:
    """``local-HOST-HASH``: the host's name and a hash of the data directory's path.

    The same at every start of one server; another on another host, or for another
    server on this host (a data directory of its own)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:63]
    where = hashlib.sha256(os.fsencode(data.resolve())).hexdigest()[:8]
    return f"local-{host}-{where}" if host else f"local-{where}"


def local_agent_name(config: ServerConfig) -> str:
    """The name of ``config``'s local agent: the one given, else the default."""
    return config.local_agent_name or default_local_agent_name(config.data)


def _local_agent_token(svc: Service, name: str) -> str:
    """A fresh agent token for this server's local agent ``name``; the last is dropped.

    The last start's local agent ended with its server: its runs go back to the queue
    now and its name is free, so the new one need not wait for its heartbeat to go stale.
    Only the agent of that name is touched, and only if the name is this server's (its
    last local agent token used it): another agent's name is an error here."""
    with svc.db.transaction() as session:
        token_name = f"agent-{name}"
        old = set(session.scalars(select(Token.id).where(Token.name == token_name)))
        last = session.scalar(select(Agent).where(Agent.name == name))
        if (
            last is not None
            and last.token_id not in old
            and not tokens.may_act_as(session, last, None)
        ):
            raise DockyardError(
                f"agent name {name} belongs to another agent's token: give the local"
                " agent another name (--local-agent-name)"
            )
        session.execute(delete(Token).where(Token.name == token_name))
        if last is not None and last.instance is not None:
            queue.release(session, last.id, f"agent {name} restarted")
            last.instance = None
        return tokens.create_token(session, token_name, tokens.AGENT)


def start_local_agent(svc: Service, url: str, config: ServerConfig) -> subprocess.Popen:
    labels = ",".join(f"{k}={v}" for k, v in (config.local_agent_labels or {}).items())
    name = local_agent_name(config)
    env = {**os.environ, "DOCKYARD_AGENT_TOKEN": _local_agent_token(svc, name)}
    log.info("local agent %s, work dir %s", name, config.data / "agent")
    root = ["--root", str(config.store_root)] if config.store_root else []
    command = [
        sys.executable,
        "-m",
        "dockyard.cli.main",
        *root,
        "agent",
        "--server",
        url,
        "--name",
        name,
        "--capacity",
        "1",
        "--workdir",
        str(config.data / "agent"),
    ]
    if labels:
        command += ["--labels", labels]
    if config.gc_keep_storage is not None:
        command += ["--gc-keep-storage", str(config.gc_keep_storage)]
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, preexec_fn=_end_with_parent)


def _end_with_parent() -> None:
    """In the agent's child process: SIGTERM when the server dies, however it dies
    (uvicorn re-raises SIGTERM after its shutdown; SIGKILL runs no cleanup at all)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def serve(config: ServerConfig) -> None:
    """Serve until interrupted; the local agent ends with the server."""
    import uvicorn

    from dockyard.registry.server.run import parse_addr
    from dockyard.registry.server.slowclients import DEFAULT_HEADER_TIMEOUT, http_protocol

    host, port = parse_addr(config.addr)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    svc = open_service(config)
    log.info("dockyard server on http://%s:%d, data %s", host, port, config.data)
    agent = None
    if config.local_agent:
        agent = start_local_agent(svc, f"http://{host}:{port}", config)
    try:
        uvicorn.run(
            create_app(svc),
            host=host,
            port=port,
            http=http_protocol(DEFAULT_HEADER_TIMEOUT),
            lifespan="on",
            access_log=False,
            log_level="info",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=5,
            server_header=False,
            h11_max_incomplete_event_size=64 << 10,
        )
    finally:
        if agent is not None:
            agent.terminate()
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
