"""Who a call belongs to: the one rule, used when a call rings (routing) and when it is stored.

A static number's calls are its source's; a fallback number's are the site's untracked web
visitors'; a pool number's are the session that held it when the call started; anything else is
unknown. Storage looks the holder up; this module decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from attribution.numbering import NumberKind, StaticSource, TrackedNumber


class Attribution(StrEnum):
    STATIC = "static"
    FALLBACK = "fallback"
    SESSION = "session"
    PROBABLE = "probable"  # stored only: no session held it, one probably did (probable.py)
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SessionFacts:
    """What a session tells about where its visitor came from (stored with each of its calls)."""

    source: str
    medium: str
    campaign: str | None = None
    term: str | None = None
    content: str | None = None
    referrer: str | None = None
    landing_url: str = ""
    visit_number: int = 1
    pages_viewed: int = 1
    first_source: str | None = None
    first_medium: str | None = None
    first_campaign: str | None = None
    click_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Holder:
    """The session that held a number at an instant."""

    session_id: str
    visitor_id: str
    site: str
    pool: str | None
    lease_started_at: float
    facts: SessionFacts


@dataclass(frozen=True)
class CallOwner:
    attribution: Attribution
    number: TrackedNumber | None = None
    holder: Holder | None = None

    @property
    def site(self) -> str | None:
        return self.holder.site if self.holder else (self.number.site if self.number else None)

    @property
    def pool(self) -> str | None:
        return self.holder.pool if self.holder else (self.number.pool if self.number else None)

    @property
    def static(self) -> StaticSource | None:
        return self.number.static if self.number else None

    @property
    def caller_name(self) -> str | None:
        """What staff's phones show while it rings: the source, so they answer knowing it."""
        if self.static is not None:
            return f"[{self.static.source}]"
        if self.holder is not None:
            return f"[{self.holder.facts.medium}] {self.holder.facts.source}"
        return None


def needs_holder(number: TrackedNumber | None) -> bool:
    """Whether attributing a call to `number` needs the session that held it (a lookup)."""
    return number is not None and number.kind is NumberKind.POOL


def attribute(number: TrackedNumber | None, holder: Holder | None) -> CallOwner:
    """Static, then fallback, then the session that held the number, else unknown."""
    if number is None:
        return CallOwner(Attribution.UNKNOWN)
    if number.kind is NumberKind.STATIC:
        return CallOwner(Attribution.STATIC, number)
    if number.kind is NumberKind.FALLBACK:
        return CallOwner(Attribution.FALLBACK, number)
    if holder is None:
        return CallOwner(Attribution.UNKNOWN, number)
    return CallOwner(Attribution.SESSION, number, holder)
