"""The CI service's tables, as SQLAlchemy 2 models.

A run is also the queue's job: one agent runs a whole pipeline, so the run row carries
the lease (``agent_id``, ``lease_until``) and the attempt count. Steps, log chunks and
secrets hang off their run or repository. Changing a model means a new migration in
``migrations/versions`` (they run on server start).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Run statuses (step statuses are the engine's: dockyard.ci.results)
QUEUED = "queued"
RUNNING = "running"
SUCCESS = "success"
FAILURE = "failure"
CANCELLED = "cancelled"
ERROR = "error"  # not the pipeline's fault: its agent died twice
FINISHED = (SUCCESS, FAILURE, CANCELLED, ERROR)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # naive UTC: the same on every database


class Base(DeclarativeBase):
    pass


class Repository(Base):
    __tablename__ = "repositories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    clone_url: Mapped[str] = mapped_column(Text)
    default_branch: Mapped[str] = mapped_column(String(255), default="main")
    pipeline_path: Mapped[str] = mapped_column(String(1024), default=".dockyard.yml")
    webhook_secret: Mapped[bytes | None] = mapped_column(LargeBinary)  # sealed (secrets.py)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # an agent must have
    run_count: Mapped[int] = mapped_column(Integer, default=0)  # the last run's number
    fork_secrets: Mapped[bool] = mapped_column(default=False)  # for pull requests from forks?
    created: Mapped[datetime] = mapped_column(DateTime, default=now)


class Run(Base):
    """A pipeline run, and the queue's job for it."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("repository_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(32))  # push | tag | pull_request | manual
    branch: Mapped[str | None] = mapped_column(String(255))  # a tag's name for tag runs
    ref: Mapped[str | None] = mapped_column(String(255))  # what to fetch if not the commit
    fork: Mapped[bool] = mapped_column(default=False)  # a pull request from another repo
    commit: Mapped[str | None] = mapped_column(String(64))  # None: the branch's head
    author: Mapped[str] = mapped_column(String(255), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # required of agents
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    error: Mapped[str] = mapped_column(Text, default="")
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    created: Mapped[datetime] = mapped_column(DateTime, default=now)
    started: Mapped[datetime | None] = mapped_column(DateTime)
    finished: Mapped[datetime | None] = mapped_column(DateTime)
    # the lease: which agent runs it, until when without a heartbeat, which attempt
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    acked_seq: Mapped[int] = mapped_column(Integer, default=0)  # last agent report stored
    log_size: Mapped[int] = mapped_column(BigInteger, default=0)  # characters of log kept


class Step(Base):
    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    duration: Mapped[float] = mapped_column(default=0.0)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    tests: Mapped[dict | None] = mapped_column(JSON)  # passed, failed, skipped, failing
    depends_on: Mapped[list | None] = mapped_column(JSON)  # the steps it waits for
    started: Mapped[datetime | None] = mapped_column(DateTime)
    finished: Mapped[datetime | None] = mapped_column(DateTime)


class LogChunk(Base):
    """A few consecutive lines of a run's log; ``id`` orders them (and is the SSE id)."""

    __tablename__ = "log_chunks"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    lines: Mapped[list] = mapped_column(JSON)  # [[source, text, is_note], ...]


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    capacity: Mapped[int] = mapped_column(Integer, default=1)
    last_seen: Mapped[datetime] = mapped_column(DateTime, default=now)
    # the agent token that first used this name; no other token may act as this agent
    token_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # a random id of the agent's process: a new one means the agent restarted, and the
    # runs its last process held are lost
    instance: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Token(Base):
    """An API token: only its SHA-256 is kept (tokens are 256 random bits)."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))  # read | write | admin | agent
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=now)


class Secret(Base):
    """A sealed secret of a repository, or global (``repository_id`` None)."""

    __tablename__ = "secrets"
    __table_args__ = (
        UniqueConstraint("repository_id", "name"),
        Index(  # NULLs are distinct in the constraint above: one global secret per name
            "uq_global_secret_name",
            "name",
            unique=True,
            sqlite_where=text("repository_id IS NULL"),
            postgresql_where=text("repository_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int | None] = mapped_column(ForeignKey("repositories.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)  # nonce + AES-GCM ciphertext
    updated: Mapped[datetime] = mapped_column(DateTime, default=now)


class Schedule(Base):
    """A cron schedule of a repository: a run of ``branch`` at each time ``spec`` names."""

    __tablename__ = "schedules"
    __table_args__ = (UniqueConstraint("repository_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    spec: Mapped[str] = mapped_column(String(255))  # five cron fields, UTC
    branch: Mapped[str] = mapped_column(String(255))
    next_run: Mapped[datetime] = mapped_column(DateTime, index=True)


class Artifact(Base):
    """A file a step's ``artifacts`` matched, its content kept by digest (:mod:`.artifacts`)."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_id", "step", "path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    step: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(1024))  # relative to the workspace
    digest: Mapped[str] = mapped_column(String(71))  # sha256:<hex>
    size: Mapped[int] = mapped_column(BigInteger)


class User(Base):
    """Someone who signs in to the web UI with a password (:mod:`.users`)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # read | write | admin
    password: Mapped[str] = mapped_column(String(100))  # a bcrypt hash
    session_key: Mapped[str] = mapped_column(String(64))  # new with each password
    created: Mapped[datetime] = mapped_column(DateTime, default=now)


class JUnitCase(Base):
    """One test case of a step's JUnit reports, with its failure's message and output."""

    __tablename__ = "test_cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    step: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # passed | failed | skipped
    message: Mapped[str] = mapped_column(Text, default="")
    output: Mapped[str] = mapped_column(Text, default="")
