"""amounts in cents: 64-bit on PostgreSQL

The API takes amounts up to attribution.money.MAX_CENTS (10**13 cents), but on PostgreSQL the
columns were `integer` (32 bits): a sale over 21,474,836.47 (a flat sold in roubles), or two
sales whose total passed it, was refused by the database with a 500, and the CRM's retries met
the same 500. SQLite's integers are 64-bit already: nothing changes there.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

COLUMNS = [
    ("calls", "sale_cents", True),
    ("calls", "crm_sale_cents", False),
    ("call_credits", "sale_cents", False),
    ("call_credits", "crm_sale_cents", False),
    ("costs", "cost_cents", False),
    ("sales", "amount_cents", False),
]


def _alter(to: sa.types.TypeEngine[int], was: sa.types.TypeEngine[int]) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, nullable in COLUMNS:
        op.alter_column(table, column, type_=to, existing_type=was, existing_nullable=nullable)


def upgrade() -> None:
    _alter(sa.BigInteger(), sa.Integer())


def downgrade() -> None:
    _alter(sa.Integer(), sa.BigInteger())
