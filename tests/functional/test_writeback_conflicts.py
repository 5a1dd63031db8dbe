"""Both sides changed a field: each conflict policy on the local stack, one-side changes merging,
a local edit the sync overwrote before the write-back saw it, converted leads and merged records."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest

from tests.functional import test_writeback_support as wb

pytestmark = pytest.mark.functional

POLICIES = json.dumps(
    {
        "Lead": {"fields": {"Title": "recent", "Phone": "nonempty", "MobilePhone": "nonempty"}},
        "Contact": {},
    }
)


@pytest.fixture
def emulator_records() -> int:
    return 100


@pytest.fixture
def stack(deploy_stack: Any) -> Any:
    return wb.deploy(deploy_stack, POLICIES)


def open_leads(stack: Any, emulator: Any) -> list[str]:
    ids = wb.sync_items(stack, emulator, "Lead")
    return [i for i in ids if not wb.salesforce_row(emulator, "Lead", i)["IsConverted"]]


def conflicts_of(stack: Any, obj: str, key: str) -> dict[str, dict[str, Any]]:
    return {r["field"]: r for r in wb.errors(stack, obj, "conflict") if r["record_id"] == key}


def test_given_both_sides_changed_a_lead_field_then_the_local_side_wins_by_default(stack: Any, emulator: Any) -> None:
    lead = open_leads(stack, emulator)[0]
    emulator.admin.update("Lead", lead, {"City": "Salesforce City"})
    wb.edit(stack, "Lead", lead, City="Local City")

    assert wb.salesforce_row(emulator, "Lead", lead)["City"] == "Local City"
    conflict = conflicts_of(stack, "Lead", lead)["City"]
    assert (conflict["policy"], conflict["winner"]) == ("local", "local")
    assert json.loads(conflict["salesforce_value"]) == "Salesforce City"
    assert json.loads(conflict["local_value"]) == "Local City"


def test_given_both_sides_changed_a_contact_field_then_salesforce_wins_by_default_on_both_sides(
    stack: Any, emulator: Any
) -> None:
    contact = wb.sync_items(stack, emulator, "Contact")[0]
    emulator.admin.update("Contact", contact, {"Title": "From Salesforce"})
    wb.edit(stack, "Contact", contact, Title="From Local")

    assert wb.salesforce_row(emulator, "Contact", contact)["Title"] == "From Salesforce"
    item = wb.get_item(stack, "Contact", contact)
    assert item is not None
    assert item["Title"] == "From Salesforce"
    assert json.loads(item["_base"])["Title"] == "From Salesforce"
    conflict = conflicts_of(stack, "Contact", contact)["Title"]
    assert (conflict["policy"], conflict["winner"]) == ("salesforce", "salesforce")


def test_given_the_recent_policy_then_the_later_write_wins(stack: Any, emulator: Any) -> None:
    first, second = open_leads(stack, emulator)[:2]
    # Salesforce's change is older than the local write (the emulator's clock is behind the wall clock)
    emulator.admin.update("Lead", first, {"Title": "Older In Salesforce"})
    wb.edit(stack, "Lead", first, Title="Newer Locally")
    assert wb.salesforce_row(emulator, "Lead", first)["Title"] == "Newer Locally"

    # move Salesforce's clock past the wall clock: its change is now the more recent one
    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(days=1) - emulator.clock.now()
    emulator.clock.advance(ahead.total_seconds())
    emulator.admin.update("Lead", second, {"Title": "Newer In Salesforce"})
    wb.edit(stack, "Lead", second, Title="Older Locally")
    assert wb.salesforce_row(emulator, "Lead", second)["Title"] == "Newer In Salesforce"

    assert conflicts_of(stack, "Lead", first)["Title"]["winner"] == "local"
    assert conflicts_of(stack, "Lead", second)["Title"]["winner"] == "salesforce"
    assert {conflicts_of(stack, "Lead", k)["Title"]["policy"] for k in (first, second)} == {"recent"}


def test_given_the_nonempty_policy_then_a_value_beats_a_cleared_field(stack: Any, emulator: Any) -> None:
    lead = open_leads(stack, emulator)[0]
    emulator.admin.update("Lead", lead, {"Phone": "+32 9 111 11 11", "MobilePhone": "+32 470 11 11 11"})
    wb.sync_items(stack, emulator, "Lead", [lead])
    emulator.clock.advance(5)
    emulator.admin.update("Lead", lead, {"Phone": "+32 9 000 00 00", "MobilePhone": None})
    wb.edit(stack, "Lead", lead, Phone=None, MobilePhone="+32 470 00 00 00")

    row = wb.salesforce_row(emulator, "Lead", lead)
    assert row["Phone"] == "+32 9 000 00 00"  # local cleared it, Salesforce set it: Salesforce's value stays
    assert row["MobilePhone"] == "+32 470 00 00 00"  # local set it, Salesforce cleared it: the local value goes
    conflicts = conflicts_of(stack, "Lead", lead)
    assert (conflicts["Phone"]["winner"], conflicts["MobilePhone"]["winner"]) == ("salesforce", "local")


def test_given_different_fields_changed_on_each_side_then_both_changes_are_kept_without_conflict(
    stack: Any, emulator: Any
) -> None:
    lead = open_leads(stack, emulator)[0]
    emulator.admin.update("Lead", lead, {"City": "Changed In Salesforce"})
    wb.edit(stack, "Lead", lead, Title="Changed Locally")

    row = wb.salesforce_row(emulator, "Lead", lead)
    assert (row["City"], row["Title"]) == ("Changed In Salesforce", "Changed Locally")
    assert conflicts_of(stack, "Lead", lead) == {}


def test_given_a_local_edit_the_sync_overwrote_when_its_stream_record_arrives_then_the_conflict_is_resolved(
    stack: Any, emulator: Any
) -> None:
    lead = open_leads(stack, emulator)[0]
    synced = wb.get_item(stack, "Lead", lead)
    assert synced is not None
    local_image = {**synced, "Company": "Local Company"}
    # Salesforce changed the same field and the sync wrote it (value and base) before the write-back ran
    emulator.clock.advance(5)
    emulator.admin.update("Lead", lead, {"Company": "Salesforce Company"})
    wb.sync_items(stack, emulator, "Lead", [lead])

    event = wb.stream_event(stack, "Lead", local_image, synced, time.time())
    assert stack.invoke("WriteBackFunction", event) == {"batchItemFailures": []}

    assert wb.salesforce_row(emulator, "Lead", lead)["Company"] == "Local Company"
    item = wb.get_item(stack, "Lead", lead)
    assert item is not None
    assert item["Company"] == "Local Company", "the local winner is written back over the sync's value"
    assert json.loads(item["_base"])["Company"] == "Local Company"
    assert conflicts_of(stack, "Lead", lead)["Company"]["winner"] == "local"


def test_given_a_converted_lead_when_it_is_edited_locally_then_the_change_goes_to_its_contact(
    stack: Any, emulator: Any
) -> None:
    lead = open_leads(stack, emulator)[0]
    converted = emulator.admin.convert_lead(lead)
    wb.edit(stack, "Lead", lead, Title="Now A Contact", Description="kept on the lead only")

    contact = wb.salesforce_row(emulator, "Contact", converted["contactId"])
    assert contact["Title"] == "Now A Contact"
    redirected = [r for r in wb.errors(stack, "Lead", "redirected") if r["record_id"] == lead]
    assert [r["target_id"] for r in redirected] == [converted["contactId"]]
    assert wb.salesforce_row(emulator, "Lead", lead)["Title"] != "Now A Contact"


def test_given_a_merged_lead_when_the_loser_is_edited_locally_then_the_change_goes_to_the_master(
    stack: Any, emulator: Any
) -> None:
    master, loser = open_leads(stack, emulator)[:2]
    emulator.admin.merge("Lead", master, [loser])
    wb.edit(stack, "Lead", loser, Title="Edited On The Loser")

    assert wb.salesforce_row(emulator, "Lead", master)["Title"] == "Edited On The Loser"
    redirected = [r for r in wb.errors(stack, "Lead", "redirected") if r["record_id"] == loser]
    assert [r["target_id"] for r in redirected] == [master]


def test_given_a_deleted_lead_that_was_not_merged_then_the_refusal_is_recorded(stack: Any, emulator: Any) -> None:
    lead = open_leads(stack, emulator)[0]
    emulator.admin.delete("Lead", lead)
    wb.edit(stack, "Lead", lead, Title="Too Late")

    refused = [r for r in wb.errors(stack, "Lead", "refused") if r["record_id"] == lead]
    assert [r["code"] for r in refused] == ["ENTITY_IS_DELETED"]
