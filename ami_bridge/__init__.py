"""Asterisk Manager Interface: finished calls as CallReports, live and from the CDR file."""

from ami_bridge.bridge import AmiBridge, OnConnected
from ami_bridge.delivery import ReportDelivery, StoreReport
from ami_bridge.reconcile import read_cdr_reports, reconcile_pass
from ami_bridge.tracker import CallTracker, parse_stream

__all__ = [
    "AmiBridge",
    "CallTracker",
    "OnConnected",
    "ReportDelivery",
    "StoreReport",
    "parse_stream",
    "read_cdr_reports",
    "reconcile_pass",
]
