"""The one YAML file an admin edits, as typed, validated settings.

Every problem is reported with the file, line and what was expected, because the person reading
the message is editing YAML by hand, not reading a Python traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarfloat import ScalarFloat
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from attribution.leasing import LeasePolicy
from attribution.money import cents_text, to_cents
from attribution.phone import REGIONS, PhoneNumberError, to_e164
from attribution.reports import NOT_SET
from attribution.traffic import RESERVED_KEYS
from integrations.events import GA4_TARGET, Event, Format
from integrations.google_ads import Counted
from pbx.networks import valid_networks

#: the database URL schemes calltrack runs on (the embedded default, several daemons)
DATABASE_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def _parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90s, 15m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"expected a duration like 90s, 15m or 1h, got {value!r}")
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    return seconds


#: The `region` of the Settings being validated, for the numbers nested in sites and static.
#: Without one a number needs its '+' or '00': bare digits may be a country code or a trunk prefix.
_REGION: ContextVar[str | None] = ContextVar("calltrack_settings_region", default=None)


def _region_code(value: Any) -> str | None:
    """A known ISO 3166 region code (any case) as the numbering plan names it, else None."""
    code = value.upper() if isinstance(value, str) else None
    return code if code in REGIONS else None


def _parse_e164(value: Any) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError("expected a phone number in E.164 form like +74951234567")
    try:
        return to_e164(str(value), _REGION.get(), bare_e164=False)
    except PhoneNumberError as exc:
        raise ValueError(str(exc)) from None


Seconds = Annotated[
    float,
    BeforeValidator(_parse_duration),
    WithJsonSchema({"type": ["string", "number"], "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)?$"}),
]
E164 = Annotated[
    str,
    BeforeValidator(_parse_e164),
    PlainSerializer(str),
    WithJsonSchema({"type": "string", "pattern": r"^\+?[0-9 ()\-.]{8,24}$"}),
]


def _check_shown(text: str) -> str:
    to_e164(text, _REGION.get(), bare_e164=False)  # a PhoneNumberError is a ValueError
    return text


def _written_cents(value: object) -> int:
    """to_cents of an amount as the file wrote it. YAML reads an unquoted `15.000` (fifteen
    thousand, as Russian and German write it) as the float 15.0; ruamel keeps how many digits
    followed the point, so it is refused as ambiguous like the string "15.000" is."""
    if isinstance(value, ScalarFloat) and getattr(value, "_exp", None) is None:
        decimals = getattr(value, "_width") - getattr(value, "_prec") - 1  # noqa: B009
        value = f"{value:.{decimals}f}"
    return to_cents(value)


Cents = Annotated[
    int,
    BeforeValidator(_written_cents),
    PlainSerializer(cents_text),
    WithJsonSchema({"type": ["string", "number"], "pattern": r"^\d+([.,]\d{1,2})?$"}),
]

#: A number as the site shows it, kept in that form: the tracking number is displayed like it.
ShownNumber = Annotated[str, AfterValidator(_check_shown)]
Patterns = Annotated[
    list[str],
    BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolRule(_Model):
    """Which visits a pool serves; every key given must match (glob patterns, any case)."""

    utm_source: Patterns | None = Field(
        None, description="the source as derived (utm_source, else from click id or referrer)"
    )
    utm_medium: Patterns | None = Field(
        None, description="the medium as derived, e.g. cpc, organic, referral, (none)"
    )
    utm_campaign: Patterns | None = Field(None, description="utm_campaign of the landing URL")
    utm_term: Patterns | None = Field(None, description="utm_term of the landing URL")
    utm_content: Patterns | None = Field(None, description="utm_content of the landing URL")
    referrer_host: Patterns | None = Field(
        None, description="the referring site's host without www., e.g. *.google.com"
    )
    landing_path: Patterns | None = Field(
        None, description="the landing page's path, e.g. /promo/*"
    )
    click_id: Patterns | None = Field(
        None, description="names of click ids that must be present, e.g. gclid, yclid"
    )


class Pool(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the pool's name in reports")
    when: PoolRule | None = Field(None, description="no `when`: every visit not matched earlier")
    numbers: list[E164] = Field(min_length=1, description="the tracking numbers leased to visits")
    forward_to: str | None = Field(
        None, description="the real line this pool's calls go to; default: the site's"
    )
    replaces: list[ShownNumber] | None = Field(
        None,
        description="which of the site's own numbers (from `replace`) this pool's numbers stand"
        " in for, e.g. only the sales line; default: all of them",
    )


class Site(_Model):
    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the site's name; the widget sends it"
    )
    origins: list[str] = Field(min_length=1, description="e.g. https://example.com")
    replace: list[ShownNumber] = Field(min_length=1, description="the site's own numbers, as shown")
    pools: list[Pool] = Field(
        default_factory=list, description="tried in order: the first whose `when` matches serves"
    )
    fallback: E164 | None = Field(
        None,
        description="shown instead of a tracking number when the matching pool has none free, so"
        " untracked web calls are still told apart from offline calls to the site's own number",
    )
    forward_to: str | None = Field(
        None, description="the real line of this site's calls; default: the top-level forward_to"
    )
    respect_privacy_signals: bool = Field(
        False, description="no tracking number for visitors sending DNT or GPC"
    )

    @field_validator("origins")
    @classmethod
    def _origins_are_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?", origin):
                raise ValueError(
                    f"expected an origin like https://example.com (scheme, host, optional port,"
                    f" no path), got {origin!r}"
                )
        return [o.lower() for o in origins]

    @model_validator(mode="after")
    def _replaces_name_own_numbers(self) -> Site:
        region = _REGION.get()
        own = {to_e164(text, region, bare_e164=False) for text in self.replace}
        for p, pool in enumerate(self.pools):
            for r, text in enumerate(pool.replaces or []):
                try:
                    known = to_e164(text, region, bare_e164=False) in own
                except PhoneNumberError as exc:
                    raise ValueError(f"pools[{p}].replaces[{r}]: {exc}") from None
                if not known:
                    raise ValueError(
                        f"pools[{p}].replaces[{r}]: {text!r} is not one of this site's own"
                        f" numbers (`replace`)"
                    )
        return self


class StaticNumber(_Model):
    """A number printed on one offline source: every call to it is that source's."""

    number: E164 = Field(description="the number as printed")
    source: str = Field(
        min_length=1, max_length=128, description="e.g. billboard, business cards, avito"
    )
    medium: str = Field(
        "offline", min_length=1, max_length=128, description="the medium reports group it under"
    )
    campaign: str | None = Field(None, max_length=512, description="e.g. spring-2027")
    forward_to: str | None = Field(
        None, description="the real line of its calls; default: the top-level forward_to"
    )
    monthly_cost: Cents | None = Field(
        None,
        description='what the source costs a month, e.g. "15000.00" (the billboard\'s rent);'
        " reports spread it evenly over the days of each month",
    )

    @field_validator("source", "medium", "campaign")
    @classmethod
    def _not_a_reports_own_row(cls, value: str | None) -> str | None:
        if value in RESERVED_KEYS or value == NOT_SET:
            raise ValueError(
                f"{value} is a row of the reports of its own (calls nobody is credited with,"
                " rows folded, ...): name the source something else"
            )
        return value


