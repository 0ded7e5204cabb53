"""Global secrets: a secret without a repository, one per name.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("secrets") as batch_op:
        batch_op.alter_column("repository_id", existing_type=sa.Integer(), nullable=True)
    op.create_index(
        "uq_global_secret_name",
        "secrets",
        ["name"],
        unique=True,
        sqlite_where=sa.text("repository_id IS NULL"),
        postgresql_where=sa.text("repository_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_global_secret_name", table_name="secrets")
    op.execute("DELETE FROM secrets WHERE repository_id IS NULL")
    with op.batch_alter_table("secrets") as batch_op:
        batch_op.alter_column("repository_id", existing_type=sa.Integer(), nullable=False)
