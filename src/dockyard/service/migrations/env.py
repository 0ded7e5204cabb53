"""Alembic's entry point: migrate the connection the server hands over (database.migrate)."""

from alembic import context

from dockyard.service.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
