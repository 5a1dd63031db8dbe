"""The write-back's stream mappings filter out the engine's own inserts (``FilterCriteria`` in
template.yaml, applied by the local stack as Lambda applies it): a new item carrying ``_cycle_id``
never invokes the write-back; an application's new item, any edit and any removal do."""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional import test_writeback_support as wb

pytestmark = pytest.mark.functional


def _records(invocations: list[Any]) -> list[tuple[str, str]]:
    return [
        (r["eventName"], r["dynamodb"]["Keys"]["Id"]["S"]) for inv in invocations for r in inv.event.get("Records", [])
    ]


def test_given_the_engines_inserts_and_an_applications_changes_then_only_the_applications_reach_the_write_back(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    before = len(wb.writeback_invocations(stack))
    synced = wb.sync_items(stack, emulator, "Lead")  # new items with _cycle_id and _base: the engine's inserts

    assert len(synced) > 3
    assert _records(wb.writeback_invocations(stack)[before:]) == []

    key = next(k for k in synced if not wb.salesforce_row(emulator, "Lead", k)["IsConverted"])
    wb.edit(stack, "Lead", key, Title="Filtered Title")  # an application's edit (MODIFY)
    wb.put_item(stack, "Lead", {"Id": "local-filter-1", "LastName": "Local", "Company": "Filter Co"})  # its insert
    stack.boto3_client("dynamodb").delete_item(TableName=stack.table_name("LeadTable"), Key={"Id": {"S": synced[-1]}})
    wb.drain(stack)

    seen = _records(wb.writeback_invocations(stack)[before:])
    assert ("MODIFY", key) in seen and ("INSERT", "local-filter-1") in seen and ("REMOVE", synced[-1]) in seen
    assert not any(event == "INSERT" and record_id in synced for event, record_id in seen)
    assert wb.salesforce_row(emulator, "Lead", key)["Title"] == "Filtered Title"


def test_given_the_mappings_of_the_template_then_each_write_back_stream_filters_the_engines_inserts(
    deploy_stack: Any,
) -> None:
    stack = wb.deploy(deploy_stack)
    mappings = stack.boto3_client("lambda").list_event_source_mappings(
        FunctionName=stack.function_name("WriteBackFunction")
    )["EventSourceMappings"]
    streams = [m for m in mappings if ":dynamodb:" in m["EventSourceArn"]]
    assert len(streams) == 4
    for mapping in streams:
        assert len(mapping["FilterCriteria"]["Filters"]) == 2
