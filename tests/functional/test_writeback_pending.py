"""Local changes survive any write-back outage (issue #11, finding 3): every change is marked pending
on its item before anything else, the stream gives up, the sweep (fired as its schedule would) pushes
each change once when the cause is fixed.  Real WriteBackFunction on the local stack, emulator over HTTPS.

The stream's 24-hour memory is simulated the way Lambda ends it: the local runtime retries the batch
until ``MaximumRetryAttempts`` and then sends the ``DDBStreamBatchInfo`` pointer to the on-failure
queue; nothing re-delivers those records afterwards.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from sfsync_local.stack import LocalInvokeError

from tests.functional import test_writeback_support as wb

pytestmark = pytest.mark.functional

OVERDUE_SECONDS = 11 * 60


@pytest.fixture
def emulator_records() -> int:
    return 100


def open_leads(stack: Any, emulator: Any) -> list[str]:
    ids = wb.sync_items(stack, emulator, "Lead")
    return [i for i in ids if not wb.salesforce_row(emulator, "Lead", i)["IsConverted"]]


def last_replay(emulator: Any) -> int:
    return max((e.replay_id for e in emulator.org.cdc.since(0)), default=0)


def sfsync_writes(emulator: Any, since: int, record_id: str) -> list[str]:
    """The change types of every write the write-back made to ``record_id`` since ``since`` (CDC)."""
    return [
        e.change_type
        for e in emulator.org.cdc.since(since)
        if record_id in e.record_ids and e.change_origin.endswith("client=sfsync")
    ]


def gave_up(stack: Any) -> list[dict[str, Any]]:
    """The on-failure messages of the write-back's stream batches (what Lambda keeps after giving up)."""
    return [m for m in stack.receive_all("WriteBackFailureQueue") if "DDBStreamBatchInfo" in m]


def sweep(stack: Any) -> dict[str, Any]:
    result = stack.fire_schedule("WriteBackFunction", event_name="Sweep", drain=False)
    wb.drain(stack)
    assert isinstance(result, dict)
    return result


def set_writeback_options(stack: Any, options: str) -> None:
    """What a redeploy with another ``WriteBackOptions`` parameter does to the function's environment."""
    runtime = stack.runtime
    spec = runtime.spec(stack.function_name("WriteBackFunction"))
    runtime.register(dataclasses.replace(spec, environment={**spec.environment, "SFSYNC_WRITEBACK": options}))


