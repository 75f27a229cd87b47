"""Every number calltrack answers, what it is and where its calls go: built once from the config.

One table serves the dialplan generator (what Asterisk falls back to), the FastAGI router (where
a ringing call goes) and attribution (whose call it is), so the three can never disagree about a
number's kind or real line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from attribution.phone import to_e164

if TYPE_CHECKING:
    from pbx.settings import Pool, Settings, Site


class NumberKind(StrEnum):
    POOL = "pool"  # leased to web sessions
    FALLBACK = "fallback"  # shown to web visitors a pool could not serve
    STATIC = "static"  # printed on one offline source (a billboard, a flyer)


@dataclass(frozen=True)
class StaticSource:
    """The source a static number stands for: every call to it is that source's."""

    source: str
    medium: str
    campaign: str | None


@dataclass(frozen=True)
class TrackedNumber:
    """One number the dialplan answers: its kind, its place in the config and its real line."""

    e164: str
    kind: NumberKind
    real_line: str
    origin: str  # where it stands in the config, for people reading the dialplan
    site: str | None = None
    pool: str | None = None
    static: StaticSource | None = None


def site_line(settings: Settings, site: Site) -> str:
    """The real line of a site's calls (its fallback's too): the site's, else the default."""
    return site.forward_to or settings.forward_to


def pool_line(settings: Settings, site: Site, pool: Pool) -> str:
    """The real line a pool's numbers forward to: the pool's, else the site's line."""
    return pool.forward_to or site_line(settings, site)


def own_numbers(replace: Sequence[str], region: str | None) -> dict[str, tuple[str, ...]]:
    """A site's own numbers (its `replace`) in E.164, each with the ways the site writes it;
    numbers written without a country code are read in `region`, as the config was."""
    written: dict[str, tuple[str, ...]] = {}
    for text in replace:
        own = to_e164(text, region, bare_e164=False)
        written[own] = (*written.get(own, ()), text)
    return written


def replaced_by(pool: Pool, own: Sequence[str], region: str | None) -> list[str]:
    """The own numbers (E.164) a pool's numbers stand in for: `replaces`, or all of them."""
    if pool.replaces is None:
        return list(own)
    wanted = {to_e164(text, region, bare_e164=False) for text in pool.replaces}
    return [number for number in own if number in wanted]


class Numbering:
    """The numbers of a config by E.164 (the settings refuse a number used twice)."""

    def __init__(self, numbers: Sequence[TrackedNumber], default_line: str) -> None:
        self._numbers = {number.e164: number for number in numbers}
        self.default_line = default_line

    @classmethod
    def from_settings(cls, settings: Settings) -> Numbering:
        found: list[TrackedNumber] = []
        for site in settings.sites:
            for pool in site.pools:
                line = pool_line(settings, site, pool)
                origin = f"site {site.name}, pool {pool.name}"
                found += (
                    TrackedNumber(n, NumberKind.POOL, line, origin, site.name, pool.name)
                    for n in pool.numbers
                )
            if site.fallback:
                found.append(
                    TrackedNumber(
                        site.fallback,
                        NumberKind.FALLBACK,
                        site_line(settings, site),
                        f"site {site.name}, fallback",
                        site.name,
                    )
                )
        for static in settings.static:
            found.append(
                TrackedNumber(
                    static.number,
                    NumberKind.STATIC,
                    static.forward_to or settings.forward_to,
                    f"static, source {static.source}",
                    static=StaticSource(static.source, static.medium, static.campaign),
                )
            )
        return cls(found, settings.forward_to)

    def get(self, e164: str) -> TrackedNumber | None:
        return self._numbers.get(e164)

    def real_line(self, e164: str) -> str:
        """Where a call to `e164` goes when nobody decides otherwise."""
        number = self._numbers.get(e164)
        return number.real_line if number else self.default_line

    def __iter__(self) -> Iterator[TrackedNumber]:
        return iter(self._numbers.values())
