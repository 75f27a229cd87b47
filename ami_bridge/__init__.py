"""Asterisk Manager Interface: finished calls as CallReports, live and from the CDR file."""

from ami_bridge.bridge import AmiBridge, OnCallEnded, OnConnected
from ami_bridge.reconcile import read_cdr_reports, reconcile
from ami_bridge.tracker import CallTracker, parse_stream

__all__ = [
    "AmiBridge",
    "CallTracker",
    "OnCallEnded",
    "OnConnected",
    "parse_stream",
    "read_cdr_reports",
    "reconcile",
]
