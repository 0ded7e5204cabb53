"""Pull requests: the ref a run fetches, and whether it comes from a fork.

Also whether a repository gives its secrets to runs from forks.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch_op:
        batch_op.add_column(
            sa.Column("fork_secrets", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("ref", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("fork", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("fork")
        batch_op.drop_column("ref")
    with op.batch_alter_table("repositories") as batch_op:
        batch_op.drop_column("fork_secrets")
