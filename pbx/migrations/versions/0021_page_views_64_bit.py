"""page_views.id: 64-bit on PostgreSQL

A page view is a row, and on PostgreSQL its id was `serial`: a 32-bit column fed by a sequence
that stops at 2,147,483,647. Past it, every page view's insert failed: the write-behind kept
retrying the batch and a busy site's visitors kept their numbers while none of their pages were
stored (about 41 days at the soak's 600 page views a second). SQLite's row ids are 64-bit
already: nothing changes there.

The column's type and its sequence's both change: `ALTER COLUMN ... TYPE bigint` leaves the
sequence `AS integer`, still stopping at 2**31 - 1. The table is rewritten under an exclusive
lock (1.3 s for 1,000,000 page views on the 2-core test machine), so visits wait for the
upgrade as for any migration.

Revision ID: 0021
Revises: 0020
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def _alter(to: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE page_views ALTER COLUMN id TYPE {to}")
    op.execute(
        "DO $$ BEGIN EXECUTE format('ALTER SEQUENCE %s AS "
        + to
        + "', pg_get_serial_sequence('page_views', 'id')); END $$"
    )


def upgrade() -> None:
    _alter("BIGINT")


def downgrade() -> None:
    _alter("INTEGER")
