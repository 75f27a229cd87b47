"""When a page load continues a visit and when it starts a new one: the one session rule.

The widget sends what it has (its session id, the page's URL and referrer) and the server decides
with this rule, so the widget, the lease store and the reports cannot disagree about a session.
A visit ends after 30 minutes without activity, as in Google Analytics, or when the visitor
arrives again through another campaign (a new ad click is a new session, so the number it gets
is attributed to that click).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from attribution.traffic import NONE, TrafficSource

SESSION_IDLE_TIMEOUT = 30 * 60.0

#: a digest of what makes a campaign: the process keeps one per cached session, and the values
#: are the visitor's to choose (up to 512 characters each, several click ids)
CampaignKey = bytes


def is_campaign(source: TrafficSource) -> bool:
    """A tagged or clicked arrival: a new one of these starts a new session."""
    return source.medium not in (NONE, "organic", "referral") or bool(source.click_ids)


def campaign_key(source: TrafficSource) -> CampaignKey:
    """What makes two campaign arrivals the same campaign, as 16 bytes (BLAKE2b): equal for the
    same source, medium, campaign and click ids, whatever their length."""
    parts = (
        source.source,
        source.medium,
        source.campaign or "",
        *sorted(source.click_ids.values()),
    )
    return hashlib.blake2b(json.dumps(parts).encode(), digest_size=16).digest()


@dataclass(frozen=True)
class SessionRule:
    idle_timeout: float = SESSION_IDLE_TIMEOUT

    def is_live(self, last_seen: float, now: float) -> bool:
        return now - last_seen <= self.idle_timeout

    def continues(
        self,
        last_seen: float,
        now: float,
        session_campaign: CampaignKey,
        arrival: TrafficSource | None = None,
    ) -> bool:
        """Whether activity at `now` belongs to the session last seen at `last_seen`.

        `arrival`: the source of a page load that may start a visit (None for a ping).
        """
        if not self.is_live(last_seen, now):
            return False
        return arrival is None or not (
            is_campaign(arrival) and campaign_key(arrival) != session_campaign
        )
