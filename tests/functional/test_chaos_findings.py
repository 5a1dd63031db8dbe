"""Engine defects the chaos runs (``tests/chaos``, ``bench/chaos.py``) found, each pinned by a test on
the local stack (the real template, handlers and state machine) and the emulator over HTTPS.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sfsync.core import clock as sfsync_clock
from sfsync.dispatch.copies import FAILED_COPY_RETRY_SECONDS, PLAN_CHECK_SECONDS

from tests.functional.conftest import DeployStack
from tests.support.emulator import EmulatorTime, reset_engine_caches
from tests.support.fullcopy import copy_executions, held_waits, wait_for_copies
from tests.support.metrics import values_of

pytestmark = pytest.mark.functional

PAUSE = 300


@pytest.fixture
def emulator_records() -> int:
    return 120


@pytest.fixture
def stack(deploy_stack: DeployStack) -> Any:
    return deploy_stack({"SyncObjects": "Account", "PauseSeconds": str(PAUSE)})


def tick(stack: Any, emulator: Any) -> dict[str, Any]:
    """One dispatcher tick; the full copies it starts run to their end (their waits move the clock)."""
    with held_waits(emulator):
        result: dict[str, Any] = stack.fire_schedule()
        wait_for_copies(stack, result)
    stack.drain()
    return result


def test_given_a_resync_whose_plan_failed_when_its_retry_copied_the_object_then_the_resync_is_over(
    stack: Any, emulator: Any, salesforce_secret: dict[str, Any]
) -> None:
    """A re-sync whose plan failed (here: a wrong secret) had its failure recorded on a fresh copy document;
    the retry planned that document anew under its own name ("dispatcher (retry)"), so the re-sync never
    counted as taken up: every tick after the retry's success started the re-sync's execution again, found
    it failed, marked the copy failed and copied the object again - forever, with no incremental cycle
    and no freshness for the object."""
    tick(stack, emulator)  # the first copy
    stack.put_salesforce_secret({**salesforce_secret, "client_secret": "wrong"})
    reset_engine_caches()
    stack.invoke("DispatcherFunction", {"resync": ["Account"], "requested_by": "ops"})
    stack.drain()
    [failed] = [
        e
        for e in stack.boto3_client("stepfunctions").list_executions(stateMachineArn=stack.state_machine_arn())[
            "executions"
        ]
        if e["name"].startswith("resync-")
    ]
    assert stack.wait_for_execution(failed["executionArn"])["status"] == "FAILED"  # Plan failed: PlanFailed recorded

    stack.put_salesforce_secret(salesforce_secret)  # the operator fixes the secret
    reset_engine_caches()
    emulator.clock.advance(max(FAILED_COPY_RETRY_SECONDS, PLAN_CHECK_SECONDS) + 1)
    retried = tick(stack, emulator)
    assert [entry["reason"] for entry in copy_executions(retried)] == ["retry"], retried["copies"]
    for description in wait_for_copies(stack, retried):
        assert description["status"] == "SUCCEEDED", description

    for _ in range(3):  # the object is copied: incremental cycles, no copy started again
        emulator.clock.advance(PAUSE + 61)
        after = tick(stack, emulator)
        assert copy_executions(after) == [], after["copies"]
        assert "Account" not in after["copies"]["held"], after["copies"]
        assert "Account" in after["freshness"], after


def test_given_the_access_tokens_expire_when_a_function_calls_salesforce_then_the_relogin_is_counted(
    stack: Any, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """An expired (or revoked) token was handled by logging in again, silently: nothing an operator
    could see.  ``SalesforceReauthenticated`` now counts each such login."""
    tick(stack, emulator)
    emulator.clock.advance(PAUSE + 61)
    stack.invoke("ObjectSyncFunction", {"object": "Account", "cycle_id": "Account-before-expiry", "reason": "due"})
    assert values_of(capsys.readouterr().out, "SalesforceReauthenticated") == []  # the cached token is good
    emulator.expire_tokens()
    emulator.clock.advance(PAUSE + 61)
    result = stack.invoke("ObjectSyncFunction", {"object": "Account", "cycle_id": "Account-expired", "reason": "due"})
    assert result["status"] == "complete", result
    assert values_of(capsys.readouterr().out, "SalesforceReauthenticated") == [1]


class SkewedTime(EmulatorTime):
    """The engine clock ``skew`` seconds off the emulator's (Salesforce's) clock."""

    def __init__(self, emulator_clock: Any, skew: float) -> None:
        super().__init__(emulator_clock)
        self.skew = skew

    def now(self) -> dt.datetime:
        return super().now() + dt.timedelta(seconds=self.skew)


@pytest.mark.parametrize("skew", [-240, 180])
def test_given_the_engine_clock_off_salesforces_when_the_dispatcher_probes_then_the_skew_is_a_metric(
    stack: Any, emulator: Any, capsys: pytest.CaptureFixture[str], skew: int
) -> None:
    """Windows use Salesforce's clock, leases, pauses and freshness the engine's: a skew of minutes was
    absorbed without a trace.  ``ClockSkewSeconds`` (each probing tick) shows it."""
    tick(stack, emulator)
    emulator.clock.advance(PAUSE + 61)
    stack.fire_schedule()  # the first cycle (no probe: it never ran)
    emulator.clock.advance(PAUSE + 61 + abs(skew))  # due by the skewed clock too
    capsys.readouterr()
    with sfsync_clock.use_clock(SkewedTime(emulator.clock, skew)):
        stack.fire_schedule()
    [measured] = values_of(capsys.readouterr().out, "ClockSkewSeconds")
    assert skew - 2 <= measured <= skew, measured
