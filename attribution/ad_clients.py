"""The ad platforms' ids of a browser, as the widget reads them from their cookies.

Google Analytics' client id (the `_ga` cookie's `GA1.1.<random>.<seconds>` without its
`GA1.1.` prefix) and Yandex Metrica's ClientID (`_ym_uid`, digits) let a call be sent to those
platforms as the conversion of the visit that led to it. A page's script may put anything in
the request, so only the shapes the platforms write are kept; anything else is dropped (the
visit itself still counts), never stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: sessions.ga_client_id is 64 wide, sessions.ym_client_id 32
_GA_CLIENT_ID = re.compile(r"[0-9]{1,20}\.[0-9]{1,20}")
_YM_CLIENT_ID = re.compile(r"[0-9]{1,32}")


def _kept(value: object, shape: re.Pattern[str]) -> str | None:
    return value if isinstance(value, str) and shape.fullmatch(value) else None


@dataclass(frozen=True)
class AdClientIds:
    """The ids a session is known by on the ad platforms; the names are the session's columns."""

    ga_client_id: str | None = None
    ym_client_id: str | None = None

    @classmethod
    def read(cls, ga_client_id: object, ym_client_id: object) -> AdClientIds:
        """The ids as a request gives them, each kept only if it has its platform's shape."""
        return cls(_kept(ga_client_id, _GA_CLIENT_ID), _kept(ym_client_id, _YM_CLIENT_ID))

    def columns(self) -> dict[str, str | None]:
        # spelled out: dataclasses.asdict deep-copies, a twentieth of a new visit's cost
        return {"ga_client_id": self.ga_client_id, "ym_client_id": self.ym_client_id}

    def missing_from(self, known: AdClientIds) -> dict[str, str]:
        """The ids this has that `known` lacks: an analytics script that set its cookie after
        the session's first page fills them in on a later one (a known id is never replaced)."""
        have = known.columns()
        return {k: v for k, v in self.columns().items() if v is not None and have[k] is None}
