"""The local stack's pooled stream delivery (``coalesce_stream_delivery``, used by the full-copy
benchmark): the records of several requests reach the stream's function in one batch, in order."""

from __future__ import annotations

from typing import Any

import pytest
from sfsync_local.lambda_runtime import coalesce_stream_delivery

from tests.functional import test_writeback_support as wb

pytestmark = pytest.mark.functional


def test_given_pooled_delivery_then_several_requests_records_reach_the_function_in_one_batch_at_the_end(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    leads = [
        key
        for key in wb.sync_items(stack, emulator, "Lead")
        if not wb.salesforce_row(emulator, "Lead", key)["IsConverted"]
    ][:3]
    assert len(leads) == 3
    name = stack.function_name("WriteBackFunction")
    client = stack.boto3_client("dynamodb")
    before = len(stack.invocations)
    with coalesce_stream_delivery(1000):
        for n, key in enumerate(leads):
            client.update_item(
                TableName=stack.table_name("LeadTable"),
                Key={"Id": {"S": key}},
                UpdateExpression="SET Title = :t",
                ExpressionAttributeValues={":t": {"S": f"Pooled Title {n}"}},
            )
        assert [i for i in stack.invocations[before:] if i.function_name == name] == []
    runs = [i for i in stack.invocations[before:] if i.function_name == name]
    # one run takes the three edits at once (the others: the write-back's own writes, delivered
    # inside it, so listed first)
    batched = [i for i in runs if len(i.event["Records"]) > 1]
    assert len(batched) == 1
    assert [r["dynamodb"]["Keys"]["Id"]["S"] for r in batched[0].event["Records"]] == leads
    wb.drain(stack)
    for n, key in enumerate(leads):
        assert wb.salesforce_row(emulator, "Lead", key)["Title"] == f"Pooled Title {n}"


def test_given_pooled_delivery_when_drained_inside_the_block_then_nothing_is_left_pending(
    deploy_stack: Any, emulator: Any
) -> None:
    stack = wb.deploy(deploy_stack)
    key = wb.sync_items(stack, emulator, "Lead")[0]
    name = stack.function_name("WriteBackFunction")
    before = len(stack.invocations)
    with coalesce_stream_delivery(1000):
        stack.boto3_client("dynamodb").update_item(
            TableName=stack.table_name("LeadTable"),
            Key={"Id": {"S": key}},
            UpdateExpression="SET Title = :t",
            ExpressionAttributeValues={":t": {"S": "Drained Title"}},
        )
        wb.drain(stack)
        during = len([i for i in stack.invocations[before:] if i.function_name == name])
        assert during >= 1
    assert len([i for i in stack.invocations[before:] if i.function_name == name]) == during
    assert wb.salesforce_row(emulator, "Lead", key)["Title"] == "Drained Title"
