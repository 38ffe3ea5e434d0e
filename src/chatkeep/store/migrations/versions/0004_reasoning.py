"""a reply's reasoning, apart from its text (issue 8)

Revision ID: 0004
Revises: 0001
Create Date: 2026-12-08 03:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: existing rows simply have no reasoning, and nothing is rewritten.
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reasoning", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("reasoning_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("reasoning_ms")
        batch_op.drop_column("reasoning")
