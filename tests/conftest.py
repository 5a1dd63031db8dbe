"""Fixtures of every tier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sfsync_local.chaos.seams import quiet_retries


@pytest.fixture(scope="session", autouse=True)
def retry_backoffs_take_no_time() -> Iterator[None]:
    """botocore's and the Salesforce adapter's retry back-offs are recorded instead of slept.

    The tests run on virtual clocks (the emulator's, and the engine's pinned to it), so the real
    seconds of a back-off change nothing a test checks.  Slept, they were the longest waits of the
    suite: a test whose pushes meet a 5xx storm spent 70 of its 78 seconds asleep.  The retries
    themselves still happen (each attempt is a request the emulator answers), and a test of the
    back-off passes its own ``sleep``.
    """
    with quiet_retries():
        yield
