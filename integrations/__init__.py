"""Outbound integrations: webhooks to CRMs, conversions to ad platforms, and their exports."""
