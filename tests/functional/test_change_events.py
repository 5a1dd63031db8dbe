"""Change events on the local stack: the emulator's Event Relay envelopes -> the partner bus -> the rule ->
the queue -> ChangeEventFunction -> the record tables, with the cycles as the safety net."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import cdc
from tests.support.fullcopy import first_copy

pytestmark = pytest.mark.functional


@pytest.fixture
def emulator_records() -> int:
    return 100


@pytest.fixture
def cdc_stack(deploy_stack: Any, emulator: Any) -> Any:
    stack = deploy_stack(cdc.cdc_parameters(emulator))
    first_copy(stack)
    return stack


@pytest.fixture
def relay(cdc_stack: Any, emulator: Any) -> Any:
    relay = cdc.relay_for(cdc_stack, emulator)
    yield relay
    relay.detach()


def live_ids(emulator: Any, obj: str, n: int) -> list[str]:
    rows = emulator.salesforce().query_all(f"SELECT Id FROM {obj} WHERE IsDeleted = false ORDER BY Id")["records"]
    return [row["Id"] for row in rows[:n]]


def test_given_an_update_in_salesforce_when_its_event_arrives_then_the_item_has_it_without_any_api_call(
    cdc_stack: Any, relay: Any, emulator: Any
) -> None:
    account = live_ids(emulator, "Account", 1)[0]
    before = cdc.item(cdc_stack, "Account", account)
    assert before is not None
    emulator.clock.advance(5)
    emulator.admin.update("Account", account, {"Name": "Changed By A User", "Phone": "555-0100"})
    cdc.deliver(relay)  # the describe of the first batch
    calls = emulator.api_calls()
    emulator.clock.advance(5)
    emulator.admin.update("Account", account, {"Name": "Changed Again"})
    assert cdc.deliver(relay) == 1
    assert emulator.api_calls() == calls, "an UPDATE's payload is applied without calling Salesforce"
    after = cdc.item(cdc_stack, "Account", account)
    assert after is not None and after["Name"] == "Changed Again" and after["Phone"] == "555-0100"
    cdc.assert_record_equal(cdc_stack, emulator, "Account", [account])
    health = cdc.health(cdc_stack, "Account")
    assert health.exists and health.events_applied == 2 and health.unhealthy_since is None


def test_given_creates_deletes_undeletes_and_a_merge_when_their_events_arrive_then_the_table_equals_salesforce(
    cdc_stack: Any, relay: Any, emulator: Any
) -> None:
    a, b, c = live_ids(emulator, "Account", 3)
    emulator.clock.advance(3)
    created = emulator.admin.create("Account", {"Name": "Born In Salesforce", "Industry": "Energy"})
    emulator.admin.delete("Account", a)
    emulator.admin.delete("Account", b)
    emulator.clock.advance(3)
    emulator.admin.undelete("Account", b)
    emulator.admin.merge("Account", c, [created])
    cdc.deliver(relay)
    stored = cdc.items(cdc_stack, "Account")
    assert stored[a]["IsDeleted"] is True
    assert stored[b]["IsDeleted"] is False
    assert stored[created]["IsDeleted"] is True and stored[created]["MasterRecordId"] == c
    assert stored[created]["_merged_into"] == c
    cdc.assert_record_equal(cdc_stack, emulator, "Account", [a, b, c, created])


def test_given_a_mass_update_when_one_merged_event_names_many_records_then_every_item_gets_the_change(
    cdc_stack: Any, relay: Any, emulator: Any
) -> None:
    ids = live_ids(emulator, "Account", 6)
    emulator.clock.advance(3)
    emulator.admin.mass_update("Account", ids, {"Rating": "Cold"})  # the same last modifier everywhere
    emulator.clock.advance(3)
    since = emulator.org.cdc.since(0)[-1].replay_id
    emulator.admin.mass_update("Account", ids, {"Rating": "Hot"})
    events = [e for e in emulator.org.cdc.since(since) if set(e.record_ids) & set(ids) and e.change_type == "UPDATE"]
    assert any(len(e.record_ids) > 1 for e in events), "the emulator merges the same change into one event"
    cdc.deliver(relay)
    assert all(cdc.item(cdc_stack, "Account", i)["Rating"] == "Hot" for i in ids)  # type: ignore[index]
    cdc.assert_record_equal(cdc_stack, emulator, "Account", ids)


def test_given_a_duplicate_of_an_older_event_when_it_arrives_after_a_newer_one_then_the_item_does_not_move_back(
    cdc_stack: Any, relay: Any, emulator: Any
) -> None:
    account = live_ids(emulator, "Account", 1)[0]
    emulator.clock.advance(2)
    emulator.admin.update("Account", account, {"Name": "First"})
    first = emulator.org.cdc.since(0)[-1]
    emulator.clock.advance(2)
    emulator.admin.update("Account", account, {"Name": "Second"})
    cdc.deliver(relay)
    calls = emulator.api_calls()
    emulator.inject_duplicate()  # the newest again
    assert cdc.deliver(relay) == 1
    assert emulator.api_calls() == calls, "a duplicate of the stored version costs no call"
    emulator.inject_duplicate(first.replay_id)
    assert cdc.deliver(relay) == 1
    assert emulator.api_calls() - calls <= 1, "an older one whose field changed since is checked with one re-read"
    assert cdc.item(cdc_stack, "Account", account)["Name"] == "Second"  # type: ignore[index]
    cdc.assert_record_equal(cdc_stack, emulator, "Account", [account])


def test_given_two_updates_of_one_record_delivered_in_reverse_when_applied_then_both_changes_are_kept(
    cdc_stack: Any, relay: Any, emulator: Any
) -> None:
    account = live_ids(emulator, "Account", 1)[0]
    emulator.inject_out_of_order(2)
    emulator.clock.advance(2)
    emulator.admin.update("Account", account, {"Phone": "555-0001", "Name": "Older"})
    emulator.clock.advance(2)
    emulator.admin.update("Account", account, {"Name": "Newer"})
    # one batch: folded in commit order
    cdc.deliver(relay)
    cdc.assert_record_equal(cdc_stack, emulator, "Account", [account])
    # two batches, the newer first: the older event re-reads the record
    emulator.clock.advance(2)
    emulator.admin.update("Account", account, {"Phone": "555-0002", "Name": "Older 2"})
    older = relay._pending.popleft()
    emulator.clock.advance(2)
    emulator.admin.update("Account", account, {"Name": "Newer 2"})
    cdc.deliver(relay)
    relay._pending.append(older)
    cdc.deliver(relay)
    item = cdc.item(cdc_stack, "Account", account)
    assert item is not None and item["Name"] == "Newer 2" and item["Phone"] == "555-0002"
    cdc.assert_record_equal(cdc_stack, emulator, "Account", [account])


def test_given_a_lead_conversion_when_its_transaction_events_arrive_in_any_order_then_every_object_is_right(
    cdc_stack: Any, relay: Any, emulator: Any
) -> None:
    lead = next(
        row["Id"]
        for row in emulator.salesforce().query_all("SELECT Id, IsConverted FROM Lead WHERE IsDeleted = false")[
            "records"
        ]
        if not row["IsConverted"]
    )
    emulator.clock.advance(2)
    emulator.inject_out_of_order(3)
    result = emulator.admin.convert_lead(lead)
    emulator.admin.update("Account", live_ids(emulator, "Account", 1)[0], {"Name": "Flush The Reorder"})
    cdc.deliver(relay)
    converted = cdc.item(cdc_stack, "Lead", lead)
    assert converted is not None and converted["IsConverted"] is True
    cdc.assert_record_equal(cdc_stack, emulator, "Lead", [lead])
    contact, account = str(result["contactId"]), str(result["accountId"])
    assert converted["ConvertedContactId"] == contact
    cdc.assert_record_equal(cdc_stack, emulator, "Contact", [contact])
    cdc.assert_record_equal(cdc_stack, emulator, "Account", [account])


def test_given_a_gap_event_when_it_arrives_then_the_named_records_are_re_read_in_one_call(
    cdc_stack: Any, relay: Any, emulator: Any
) -> None:
    ids = live_ids(emulator, "Account", 3)
    cdc.deliver(relay)
    relay.outage = True
    emulator.clock.advance(2)
    for n, record_id in enumerate(ids):
        emulator.admin.update("Account", record_id, {"Description": f"changed while the relay was down {n}"})
    relay.outage = False
    emulator.org.cdc.inject_gap("Account", ids, "GAP_UPDATE")
    cdc.deliver(relay)
    cdc.assert_record_equal(cdc_stack, emulator, "Account", ids)
    assert cdc.health(cdc_stack, "Account").gaps_handled == 1
    calls = emulator.api_calls()
    emulator.org.cdc.inject_gap("Account", ids[:1], "GAP_UPDATE")
    cdc.deliver(relay)
    assert emulator.api_calls() - calls == 1, "a gap costs one /composite call"


def test_given_an_overflow_when_it_arrives_then_the_objects_cycle_runs_at_once_and_catches_up(
    cdc_stack: Any, relay: Any, emulator: Any
) -> None:
    ids = live_ids(emulator, "Account", 4)
    relay.outage = True
    emulator.clock.advance(120)
    for record_id in ids:
        emulator.admin.update("Account", record_id, {"Description": "lost in the overflow"})
    emulator.clock.advance(120)  # past the cycle's safety lag
    relay.outage = False
    emulator.org.cdc.inject_overflow("Account")
    cdc.deliver(relay)
    cycles = [
        i
        for i in cdc_stack.invocations
        if i.function_name.endswith("ObjectSyncFunction") and i.event["reason"] == "cdc"
    ]
    assert len(cycles) == 1 and cycles[0].event["object"] == "Account" and not cycles[0].is_error
    cdc.assert_record_equal(cdc_stack, emulator, "Account", ids)
    health = cdc.health(cdc_stack, "Account")
    assert health.gaps_handled == 1
    assert health.unhealthy_since is not None, "the cycle found changes no event delivered"


def test_given_a_write_back_when_its_echo_event_arrives_then_nothing_goes_back_and_the_base_is_right(
    cdc_stack: Any, relay: Any, emulator: Any
) -> None:
    from sfsync.items import snapshot

    from tests.functional import test_writeback_support as wb

    lead = next(
        row["Id"]
        for row in emulator.salesforce().query_all("SELECT Id, IsConverted FROM Lead WHERE IsDeleted = false")[
            "records"
        ]
        if not row["IsConverted"]
    )
    since = len(emulator.request_log())
    wb.edit(cdc_stack, "Lead", lead, Title="Pushed From DynamoDB")
    cdc_stack.drain()
    assert len([e for e in emulator.request_log()[since:] if e["method"] == "PATCH"]) == 1
    echo = emulator.org.cdc.since(0)[-1]
    assert echo.change_origin.endswith("client=sfsync")
    after_push = len(emulator.request_log())
    cdc.deliver(relay)
    assert [e for e in emulator.request_log()[after_push:] if e["method"] == "PATCH"] == [], "no echo"
    item = cdc.item(cdc_stack, "Lead", lead)
    assert item is not None and item["Title"] == "Pushed From DynamoDB"
    assert snapshot.local_changes(item) == {}
    assert snapshot.base_of(item)["Title"] == "Pushed From DynamoDB"  # type: ignore[index]
    assert item["SystemModstamp"] == cdc.salesforce_view(emulator, "Lead")[lead]["SystemModstamp"][:23] + "Z"


def test_given_a_field_the_integration_user_cannot_see_when_an_event_changes_it_then_it_is_never_written(
    cdc_stack: Any, relay: Any, emulator: Any
) -> None:
    account = live_ids(emulator, "Account", 1)[0]
    stored = cdc.item(cdc_stack, "Account", account)
    assert stored is not None
    emulator.admin.hide_field("Account", "Description")
    from sfsync.changes.apply import SELECTIONS

    SELECTIONS.clear()  # a new describe (the change-event function reuses one for 5 minutes)
    emulator.clock.advance(2)
    emulator.admin.update("Account", account, {"Description": "secret", "Name": "Visible Change"})
    cdc.deliver(relay)
    item = cdc.item(cdc_stack, "Account", account)
    assert item is not None and item["Name"] == "Visible Change"
    assert item.get("Description") == stored.get("Description"), "a hidden field keeps its last readable value"
    rows = cdc.event_errors(cdc_stack, "Account")
    assert len(rows) == 1 and "Description" in rows[0]["reason"]


def test_given_bad_input_when_it_arrives_then_each_gets_an_errors_row_and_nothing_is_written_or_retried(
    cdc_stack: Any, relay: Any, emulator: Any
) -> None:
    import json

    sqs = cdc_stack.boto3_client("sqs")
    queue = cdc_stack.outputs["ChangeEventQueueUrl"]
    good = emulator.relay_events()[-1] if emulator.relay_events() else None
    bus = relay.bus
    envelope = {
        "version": "0",
        "id": "11111111-2222-3333-4444-555555555555",
        "detail-type": "OpportunityChangeEvent",
        "source": bus,
        "account": "123456789012",
        "time": "2026-11-24T12:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "payload": {
                "ChangeEventHeader": {
                    "entityName": "Opportunity",
                    "recordIds": ["006000000000001AAA"],
                    "changeType": "UPDATE",
                    "changedFields": ["Name", "LastModifiedDate"],
                    "transactionKey": "t",
                    "sequenceNumber": 1,
                    "commitTimestamp": 1796558400000,
                },
                "Name": "x",
                "LastModifiedDate": 1796558400000,
            }
        },
    }
    unknown_entity = json.loads(json.dumps(envelope))
    unknown_entity["detail-type"] = "Nope__ChangeEvent"
    unknown_entity["detail"]["payload"]["ChangeEventHeader"]["entityName"] = "Nope__c"
    account = live_ids(emulator, "Account", 1)[0]
    before = cdc.item(cdc_stack, "Account", account)
    foreign_field = json.loads(json.dumps(envelope))
    foreign_field["detail-type"] = "AccountChangeEvent"
    header = foreign_field["detail"]["payload"]["ChangeEventHeader"]
    header.update(entityName="Account", recordIds=[account], changedFields=["NotAField__c", "LastModifiedDate"])
    foreign_field["detail"]["payload"] = {
        "ChangeEventHeader": header,
        "NotAField__c": "x",
        "LastModifiedDate": 1796558400000,
    }
    for body in (
        "not json at all",
        json.dumps({"detail-type": "LeadChangeEvent"}),
        json.dumps(envelope),
        json.dumps(unknown_entity),
        json.dumps(foreign_field),
    ):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    assert good is None or good["id"]
    cdc_stack.drain()
    assert len(cdc.event_errors(cdc_stack, "-")) == 2  # not JSON, no envelope
    assert len(cdc.event_errors(cdc_stack, "Opportunity")) == 1, "an object not synced"
    assert len(cdc.event_errors(cdc_stack, "Nope__c")) == 1, "an unknown object"
    rows = cdc.event_errors(cdc_stack, "Account")
    assert len(rows) == 1 and "NotAField__c" in rows[0]["reason"]
    after = cdc.item(cdc_stack, "Account", account)
    assert after == before or (after is not None and "NotAField__c" not in after)
    assert "NotAField__c" not in (after or {})
    assert sqs.receive_message(QueueUrl=queue).get("Messages", []) == []
    dlq = cdc_stack.outputs["ChangeEventDeadLetterQueueUrl"]
    assert sqs.receive_message(QueueUrl=dlq).get("Messages", []) == [], "bad input is recorded, not retried"


def test_given_salesforce_down_when_an_event_needs_a_re_read_then_it_is_retried_and_finally_parked_in_the_dlq(
    cdc_stack: Any, relay: Any, emulator: Any
) -> None:
    account = live_ids(emulator, "Account", 1)[0]
    emulator.clock.advance(2)
    emulator.admin.delete("Account", account)
    emulator.add_fault("http_503", family="composite", count=1000)
    cdc.deliver(relay)
    item = cdc.item(cdc_stack, "Account", account)
    assert item is not None and item["IsDeleted"] is False, "nothing written while Salesforce is down"
    sqs = cdc_stack.boto3_client("sqs")
    parked = sqs.receive_message(QueueUrl=cdc_stack.outputs["ChangeEventDeadLetterQueueUrl"]).get("Messages", [])
    assert len(parked) == 1 and "AccountChangeEvent" in parked[0]["Body"]
    runs = [i for i in cdc_stack.invocations if i.function_name.endswith("ChangeEventFunction")]
    assert len(runs) == 5, "five deliveries (the queue's maxReceiveCount), then the dead-letter queue"


def test_given_healthy_events_when_the_relay_stops_then_the_cycles_catch_up_and_the_normal_cadence_comes_back(
    cdc_stack: Any, relay: Any, emulator: Any
) -> None:
    from tests.functional.conftest import PAUSE_SECONDS

    account = live_ids(emulator, "Account", 2)
    emulator.clock.advance(PAUSE_SECONDS + 61)
    cdc_stack.fire_schedule()  # the first incremental cycles after the copy
    emulator.clock.advance(5)
    emulator.admin.update("Account", account[0], {"Name": "Flowing"})
    cdc.deliver(relay)
    assert cdc.health(cdc_stack, "Account").status(_now(emulator), 900) == "on"

    # healthy: the normal pause passes, the object waits for the CDC pause (900 s)
    emulator.clock.advance(PAUSE_SECONDS + 10)
    result = cdc_stack.fire_schedule()
    assert "Account" not in {s["object"] for s in result["started"]}, result["skipped"].get("Account")
    assert result["cdc"]["Account"] == "on"
    assert "Lead" in {s["object"] for s in result["started"]} or "Lead" in result["skipped"]

    # the relay stops: changes made meanwhile are lost to the events
    relay.outage = True
    emulator.clock.advance(5)
    emulator.admin.update("Account", account[1], {"Name": "Lost Event"})
    emulator.clock.advance(900)
    result = cdc_stack.fire_schedule()  # the CDC pause passed: the cycle runs and catches up
    assert "Account" in {s["object"] for s in result["started"]}
    cdc.assert_record_equal(cdc_stack, emulator, "Account", account)
    health = cdc.health(cdc_stack, "Account")
    assert health.unhealthy_since is not None and "no event delivered" in str(health.unhealthy_reason)
    shown = cdc.status_text(cdc_stack, emulator, ["Account", "Lead"])
    assert "change events" in shown and "unhealthy, last" in shown and "CHANGE EVENTS UNHEALTHY Account" in shown

    # unhealthy: the normal cadence is back by itself
    emulator.clock.advance(PAUSE_SECONDS + 10)
    result = cdc_stack.fire_schedule()
    assert result["cdc"]["Account"] == "unhealthy"
    started = {s["object"] for s in result["started"]}
    assert "Account" in started or result["skipped"]["Account"].startswith("probe"), "due again after 300 s"

    # the relay is back and the next cycle misses nothing: healthy again
    relay.outage = False
    emulator.clock.advance(5)
    emulator.admin.update("Account", account[0], {"Name": "Back"})
    cdc.deliver(relay)
    emulator.clock.advance(PAUSE_SECONDS + 61)
    cdc_stack.fire_schedule()
    assert cdc.health(cdc_stack, "Account").unhealthy_since is None
    cdc.assert_record_equal(cdc_stack, emulator, "Account", account)
    shown = cdc.status_text(cdc_stack, emulator, ["Account"])
    assert "on, last" in shown and "applied" in shown and "UNHEALTHY" not in shown


def _now(emulator: Any) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(emulator.clock.now_ms() / 1000, tz=dt.UTC)
