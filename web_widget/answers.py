"""What the visitor API works out once instead of per request: which sites an origin may
speak for, and the encoded answer of each visit while what it shows stays the same.

Pings are nine in ten of the visitor API's requests, and a ping of a held number changes
nothing the visitor sees: the answer is the same bytes as last time. Encoding it again (the
numbers list, the display forms, json.dumps) was a fifth of a ping's cost, so the bytes are
kept in the visit's `AnswerMemo`, which lives in the store's session cache: the store gives the
session a new, empty memo whenever its numbers change (VisitStore._show), so a changed visit can
never get an old answer, and the answers leave memory with the sessions they belong to (a
separate table of answers grew with every visit until its own limit).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping

from attribution.phone import display_like
from pbx.settings import Settings, Site
from pbx.storage.visits import Visit


@functools.lru_cache(maxsize=4096)
def _numbers(own: str, written: tuple[str, ...], number: str) -> tuple[dict[str, str], ...]:
    """Entries of the answer's `numbers` for one own number as the site writes it. `own` is
    the own number in E.164, as the server read it (in the config's region), so the widget
    need not guess a country's trunk prefix to find it on the page."""
    return tuple(
        {"replace": shown, "own": own, "number": number, "display": display_like(shown, number)}
        for shown in written
    )


class VisitorAnswers:
    def __init__(self, settings: Settings) -> None:
        self._ping_interval = settings.http.ping_interval
        self._sites: dict[str, dict[str, Site]] = {}
        for site in settings.sites:
            for origin in site.origins:
                self._sites.setdefault(origin, {})[site.name] = site

    def allowed(self, origin: str) -> bool:
        """Whether some site lists this origin (CORS)."""
        return origin.lower() in self._sites

    def sites_for(self, origin: str) -> Mapping[str, Site]:
        """The sites that list this origin, by name; empty for an origin none lists."""
        return self._sites.get(origin.lower(), {})

    def body(self, visit: Visit, written: Mapping[str, tuple[str, ...]]) -> bytes:
        """The visit's answer: one entry per way the site writes each own number shown
        otherwise, a tracking number or the fallback number when the pool had none to give.
        `written` is how the visit's site writes each own number (SitePlan.own)."""
        if visit.memo.body is not None:
            return visit.memo.body
        numbers = [
            entry
            for own, number in visit.shown.items()
            for entry in _numbers(own, written[own], number)
        ]
        body = visit.memo.body = self._encode(visit.visitor_id, visit.session_id, numbers)
        return body

    def own_numbers(self, visitor_id: str | None, session_id: str | None) -> bytes:
        """The answer that leaves the site's own numbers on the page: nothing could be stored
        (the database is away), so no tracking number is promised."""
        return self._encode(visitor_id, session_id, [])

    def _encode(
        self, visitor_id: str | None, session_id: str | None, numbers: list[dict[str, str]]
    ) -> bytes:
        return json.dumps(
            {
                "visitor_id": visitor_id,
                "session_id": session_id,
                "numbers": numbers,
                "ping_interval_s": self._ping_interval,
            }
        ).encode()
