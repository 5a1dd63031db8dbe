"""A stream batch of hundreds of local edits costs two Salesforce API calls: one retrieve of the
current values and one ``/composite`` carrying up to five sObject Collections updates of 200."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.functional import test_writeback_support as wb

pytestmark = pytest.mark.functional


@pytest.fixture
def emulator_records() -> int:
    return 1500


def test_given_hundreds_of_edits_in_one_batch_then_they_travel_in_two_api_calls(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    leads = [
        key
        for key in wb.sync_items(stack, emulator, "Lead")
        if not wb.salesforce_row(emulator, "Lead", key)["IsConverted"]
    ]
    assert len(leads) > 200
    client = stack.boto3_client("dynamodb")
    with wb.held_stream(stack, "Lead") as records:
        for n, key in enumerate(leads):
            client.update_item(
                TableName=stack.table_name("LeadTable"),
                Key={"Id": {"S": key}},
                UpdateExpression="SET Title = :t",
                ExpressionAttributeValues={":t": {"S": f"Batch Title {n}"}},
            )
    assert len(records) == len(leads)
    wb.field_map_cache_clear()

    before = len(emulator.request_log())
    result = stack.invoke("WriteBackFunction", {"Records": records})
    assert result == {"batchItemFailures": []}

    calls = [e for e in emulator.request_log()[before:] if e["path"].startswith("/services/data/")]
    kinds = [(e["method"], e["path"].split("/v59.0/")[-1]) for e in calls]
    assert kinds == [("GET", "sobjects/Lead/describe"), ("POST", "composite/sobjects/Lead"), ("POST", "composite")]
    for n, key in enumerate(leads):
        assert wb.salesforce_row(emulator, "Lead", key)["Title"] == f"Batch Title {n}"
    item = wb.get_item(stack, "Lead", leads[-1])
    assert item is not None and json.loads(item["_base"])["Title"] == f"Batch Title {len(leads) - 1}"