class Recordings(_Model):
    dir: Path = Field(
        Path("var/recordings"), description="where converted recordings are kept and served from"
    )
    keep_days: int = Field(365, ge=1, description="older recordings are deleted, the calls kept")
    format: Literal["mp3", "opus"] = Field(
        "mp3", description="what WAVs are converted to: mp3 plays in every browser, opus is smaller"
    )
    workers: int = Field(
        1,
        ge=1,
        le=16,
        description="processes converting recordings beside the daemon (each runs one ffmpeg at a"
        " time); more clears a backlog sooner but takes CPU from the calls",
    )


class Http(_Model):
    host: str = Field("127.0.0.1", description="address the HTTP server listens on")
    port: int = Field(8080, ge=1, le=65535, description="port the HTTP server listens on")
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="how browsers reach the daemon, e.g. https://calls.example.com: used for links"
        " such as recording_url (not the request's Host header); https makes cookies Secure",
    )
    max_body_bytes: int = Field(
        16384, ge=256, description="larger request bodies are refused with 413"
    )
    max_leases_per_ip: int = Field(
        200, ge=1, description="generous: offices and mobile carriers share one IP"
    )
    max_pool_share_per_ip: float = Field(
        0.25,
        gt=0,
        le=1,
        description="the share of one pool's numbers one client with a public address (an IPv4"
        " address or IPv6 /64) may hold at once, rounded up, at least one: a scraper running the"
        " widget from one address cannot drain a pool; 1 turns it off. A private address (the"
        " site's own proxy, NAT or container gateway) is not capped so",
    )
    max_new_visits_per_ip: int = Field(
        3000,
        ge=1,
        description="new visits one client (an IPv4 address or IPv6 /64) may start per hour;"
        " more are answered 429 and the widget keeps the site's own numbers. Generous: mobile"
        " carriers put many visitors behind one address",
    )
    max_page_views_per_ip: int = Field(
        30000,
        ge=1,
        description="page views of one client (an IPv4 address or IPv6 /64) kept per hour; later"
        " ones are counted in their session, not kept (as past visits.max_page_views). Bounds what"
        " one client can make the database hold: 30 MB an hour at the longest URLs",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="peers whose X-Forwarded-For and X-Forwarded-Proto are believed: addresses"
        " or networks (10.0.0.0/8, a CDN's ranges); X-Forwarded-For is read from its end past"
        " every trusted hop",
    )
    ping_interval: Seconds = Field(
        30.0, description="how often the widget reports activity while the page is open"
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses_or_networks(cls, values: list[str]) -> list[str]:
        return valid_networks(values)


class Visits(_Model):
    """How much of the web traffic is kept, and for how long."""

    keep_days: int = Field(
        400,
        ge=1,
        description="visits (sessions, their leases and page views) older than this are deleted,"
        " except those a stored call refers to",
    )
    max_page_views: int = Field(
        200, ge=1, description="page views kept per session; later ones are counted, not kept"
    )


class Scope(StrEnum):
    """What an API token may do: one per kind of data and direction, so a token given to an
    integration reaches only what it needs (a CRM posting sales cannot download recordings)."""

    CALLS_READ = "calls:read"  # GET /api/v1/calls, /api/v1/calls/{id}/journey
    CALLS_WRITE = "calls:write"  # PATCH /api/v1/calls/{id}
    RECORDINGS_READ = "recordings:read"  # GET /api/v1/calls/{id}/recording
    LEASES_READ = "leases:read"  # GET /api/v1/leases
    REPORTS_READ = "reports:read"  # GET /api/v1/reports
    SALES_WRITE = "sales:write"  # POST /api/v1/sales


def _not_null(schema: dict[str, Any]) -> None:
    """A field whose default is None (left out) but that may not be written null: the schema
    editors check against says so too."""
    branches = schema.pop("anyOf", [])
    schema.pop("default", None)
    schema.update(next((b for b in branches if b.get("type") != "null"), {}))


class ApiToken(_Model):
    """A bearer token for the staff API (a CRM, a script); only its hash is in the file."""

    name: str = Field(
        min_length=1, max_length=64, description="who uses it, for the logs (and sales.created_by)"
    )
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="printf %s TOKEN | sha256sum")
    scopes: list[Scope] | None = Field(
        None,
        min_length=1,
        json_schema_extra=_not_null,
        description="what it may do: calls:read, calls:write, recordings:read, leases:read,"
        " reports:read, sales:write; unset: all of them (as tokens were before scopes)",
    )

    @field_validator("scopes", mode="before")
    @classmethod
    def _named_when_given(cls, value: Any) -> Any:
        # a `scopes:` whose items were all commented out reads as null: that must not widen a
        # token being narrowed to every scope (the default, for a token without the key)
        if value is None:
            raise ValueError("expected at least one scope; leave `scopes` out for all of them")
        return value

    def may(self, scope: Scope) -> bool:
        return self.scopes is None or scope in self.scopes


