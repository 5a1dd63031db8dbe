"""Fixtures for the functional tier: the real emulator over HTTPS and the real local stack
(template.yaml deployed into moto, the real handlers run in-process).

The engine clock (leases, the pause) is pinned to the emulator's virtual clock, so a test moves
time for both sides with ``emulator.clock.advance(...)``.  A test module wanting another org
overrides ``emulator_seed`` / ``emulator_records``; one wanting another stack deploys it with
``deploy_stack``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sfsync.core import clock as sfsync_clock

from tests.support.emulator import EmulatorTime, pin_salesforce_time, reset_engine_caches
from tests.support.emulator import salesforce_secret as secret_for

EMULATOR_START = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
PAUSE_SECONDS = 300

DeployStack = Callable[[dict[str, str]], Any]


@pytest.fixture
def emulator_seed() -> int:
    return 7


@pytest.fixture
def emulator_records() -> int:
    return 300


@pytest.fixture
def emulator(emulator_seed: int, emulator_records: int) -> Iterator[Any]:
    from sfsync_emulator.clock import Clock
    from sfsync_emulator.emulator import Emulator

    emu = Emulator.start(
        seed=emulator_seed,
        records=emulator_records,
        clock=Clock(int(EMULATOR_START.timestamp() * 1000), running=False),
    )
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def salesforce_secret(emulator: Any) -> dict[str, Any]:
    return secret_for(emulator)


@pytest.fixture
def fresh_engine_caches() -> Iterator[None]:
    """Per-process caches (boto3 clients, Salesforce clients, cached secrets) must not leak between tests."""
    reset_engine_caches()
    yield
    reset_engine_caches()


@pytest.fixture
def engine_time(emulator: Any) -> Iterator[EmulatorTime]:
    with sfsync_clock.use_clock(EmulatorTime(emulator.clock)) as clock:
        yield clock  # type: ignore[misc]


@pytest.fixture
def salesforce_time(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine reads Salesforce's "now" from the emulator's virtual clock (see :func:`pin_salesforce_time`)."""
    pin_salesforce_time(emulator, monkeypatch)


@pytest.fixture
def deploy_stack(
    salesforce_secret: dict[str, Any], fresh_engine_caches: None, engine_time: EmulatorTime, salesforce_time: None
) -> Iterator[DeployStack]:
    """Deploy the local stack with the given template parameters (every stack deployed is closed afterwards)."""
    from sfsync_local.stack import LocalStack

    stacks: list[Any] = []

    def deploy(parameters: dict[str, str]) -> Any:
        deployed = LocalStack.deploy(parameters=parameters, salesforce_secret=salesforce_secret)
        stacks.append(deployed)
        return deployed

    try:
        yield deploy
    finally:
        for deployed in stacks:
            deployed.close()


@pytest.fixture
def stack(deploy_stack: DeployStack) -> Any:
    return deploy_stack({"SyncObjects": "Account", "PauseSeconds": str(PAUSE_SECONDS)})
