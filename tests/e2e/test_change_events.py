"""Change events end to end on the local stack, in real time: the emulator's clock runs, its Event Relay
envelopes go onto the stack's partner bus through the relay thread (as ``sfsync demo`` runs it), the
rule and the queue deliver them to ChangeEventFunction, and the schedule's cycles keep running beside."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sfsync_local.stack import LocalStack, LocalStackError

from tests.support import cdc
from tests.support.emulator import reset_engine_caches, salesforce_secret
from tests.support.fullcopy import first_copy

pytestmark = pytest.mark.e2e


@pytest.fixture
def live() -> Iterator[tuple[Any, LocalStack, Any]]:
    from sfsync_emulator.emulator import Emulator
    from sfsync_local.relay import LocalEventRelay

    emulator = Emulator.start(seed=11, records=200)  # the clock runs with real time
    reset_engine_caches()
    try:
        parameters = cdc.cdc_parameters(emulator, SafetyLagSeconds="2", CdcPauseSeconds="600")
        with LocalStack.deploy(parameters=parameters, salesforce_secret=salesforce_secret(emulator)) as stack:
            first_copy(stack)
            relay = LocalEventRelay(stack, emulator.org)
            relay.start(interval=0.05)
            try:
                yield emulator, stack, relay
            finally:
                relay.stop()
    finally:
        reset_engine_caches()
        emulator.stop()


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> float:
    """Seconds until ``check()`` holds (fails after ``timeout``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "not in DynamoDB in time"
        time.sleep(0.05)
    return time.monotonic() - started


def test_given_a_running_org_when_users_change_it_then_the_items_follow_within_seconds_and_cycles_find_nothing(
    live: tuple[Any, LocalStack, Any],
) -> None:
    emulator, stack, _relay = live
    ids = [r["Id"] for r in emulator.salesforce().query("SELECT Id FROM Account ORDER BY Id LIMIT 4")["records"]]

    emulator.admin.update("Account", ids[0], {"Name": "Edited Live"})
    took = wait_until(lambda: (cdc.item(stack, "Account", ids[0]) or {}).get("Name") == "Edited Live")
    assert took < 5.0
    created = emulator.admin.create("Account", {"Name": "Created Live"})
    emulator.admin.delete("Account", ids[1])
    emulator.admin.mass_update("Account", ids[2:], {"Rating": "Warm"})
    wait_until(lambda: (cdc.item(stack, "Account", created) or {}).get("Name") == "Created Live")
    wait_until(lambda: (cdc.item(stack, "Account", ids[1]) or {}).get("IsDeleted") is True)
    wait_until(lambda: all((cdc.item(stack, "Account", i) or {}).get("Rating") == "Warm" for i in ids[2:]))
    cdc.assert_record_equal(stack, emulator, "Account", [*ids, created])

    time.sleep(2.5)  # past the safety lag: the cycle's window holds every change above
    result = stack.fire_schedule()
    cycles = [i for i in stack.invocations if i.function_name.endswith("ObjectSyncFunction") and not i.is_error]
    account = [i.result for i in cycles if i.event["object"] == "Account"][-1]
    assert account["counts"]["RecordsRead"] >= 4
    assert account["counts"]["RecordsCreated"] == account["counts"]["RecordsUpdated"] == 0, "events had them all"
    assert result["cdc"]["Account"] == "on"
    assert cdc.health(stack, "Account").events_applied >= 4


def test_given_no_event_relay_bus_when_deployed_then_the_stack_has_no_change_event_resources() -> None:
    with LocalStack.deploy(stack_name="sfsync-no-cdc") as stack:
        assert "ChangeEventFunctionName" not in stack.outputs
        assert stack.runtime.queue_triggers == []
        names = [f["FunctionName"] for f in stack.boto3_client("lambda").list_functions()["Functions"]]
        assert not any("ChangeEvent" in name for name in names)
        with pytest.raises(LocalStackError, match="EventRelayBusName"):
            stack.put_change_events([])
        env = stack.function_environment("DispatcherFunction")
        assert env["SFSYNC_CDC_ENABLED"] == "false"
