from __future__ import annotations

import os
import sys

import pytest
from hypothesis import settings as hypothesis_settings

hypothesis_settings.register_profile("ci", max_examples=60, deadline=None)
hypothesis_settings.register_profile("dev", max_examples=30, deadline=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's, which reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On two pytest-xdist workers (`pytest -n 2 --dist loadgroup`, README "Tests"), every test
    of the lab Asterisk goes to one of them. The lab's SIP and FastAGI ports are the machine's, and
    a worker that took the lab holds its lock until it exits (tests/asterisk/lablock.py): a lab
    test on the other worker would wait for that forever."""
    for item in items:
        if "lab_running" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("lab"))
            item.add_marker(pytest.mark.lab)  # make test runs these on their own, after the rest


@pytest.hookimpl(trylast=True)  # after pytest-xdist's, which names the groups
def pytest_collection_finish(session: pytest.Session) -> None:
    """Stop at once, rather than wait forever on the lab's lock, where pytest-xdist did not
    group the lab's tests (a pytest it cannot group on: see pyproject.toml)."""
    if not session.config.getoption("loadgroup", default=False):
        return
    ungrouped = [
        item.nodeid
        for item in session.items
        if item.get_closest_marker("lab") and "@" not in item.nodeid
    ]
    if ungrouped:
        problem = (
            f"pytest-xdist did not put the lab's tests on one worker ({ungrouped[0]} and"
            f" {len(ungrouped) - 1} more have no group): pytest {pytest.__version__} is one"
            " its --dist loadgroup cannot group on"
        )
        print(problem, file=sys.stderr)  # a worker's UsageError reaches the run as a traceback
        raise pytest.UsageError(problem)
