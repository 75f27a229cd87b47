"""call_credits.repeat_call: a report's repeat calls are those of numbers that called before

`repeat_calls` was calls less first-time callers, so a withheld or anonymous caller (never
first-time: nobody can tell) counted as a repeat call, and a first call from SIPp's `sipp` in
the demo was a "repeat call". The credits now carry the call's own flag (calls.repeat_caller,
set for a known number only), copied for the credits already stored.

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "call_credits",
        sa.Column("repeat_call", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute(
        "UPDATE call_credits SET repeat_call = true"
        " WHERE call_id IN (SELECT id FROM calls WHERE repeat_caller)"
    )


def downgrade() -> None:
    op.drop_column("call_credits", "repeat_call")
