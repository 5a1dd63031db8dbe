"""Accounts sync incrementally through the real path: schedule -> dispatcher -> ObjectSyncFunction
-> emulator queryAll with a SystemModstamp window -> Account table."""

from __future__ import annotations

from typing import Any

import pytest
from sfsync.core.config import Settings

import tests.support.compare as support
from tests.support.fullcopy import first_copy, synced_after_copy

pytestmark = pytest.mark.functional


def table_items(stack: Any) -> dict[str, dict[str, Any]]:
    return support.table_items(stack.boto3_client("dynamodb"), stack.table_name("AccountTable"))


def assert_table_matches_salesforce(stack: Any, emulator: Any) -> dict[str, dict[str, Any]]:
    items = table_items(stack)
    support.assert_items_equal_view(items, support.salesforce_view(emulator, "Account"), "Account")
    for item in items.values():
        assert item["sobject"] == "Account"
    return items


def pause_seconds(stack: Any) -> int:
    return int(stack.function_environment("DispatcherFunction")["SFSYNC_PAUSE_SECONDS"])


LAG_SECONDS = int(Settings.model_fields["safety_lag_seconds"].default)


def sync_invocations(stack: Any) -> list[Any]:
    name = stack.function_name("ObjectSyncFunction")
    return [inv for inv in stack.invocations if inv.function_name == name]


def test_given_changes_in_salesforce_when_the_schedule_fires_after_the_pause_then_the_table_matches(
    emulator: Any, stack: Any
) -> None:
    first = first_copy(stack)
    assert first.objects == ["Account"] and first.dispatch["started"] == []
    assert not any(inv.is_error for inv in stack.invocations), [inv.result for inv in stack.invocations]
    before = assert_table_matches_salesforce(stack, emulator)
    assert before, "the full copy brings the seeded Accounts"

    org = emulator.org
    existing = sorted(before)
    created = org.create("Account", {"Name": "Brand New Ltd", "Industry": "Energy"}, as_api=False)
    org.update("Account", existing[0], {"Name": "Renamed Corp", "NumberOfEmployees": 42}, as_api=False)
    org.delete("Account", existing[1], as_api=False)

    emulator.clock.advance(pause_seconds(stack) + LAG_SECONDS + 1)
    second = stack.fire_schedule()
    assert [s["reason"] for s in second["started"]] == ["first"], "the first incremental cycle after the copy"
    sync = sync_invocations(stack)[-1]
    assert not sync.is_error, sync.result
    assert sync.result["status"] == "complete"
    counts = sync.result["counts"]
    assert (counts["RecordsCreated"], counts["RecordsUpdated"], counts["RecordsDeleted"]) == (1, 1, 1)

    items = assert_table_matches_salesforce(stack, emulator)
    assert items[created]["Name"] == "Brand New Ltd"
    assert items[existing[0]]["Name"] == "Renamed Corp"
    assert items[existing[1]]["IsDeleted"] is True


def test_given_a_finished_cycle_when_the_schedule_fires_inside_the_pause_then_nothing_starts(
    emulator: Any, stack: Any
) -> None:
    synced_after_copy(stack, emulator, pause_seconds=0)
    runs = len(sync_invocations(stack))
    before = table_items(stack)
    emulator.org.update("Account", sorted(before)[0], {"Name": "Changed Inside The Pause"}, as_api=False)

    emulator.clock.advance(pause_seconds(stack) - 30)
    result = stack.fire_schedule()
    assert result["started"] == []
    assert "Account" in result["skipped"]
    assert len(sync_invocations(stack)) == runs
    assert table_items(stack) == before


def test_given_a_malformed_event_when_invoking_object_sync_then_invalid_event_and_nothing_changes(
    emulator: Any, stack: Any
) -> None:
    from sfsync_local.lambda_runtime import LocalInvokeError

    state_before = stack.boto3_client("dynamodb").scan(TableName=stack.table_name("StateTable"))["Items"]
    calls_before = emulator.api_calls()
    for event in ({"object": "Account"}, {"object": "Account; DROP", "cycle_id": "x"}, ["Account"]):
        with pytest.raises(LocalInvokeError) as err:
            stack.invoke("ObjectSyncFunction", event)
        assert err.value.payload["errorType"] == "InvalidEvent"
    with pytest.raises(LocalInvokeError) as err:
        stack.invoke("DispatcherFunction", {"source": "not.a.schedule"})
    assert err.value.payload["errorType"] == "InvalidEvent"

    assert table_items(stack) == {}
    assert stack.boto3_client("dynamodb").scan(TableName=stack.table_name("StateTable"))["Items"] == state_before
    assert emulator.api_calls() == calls_before


def test_given_an_object_that_is_not_configured_when_invoking_then_configuration_error(stack: Any) -> None:
    from sfsync_local.lambda_runtime import LocalInvokeError

    with pytest.raises(LocalInvokeError) as err:
        stack.invoke("ObjectSyncFunction", {"object": "Lead", "cycle_id": "manual-1", "reason": "manual"})
    assert err.value.payload["errorType"] == "ConfigurationError"


def test_full_sync_steps_refuse_malformed_events_before_any_work(stack: Any) -> None:
    from sfsync_local.lambda_runtime import LocalInvokeError

    with pytest.raises(LocalInvokeError) as err:
        stack.invoke("FullSyncFunction", {"step": "plan", "object": "Account"})  # plan takes "objects"
    assert err.value.payload["errorType"] == "InvalidExecutionInput"
    with pytest.raises(LocalInvokeError) as err:
        stack.invoke("FullSyncFunction", {"object": "Account"})
    assert err.value.payload["errorType"] == "InvalidEvent"


def test_write_back_accepts_stream_batches_without_failures(stack: Any) -> None:
    record = {
        "eventID": "1",
        "eventName": "MODIFY",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/Lead/stream/2026-11-24T12:00:00.000",
        "dynamodb": {
            "Keys": {"Id": {"S": "00Q000000000001AAA"}},
            "NewImage": {"Id": {"S": "00Q000000000001AAA"}, "LastName": {"S": "Edited"}},
            "SequenceNumber": "111",
            "SizeBytes": 26,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    assert stack.invoke("WriteBackFunction", {"Records": [record]}) == {"batchItemFailures": []}


def test_given_a_change_committed_late_when_cycles_run_then_the_overlap_catches_it(emulator: Any, stack: Any) -> None:
    """A transaction stamps SystemModstamp before it commits: the row appears below the watermark."""
    synced_after_copy(stack, emulator, pause_seconds=0)
    step = pause_seconds(stack) + LAG_SECONDS + 1
    emulator.clock.advance(step)
    late = emulator.org.late_commit(
        "Account", {"Name": "Committed Late Inc"}, stamp_ago_s=LAG_SECONDS + 30, visible_after_s=30
    )
    stack.fire_schedule()  # runs before the commit: the row is not visible yet
    assert late not in table_items(stack)
    watermark_after_miss = sync_invocations(stack)[-1].result["watermark"]
    assert emulator.org.pending_late_commits(), "the late commit is still pending during that cycle"

    emulator.clock.advance(step)
    stack.fire_schedule()
    items = table_items(stack)
    assert late in items
    assert items[late]["SystemModstamp"] < watermark_after_miss  # stamped below the watermark, still caught
    assert_table_matches_salesforce(stack, emulator)
