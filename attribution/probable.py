"""Probable matches: a call to a pool number that nobody held when it rang.

The visitor most likely wrote the number down or kept the page open past the freeze time, so the
sessions whose lease of that number ended shortly before the call are candidates, the latest
release first. Such a call is never an exact match: reports count it apart unless asked.

Likelihood: a candidate's recency r = 1 − gap / window (gap: from its release to the call) says
how plausible it is that the caller is anyone of them at all (the best r), and how the candidates
share that (in proportion to r): likelihood = max(r) · r / Σr. One candidate released a minute
before a call with a 15-minute window is 0.93; two released at once share it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from attribution.leasing import LeaseSpan

MAX_CANDIDATES = 5


@dataclass(frozen=True)
class Candidate:
    session_id: str
    released_at: float
    likelihood: float


def candidates(spans: Iterable[LeaseSpan], at: float, window: float) -> list[Candidate]:
    """Sessions whose lease ended within `window` before `at`, latest release first (one entry
    per session: its latest release)."""
    released: dict[str, float] = {}
    for span in spans:
        if at - window <= span.held_until < at:
            released[span.session_id] = max(
                released.get(span.session_id, span.held_until), span.held_until
            )
    ranked = sorted(released.items(), key=lambda item: (-item[1], item[0]))[:MAX_CANDIDATES]
    recency = [max(1.0 - (at - t) / window, 1e-6) for _, t in ranked]
    if not recency:
        return []
    scale = max(recency) / sum(recency)
    return [
        Candidate(session_id, t, round(r * scale, 4))
        for (session_id, t), r in zip(ranked, recency, strict=True)
    ]
