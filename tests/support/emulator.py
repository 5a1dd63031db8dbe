"""The engine wired to a running emulator: its virtual clock, its secret, fresh per-process caches."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sfsync import aws as sfsync_aws
from sfsync import wiring
from sfsync_local.runner import emulator_secret


class EmulatorTime:
    """The engine clock reading the emulator's virtual clock."""

    def __init__(self, emulator_clock: Any) -> None:
        self._clock = emulator_clock

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock.now_ms() / 1000, tz=dt.UTC)


def salesforce_secret(emulator: Any) -> dict[str, Any]:
    """The engine's Salesforce secret (client credentials over the emulator's HTTPS, its CA bundle)."""
    assert emulator.ca_path, "the emulator serves HTTPS with its own CA"
    return emulator_secret(emulator)


def reset_engine_caches() -> None:
    """Per-process caches (boto3 clients, Salesforce clients, cached secrets) must not leak between tests."""
    from aws_lambda_powertools.utilities import parameters

    sfsync_aws.reset_clients()
    wiring._clients.clear()
    parameters.clear_caches()


def pin_salesforce_time(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure the engine reads Salesforce's "now" from the emulator's virtual clock.

    The engine takes it from the ``Date`` header of the latest response.  If the emulator dates
    its responses with the real clock instead of its virtual one (seen 2026-11-25), the adapter's
    ``server_time`` is pinned to the virtual clock for the test; once the emulator's header agrees
    with its clock, the real header path is used unchanged.
    """
    from email.utils import parsedate_to_datetime

    from sfsync.salesforce.client import SalesforceClient

    response = emulator.session().get(f"{emulator.instance_url}/services/data/", timeout=10)
    header = response.headers.get("Date")
    virtual = EmulatorTime(emulator.clock)
    if header is None or abs((parsedate_to_datetime(header) - virtual.now()).total_seconds()) > 2:
        monkeypatch.setattr(SalesforceClient, "server_time", lambda self: virtual.now())