def test_given_salesforce_unreachable_past_the_streams_memory_when_it_is_back_then_the_sweep_pushes_every_edit_once(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    leads = open_leads(stack, emulator)[:3]
    since = last_replay(emulator)
    emulator.add_fault("http_500", family="composite", method="PATCH")  # every push fails (5xx)
    for n, lead in enumerate(leads):
        wb.edit(stack, "Lead", lead, Title=f"Edited During Outage {n}")

    assert len(gave_up(stack)) >= 1  # Lambda gave the records up: the stream will not deliver them again
    for n, lead in enumerate(leads):
        assert wb.salesforce_row(emulator, "Lead", lead)["Title"] != f"Edited During Outage {n}"
        item = wb.get_item(stack, "Lead", lead)
        assert item is not None and item["_pending_since"].endswith("Z"), item

    emulator.clear_faults()
    early = sweep(stack)  # not overdue yet: the stream path might still be at it
    assert early["sweep"]["Lead"] == {"pending": 3, "overdue": 0, "redriven": 0, "failed": 0}
    emulator.clock.advance(OVERDUE_SECONDS)
    result = sweep(stack)

    assert result["sweep"]["Lead"]["redriven"] == 3 and result["sweep"]["Lead"]["failed"] == 0
    for n, lead in enumerate(leads):
        assert wb.salesforce_row(emulator, "Lead", lead)["Title"] == f"Edited During Outage {n}"
        assert sfsync_writes(emulator, since, lead) == ["UPDATE"]
        item = wb.get_item(stack, "Lead", lead)
        assert item is not None
        assert not {"_pending_since", "_pending_seq", "_pending_claim"} & set(item)
        assert json.loads(item["_base"])["Title"] == f"Edited During Outage {n}"
    before = len(emulator.request_log())
    assert sweep(stack)["sweep"]["Lead"]["pending"] == 0
    assert [e for e in emulator.request_log()[before:] if "/composite" in e["path"]] == []


def test_given_invalid_write_back_options_for_a_day_when_they_are_fixed_then_the_sweep_pushes_the_edits(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    leads = open_leads(stack, emulator)[:2]
    since = last_replay(emulator)
    set_writeback_options(stack, json.dumps({"Lead": {"conflict": "whoever-shouts"}}))
    for lead in leads:
        wb.edit(stack, "Lead", lead, City="Oostende")

    runs = [inv for inv in wb.writeback_invocations(stack) if inv.is_error]
    assert runs and all(inv.result["errorType"] == "ConfigurationError" for inv in runs)
    assert len(gave_up(stack)) >= 1
    assert all((wb.get_item(stack, "Lead", lead) or {}).get("_pending_since") for lead in leads)

    set_writeback_options(stack, "{}")
    emulator.clock.advance(24 * 3600)
    sweep(stack)

    for lead in leads:
        assert wb.salesforce_row(emulator, "Lead", lead)["City"] == "Oostende"
        assert sfsync_writes(emulator, since, lead) == ["UPDATE"]
        assert "_pending_since" not in (wb.get_item(stack, "Lead", lead) or {})


def test_given_broken_write_back_options_when_the_sweep_runs_then_it_pushes_nothing_and_refuses_nothing(
    deploy_stack: Any, emulator: Any
) -> None:
    """Found by the chaos runs (seed 38): a redeploy broke Lead's options only; the sweep read the settings
    without ``SFSYNC_WRITEBACK`` (defaults: deletes off) and refused Contact's overdue local delete for good."""
    good = {"Lead": {"allow_deletes": True}, "Contact": {"allow_deletes": True}}
    stack = wb.deploy(deploy_stack, json.dumps(good))
    doomed = wb.sync_items(stack, emulator, "Contact")[0]
    since = last_replay(emulator)
    set_writeback_options(stack, json.dumps({**good, "Lead": {"allow_deletes": True, "conflict": "whoever-shouts"}}))
    stack.boto3_client("dynamodb").delete_item(TableName=stack.table_name("ContactTable"), Key={"Id": {"S": doomed}})
    wb.drain(stack)
    emulator.clock.advance(OVERDUE_SECONDS)

    with pytest.raises(LocalInvokeError, match="ConfigurationError"):
        sweep(stack)

    assert wb.salesforce_row(emulator, "Contact", doomed)["IsDeleted"] is False
    assert [r for r in wb.errors(stack, "Contact") if doomed in json.dumps(r, default=str)] == []
    set_writeback_options(stack, json.dumps(good))
    sweep(stack)
    assert wb.salesforce_row(emulator, "Contact", doomed)["IsDeleted"] is True
    assert sfsync_writes(emulator, since, doomed) == ["DELETE"]


def test_given_a_local_create_and_a_local_delete_under_a_long_outage_then_each_happens_exactly_once(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack, json.dumps({"Lead": {"allow_deletes": True}}))
    doomed = open_leads(stack, emulator)[0]
    since = last_replay(emulator)
    emulator.add_fault("http_500", family="composite")
    wb.put_item(
        stack,
        "Lead",
        {"Id": "app-lead-outage", "sobject": "Lead", "LastName": "Outlasted", "Company": "Patient Co"},
    )
    stack.boto3_client("dynamodb").delete_item(TableName=stack.table_name("LeadTable"), Key={"Id": {"S": doomed}})
    wb.drain(stack)
    assert len(gave_up(stack)) >= 2
    assert wb.salesforce_row(emulator, "Lead", doomed)["IsDeleted"] is False

    emulator.clear_faults()
    emulator.clock.advance(OVERDUE_SECONDS)
    sweep(stack)
    sweep(stack)  # a second sweep finds nothing left to do

    created = emulator.salesforce().query_all("SELECT Id FROM Lead WHERE LastName = 'Outlasted'")["records"]
    assert len(created) == 1
    local = wb.get_item(stack, "Lead", "app-lead-outage")
    assert local is not None and local["_created_id"] == created[0]["Id"] and "_pending_since" not in local
    assert wb.salesforce_row(emulator, "Lead", doomed)["IsDeleted"] is True
    assert sfsync_writes(emulator, since, doomed) == ["DELETE"]
    assert sfsync_writes(emulator, since, str(created[0]["Id"])) == ["CREATE"]
    intents = stack.boto3_client("dynamodb").query(
        TableName=stack.table_name("StateTable"),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "WRITEBACK#Lead"}},
    )["Items"]
    assert [i["sk"]["S"] for i in intents if i["sk"]["S"].startswith("DELETE#")] == []