class User(_Model):
    """A person who logs in to the staff pages; admins also see the configuration status."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$", description="the login name")
    password_argon2: str = Field(
        description="from `calltrack hash-password`",
        json_schema_extra={"pattern": r"^\$argon2(id|i|d)\$"},
    )
    role: Literal["admin", "staff"] = Field(
        "staff", description="staff: calls and recordings; admin: also the configuration status"
    )

    @field_validator("password_argon2")
    @classmethod
    def _is_a_hash(cls, value: str) -> str:
        if not re.match(r"^\$argon2(id|i|d)\$", value):
            raise ValueError(
                "expected an argon2 hash (run `calltrack hash-password`), never the password itself"
            )
        return value


class Ui(_Model):
    session_idle: Seconds = Field(12 * 3600.0, description="a login ends after this idle time")
    session_max: Seconds = Field(
        30 * 86400.0, description="a login ends this long after it began, even if in use"
    )
    timezone: str = Field("UTC", description="times on the staff pages, e.g. Europe/Moscow")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}; expected e.g. Europe/Moscow") from None
        return name


Tag = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[^,]+$")]
DEFAULT_TAGS = ["lead", "sale", "spam", "wrong number"]


class Leads(_Model):
    """What makes a call a lead in reports: any one of these."""

    tags: list[Tag] = Field(
        default_factory=lambda: ["lead", "sale"],
        description="a call staff tagged with one of these",
    )
    min_score: int | None = Field(
        None, ge=1, le=5, description="a call staff scored at least this (1-5); none: not used"
    )
    min_talk: Seconds | None = Field(
        30.0, description="a call talked at least this long, e.g. 30s; none: not used"
    )


#: The staff tags (`tags`) of the Settings being validated, which speech.keywords may add.
_TAGS: ContextVar[list[str]] = ContextVar("calltrack_settings_tags", default=DEFAULT_TAGS)
MAX_KEYWORDS = 200  # each phrase is one more search through every recording


def _phrase(value: Any) -> str:
    """A phrase as the engines match it: lowercase words separated by single spaces."""
    if not isinstance(value, str):
        raise ValueError("expected a phrase of words, e.g. call me back")
    words = value.lower().split()
    if not words:
        raise ValueError("expected a phrase of words, got an empty one")
    if not all(any(ch.isalnum() for ch in word) for word in words):
        raise ValueError(f"expected words, got {value!r}")
    phrase = " ".join(words)
    if len(phrase) > 128:
        raise ValueError("expected a phrase of at most 128 characters")
    return phrase


def _known_tag(tag: str) -> str:
    if tag not in _TAGS.get():
        raise ValueError(f"{tag!r} is not one of `tags`; add it there so staff can see it")
    return tag


def _unique_phrases(value: Any) -> Any:
    if isinstance(value, dict):
        seen: dict[str, str] = {}
        for written in value:
            with_case = str(written)
            try:
                phrase = _phrase(with_case)
            except ValueError:
                continue  # reported at its key by the key's own validation
            if phrase in seen:
                raise ValueError(f"{with_case!r} is the same phrase as {seen[phrase]!r}")
            seen[phrase] = with_case
    return value


Phrase = Annotated[str, BeforeValidator(_phrase)]
KeywordTag = Annotated[Tag, AfterValidator(_known_tag)]


class Speech(_Model):
    """Keyword tags and transcripts of recorded calls, made on this machine (recordings/speech)."""

    engine: Literal["pocketsphinx", "vosk", "faster-whisper"] = Field(
        "pocketsphinx",
        description="pocketsphinx: English keyword spotting, model included; vosk,"
        " faster-whisper: full transcripts in the model's language (pip install"
        " calltrack[vosk] or calltrack[whisper], and a model in model_dir)",
    )
    workers: int = Field(
        1,
        ge=1,
        le=16,
        description="processes analysing recordings beside the daemon; each takes a core while it"
        " works, so more clears a backlog sooner but takes CPU from the calls",
    )
    keywords: Annotated[dict[Phrase, KeywordTag], BeforeValidator(_unique_phrases)] = Field(
        default_factory=dict,
        max_length=MAX_KEYWORDS,
        description='phrase -> tag, e.g. {price: lead, "call me back": callback}: a call in which'
        " the phrase is heard gets the tag (marked automatic); tags must be in `tags`",
    )
    model_dir: Path | None = Field(
        None,
        description="the engine's model directory (required for vosk and faster-whisper);"
        " pocketsphinx: default the English model its package ships",
    )
    keep_days: int | None = Field(
        None,
        ge=1,
        description="transcripts older than this are deleted (keywords and tags stay); default:"
        " recordings.keep_days",
    )

    @model_validator(mode="after")
    def _model_for_transcripts(self) -> Speech:
        if self.engine != "pocketsphinx" and self.model_dir is None:
            raise ValueError(
                f"model_dir: the {self.engine} engine needs the directory of a downloaded model"
            )
        return self

    @property
    def enabled(self) -> bool:
        """Whether there is anything to do: phrases to spot, or transcripts to keep."""
        return bool(self.keywords) or self.engine != "pocketsphinx"


class Sales(_Model):
    match_days: int = Field(
        90,
        ge=1,
        le=3650,
        description="POST /api/v1/sales credits the caller's latest call at most this many days"
        " before the sale",
    )


class AttributionSettings(_Model):
    probable_window: Seconds | None = Field(
        None,
        description="a call to a pool number nobody held is a probable match of the sessions"
        " whose lease ended at most this long before it; default: freeze_time",
    )


class Ami(_Model):
    host: str = Field("127.0.0.1", description="Asterisk's manager interface address")
    port: int = Field(5038, ge=1, le=65535, description="Asterisk's manager interface port")
    username: str = Field("calltrack", description="the AMI user (manager.conf)")
    secret: str = Field(description="the AMI user's secret (manager.conf)")
    action_timeout: Seconds = Field(5.0, description="an AMI action unanswered this long fails")
    ping_interval: Seconds = Field(
        10.0, description="how often the link is checked; a silent link is reconnected"
    )


class Agi(_Model):
    host: str = Field(
        "127.0.0.1",
        description="address the FastAGI server listens on (the dialplan asks it there)",
        # an address or a host name, nothing the dialplan's AGI() line would read as more
        pattern=r"^$|^[0-9A-Fa-f:.]+$|^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$",
    )
    port: int = Field(4573, ge=1, le=65535, description="port the FastAGI server listens on")
    allowed_peers: list[str] | None = Field(
        None,
        min_length=1,
        description="addresses or networks that may ask the FastAGI server (FastAGI has no"
        " password): Asterisk's, a TCP balancer's in between. Others are hung up on unanswered"
        " (a call among them takes the dialplan's line). Not set: anyone who reaches the port,"
        " which is this host alone while host is a loopback address; doctor warns otherwise",
    )
    answer_within: Seconds = Field(0.5, le=1.0, description="then the dialplan's fallback")
    exit_on_stall: Seconds = Field(
        3.0,
        description="the daemon exits when its event loop stalls this long, so Asterisk's AGI"
        " connections close and calls go to the real line instead of waiting on it",
    )

    @field_validator("allowed_peers")
    @classmethod
    def _addresses_or_networks(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else valid_networks(values)


class Asterisk(_Model):
    ami: Ami = Field(description="the manager interface: call events and the CDR check")
    agi: Agi = Field(Agi(), description="the FastAGI server the dialplan asks per call")
    context: str = Field(
        "calltrack-inbound",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the dialplan context the carrier trunk's calls enter",
    )
    other_numbers_context: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the context the trunk's calls entered before calltrack (plain Asterisk):"
        " the numbers calltrack does not track go on there (an `include` after the tracked"
        " ones); without it Asterisk refuses them once the trunk points at `context`",
    )
    ring_timeout: Seconds = Field(30.0, description="how long the real line rings")
    recordings_dir: Path | None = Field(
        None, description="where Asterisk writes recordings; default: recordings.dir"
    )
    cdr_csv: Path | None = Field(None, description="Asterisk's Master.csv, for reconciliation")
    reconcile_every: Seconds = Field(
        300.0,
        gt=0,
        description="how often the daemon following AMI also reads what cdr_csv gained, besides"
        " after each (re)connection: calls whose events were missed are stored, a rotation is"
        " followed",
    )


class Webhook(_Model):
    """One receiver of events: a CRM, an automation tool, the business's own endpoint."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="names it on the admin page and in logs"
    )
    url: str = Field(
        pattern=r"^https?://[^\s]+$",
        max_length=2000,
        description="where events are POSTed (for bitrix24: the incoming-webhook URL,"
        " https://PORTAL/rest/USER/KEY/)",
    )
    secret: str | None = Field(
        None,
        min_length=16,
        description="signs each delivery (X-Calltrack-Signature, HMAC-SHA256); or secret_env",
    )
    secret_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="the environment variable holding the secret, to keep it out of this file",
    )
    events: list[Event] = Field(
        default_factory=lambda: [Event.CALL_COMPLETED],
        min_length=1,
        description="call.completed, call.updated, sale.created",
    )
    format: Format = Field(
        Format.JSON, description="json (calltrack's signed body) or bitrix24 (crm.lead.add)"
    )
    retry_for: Seconds = Field(
        86400.0,
        description="a failing delivery is retried (backoff with jitter) this long, then marked"
        " failed",
    )
    timeout: Seconds = Field(10.0, description="how long one delivery may take")

    @model_validator(mode="after")
    def _one_secret(self) -> Webhook:
        if self.secret is not None and self.secret_env is not None:
            raise ValueError("give secret or secret_env, not both")
        if self.secret_env is not None:
            value = os.environ.get(self.secret_env, "")
            if len(value) < 16:
                raise ValueError(
                    f"secret_env: the environment variable {self.secret_env} is not set"
                    " (or has fewer than 16 characters)"
                )
        elif self.secret is None and self.format is Format.JSON:
            raise ValueError("a json webhook needs secret or secret_env to sign its deliveries")
        return self

    @property
    def signing_secret(self) -> str | None:
        """The secret deliveries are signed with (from the environment when secret_env)."""
        return os.environ[self.secret_env] if self.secret_env else self.secret


