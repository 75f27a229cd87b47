"""Attribution models: which visit (or offline source) a call is credited to in reports.

A call is matched once, when it is stored (attribution.owner: the session that held the number,
a static source, a probable session, or nobody). The models then decide whom reports credit:

- `last`: what the call was matched to.
- `first`: the visitor's first visit. A known caller (their earlier call was matched to a
  session) calling a static number, the fallback or a number nobody held is linked to that
  visitor, so `first` credits the visit that first brought them.
- `last_non_direct`: as `last`, but a direct (or internal) visit is credited to the visitor's
  latest earlier visit from a real source within LOOKBACK, as Google Analytics and Metrica do by
  default; with none, the direct visit keeps it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from attribution.numbering import StaticSource
from attribution.reports import Model
from attribution.traffic import DIRECT, NONE, REFERRAL

LOOKBACK = 90 * 86400.0  # how far back last_non_direct looks for a source (GA4's default)


class CreditKind(StrEnum):
    SESSION = "session"  # a session held the number
    STATIC = "static"  # an offline source's number
    VISITOR = "visitor"  # no session held it, but the caller is a known visitor
    PROBABLE = "probable"  # no session held it; the likeliest recent holder
    NONE = "none"  # nobody: reports show it as (unattributed)


@dataclass(frozen=True)
class Touch:
    """A visit, with what reports group by."""

    session_id: str
    started_at: float
    site: str
    source: str
    medium: str
    campaign: str | None = None
    term: str | None = None
    content: str | None = None
    landing: str = "/"  # path
    referrer: str | None = None  # host

    def is_direct(self, internal_hosts: Collection[str] = ()) -> bool:
        """Typed in or bookmarked, or an untagged referral from the business's own sites. A
        link there tagged with UTM or a click id names a source (as in GA4 and Metrica, tags
        win over the referrer): its source is then not the referring host."""
        if self.source == DIRECT and self.medium == NONE:
            return True
        return (
            self.referrer is not None
            and self.referrer in internal_hosts
            and (self.source, self.medium) == (self.referrer, REFERRAL)
        )


@dataclass(frozen=True)
class Credit:
    kind: CreditKind
    touch: Touch | None = None
    static: StaticSource | None = None


NOBODY = Credit(CreditKind.NONE)


@dataclass(frozen=True)
class CallHistory:
    """What the models need of one call: when, what it was matched to, and the visits of the
    visitor it was matched or linked to (any order; those after the call are ignored)."""

    at: float
    matched: Credit
    visits: Sequence[Touch] = ()


def credit(call: CallHistory, model: Model, internal_hosts: Collection[str] = ()) -> Credit:
    """Whom `model` credits the call to."""
    if model is Model.FIRST:
        return _first(call)
    if model is Model.LAST_NON_DIRECT:
        return _last_non_direct(call, internal_hosts)
    return call.matched


def credits(call: CallHistory, internal_hosts: Collection[str] = ()) -> dict[Model, Credit]:
    return {model: credit(call, model, internal_hosts) for model in Model}


def _before(call: CallHistory, until: float) -> list[Touch]:
    return sorted(
        (t for t in call.visits if t.started_at <= until),
        key=lambda t: (t.started_at, t.session_id),
    )


def _first(call: CallHistory) -> Credit:
    earlier = _before(call, call.at)
    if not earlier:
        return call.matched
    kind = call.matched.kind
    if kind in (CreditKind.STATIC, CreditKind.NONE):
        kind = CreditKind.VISITOR  # a known caller: linked, not matched
    return Credit(kind, earlier[0])


def _last_non_direct(call: CallHistory, internal_hosts: Collection[str]) -> Credit:
    touch = call.matched.touch
    if touch is None or not touch.is_direct(internal_hosts):
        return call.matched
    earlier = [
        t
        for t in _before(call, touch.started_at)
        if t.session_id != touch.session_id
        and t.started_at >= call.at - LOOKBACK
        and not t.is_direct(internal_hosts)
    ]
    return replace(call.matched, touch=earlier[-1]) if earlier else call.matched
