"""The database schema. Migrations in pbx/migrations create it; this module describes it.

Times are Unix epoch seconds (float): one representation from the clock to the database, the
same on SQLite and PostgreSQL, with no time zone to get wrong.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    false,
    func,
    literal_column,
    text,
)

from attribution.calls import (
    AS_RECORDED,
    CALLER_MAX,
    DIAL_STATUS_MAX,
    DID_MAX,
    LINKEDID_MAX,
    RECORDING_MAX,
)
from attribution.sales import REFERENCE_MAX

#: the largest row id: ids are 32-bit integers on PostgreSQL, and a larger one in a query is an
#: error there (a 500), where it is no such row
MAX_ROW_ID = 2**31 - 1
#: a 64-bit integer: bigint on PostgreSQL; SQLite's INTEGER is 64-bit already, and an INTEGER
#: PRIMARY KEY is the rowid (a BIGINT one would not be, and would not autoincrement)
Int64 = BigInteger().with_variant(Integer(), "sqlite")
#: an amount in cents: up to attribution.money.MAX_CENTS (10**13), past PostgreSQL's 32-bit
#: integer (21,474,836.47: a flat sold in roubles was a 500) (migration 0019)
Cents = Int64

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
    # the landing URL's path and the referrer's host as reports key them ("" for none, cut
    # to the rollups' KEY_MAX): written when the session starts, so SQL groups and filters them
    Column("landing_path", String(200), nullable=False, server_default=""),
    Column("referrer_host", String(200), nullable=False, server_default=""),
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
    # the ad platforms' ids of this browser, read by the widget from their cookies: GA4's
    # client id (of `_ga`) and Yandex Metrica's ClientID (`_ym_uid`), for conversions
    Column("ga_client_id", String(64)),
    Column("ym_client_id", String(32)),
)

#: Where a visit came from, as reports group it (with its start, site and pool).
SESSION_TRAFFIC = (
    sessions.c.started_at,
    sessions.c.site,
    sessions.c.pool,
    sessions.c.source,
    sessions.c.medium,
    sessions.c.campaign,
    sessions.c.term,
    sessions.c.content,
    sessions.c.landing_url,
    sessions.c.referrer,
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
    Column("tracking", String(16), nullable=False),  # the latest outcome: the session's state
    # the first refusal (exhausted, ip_cap), kept when a later page gets a number: the
    # pool-size report's lost visits (migration 0023)
    Column("refused", String(16)),
    Column("started_at", Float, nullable=False, index=True),
)
#: what a visit came to in a pool, as the pool-size reports count it: refused (lost) if the pool
#: ever refused it a number, though a later page got one; else its outcome
POOL_VISIT_OUTCOME = func.coalesce(session_pools.c.refused, session_pools.c.tracking).label(
    "outcome"
)

page_views = Table(
    "page_views",
    metadata,
    # the busiest table: 32 bits on PostgreSQL run out in weeks at scale (migration 0021)
    Column("id", Int64, primary_key=True, autoincrement=True),
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
    # the order of "free the longest" (number_claims._LONGEST_FREE), and a pool's numbers by
    # held_until for any other query; on PostgreSQL held_until is NULLS FIRST there (migration
    # 0013), as SQLite sorts NULLs anyway
    Index("ix_numbers_pool_free", "site", "pool", "held_until", "number"),
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
    Column("sale_cents", Cents),  # the sale it led to, for ROI; whole cents, no float money
    Column("reviewed_by", String(64)),
    Column("reviewed_at", Float),
    # a known caller's call no session held, linked to the visitor of this earlier call
    Column("repeat_of", Integer),
    # sales the CRM reported for this call (POST /api/v1/sales), kept in step with `sales`
    Column("crm_sales", Integer, nullable=False, server_default="0"),
    Column("crm_sale_cents", Cents, nullable=False, server_default="0"),
    Index("ix_calls_caller_started", "caller", "started_at"),
)
#: a call whose recording is still Asterisk's WAV: waiting for conversion (recordings/). A
#: literal, not a bound pattern, so SQLite and PostgreSQL see the partial index below applies
AS_RECORDED_WHERE = calls.c.recording.like(literal_column(f"'%{AS_RECORDED}'"))
# the conversion queue and retention read these every few minutes, in the event loop on SQLite:
# a scan of the calls table took 0.8 s at 1,000,000 calls, and FastAGI answers wait meanwhile
Index(
    "ix_calls_as_recorded",
    calls.c.id,
    sqlite_where=AS_RECORDED_WHERE,
    postgresql_where=AS_RECORDED_WHERE,
)
Index(
    "ix_calls_recorded_started",
    calls.c.started_at,
    sqlite_where=calls.c.recording.is_not(None),
    postgresql_where=calls.c.recording.is_not(None),
)

call_tags = Table(
    "call_tags",
    metadata,
    Column("call_id", Integer, ForeignKey("calls.id"), primary_key=True),
    Column("tag", String(64), primary_key=True, index=True),
    # added by a keyword the speech worker heard (speech.keywords), not by staff; staff may
    # remove it like any other tag, and the call is not analysed again to put it back
    Column("automatic", Boolean, nullable=False, server_default="0"),
)

# What the speech worker (recordings/speech) made of a call's recording: one row per analysed
# call, so a call with a row is not analysed again. `transcript` is null when the engine only
# spots keywords, and after speech.keep_days; `segments` is the transcript by channel as JSON
# ([{"channel": "caller" | "staff" | null, "start": s, "end": s, "text": ...}]); `error` says why
# the audio could not be analysed (after the worker's last attempt).
call_speech = Table(
    "call_speech",
    metadata,
    Column("call_id", Integer, ForeignKey("calls.id"), primary_key=True),
    Column("engine", String(32), nullable=False),
    Column("analysed_at", Float, nullable=False, index=True),
    Column("transcript", Text),
    Column("segments", Text),
    Column("error", Text),
)

# The configured phrases heard in a call: where (seconds from the recording's start, for the
# waveform) and on which channel when the recording keeps them apart. `tag` is the tag the
# phrase mapped to when it was heard (speech.keywords may change later).
call_keywords = Table(
    "call_keywords",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", Integer, ForeignKey("calls.id"), nullable=False, index=True),
    Column("phrase", String(128), nullable=False),
    Column("tag", String(64), nullable=False),
    Column("at_seconds", Float, nullable=False),
    Column("channel", String(16)),
    Index("ix_call_keywords_phrase_call_id", "phrase", "call_id"),
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


# Reports read rollups kept on write, never a scan of every visit or call per request. Each can be
# rebuilt from the raw rows (`calltrack reports rebuild`), e.g. after ui.timezone changes: a
# `day` is the local date (yyyymmdd) in ui.timezone. "" stands for "none" in key columns.
#
# The visit rollups are counted in each new session's transaction, and most visits of a day share
# one key (direct traffic, no term): on PostgreSQL that row's lock is held from the count to the
# commit, so every daemon's visits queued behind one another on it (2026-12-01: upserts waited
# 170 ms on average at 200 visits/s, p99 in seconds). Each count goes to one of a key's `shard`
# rows instead (VisitRollups.shard: a checksum of the session id on PostgreSQL, 0 on SQLite,
# whose one writer never waits on a row); readers sum over them.

# Visits (sessions) a day by channel: group by source, medium, campaign, pool, site or time.
# WITHOUT ROWID on SQLite: the rows are kept in key order, so a range of days is read in place.
visit_channels = Table(
    "visit_channels",
    metadata,
    Column("day", Integer, primary_key=True),
    Column("site", String(64), primary_key=True),
    Column("pool", String(64), primary_key=True),
    Column("source", String(512), primary_key=True),
    Column("medium", String(512), primary_key=True),
    Column("campaign", String(512), primary_key=True),
    Column("shard", SmallInteger, primary_key=True, server_default=text("0")),
    Column("visits", Integer, nullable=False),
    sqlite_with_rowid=False,
)

# Visits a day by one more facet of their landing: term, content, landing (path), referrer
# (host), with their source and medium so that e.g. google's landing pages are a range read too.
visit_facets = Table(
    "visit_facets",
    metadata,
    Column("facet", String(16), primary_key=True),
    Column("day", Integer, primary_key=True),
    Column("site", String(64), primary_key=True),
    Column("source", String(512), primary_key=True),
    Column("medium", String(512), primary_key=True),
    Column("value", String(1024), primary_key=True),
    Column("shard", SmallInteger, primary_key=True, server_default=text("0")),
    Column("visits", Integer, nullable=False),
    Index("ix_visit_facets_channel", "facet", "source", "medium", "day", "site", "value", "visits"),
    sqlite_with_rowid=False,
)

# Whom each call is credited to under each attribution model (last, first, last_non_direct),
# with every dimension a report groups by and the call's own figures (status, talk, tags, sales:
# kept in step when staff or the CRM change them), so a report is one range read of this table,
# in (model, day) order, without a join.
call_credits = Table(
    "call_credits",
    metadata,
    Column("model", String(16), primary_key=True),
    Column("day", Integer, primary_key=True),
    Column("call_id", Integer, ForeignKey("calls.id"), primary_key=True, index=True),
    Column("kind", String(16), nullable=False),  # session | static | visitor | probable | none
    Column("site", String(64)),
    Column("pool", String(64)),
    Column("source", String(512)),
    Column("medium", String(512)),
    Column("campaign", String(512)),
    Column("term", String(512)),
    Column("content", String(512)),
    Column("landing", String(1024)),  # path
    Column("referrer", String(255)),  # host
    Column("static", String(128)),  # the static number's source
    Column("session_id", ID, index=True),  # retention keeps what calls are credited to
    # the call's figures, copied from calls and call_tags
    Column("status", String(16), nullable=False),
    Column("first_time", Boolean, nullable=False),
    # from a number that called before (calls.repeat_caller): a withheld number is neither
    Column("repeat_call", Boolean, nullable=False, server_default=false()),
    Column("talk_seconds", Float, nullable=False),
    Column("score", Integer),
    Column("tags", Text, nullable=False),  # ",lead,sale," (a tag holds no comma)
    Column("sale_cents", Cents, nullable=False),  # staff's (or PATCH's) sale, 0 for none
    Column("crm_sales", Integer, nullable=False),
    Column("crm_sale_cents", Cents, nullable=False),
    sqlite_with_rowid=False,
)

# The sessions a call no session held probably came from (attribution "probable"), likeliest
# first: their lease of the number ended shortly before the call.
call_candidates = Table(
    "call_candidates",
    metadata,
    Column("call_id", Integer, ForeignKey("calls.id"), primary_key=True),
    Column("session_id", ID, primary_key=True, index=True),
    Column("released_at", Float, nullable=False),
    Column("likelihood", Float, nullable=False),
)

# Ad spend a day by channel, imported from the ad platforms' exports (calltrack costs import).
costs = Table(
    "costs",
    metadata,
    Column("day", Integer, primary_key=True),
    Column("source", String(512), primary_key=True),
    Column("medium", String(512), primary_key=True),
    Column("campaign", String(512), primary_key=True),
    Column("cost_cents", Cents, nullable=False),
    Column("imported_at", Float, nullable=False),
    Column("file", String(255), nullable=False),
)

# Deals the CRM reported (POST /api/v1/sales), each credited to the caller's latest call.
sales = Table(
    "sales",
    metadata,
    # the CRM's id of the deal: posting it twice is one sale
    Column("reference", String(REFERENCE_MAX), primary_key=True),
    Column("call_id", Integer, ForeignKey("calls.id"), nullable=False, index=True),
    Column("caller", String(CALLER_MAX), nullable=False),
    Column("amount_cents", Cents, nullable=False),
    Column("at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(64), nullable=False),
)

# Each caller's latest call, kept on write: the missed callers to call back, known callers.
callers = Table(
    "callers",
    metadata,
    Column("caller", String(CALLER_MAX), primary_key=True),
    Column("last_call_id", Integer, nullable=False),
    Column("last_started_at", Float, nullable=False),
    Column("last_status", String(16), nullable=False, index=True),
    Column("visitor_id", ID),  # the visitor of the caller's latest call credited to a session
    Column("visitor_call_id", Integer),  # that call
)

# Missed calls staff have called back ("called back" on /calls/missed).
callbacks = Table(
    "callbacks",
    metadata,
    Column("call_id", Integer, ForeignKey("calls.id"), primary_key=True),
    Column("by", String(64), nullable=False),
    Column("at", Float, nullable=False),
)


# Closed months of the report, per grouping and model, kept so that a year's report sums twelve
# rows per key instead of a year of credits. Filled when a report first needs a month that is
# over; valid while the month's version (month_versions) is the one it was computed at: every
# write that changes a month's figures (a late call, a review, a sale, a cost import) bumps it.
report_months = Table(
    "report_months",
    metadata,
    Column("model", String(16), primary_key=True),
    Column("group_by", String(16), primary_key=True),
    Column("probable", Boolean, primary_key=True),
    Column("fingerprint", String(64), primary_key=True),  # the settings the figures depend on
    Column("filters", String(64), primary_key=True),  # sha256 of the filters ("" for none)
    Column("month", Integer, primary_key=True),  # yyyymm
    Column("version", Integer, nullable=False),
    Column("tallies", Text, nullable=False),  # JSON: {key: [the Tally's fields]}
    Column("kept_at", Float, nullable=False, index=True),  # the oldest go past MAX_KEPT
)

month_versions = Table(
    "month_versions",
    metadata,
    Column("month", Integer, primary_key=True),  # yyyymm
    Column("version", Integer, nullable=False),
)

# Events for other systems (webhooks, GA4), written in the transaction that makes them true and
# delivered by a worker with retries: one row per event and target (integrations/).
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", ID, nullable=False, unique=True),  # X-Calltrack-Event-Id: idempotency
    Column("target", String(64), nullable=False),  # a webhook's name, or "ga4"
    Column("event", String(32), nullable=False),  # integrations.events.Event
    Column("call_id", Integer, ForeignKey("calls.id"), nullable=False, index=True),
    Column("sale_reference", String(REFERENCE_MAX), ForeignKey("sales.reference")),
    Column("created_at", Float, nullable=False),
    Column("state", String(16), nullable=False),  # pending | delivered | failed | skipped
    Column("due_at", Float, nullable=False),  # the next attempt (pending)
    Column("give_up_at", Float, nullable=False),  # created_at + the target's retry_for
    Column("claimed_until", Float),  # a worker is delivering it until then
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("body", Text),  # what was sent, kept from the first attempt: retries send the same
    Column("last_status", Integer),  # the receiver's HTTP status, none: no answer
    Column("last_error", String(512)),
    Column("last_attempt_at", Float),
    Column("delivered_at", Float),
    Index("ix_outbox_state_due", "state", "due_at"),
)

# The server's own secrets (the key that signs recording links in webhooks): random, made on
# first use and kept here, so every daemon on the database signs alike and a restart keeps them.
link_keys = Table(
    "link_keys",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("secret", String(128), nullable=False),  # hex
    Column("created_at", Float, nullable=False),
)

# Where reconciliation stopped reading a CDR file (ami_bridge.cdr_follow). Inode and device are
# text: st_ino and st_dev are unsigned 64-bit, wider than SQL's BIGINT.
cdr_positions = Table(
    "cdr_positions",
    metadata,
    Column("path", String(1024), primary_key=True),
    Column("inode", String(20), nullable=False),
    Column("device", String(20), nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("mark", String(32), nullable=False),  # blake2b-128 hex, "" at offset 0
    Column("updated_at", Float, nullable=False),
)

# Failed staff logins per user name, counted by every daemon (pbx.storage.login_failures): the
# ceiling per name holds across daemons. Only a sha256 of the name is kept: a password typed into
# the name field does not end up in the database. Rows older than the window are deleted.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name_sha256", String(64), nullable=False),
    Column("at", Float, nullable=False, index=True),
    Index("ix_login_failures_name_at", "name_sha256", "at"),
)

# The last write-behind part each daemon process committed on PostgreSQL (pbx.storage.
# write_behind): a part whose COMMIT lost its connection may have landed or not, and is written
# again only if its number is not here, so page views are not doubled. One row per process, kept
# a week.
write_behind_progress = Table(
    "write_behind_progress",
    metadata,
    Column("writer", ID, primary_key=True),
    Column("part", BigInteger, nullable=False),
    Column("written_at", Float, nullable=False, index=True),
)
