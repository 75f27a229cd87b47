"""What calltrack tells other systems about, and under which names (the webhook contract).

An event is written to the outbox in the transaction that makes it true (the call stored, its
review changed, a sale recorded), so a crash can delay a delivery but never lose one.
"""

from __future__ import annotations

from enum import StrEnum


class Event(StrEnum):
    CALL_COMPLETED = "call.completed"  # a call was stored, after its hangup
    CALL_UPDATED = "call.updated"  # staff or the CRM changed its tags, score, notes or sale
    SALE_CREATED = "sale.created"  # the CRM reported a sale credited to a call


class Format(StrEnum):
    """How a webhook's body is shaped for its receiver."""

    JSON = "json"  # calltrack's own: the call as the staff API shows it, signed
    BITRIX24 = "bitrix24"  # crm.lead.add to a Bitrix24 incoming-webhook URL


#: the outbox target of the GA4 Measurement Protocol (no webhook may take this name)
GA4_TARGET = "ga4"
