"""calls: indexes on session_id and visitor_id (retention asks for them), longer linkedid

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.alter_column(
            "linkedid", existing_type=sa.String(length=64), type_=sa.String(length=150)
        )
        batch_op.create_index("ix_calls_session_id", ["session_id"], unique=False)
        batch_op.create_index("ix_calls_visitor_id", ["visitor_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_visitor_id")
        batch_op.drop_index("ix_calls_session_id")
        batch_op.alter_column(
            "linkedid", existing_type=sa.String(length=150), type_=sa.String(length=64)
        )
