"""Fixtures for the functional tier: the real emulator over HTTPS and the real local stack
(template.yaml deployed into moto, the real handlers run in-process).

The engine clock (leases, the pause) is pinned to the emulator's virtual clock, so a test moves
time for both sides with ``emulator.clock.advance(...)``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sfsync import aws as sfsync_aws
from sfsync import clock as sfsync_clock
from sfsync import wiring

EMULATOR_START = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
PAUSE_SECONDS = 300


class EmulatorTime:
    """The engine clock reading the emulator's virtual clock."""

    def __init__(self, emulator_clock: Any) -> None:
        self._clock = emulator_clock

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock.now_ms() / 1000, tz=dt.UTC)


@pytest.fixture
def emulator() -> Iterator[Any]:
    from sfsync_emulator.clock import Clock
    from sfsync_emulator.emulator import Emulator

    emu = Emulator.start(seed=7, records=300, clock=Clock(int(EMULATOR_START.timestamp() * 1000), running=False))
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def salesforce_secret(emulator: Any) -> dict[str, Any]:
    assert emulator.ca_path, "the emulator serves HTTPS with its own CA"
    return {
        "auth_flow": "client_credentials",
        "token_url": emulator.token_url,
        "client_id": emulator.credentials.client_id,
        "client_secret": emulator.credentials.client_secret,
        "api_version": "59.0",
        "ca_bundle": Path(emulator.ca_path).read_text(),
    }


@pytest.fixture
def fresh_engine_caches() -> Iterator[None]:
    """Per-process caches (boto3 clients, Salesforce clients, cached secrets) must not leak between tests."""
    from aws_lambda_powertools.utilities import parameters

    def reset() -> None:
        sfsync_aws.reset_clients()
        wiring._clients.clear()
        parameters.clear_caches()

    reset()
    yield
    reset()


@pytest.fixture
def engine_time(emulator: Any) -> Iterator[EmulatorTime]:
    with sfsync_clock.use_clock(EmulatorTime(emulator.clock)) as clock:
        yield clock  # type: ignore[misc]


@pytest.fixture
def salesforce_time(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
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


@pytest.fixture
def stack(
    salesforce_secret: dict[str, Any], fresh_engine_caches: None, engine_time: EmulatorTime, salesforce_time: None
) -> Iterator[Any]:
    from sfsync_local.stack import LocalStack

    deployed = LocalStack.deploy(
        parameters={"SyncObjects": "Account", "PauseSeconds": str(PAUSE_SECONDS)},
        salesforce_secret=salesforce_secret,
    )
    try:
        yield deployed
    finally:
        deployed.close()