def test_given_salesforce_keeps_failing_then_the_sweep_backs_off_per_item_and_lists_it_failed_after_a_day(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    lead = open_leads(stack, emulator)[0]
    emulator.add_fault("http_500", family="composite", method="PATCH")
    wb.edit(stack, "Lead", lead, Title="Stubborn")
    gave_up(stack)

    emulator.clock.advance(OVERDUE_SECONDS)
    assert sweep(stack)["sweep"]["Lead"]["redriven"] == 1
    item = wb.get_item(stack, "Lead", lead)
    assert item is not None and int(item["_pending_attempts"]) == 1
    before = emulator.api_calls()
    assert sweep(stack)["sweep"]["Lead"]["redriven"] == 0  # its back-off has not passed: no API call
    assert emulator.api_calls() == before

    for _ in range(40):  # a day and more of sweeps
        emulator.clock.advance(3600)
        sweep(stack)
    item = wb.get_item(stack, "Lead", lead)
    assert item is not None and item["_pending_since"]  # never dropped
    attempts = int(item["_pending_attempts"])
    assert 10 <= attempts <= 16, attempts  # doubling waits capped at 4 h, not one per sweep
    failed = [r for r in wb.errors(stack, "Lead", "failed") if r["record_id"] == lead]
    assert len(failed) == 1 and failed[0]["code"]

    emulator.clear_faults()
    emulator.clock.advance(5 * 3600)
    sweep(stack)
    assert wb.salesforce_row(emulator, "Lead", lead)["Title"] == "Stubborn"
    assert "_pending_since" not in (wb.get_item(stack, "Lead", lead) or {})


def test_given_salesforce_changes_synced_over_pending_edits_during_a_long_outage_then_no_edit_is_lost(
    deploy_stack: Any, emulator: Any
) -> None:
    """The inbound sync used to overwrite a pending edit with Salesforce's new version; the edit then
    lived only in a stream record that expires. Now the edited fields stay on the item (with the base
    they were edited against) until the write-back settles them."""
    stack = wb.deploy(deploy_stack)
    lead, conflicted = open_leads(stack, emulator)[:2]
    emulator.add_fault("http_500", family="composite", method="PATCH")  # every push fails
    wb.edit(stack, "Lead", lead, Title="Local Title")
    wb.edit(stack, "Lead", conflicted, Title="Local Wins")
    sf = emulator.salesforce()
    emulator.clock.advance(5)
    sf.Lead.update(lead, {"City": "Changed In Salesforce"})  # another field: both changes must survive
    sf.Lead.update(conflicted, {"Title": "Salesforce Title"})  # the same field: Lead's policy is local
    emulator.clock.advance(120)
    stack.invoke("ObjectSyncFunction", {"object": "Lead", "cycle_id": "Lead-outage-1", "reason": "manual"})
    wb.drain(stack)

    item = wb.get_item(stack, "Lead", lead)
    assert item is not None and item["City"] == "Changed In Salesforce" and item["Title"] == "Local Title", item
    assert (wb.get_item(stack, "Lead", conflicted) or {})["Title"] == "Local Wins"
    assert len(gave_up(stack)) >= 1  # the stream records are gone: only the items remember the edits

    emulator.clear_faults()
    emulator.clock.advance(OVERDUE_SECONDS)
    sweep(stack)
    assert wb.salesforce_row(emulator, "Lead", lead)["Title"] == "Local Title"
    assert wb.salesforce_row(emulator, "Lead", lead)["City"] == "Changed In Salesforce"
    assert wb.salesforce_row(emulator, "Lead", conflicted)["Title"] == "Local Wins"
    for key in (lead, conflicted):
        settled = wb.get_item(stack, "Lead", key)
        assert settled is not None and "_pending_since" not in settled
        assert json.loads(settled["_base"])["Title"] == settled["Title"]
