"""The local endpoint's threading model, on the local stack with scripted handlers (tests/e2e/test_local_stack.py):
a served write answers at once even while a function runs, its stream records follow in order, and a
data directory round-trips every table without waking the write-back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sfsync_local.datadir import DataDir
from sfsync_local.endpoint import LocalEndpoint, LocalEndpointError
from sfsync_local.stack import LocalStack

from tests.e2e.test_local_stack import _scripted_project

pytestmark = pytest.mark.e2e

# An application in its own process: boto3 and the endpoint URL only.
PUT = r"""
import sys, time
import boto3

url, table, key, status = sys.argv[1:5]
client = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1",
                      aws_access_key_id="local", aws_secret_access_key="local")
started = time.monotonic()
client.put_item(TableName=table, Item={"Id": {"S": key}, "Status": {"S": status}})
print(time.monotonic() - started)
"""


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack.deploy(
        template_path=_scripted_project(tmp_path),
        stack_name="sfsync-scripted",
        parameters={"SyncObjects": "Lead,Account"},
    ) as deployed:
        yield deployed


def _served_put(url: str, table: str, key: str, status: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-c", PUT, url, table, key, status],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return float(done.stdout)


def _write_back_keys(stack: LocalStack) -> list[str]:
    """The item keys the write-back received, in delivery order."""
    name = stack.function_name("WriteBackFunction")
    return [
        record["dynamodb"]["Keys"]["Id"]["S"]
        for invocation in stack.invocations
        if invocation.function_name == name
        for record in invocation.event["Records"]
    ]


def test_given_a_function_running_when_a_served_write_arrives_then_it_answers_and_its_record_keeps_its_place(
    scripted: LocalStack,
) -> None:
    table = scripted.table_name("LeadTable")
    with LocalEndpoint.bind(0) as endpoint:
        endpoint.serve(scripted.runtime)
        with scripted.runtime._lock:  # as while a cycle's handler runs
            seconds = _served_put(endpoint.url, table, "00Q-served-1", "Open")
            assert _write_back_keys(scripted) == [], "the served write's record waits for the running function"
            # the running function writes the same table: its record comes after the served one
            scripted.boto3_client("dynamodb").put_item(
                TableName=table, Item={"Id": {"S": "00Q-engine-2"}, "Status": {"S": "Open"}}
            )
            assert _write_back_keys(scripted) == ["00Q-served-1", "00Q-engine-2"]
            _served_put(endpoint.url, table, "00Q-served-3", "Open")
        deadline = time.monotonic() + 20
        while len(_write_back_keys(scripted)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # the endpoint's poller delivers once the function is done

    assert seconds < 5, "a served write answers without waiting for the running function"
    assert _write_back_keys(scripted) == ["00Q-served-1", "00Q-engine-2", "00Q-served-3"]


def test_given_a_served_write_whose_batch_fails_then_lambda_retries_it_from_the_poller(scripted: LocalStack) -> None:
    table = scripted.table_name("LeadTable")
    with LocalEndpoint.bind(0) as endpoint:
        endpoint.serve(scripted.runtime)
        _served_put(endpoint.url, table, "00Q-failing", "Fail")
        deadline = time.monotonic() + 30
        while not scripted.receive_all("WriteBackFailureQueue") and time.monotonic() < deadline:
            time.sleep(0.1)
        # the scripted write-back reports the record as failed every time: retried, then sent on
        attempts = _write_back_keys(scripted).count("00Q-failing")
    assert attempts > 1


def test_given_a_port_in_use_then_bind_refuses_it(scripted: LocalStack) -> None:
    with LocalEndpoint.bind(0) as first, pytest.raises(LocalEndpointError, match="Address already in use"):
        LocalEndpoint.bind(first.port)


def _scan(stack: LocalStack, logical_id: str) -> list[dict[str, Any]]:
    client = stack.boto3_client("dynamodb")
    items: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(TableName=stack.table_name(logical_id), ConsistentRead=True):
        items.extend(page["Items"])
    return sorted(items, key=lambda item: json.dumps(item, sort_keys=True, default=str))


def test_given_a_saved_data_dir_when_restored_into_a_new_stack_then_every_table_is_equal_and_no_edit_is_seen(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "copy"
    lead = {"Id": {"S": "00Q000000000001AAA"}, "Status": {"S": "Open"}, "_base": {"S": '{"Status":"Open"}'}}
    account = {  # every attribute type (moto cannot stream binary values: an unstreamed table)
        "Id": {"S": "001000000000001AAA"},
        "Score": {"N": "12.50"},
        "IsDeleted": {"BOOL": False},
        "Photo": {"B": b"\x00\x01binary"},
        "Address": {"M": {"City": {"S": "Lyon"}, "Lines": {"L": [{"S": "1 rue"}, {"NULL": True}]}}},
        "Tags": {"SS": ["a", "b"]},
        "Sizes": {"NS": ["1", "2.5"]},
    }
    state = {"pk": {"S": "OBJECT#Lead"}, "sk": {"S": "WATERMARK"}, "watermark": {"S": "2026-12-01T00:00:00.000Z"}}
    (tmp_path / "project").mkdir()
    project = _scripted_project(tmp_path / "project")
    with LocalStack.deploy(template_path=project, stack_name="sfsync-scripted") as first:
        client = first.boto3_client("dynamodb")
        client.put_item(TableName=first.table_name("LeadTable"), Item=lead)
        client.put_item(TableName=first.table_name("StateTable"), Item=state)
        client.put_item(TableName=first.table_name("AccountTable"), Item=account)
        saved = {logical_id: _scan(first, logical_id) for logical_id in ("LeadTable", "StateTable", "AccountTable")}
        data = DataDir.inspect(data_dir)
        data.claim(created_by="test")
        data.load(first)  # a new directory: nothing to restore
        result = data.save(first)
        data.release()
    assert result.items == 3 and result.tables_written == len(first.template.resources_of_type("AWS::DynamoDB::Table"))

    with LocalStack.deploy(template_path=project, stack_name="sfsync-scripted") as second:
        data = DataDir.inspect(data_dir)
        data.claim(created_by="test")
        restored = data.load(second)
        calls_after_restore = len(second.invocations)
        again = data.save(second)  # unchanged content: no table file is rewritten
        data.release()
        restored_tables = {logical_id: _scan(second, logical_id) for logical_id in saved}

    assert restored == 3
    assert restored_tables == saved
    assert calls_after_restore == 0, "a restore is not an edit: the write-back is not invoked"
    assert again.tables_written == 0
