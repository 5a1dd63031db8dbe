"""The real inbound path (first copy, incremental cycles) and the write-back together: the sync's
writes never go back to Salesforce, and a pushed change comes back from the next cycle without an
echo."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sfsync.core.config import Settings
from sfsync.items import snapshot

from tests.functional import test_writeback_support as wb
from tests.support.fullcopy import first_copy

pytestmark = pytest.mark.functional

PAUSE = 300
LAG = int(Settings.model_fields["safety_lag_seconds"].default)


@pytest.fixture
def emulator_records() -> int:
    return 100


def writes_to_salesforce(emulator: Any, since: int) -> list[dict[str, Any]]:
    return [e for e in emulator.request_log()[since:] if "/composite/sobjects" in e["path"] and e["method"] == "PATCH"]


def test_given_the_inbound_sync_when_it_copies_and_then_brings_back_a_pushed_change_then_nothing_echoes(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    before_copy = len(emulator.request_log())
    first_copy(stack)
    assert [e for e in emulator.request_log()[before_copy:] if "/composite/sobjects" in e["path"]] == []
    lead = next(
        key for key, item in _items(stack, "Lead").items() if not item.get("IsConverted") and not item.get("IsDeleted")
    )
    synced = wb.get_item(stack, "Lead", lead)
    assert synced is not None and "_base" in synced, "the copy writes values and base together"
    assert snapshot.local_changes(synced) == {}

    since = len(emulator.request_log())
    wb.edit(stack, "Lead", lead, Title="Pushed Once")
    assert len(writes_to_salesforce(emulator, since)) == 1, [
        (i.result, i.event["Records"][0]["eventName"]) for i in wb.writeback_invocations(stack)[-3:]
    ] + [wb.errors(stack, "Lead")]

    emulator.clock.advance(PAUSE + LAG + 1)
    after_push = len(emulator.request_log())
    stack.fire_schedule()
    stack.drain()
    assert writes_to_salesforce(emulator, after_push) == [], "the cycle's write of the pushed change is no echo"
    item = wb.get_item(stack, "Lead", lead)
    assert item is not None
    assert item["Title"] == "Pushed Once"
    assert snapshot.local_changes(item) == {}
    origins = [e.change_origin for e in emulator.org.cdc.since(0) if lead in e.record_ids]
    assert sum(1 for o in origins if o.endswith("client=sfsync")) == 1
    assert json.loads(item["_base"])["Title"] == "Pushed Once"


def _items(stack: Any, obj: str) -> dict[str, dict[str, Any]]:
    from tests.support.compare import table_items

    return table_items(stack.boto3_client("dynamodb"), stack.table_name(wb.TABLES[obj]), obj)


def test_given_a_pushed_change_when_the_incremental_cycle_reads_it_back_then_nothing_echoes(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    keys = wb.sync_items(stack, emulator, "Lead")
    lead = next(k for k in keys if not wb.salesforce_row(emulator, "Lead", k)["IsConverted"])
    wb.edit(stack, "Lead", lead, Title="Pushed Once")
    emulator.clock.advance(PAUSE + LAG + 1)

    since = len(emulator.request_log())
    # the object's cycle, as the dispatcher starts it
    cycle = stack.invoke("ObjectSyncFunction", {"object": "Lead", "cycle_id": "after-push", "reason": "due"})
    stack.drain()
    assert cycle["status"] == "complete" and cycle["counts"]["RecordsUpdated"] == 1, cycle
    assert writes_to_salesforce(emulator, since) == []
    item = wb.get_item(stack, "Lead", lead)
    assert item is not None and item["_cycle_id"] == "after-push", "the cycle rewrote the item"
    assert item["Title"] == "Pushed Once" and snapshot.local_changes(item) == {}
