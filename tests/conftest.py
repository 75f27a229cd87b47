from __future__ import annotations

import os

import pytest
from hypothesis import settings as hypothesis_settings

hypothesis_settings.register_profile("ci", max_examples=60, deadline=None)
hypothesis_settings.register_profile("dev", max_examples=30, deadline=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of the lab Asterisk `lab`: `make test` runs them in a process of their
    own, beside the rest on two workers (scripts/run-tests, README "Tests")."""
    for item in items:
        if "lab_running" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Stop at once a run on several workers that selected the lab's tests. The lab's SIP and
    FastAGI ports are the machine's, and a worker that took the lab holds its lock until it
    exits (tests/asterisk/lablock.py): a lab test on another worker would wait for it forever."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))  # set in each worker
    if workers < 2 or not any(item.get_closest_marker("lab") for item in session.items):
        return
    problem = (
        "the lab's tests run in one process: `pytest -m lab` on its own, and `-m 'not lab'`"
        " on several workers (make test runs both)"
    )
    session.shouldstop = problem
