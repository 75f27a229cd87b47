"""The seam between what is sent (a composer: the body for a target's format) and how it is
sent (the worker: claims from the outbox, signs, posts, retries).

The worker claims a `PendingEvent`, asks the composer for the request once (its first attempt)
and keeps it in the outbox row, so every retry sends the same bytes under the same event id; a
receiver that got an earlier attempt sees a duplicate it can drop, never a changed event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from integrations.events import Event


@dataclass(frozen=True)
class Outgoing:
    """One HTTP POST as the receiver will get it (before the worker's signature headers).
    The body and headers are kept for every retry; `url` and `secret` are the target's at
    compose time, and the worker takes them from the config again at each attempt
    (`Composer.destination`): a target moved or re-keyed since is honoured by its retries, and
    neither a URL (GA4's and Bitrix24's carry their keys) nor a secret is ever stored."""

    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    #: signs the delivery (X-Calltrack-Signature) when set: webhooks, not GA4
    secret: str | None = None


@dataclass(frozen=True)
class Lookup:
    """A request that finds what an earlier attempt of an event made, for a receiver that does
    not drop a duplicate: Bitrix24's crm.lead.add makes a lead per POST, so a retry after a lost
    answer would make a second one. Sent (to the target's URL of now) before every attempt after
    the first that may have reached the receiver."""

    url: str
    body: bytes
    #: what the answer says the earlier attempt made ("lead 77"); None: nothing, send it
    made: Callable[[bytes], str | None]


@dataclass(frozen=True)
class PendingEvent:
    """An outbox row the worker claimed."""

    id: int
    event_id: str
    target: str
    event: Event
    call_id: int
    sale_reference: str | None
    created_at: float
    attempts: int


@dataclass(frozen=True)
class Destination:
    """Where a target's deliveries go now, by the config: its URL, the secret that signs them
    (None: unsigned, e.g. GA4) and how long an attempt may take."""

    url: str
    secret: str | None
    timeout: float


class Skip(Exception):
    """The event needs no delivery (e.g. GA4 for a visit without a GA client id); the message
    says why, on the admin page."""


class Composer(Protocol):
    async def compose(self, event: PendingEvent) -> Outgoing:
        """The request for `event`'s target; raises Skip when there is nothing to send."""
        ...

    def destination(self, target: str) -> Destination | None:
        """Where `target`'s deliveries go now; None: the config has no such target now."""
        ...

    def lookup(self, event: PendingEvent) -> Lookup | None:
        """How to find what an earlier attempt of `event` made at its target; None for a
        target that drops duplicates itself (by the event id)."""
        ...

    def targets(self) -> frozenset[str]:
        """The targets this daemon's config has: it claims only their events (a daemon with
        another config, e.g. in a rolling update, leaves the rest to the daemons that know)."""
        ...
