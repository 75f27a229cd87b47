"""sessions: the landing page's path and the referrer's host, as reports key them

The reports no rollup holds (a channel filtered by landing page or referrer, a landing page
filtered by campaign) counted sessions one by one: each session of the range, up to 92 days,
was read into Python to take its landing URL's path or its referrer's host. With both kept on
the session's row, the database groups, filters and picks the rows. Sessions already stored are
filled here, in batches.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

from pbx.storage.visit_rollups import landing_and_referrer

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

BATCH = 5000

_sessions = sa.table(
    "sessions",
    sa.column("id", sa.String),
    sa.column("landing_url", sa.Text),
    sa.column("referrer", sa.Text),
    sa.column("landing_path", sa.String),
    sa.column("referrer_host", sa.String),
)


def upgrade() -> None:
    for name in ("landing_path", "referrer_host"):
        op.add_column(
            "sessions", sa.Column(name, sa.String(200), nullable=False, server_default="")
        )
    bind = op.get_bind()
    s = _sessions.c
    fill = (
        sa.update(_sessions)
        .where(s.id == sa.bindparam("sid"))
        .values(landing_path=sa.bindparam("path"), referrer_host=sa.bindparam("host"))
    )
    after = ""
    while True:  # by id, a batch at a time: a big table is never held in memory at once
        rows = bind.execute(
            sa.select(s.id, s.landing_url, s.referrer)
            .where(s.id > after)
            .order_by(s.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        filled = []
        for r in rows:
            path, host = landing_and_referrer(r.landing_url, r.referrer)
            filled.append({"sid": r.id, "path": path, "host": host})
        bind.execute(fill, filled)
        after = rows[-1].id


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN on SQLite too (3.35+): a batch copy of the table would drop
    # `sessions`, which the foreign keys of page views and leases refuse
    for name in ("referrer_host", "landing_path"):
        op.drop_column("sessions", name)
