"""reports: rollups of visits and call credits, costs, sales, callers, callbacks

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "callers",
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("last_call_id", sa.Integer(), nullable=False),
        sa.Column("last_started_at", sa.Float(), nullable=False),
        sa.Column("last_status", sa.String(length=16), nullable=False),
        sa.Column("visitor_id", sa.String(length=32), nullable=True),
        sa.Column("visitor_call_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("caller", name=op.f("pk_callers")),
    )
    with op.batch_alter_table("callers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_callers_last_status"), ["last_status"], unique=False)

    op.create_table(
        "costs",
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("medium", sa.String(length=512), nullable=False),
        sa.Column("campaign", sa.String(length=512), nullable=False),
        sa.Column("cost_cents", sa.Integer(), nullable=False),
        sa.Column("imported_at", sa.Float(), nullable=False),
        sa.Column("file", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("day", "source", "medium", "campaign", name=op.f("pk_costs")),
    )
    op.create_table(
        "visit_channels",
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("medium", sa.String(length=512), nullable=False),
        sa.Column("campaign", sa.String(length=512), nullable=False),
        sa.Column("visits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "site", "pool", "source", "medium", "campaign", name=op.f("pk_visit_channels")
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "visit_facets",
        sa.Column("facet", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("medium", sa.String(length=512), nullable=False),
        sa.Column("value", sa.String(length=1024), nullable=False),
        sa.Column("visits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "facet", "day", "site", "source", "medium", "value", name=op.f("pk_visit_facets")
        ),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("visit_facets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_visit_facets_channel",
            ["facet", "source", "medium", "day", "site", "value", "visits"],
            unique=False,
        )

    op.create_table(
        "call_candidates",
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("released_at", sa.Float(), nullable=False),
        sa.Column("likelihood", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_candidates_call_id_calls")
        ),
        sa.PrimaryKeyConstraint("call_id", "session_id", name=op.f("pk_call_candidates")),
    )
    with op.batch_alter_table("call_candidates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_call_candidates_session_id"), ["session_id"], unique=False
        )

    op.create_table(
        "call_credits",
        sa.Column("model", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=True),
        sa.Column("pool", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=512), nullable=True),
        sa.Column("medium", sa.String(length=512), nullable=True),
        sa.Column("campaign", sa.String(length=512), nullable=True),
        sa.Column("term", sa.String(length=512), nullable=True),
        sa.Column("content", sa.String(length=512), nullable=True),
        sa.Column("landing", sa.String(length=1024), nullable=True),
        sa.Column("referrer", sa.String(length=255), nullable=True),
        sa.Column("static", sa.String(length=128), nullable=True),
        sa.Column("session_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first_time", sa.Boolean(), nullable=False),
        sa.Column("talk_seconds", sa.Float(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("sale_cents", sa.Integer(), nullable=False),
        sa.Column("crm_sales", sa.Integer(), nullable=False),
        sa.Column("crm_sale_cents", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_credits_call_id_calls")
        ),
        sa.PrimaryKeyConstraint("model", "day", "call_id", name=op.f("pk_call_credits")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("call_credits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_call_credits_call_id"), ["call_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_call_credits_session_id"), ["session_id"], unique=False
        )

    op.create_table(
        "callbacks",
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name=op.f("fk_callbacks_call_id_calls")),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_callbacks")),
    )
    op.create_table(
        "sales",
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name=op.f("fk_sales_call_id_calls")),
        sa.PrimaryKeyConstraint("reference", name=op.f("pk_sales")),
    )
    with op.batch_alter_table("sales", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sales_call_id"), ["call_id"], unique=False)

    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("repeat_of", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("crm_sales", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("crm_sale_cents", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_index("ix_calls_caller_started", ["caller", "started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_caller_started")
        batch_op.drop_column("crm_sale_cents")
        batch_op.drop_column("crm_sales")
        batch_op.drop_column("repeat_of")

    with op.batch_alter_table("sales", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sales_call_id"))

    op.drop_table("sales")
    op.drop_table("callbacks")
    with op.batch_alter_table("call_credits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_credits_session_id"))
        batch_op.drop_index(batch_op.f("ix_call_credits_call_id"))

    op.drop_table("call_credits")
    with op.batch_alter_table("call_candidates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_candidates_session_id"))

    op.drop_table("call_candidates")
    with op.batch_alter_table("visit_facets", schema=None) as batch_op:
        batch_op.drop_index("ix_visit_facets_channel")

    op.drop_table("visit_facets")
    op.drop_table("visit_channels")
    op.drop_table("costs")
    with op.batch_alter_table("callers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_callers_last_status"))

    op.drop_table("callers")
