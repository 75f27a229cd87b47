"""The database schema. Migrations in pbx/migrations create it; this module describes it.

Times are Unix epoch seconds (float): one representation from the clock to the database, the
same on SQLite and PostgreSQL, with no time zone to get wrong.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from attribution.calls import CALLER_MAX, DIAL_STATUS_MAX, DID_MAX, LINKEDID_MAX, RECORDING_MAX

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(32)  # 128 random bits, hex

visitors = Table(
    "visitors",
    metadata,
    Column("id", ID, primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("visits", Integer, nullable=False),
    Column("first_source", String(512), nullable=False),
    Column("first_medium", String(512), nullable=False),
    Column("first_campaign", String(512)),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("visitor_id", ID, ForeignKey("visitors.id"), nullable=False, index=True),
    Column("site", String(64), nullable=False),
    Column("visit_number", Integer, nullable=False),
    Column("started_at", Float, nullable=False, index=True),
    Column("last_seen", Float, nullable=False),
    Column("client_ip", String(64)),
    Column("landing_url", Text, nullable=False),
    Column("referrer", Text),
    Column("source", String(512), nullable=False),
    Column("medium", String(512), nullable=False),
    Column("campaign", String(512)),
    Column("term", String(512)),
    Column("content", String(512)),
    Column("click_ids", Text, nullable=False),  # JSON object
    Column("pool", String(64)),
    Column("tracking", String(16), nullable=False),
    Column("pages_viewed", Integer, nullable=False),
    Column("last_url", Text, nullable=False),
)

# The pools a session leases from, one per group of the site's own numbers (sales, service),
# with what each came to: the pool-size report counts these.
session_pools = Table(
    "session_pools",
    metadata,
    Column("session_id", ID, ForeignKey("sessions.id"), primary_key=True),
    Column("pool", String(64), primary_key=True),
    Column("site", String(64), nullable=False),
    Column("replaces", Text, nullable=False),  # own numbers (E.164), comma-separated
    Column("tracking", String(16), nullable=False),
    Column("started_at", Float, nullable=False, index=True),
)

page_views = Table(
    "page_views",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", ID, ForeignKey("sessions.id"), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("url", Text, nullable=False),
)

# One row per tracking number: the mutex that makes a lease exclusive. A lease is taken or
# extended by a conditional UPDATE of this row, which PostgreSQL and SQLite both serialise.
numbers = Table(
    "numbers",
    metadata,
    Column("number", String(16), primary_key=True),
    Column("site", String(64), nullable=False),
    Column("pool", String(64), nullable=False),
    Column("lease_id", ID),
    Column("session_id", ID),
    Column("held_until", Float),
    Column("client_ip", String(64)),
    Index("ix_numbers_pool_held", "site", "pool", "held_until"),
    Index("ix_numbers_client_ip", "client_ip", "held_until"),
)

# Every lease ever given: answers "who held number N at instant T", also long after.
leases = Table(
    "leases",
    metadata,
    Column("id", ID, primary_key=True),
    Column("number", String(16), nullable=False),
    Column("session_id", ID, ForeignKey("sessions.id"), nullable=False, index=True),
    Column("started_at", Float, nullable=False),
    Column("last_activity", Float, nullable=False),
    Column("held_until", Float, nullable=False),
    Index("ix_leases_number_started", "number", "started_at"),
)

calls = Table(
    "calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("linkedid", String(LINKEDID_MAX), nullable=False, unique=True),
    Column("caller", String(CALLER_MAX), nullable=False, index=True),
    Column("did", String(DID_MAX), nullable=False),
    Column("started_at", Float, nullable=False, index=True),
    Column("answered_at", Float),
    Column("ended_at", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("dial_status", String(DIAL_STATUS_MAX), nullable=False),
    Column("ring_seconds", Float, nullable=False),
    Column("talk_seconds", Float, nullable=False),
    Column("recording", String(RECORDING_MAX)),
    Column("repeat_caller", Boolean, nullable=False),
    Column("stored_at", Float),  # when the record was written: hangup-to-record latency
    # attribution: how the call was matched, and the source it was matched to
    Column("attribution", String(16), nullable=False),  # session | static | fallback | unknown
    Column("site", String(64)),
    Column("pool", String(64)),
    Column("session_id", ID, index=True),  # retention keeps what calls refer to
    Column("visitor_id", ID, index=True),
    Column("source", String(512)),
    Column("medium", String(512)),
    Column("campaign", String(512)),
    Column("term", String(512)),
    Column("content", String(512)),
    Column("click_ids", Text),  # JSON object
    Column("referrer", Text),
    Column("landing_url", Text),
    Column("visit_number", Integer),
    Column("pages_viewed", Integer),
    Column("first_source", String(512)),
    Column("first_medium", String(512)),
    Column("first_campaign", String(512)),
    # the recording once converted for browsers (recordings/): its length and a coarse waveform
    Column("recording_seconds", Float),
    Column("recording_peaks", Text),  # JSON list of 0..100
    # what staff made of the call on its page
    Column("score", Integer),  # 1..5
    Column("notes", Text),
    Column("sale_cents", Integer),  # the sale it led to, for ROI; whole cents, no float money
    Column("reviewed_by", String(64)),
    Column("reviewed_at", Float),
)

call_tags = Table(
    "call_tags",
    metadata,
    Column("call_id", Integer, ForeignKey("calls.id"), primary_key=True),
    Column("tag", String(64), primary_key=True, index=True),
)

# Logged-in staff. The cookie holds a random token; only its sha256 is kept, so a leaked
# database does not hand out logins.
staff_sessions = Table(
    "staff_sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("user", String(64), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False, index=True),
    # sha256 of the user's password hash at login: a new password in the config ends the session
    Column("password_sha256", String(64), nullable=False, server_default=""),
)