class Webhooks(_Model):
    """Where events go. `webhooks:` may be just the list of targets, when the defaults do."""

    targets: list[Webhook] = Field(default_factory=list, description="the receivers")
    recording_link_ttl: Seconds = Field(
        7 * 86400.0,
        description="how long the recording link in a webhook plays without a staff login",
    )
    keep_days: int = Field(
        30,
        ge=1,
        le=3650,
        description="deliveries settled (delivered, failed, skipped) this many days ago are"
        " deleted, with the bodies they sent",
    )

    @model_validator(mode="before")
    @classmethod
    def _list_is_targets(cls, data: Any) -> Any:
        return {"targets": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _names_unique(self) -> Webhooks:
        seen: set[str] = set()
        for i, target in enumerate(self.targets):
            if target.name in seen or target.name == GA4_TARGET:
                raise ValueError(f"targets[{i}].name: {target.name!r} is already used")
            seen.add(target.name)
        return self


class Ga4(_Model):
    """Google Analytics 4: a `phone_call` event per call through the Measurement Protocol."""

    measurement_id: str = Field(
        pattern=r"^G-[A-Z0-9]{4,20}$", description="the web stream's measurement id, G-XXXXXXX"
    )
    api_secret: str = Field(
        min_length=8, max_length=200, description="a Measurement Protocol API secret of the stream"
    )
    endpoint: str = Field(
        "https://www.google-analytics.com/mp/collect",
        pattern=r"^https?://[^\s]+$",
        description="where events are posted (tests point it at a local receiver)",
    )


class GoogleAds(_Model):
    """Google Ads offline click conversions: `calltrack export google-ads` and /admin/exports."""

    conversion_name: str = Field(
        min_length=1,
        max_length=100,
        description="the conversion action's name in Google Ads, exactly as spelled there",
    )
    calls: Counted = Field(
        Counted.LEADS,
        description="which calls are conversions: leads (by `leads:`), answered, or all",
    )
    value: Cents | None = Field(
        None,
        description="the value of a call without a sale, e.g. 500.00; none: such rows have no"
        " value",
    )


class Settings(_Model):
    region: str | None = Field(
        None,
        description="ISO 3166 code (RU, DE, US) of the country whose numbers may be written"
        " without a country code, like '8 495 123-45-67' in RU; by default every number needs one",
        json_schema_extra={"pattern": "^[A-Za-z]{2}$"},
    )
    freeze_time: Seconds = Field(900.0, description="a number stays held this long after activity")
    forward_to: str = Field(description="the business's real line, e.g. PJSIP/realline")
    sites: list[Site] = Field(default_factory=list, description="the websites that show numbers")
    static: list[StaticNumber] = Field(
        default_factory=list, description="numbers of offline sources"
    )
    recordings: Recordings = Field(Recordings(), description="call recordings")
    visits: Visits = Field(Visits(), description="how much web traffic is kept")
    database: str = Field(
        "sqlite+aiosqlite:///var/calltrack.db",
        description="sqlite+aiosqlite:///path.db, or postgresql+asyncpg://user:pw@host/db for"
        " several daemons",
    )
    api_tokens: list[ApiToken] = Field(
        default_factory=list, description="bearer tokens for the staff API"
    )
    users: list[User] = Field(default_factory=list, description="who may log in to the staff pages")
    tags: list[Tag] = Field(
        default_factory=lambda: list(DEFAULT_TAGS), description="what staff may tag calls with"
    )
    ui: Ui = Field(Ui(), description="the staff pages")
    currency: str = Field(
        "USD",
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of every amount (costs, sales); one currency per install",
    )
    leads: Leads = Field(Leads(), description="what counts as a lead in reports")
    sales: Sales = Field(Sales(), description="sales reported by the CRM")
    attribution: AttributionSettings = Field(
        AttributionSettings(), description="matching calls no session held"
    )
    webhooks: Webhooks = Field(
        Webhooks(), description="signed, retried deliveries of calls and sales to other systems"
    )
    ga4: Ga4 | None = Field(None, description="send each call to Google Analytics 4")
    google_ads: GoogleAds | None = Field(
        None, description="offline click conversions for Google Ads (an export)"
    )
    speech: Speech = Field(
        Speech(), description="keyword tags and transcripts of recorded calls (offline)"
    )
    http: Http = Field(Http(), description="the HTTP server: widget API, staff pages and API")
    asterisk: Asterisk | None = Field(
        None, description="the PBX; without it calltrack only leases numbers"
    )

    @model_validator(mode="wrap")
    @classmethod
    def _read_numbers_in_region(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Numbers are read in the sibling `region` while each is validated in its own place,
        so that an impossible number is reported at its own line, not at the top of the file."""
        region = _region_code(data.get("region")) if isinstance(data, dict) else None
        token = _REGION.set(region)
        try:
            return handler(data)
        finally:
            _REGION.reset(token)

    @model_validator(mode="wrap")
    @classmethod
    def _keywords_map_to_tags(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """speech.keywords' tags are checked against the sibling `tags` where each is written,
        so a tag staff cannot see is reported at its own line."""
        tags = data.get("tags", DEFAULT_TAGS) if isinstance(data, dict) else DEFAULT_TAGS
        token = _TAGS.set([t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [])
        try:
            return handler(data)
        finally:
            _TAGS.reset(token)

    @field_validator("database")
    @classmethod
    def _usable_database(cls, url: str) -> str:
        """Only the two drivers calltrack ships: any other URL failed later, at the first
        statement (or as a missing module), with a traceback instead of this line."""
        try:
            parsed = make_url(url)
        except ArgumentError:  # not a URL; its password, if it has one, not shown either
            driver, shown = "", re.sub(r":[^:/@]*@", ":***@", url)
        else:  # its password not shown
            driver, shown = parsed.drivername, parsed.render_as_string()
        if driver not in DATABASE_DRIVERS:
            raise ValueError(
                f"{shown!r} is not a database URL calltrack can use; expected"
                " sqlite+aiosqlite:///path.db or postgresql+asyncpg://user:pw@host/db"
            )
        return url

    @field_validator("region")
    @classmethod
    def _known_region(cls, code: str | None) -> str | None:
        if code is not None and _region_code(code) is None:
            raise ValueError(f"unknown region {code!r}; expected an ISO 3166 code like RU, DE, US")
        return _region_code(code)

    @model_validator(mode="after")
    def _numbers_unique(self) -> Settings:
        seen: dict[str, tuple[Any, ...]] = {}
        problems: list[str] = []
        for loc, number in self.number_locations():
            if number in seen:
                first = _dotted(seen[number])
                problems.append(f"{_dotted(loc)}: {number} is already used at {first}")
            else:
                seen[number] = loc
        written = self.leads.tags if "tags" in self.leads.model_fields_set else []
        for i, tag in enumerate(written):  # (the default's lead and sale need not be in use)
            if tag not in self.tags:
                problems.append(f"leads.tags[{i}]: {tag!r} is not one of `tags`, so no call has it")
        for key, values in (
            ("sites", [site.name for site in self.sites]),
            ("users", [user.name for user in self.users]),
            ("tags", self.tags),
        ):
            for i, value in enumerate(values):
                if value in values[:i]:
                    problems.append(f"{key}[{i}]: {value!r} is used twice")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def number_locations(self) -> Iterable[tuple[tuple[Any, ...], str]]:
        """Every tracking, fallback and static number with where it stands in the file."""
        for s, site in enumerate(self.sites):
            for p, pool in enumerate(site.pools):
                for n, number in enumerate(pool.numbers):
                    yield ("sites", s, "pools", p, "numbers", n), number
            if site.fallback:
                # a fallback that is also leased or printed would get another number's calls
                yield ("sites", s, "fallback"), site.fallback
        for i, static in enumerate(self.static):
            yield ("static", i, "number"), static.number

    @property
    def lease_policy(self) -> LeasePolicy:
        """The lease rules this config sets: the daemon leases by them, the pool advice
        replays through them."""
        return LeasePolicy(
            self.freeze_time, self.http.max_leases_per_ip, self.http.max_pool_share_per_ip
        )

    @property
    def probable_window(self) -> float:
        return self.attribution.probable_window or self.freeze_time

    def site(self, name: str) -> Site | None:
        return next((s for s in self.sites if s.name == name), None)

    @property
    def transcript_keep_days(self) -> int:
        return self.speech.keep_days or self.recordings.keep_days

    @property
    def asterisk_recordings_dir(self) -> Path:
        if self.asterisk and self.asterisk.recordings_dir:
            return self.asterisk.recordings_dir
        return self.recordings.dir


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    line: int | None
    column: int | None
    where: str
    message: str

    def __str__(self) -> str:
        position = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return (
            f"{position}: {self.where}: {self.message}"
            if self.where
            else f"{position}: {self.message}"
        )


class ConfigError(Exception):
    """The configuration file cannot be used; `problems` says every reason found."""

    def __init__(self, problems: Sequence[ConfigProblem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _dotted(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _walk(tree: Any, loc: Sequence[Any]) -> Iterator[tuple[Any, tuple[int, int] | None]]:
    """Each part of `loc` as the file spells it, with its line and column (0-based) while the
    parsed YAML has it. A list written for a mapping's one list (`webhooks: [...]` for
    `webhooks.targets`) has no name for that list."""
    node = tree
    for i, part in enumerate(loc):
        if isinstance(node, CommentedSeq) and isinstance(part, str):
            continue
        if isinstance(node, CommentedMap) and part in node:
            yield part, node.lc.key(part)
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            yield part, node.lc.item(part)
        else:
            yield from ((rest, None) for rest in loc[i:])
            return
        node = node[part]


def _as_written(tree: Any, loc: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(part for part, _ in _walk(tree, loc))


def _position(tree: Any, loc: Sequence[Any]) -> tuple[int | None, int | None]:
    """Line and column (1-based) of the deepest node of `loc` that exists in the parsed YAML."""
    found = [at for _, at in _walk(tree, loc) if at is not None]
    return (found[-1][0] + 1, found[-1][1] + 1) if found else (None, None)


def _friendly(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key {error['loc'][-1]!r}"
    if kind == "missing":
        return f"required key {error['loc'][-1]!r} is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _problems_from(error: ValidationError, file: str, tree: Any) -> list[ConfigProblem]:
    problems = []
    for item in error.errors():
        loc = tuple(
            p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-"))
        )
        message = _friendly(item)
        if item["type"] == "extra_forbidden" or item["type"] == "missing":
            where_loc = loc[:-1] if item["type"] == "missing" else loc
        else:
            where_loc = loc
        if item["type"] == "value_error" and _names_its_places(message):
            # cross-field checks name their own places below the checked object:
            # "sites[0].pools[1].numbers[0]: ..." at the top, "pools[1].replaces[0]: ..." in a site
            for part in message.split("; "):
                where, _, text = part.partition(": ")
                full = (*loc, *_parse_dotted(where))
                line, column = _position(tree, full)
                problems.append(
                    ConfigProblem(file, line, column, _dotted(_as_written(tree, full)), text)
                )
            continue
        line, column = _position(tree, where_loc)
        problems.append(ConfigProblem(file, line, column, _dotted(_as_written(tree, loc)), message))
    return problems


def _names_its_places(message: str) -> bool:
    return all(
        re.fullmatch(r"[A-Za-z_]+(\[\d+\])*(\.[A-Za-z_]+(\[\d+\])*)*", part.partition(": ")[0])
        and ": " in part
        for part in message.split("; ")
    )


def _parse_dotted(where: str) -> tuple[Any, ...]:
    parts: list[Any] = []
    for name, index in re.findall(r"([A-Za-z_]+)|\[(\d+)\]", where):
        parts.append(name if name else int(index))
    return tuple(parts)


#: what no setting's text may hold, though YAML's escapes ("\0", "\x01") can spell it: a NUL
#: (PostgreSQL refuses it in text: every call to a static number named with one was refused)
#: and the other control characters but tab and line breaks
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _control_characters(node: Any, file: str, where: str = "") -> Iterator[ConfigProblem]:
    """A problem for each text in the YAML tree holding a control character, with its line."""
    if isinstance(node, dict):
        items: Iterable[tuple[Any, Any, tuple[int, int] | None]] = (
            (k, v, node.lc.value(k) if isinstance(node, CommentedMap) else None)
            for k, v in node.items()
        )
        path = [(f"{where}.{k}" if where else str(k), v, at) for k, v, at in items]
    elif isinstance(node, list):
        path = [
            (f"{where}[{i}]", v, node.lc.item(i) if isinstance(node, CommentedSeq) else None)
            for i, v in enumerate(node)
        ]
    else:
        return
    for name, value, at in path:
        if isinstance(value, str) and (bad := _CONTROL.search(value)):
            line, column = (at[0] + 1, at[1] + 1) if at else (None, None)
            yield ConfigProblem(
                file,
                line,
                column,
                name,
                f"holds the control character #x{ord(bad.group()):04x}; no setting may",
            )
        else:
            yield from _control_characters(value, file, name)


def parse_settings(text: str, file: str = "<config>", base_dir: Path | None = None) -> Settings:
    """Parse and validate YAML text; relative paths are taken from `base_dir`."""
    try:
        tree = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        raise ConfigError(
            [ConfigProblem(file, line, column, "", f"not valid YAML: {exc.problem or exc}")]
        ) from None
    except ReaderError as exc:  # a character YAML does not allow in a file, e.g. a raw NUL
        before = text[: exc.position]
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        problem = f"not valid YAML: character #x{exc.character:04x} is not allowed in a file"
        raise ConfigError([ConfigProblem(file, line, column, "", problem)]) from None
    except YAMLError as exc:  # any other the reader or scanner raises: still no traceback
        raise ConfigError([ConfigProblem(file, None, None, "", f"not valid YAML: {exc}")]) from None
    if tree is None:
        tree = CommentedMap()
    if not isinstance(tree, dict):
        raise ConfigError([ConfigProblem(file, 1, 1, "", "expected a mapping of settings")])
    if control := list(_control_characters(tree, file)):
        raise ConfigError(control)
    try:
        settings = Settings.model_validate(_plain(tree))
    except ValidationError as exc:
        raise ConfigError(_problems_from(exc, file, tree)) from None
    return _rebase(settings, base_dir) if base_dir else settings


def _plain(node: Any) -> Any:
    """ruamel's round-trip types (kept for line numbers) as plain dicts, lists and scalars."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def _rebase(settings: Settings, base_dir: Path) -> Settings:
    """Relative paths in the file mean: next to the file, wherever the daemon was started."""
    recordings = settings.recordings.model_copy(update={"dir": base_dir / settings.recordings.dir})
    update: dict[str, Any] = {"recordings": recordings}
    prefix = "sqlite+aiosqlite:///"
    if settings.database.startswith(prefix):
        path = settings.database.removeprefix(prefix)
        if path and not path.startswith("/") and not path.startswith(":memory:"):
            update["database"] = prefix + str((base_dir / path).resolve())
    if settings.speech.model_dir is not None:
        model_dir = base_dir / settings.speech.model_dir
        update["speech"] = settings.speech.model_copy(update={"model_dir": model_dir})
    if settings.asterisk:
        paths = {
            key: base_dir / value
            for key in ("recordings_dir", "cdr_csv")
            if (value := getattr(settings.asterisk, key)) is not None
        }
        update["asterisk"] = settings.asterisk.model_copy(update=paths)
    return settings.model_copy(update=update)


def load_settings(path: str | Path) -> Settings:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(path), None, None, "", exc.strerror or str(exc))]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem(str(path), None, None, "", "not UTF-8 text")]) from None
    return parse_settings(text, str(path), path.resolve().parent)


def json_schema() -> dict[str, Any]:
    schema = Settings.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "calltrack configuration"
    return schema
