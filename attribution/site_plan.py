"""Which numbers a visitor sees: one tracking number per own number of the site.

A site may show several own numbers (sales and service). Each is stood in for by the first
matching pool that `replaces` it, and calls to that pool's numbers go to that pool's line; own
numbers served by the same pool share its one number. An own number no matching pool replaces
stays as it is. When the pool has no number to give, the site's fallback number is shown instead,
but only where it rings the same line: a fallback never sends a service call to sales.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from attribution.leasing import REFUSED, Tracking
from attribution.numbering import own_numbers, pool_line, replaced_by, site_line
from attribution.rules import Rule, choose_pool
from attribution.traffic import TrafficSource

if TYPE_CHECKING:
    from pbx.settings import Settings, Site


@dataclass(frozen=True)
class PoolPlan:
    name: str
    line: str
    replaces: tuple[str, ...]  # own numbers (E.164)
    when: Rule | None


@dataclass(frozen=True)
class Slot:
    """A pool chosen for a visit and the own numbers its number stands in for."""

    pool: str
    replaces: tuple[str, ...]


@dataclass(frozen=True)
class SlotOutcome:
    pool: str
    replaces: tuple[str, ...]
    tracking: Tracking
    number: str | None  # the leased number when tracked


@dataclass(frozen=True)
class SitePlan:
    name: str
    own: Mapping[str, tuple[str, ...]]  # own number (E.164) -> as the site writes it
    pools: tuple[PoolPlan, ...]
    fallback: str | None
    fallback_line: str

    @classmethod
    def from_settings(cls, settings: Settings, site: Site) -> SitePlan:
        own = own_numbers(site.replace, settings.region)
        return cls(
            site.name,
            own,
            tuple(
                PoolPlan(
                    pool.name,
                    pool_line(settings, site, pool),
                    tuple(replaced_by(pool, list(own), settings.region)),
                    pool.when,
                )
                for pool in site.pools
            ),
            site.fallback,
            site_line(settings, site),
        )

    def shows_fallback(self, pool: PoolPlan) -> bool:
        """Whether a visit this pool gives no number sees the fallback: only where the
        fallback rings the pool's line (a fallback never sends a service call to sales)."""
        return bool(self.fallback) and pool.line == self.fallback_line

    def slots(self, arrival: TrafficSource) -> list[Slot]:
        """The pools a visit leases from, in the order of the site's own numbers."""
        chosen: dict[str, list[str]] = {}
        for own in self.own:
            pool = choose_pool([p for p in self.pools if own in p.replaces], arrival)
            if pool is not None:
                chosen.setdefault(pool.name, []).append(own)
        return [Slot(pool, tuple(own)) for pool, own in chosen.items()]

    def shown(self, outcomes: Sequence[SlotOutcome]) -> dict[str, str]:
        """Own number (E.164) -> the number shown in its place; own numbers left out stay."""
        pools = {p.name: p for p in self.pools}
        out: dict[str, str] = {}
        for outcome in outcomes:
            pool = pools.get(outcome.pool)
            if pool is None:
                continue  # the pool left the config; its session keeps the own numbers
            if outcome.tracking is Tracking.TRACKED and outcome.number:
                number = outcome.number
            elif outcome.tracking in REFUSED and self.fallback and self.shows_fallback(pool):
                number = self.fallback
            else:
                continue
            for own in outcome.replaces:
                if own in self.own:  # a session from before the site dropped an own number
                    out[own] = number
        return out
