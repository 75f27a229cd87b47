"""Prometheus metrics, one registry per app (no process-wide globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.visits = Counter(
            "calltrack_visits",
            "Visits started, by site and tracking outcome",
            ["site", "tracking"],
            registry=self.registry,
        )
        self.pings = Counter("calltrack_pings", "Session pings answered", registry=self.registry)
        self.crawler_visits = Counter(
            "calltrack_crawler_visits",
            "Page loads of search engines' and link previews' crawlers (by their User-Agent),"
            " answered with the site's own numbers and not stored",
            ["site"],
            registry=self.registry,
        )
        self.visits_unstored = Counter(
            "calltrack_visits_unstored",
            "Visits and pings answered with the site's own numbers because the database could"
            " not take them (down or full)",
            registry=self.registry,
        )
        self.page_views_not_kept = Counter(
            "calltrack_page_views_not_kept",
            "Page views counted in their session but not kept: past the session's"
            " visits.max_page_views (session_limit), or past http.max_page_views_per_ip of the"
            " network the session started from (network_budget)",
            ["reason"],
            registry=self.registry,
        )
        self.calls = Counter(
            "calltrack_calls",
            "Calls stored, by status and attribution",
            ["status", "attribution"],
            registry=self.registry,
        )
        self.call_reports_rejected = Counter(
            "calltrack_call_reports_rejected",
            "Call reports the database refused for good: logged with their Linkedid and skipped"
            " (the call is still in Asterisk's CDR)",
            registry=self.registry,
        )
        self.call_reports_duplicate = Counter(
            "calltrack_call_reports_duplicate",
            "Call reports of calls already stored, skipped (the live link and the CDR both"
            " report a call; reconciliation re-reads an hour before a gap)",
            registry=self.registry,
        )
        self.call_store_latency = Histogram(
            "calltrack_call_store_seconds",
            "From the call's hangup to its record being stored",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
            registry=self.registry,
        )
        self.recordings = Counter(
            "calltrack_recordings",
            "Recordings converted for browsers, failed to convert, empty (dropped), deleted by"
            " retention",
            ["outcome"],
            registry=self.registry,
        )
        self.speech = Counter(
            "calltrack_speech_calls",
            "Recorded calls the speech worker analysed, or failed to (unreadable audio)",
            ["outcome"],
            registry=self.registry,
        )
        self.speech_backlog = Gauge(
            "calltrack_speech_backlog",
            "Converted recordings waiting for speech analysis",
            registry=self.registry,
        )
        self.deliveries = Counter(
            "calltrack_webhook_deliveries",
            "Webhook and GA4 delivery attempts, by target and outcome (delivered, retried,"
            " failed: given up; skipped: nothing to send)",
            ["target", "outcome"],
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "calltrack_webhook_delivery_seconds",
            "From an event's commit (a call stored, a sale recorded) to its delivery",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60, 600, 3600, 86400),
            registry=self.registry,
        )
        self.http_errors = Counter(
            "calltrack_http_errors",
            "HTTP answers with an error status",
            ["status"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
