"""Calls as conversions for the ad platforms' upload files: what each format module is given
(`ConversionCall`), what it gives back (`Export`: the file's lines and the calls left out, by
reason), and which instants a range of local days covers.

The formats themselves are one small module each (google_ads, metrica), so that a platform
changing its upload (Google moving imports to its Data Manager API) touches one module only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo


@dataclass(frozen=True)
class ConversionCall:
    """One stored call, with what the uploads need of it and of the session it came from."""

    id: int
    started_at: float  # Unix time
    did: str  # the number dialled (E.164): the tracking number the page showed
    answered: bool
    ring_seconds: float
    talk_seconds: float
    first_time: bool  # the caller's first call
    static: bool  # to a static (offline) number, not a visit's
    lead: bool  # by the reports' lead rule (`leads:` in the config)
    sale_cents: int  # staff's sale and the CRM's sales, 0 for none
    click_ids: Mapping[str, str] = field(default_factory=dict)  # of the visit: gclid, yclid...
    ym_client_id: str | None = None
    landing_url: str | None = None
    tags: tuple[str, ...] = ()


@dataclass
class Export:
    """An upload file: `lines` are its rows, preamble and header included."""

    lines: list[list[str]]
    rows: int = 0
    left_out: Counter[str] = field(default_factory=Counter)  # why -> how many calls

    def summary(self) -> str:
        """For people: "3 rows; left out: 2 calls without a Google click id (...)"."""
        rows = f"{self.rows} row{'' if self.rows == 1 else 's'}"
        if not self.left_out:
            return f"{rows}; no calls left out"
        why = ", ".join(f"{n} call{'' if n == 1 else 's'} {r}" for r, n in self.left_out.items())
        return f"{rows}; left out: {why}"


def day_span(since: date, until: date, zone: tzinfo) -> tuple[float, float]:
    """The instants from the start of `since` to the end of `until`, local days in `zone`."""
    start = datetime.combine(since, time(), zone)
    end = datetime.combine(until + timedelta(days=1), time(), zone)
    return start.timestamp(), end.timestamp()
