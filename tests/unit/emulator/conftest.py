"""Shared fixtures of the emulator unit tests: a held clock and a fresh org on it."""

from __future__ import annotations

import datetime as dt

import pytest
from sfsync_emulator.catalogue import default_schema
from sfsync_emulator.clock import Clock
from sfsync_emulator.schema import datetime_to_ms
from sfsync_emulator.store import Org, OrgConfig

START = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
START_MS = datetime_to_ms(START)


@pytest.fixture
def clock() -> Clock:
    return Clock(START_MS)


@pytest.fixture
def org(clock: Clock) -> Org:
    return Org(default_schema(), clock, OrgConfig())
