"""calls: partial indexes for the conversion queue and recording retention

Both read the calls table every few minutes, and on SQLite in the event loop (the inline
engine): without an index each read scanned every call, 0.8 s at 1,000,000 calls, during
which FastAGI answers waited and calls ringing then went to their fallback line unattributed.
Partial indexes hold only the rows each read wants: the calls whose recording is still
Asterisk's WAV (a handful: each is converted seconds after its call), and the calls that still
have a recording, by start (retention deletes the old ones').

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

AS_RECORDED = sa.text("recording LIKE '%.wav'")
RECORDED = sa.text("recording IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_calls_as_recorded",
        "calls",
        ["id"],
        sqlite_where=AS_RECORDED,
        postgresql_where=AS_RECORDED,
    )
    op.create_index(
        "ix_calls_recorded_started",
        "calls",
        ["started_at"],
        sqlite_where=RECORDED,
        postgresql_where=RECORDED,
    )


def downgrade() -> None:
    op.drop_index("ix_calls_recorded_started", table_name="calls")
    op.drop_index("ix_calls_as_recorded", table_name="calls")
