"""The CI service's database: SQLite in WAL mode, and migrations that keep the rows of
a database made by an older dockyard."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from dockyard.service.database import MIGRATIONS, Database, open_engine, sqlite_url
from dockyard.service.models import Repository


def test_sqlite_is_in_wal_mode(tmp_path):
    engine = open_engine(sqlite_url(tmp_path))
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_an_old_database_is_migrated_on_open_and_keeps_its_rows(tmp_path):
    url = sqlite_url(tmp_path)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with create_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")  # the first release's schema
        connection.execute(
            text(
                "INSERT INTO repositories (name, clone_url, default_branch, pipeline_path,"
                " labels, run_count, created) VALUES ('old', 'file:///x', 'main',"
                " '.dockyard.yml', '{}', 7, '2026-01-01 00:00:00')"
            )
        )
    db = Database(open_engine(url))
    with db.transaction() as session:
        (repository,) = session.query(Repository).all()
        assert (repository.name, repository.run_count, repository.fork_secrets) == ("old", 7, False)
    with db.engine.connect() as connection:
        version = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert version == ScriptDirectory.from_config(config).get_current_head()
