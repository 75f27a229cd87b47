"""Which pool serves a visit: the first pool, in file order, whose `when` matches."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Protocol, TypeVar

from attribution.traffic import TrafficSource


class Rule(Protocol):
    @property
    def utm_source(self) -> list[str] | None: ...
    @property
    def utm_medium(self) -> list[str] | None: ...
    @property
    def utm_campaign(self) -> list[str] | None: ...
    @property
    def utm_term(self) -> list[str] | None: ...
    @property
    def utm_content(self) -> list[str] | None: ...
    @property
    def referrer_host(self) -> list[str] | None: ...
    @property
    def landing_path(self) -> list[str] | None: ...
    @property
    def click_id(self) -> list[str] | None: ...


class PoolLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def when(self) -> Rule | None: ...


P = TypeVar("P", bound=PoolLike)


def _any(patterns: list[str] | None, value: str | None) -> bool:
    if patterns is None:
        return True
    if value is None:
        return False
    value = value.lower()
    return any(fnmatchcase(value, p.lower()) for p in patterns)


def matches(rule: Rule, visit: TrafficSource) -> bool:
    """Every key the rule names must match (utm_* compare with the source as derived)."""
    return (
        _any(rule.utm_source, visit.source)
        and _any(rule.utm_medium, visit.medium)
        and _any(rule.utm_campaign, visit.campaign)
        and _any(rule.utm_term, visit.term)
        and _any(rule.utm_content, visit.content)
        and _any(rule.referrer_host, visit.referrer_host)
        and _any(rule.landing_path, visit.landing_path)
        and (rule.click_id is None or any(_any(rule.click_id, k) for k in visit.click_ids))
    )


def choose_pool(pools: Sequence[P], visit: TrafficSource) -> P | None:
    """The first pool whose rule matches; None: the visitor keeps the site's own number."""
    for pool in pools:
        if pool.when is None or matches(pool.when, visit):
            return pool
    return None
