"""Local edits of two-way items reach Salesforce through the real WriteBackFunction (local stack,
real template, emulator over HTTPS): updates, no echo, rejected and refused changes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.functional import test_writeback_support as wb

pytestmark = pytest.mark.functional


@pytest.fixture
def emulator_records() -> int:
    return 100


@pytest.fixture
def stack(deploy_stack: Any) -> Any:
    return wb.deploy(deploy_stack)


@pytest.fixture
def leads(stack: Any, emulator: Any) -> list[str]:
    ids = wb.sync_items(stack, emulator, "Lead")
    open_leads = [i for i in ids if not wb.salesforce_row(emulator, "Lead", i)["IsConverted"]]
    assert len(open_leads) >= 5
    return open_leads


def test_given_synced_items_when_nothing_changes_locally_then_no_salesforce_call_is_made(
    stack: Any, emulator: Any
) -> None:
    emulator.reset_counters()
    before = len(wb.writeback_invocations(stack))
    wb.sync_items(stack, emulator, "Lead")
    wb.sync_items(stack, emulator, "Contact")
    # the engine's inserts are filtered out of the write-back's streams (FilterCriteria)
    assert wb.writeback_invocations(stack)[before:] == []
    wb.sync_items(stack, emulator, "Lead")  # the same items written again: MODIFY records reach it
    # sync_items itself makes a describe and a queryAll per object; the write-back made no call at all
    assert emulator.api_calls() == 6
    assert [e for e in emulator.request_log() if "/composite" in e["path"]] == []
    runs = wb.writeback_invocations(stack)[before:]
    assert runs, "the stream delivered the sync's writes to the write-back"
    assert all(not inv.is_error for inv in runs)


def test_given_a_local_edit_when_the_stream_delivers_it_then_salesforce_has_it_tagged_client_sfsync(
    stack: Any, emulator: Any, leads: list[str]
) -> None:
    lead = leads[0]
    since = max((e.replay_id for e in emulator.org.cdc.since(0)), default=0)
    wb.edit(stack, "Lead", lead, Title="Chief Listener", NumberOfEmployees=77)

    row = wb.salesforce_row(emulator, "Lead", lead)
    assert row["Title"] == "Chief Listener"
    assert row["NumberOfEmployees"] == 77
    item = wb.get_item(stack, "Lead", lead)
    assert item is not None
    base = json.loads(item["_base"])
    assert base["Title"] == "Chief Listener" and base["NumberOfEmployees"] == 77
    origins = [e.change_origin for e in emulator.org.cdc.since(since) if lead in e.record_ids]
    assert origins and all(o.endswith(";client=sfsync") for o in origins), origins


def test_given_a_pushed_edit_when_the_same_batch_is_delivered_again_then_nothing_is_sent_twice(
    stack: Any, emulator: Any, leads: list[str]
) -> None:
    lead = leads[1]
    wb.edit(stack, "Lead", lead, Title="Once")
    delivered = [inv for inv in wb.writeback_invocations(stack) if _mentions(inv.event, lead)]
    before = len(emulator.request_log())
    for invocation in delivered:
        result = stack.invoke("WriteBackFunction", invocation.event)
        assert result == {"batchItemFailures": []}
    patches = [e for e in emulator.request_log()[before:] if e["method"] == "PATCH"]
    assert patches == []
    assert wb.salesforce_row(emulator, "Lead", lead)["Title"] == "Once"


def test_given_a_change_to_a_formula_or_readonly_field_then_it_is_rejected_once_and_the_rest_is_pushed(
    stack: Any, emulator: Any, leads: list[str]
) -> None:
    lead = leads[2]
    wb.edit(stack, "Lead", lead, IsConverted=True, CreatedDate="2020-01-01T00:00:00.000Z", City="Gent")

    assert wb.salesforce_row(emulator, "Lead", lead)["City"] == "Gent"
    rejected = wb.errors(stack, "Lead", "rejected")
    by_field = sorted(json.loads(r["fields"])[0] for r in rejected if r["record_id"] == lead)
    assert by_field == ["CreatedDate", "IsConverted"]
    assert all("not updateable" in r["message"] for r in rejected)


def test_given_a_validation_rule_when_the_edit_breaks_it_then_the_refusal_is_recorded_and_the_item_marked(
    stack: Any, emulator: Any, leads: list[str]
) -> None:
    lead = leads[3]
    emulator.admin.add_validation_rule("Lead", "NoTestCity", "City", "Testville", "City may not be Testville")
    wb.edit(stack, "Lead", lead, City="Testville")

    assert wb.salesforce_row(emulator, "Lead", lead)["City"] != "Testville"
    refused = [r for r in wb.errors(stack, "Lead", "refused") if r["record_id"] == lead]
    assert [r["code"] for r in refused] == ["FIELD_CUSTOM_VALIDATION_EXCEPTION"]
    assert refused[0]["message"] == "City may not be Testville"
    item = wb.get_item(stack, "Lead", lead)
    assert item is not None
    mark = json.loads(item["_writeback_error"])
    assert mark["code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"

    emulator.admin.remove_validation_rule("Lead", "NoTestCity")
    wb.edit(stack, "Lead", lead, City="Brugge")
    assert wb.salesforce_row(emulator, "Lead", lead)["City"] == "Brugge"
    cleared = wb.get_item(stack, "Lead", lead)
    assert cleared is not None and "_writeback_error" not in cleared


def test_given_a_malformed_value_in_a_batch_then_it_is_refused_with_the_field_named_and_the_rest_goes_through(
    stack: Any, emulator: Any, leads: list[str]
) -> None:
    good, too_long, bad_pick, bad_type = leads[:4]
    for key, values in (
        (good, {"Title": "Fine"}),
        (too_long, {"FirstName": "x" * 41, "Title": "Still Pushed"}),
        (bad_pick, {"Rating": "Lukewarm"}),
        (bad_type, {"NumberOfEmployees": "many"}),
    ):
        wb.edit(stack, "Lead", key, **values)

    assert wb.salesforce_row(emulator, "Lead", good)["Title"] == "Fine"
    refused = {r["record_id"]: r for r in wb.errors(stack, "Lead", "refused")}
    assert json.loads(refused[too_long]["fields"]) == ["FirstName"]
    assert refused[too_long]["code"] == "STRING_TOO_LONG"
    assert json.loads(refused[bad_pick]["fields"]) == ["Rating"]
    assert refused[bad_pick]["code"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert json.loads(refused[bad_type]["fields"]) == ["NumberOfEmployees"]
    assert wb.salesforce_row(emulator, "Lead", bad_pick)["Rating"] != "Lukewarm"
    # the record's valid change went through; the item keeps the mark of its refused field
    assert wb.salesforce_row(emulator, "Lead", too_long)["Title"] == "Still Pushed"
    marked = wb.get_item(stack, "Lead", too_long)
    assert marked is not None and json.loads(marked["_writeback_error"])["fields"] == ["FirstName"]
    assert json.loads(marked["_base"])["Title"] == "Still Pushed"


def test_given_a_locked_row_when_the_push_is_retried_with_back_off_then_it_lands(
    stack: Any, emulator: Any, leads: list[str]
) -> None:
    lead = leads[4]
    emulator.add_fault("lock_row", family="composite", method="PATCH", count=1, records=1)
    wb.edit(stack, "Lead", lead, Title="After The Lock")

    assert wb.salesforce_row(emulator, "Lead", lead)["Title"] == "After The Lock"
    patches = [e for e in wb.collection_calls(emulator) if e["method"] == "PATCH"]
    assert len(patches) >= 2


def test_given_a_row_locked_longer_than_the_retries_then_the_record_is_reported_and_lambda_retries_it(
    stack: Any, emulator: Any, leads: list[str]
) -> None:
    lead = leads[0]
    emulator.add_fault("lock_row", family="composite", method="PATCH", count=4, records=1)
    wb.edit(stack, "Lead", lead, Title="Eventually")

    runs = [inv for inv in wb.writeback_invocations(stack) if _mentions(inv.event, lead)]
    # a batch whose every record failed is a function error (Powertools), else a partial failure
    assert any(inv.is_error or inv.result.get("batchItemFailures") for inv in runs)
    assert wb.salesforce_row(emulator, "Lead", lead)["Title"] == "Eventually"


def _mentions(event: Any, key: str) -> bool:
    return any(r["dynamodb"]["Keys"]["Id"]["S"] == key for r in (event or {}).get("Records", []))
