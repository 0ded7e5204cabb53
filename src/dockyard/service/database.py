"""The service's database: an engine, its schema kept up to date, short transactions.

The engine is SQLite in WAL mode by default, or PostgreSQL; Alembic brings the schema
up to date on start.

On SQLite every transaction begins ``IMMEDIATE``: writers queue on the busy timeout
instead of failing when a read transaction tries to become a write one, so the queue's
conditional UPDATEs (:mod:`.queue`) never see "database is locked".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 10_000
MIGRATION_LOCK = 0x646F636B  # an advisory lock id of our own ("dock")


def sqlite_url(data: Path) -> str:
    return f"sqlite:///{data / 'dockyard.db'}"


def driver_url(url: str) -> str:
    """``postgresql://...`` spoken through psycopg 3 (SQLAlchemy's default is psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def open_engine(url: str) -> Engine:
    """An engine for ``url``, its schema migrated to the newest revision."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    else:
        engine = create_engine(driver_url(url), pool_pre_ping=True)
    migrate(engine)
    return engine


def _sqlite_connect(dbapi_connection, record) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across a process kill in WAL
    cursor.close()


def migrate(engine: Engine) -> None:
    """Run every Alembic migration not yet applied.

    Servers starting together take turns (an advisory lock on PostgreSQL, BEGIN
    IMMEDIATE on SQLite).
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":  # one server migrates, the others wait
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def rowcount(result: Result) -> int:
    """The rows an UPDATE or DELETE changed.

    ``Session.execute`` types its result as a plain ``Result``; for those statements it
    is a ``CursorResult``.
    """
    assert isinstance(result, CursorResult)
    return result.rowcount


class Database:
    """Sessions on one engine; :meth:`transaction` commits on success."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session
