"""Helpers of the write-back functional tests (no tests here): two-way items as the sync writes them,
the errors table, Salesforce's view of a record."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from sfsync.core.registry import build_registry
from sfsync.items import snapshot
from sfsync.store.records import to_item

TABLES = {
    "Lead": "LeadTable",
    "Contact": "ContactTable",
    "Campaign": "CampaignTable",
    "CampaignMember": "CampaignMemberTable",
}
TWO_WAY = "Lead,Contact,Campaign,CampaignMember"
_ser, _de = TypeSerializer(), TypeDeserializer()
_SKIPPED = frozenset({"address", "location", "base64"})


def deploy(deploy_stack: Any, writeback: str = "{}") -> Any:
    return deploy_stack({"SyncObjects": TWO_WAY, "PauseSeconds": "300", "WriteBackOptions": writeback})


def drain(stack: Any) -> None:
    """Run whatever the local runtime queued (stream deliveries may be batched until a drain)."""
    stack.drain()


def readable_fields(emulator: Any, obj: str) -> list[str]:
    describe = getattr(emulator.salesforce(), obj).describe()
    return [f["name"] for f in describe["fields"] if f["type"] not in _SKIPPED and not f["calculated"]]


def sync_items(stack: Any, emulator: Any, obj: str, ids: list[str] | None = None) -> list[str]:
    """Write ``obj``'s records into its table exactly as the inbound sync does (values + ``_base``)."""
    sf = emulator.salesforce()
    describe = getattr(sf, obj).describe()
    fields = [f["name"] for f in describe["fields"] if f["type"] not in _SKIPPED and not f["calculated"]]
    datetimes = frozenset(f["name"] for f in describe["fields"] if f["type"] == "datetime")
    where = ""
    if ids is not None:
        where = " WHERE Id IN (" + ", ".join(f"'{i}'" for i in ids) + ")"
    rows = sf.query_all(f"SELECT {', '.join(fields)} FROM {obj}{where}")["records"]
    spec = build_registry([obj]).get(obj)
    client = stack.boto3_client("dynamodb")
    table = stack.table_name(TABLES[obj])
    now = dt.datetime.now(dt.UTC)
    written = []
    for row in rows:
        item = snapshot.with_base(to_item(spec, row, cycle_id="test-sync", synced_at=now, datetime_fields=datetimes))
        client.put_item(TableName=table, Item={k: _ser.serialize(v) for k, v in item.items()})
        written.append(str(row["Id"]))
    drain(stack)
    return written


def get_item(stack: Any, obj: str, key: str) -> dict[str, Any] | None:
    raw = stack.boto3_client("dynamodb").get_item(
        TableName=stack.table_name(TABLES[obj]), Key={"Id": {"S": key}}, ConsistentRead=True
    )
    item = raw.get("Item")
    return {k: _de.deserialize(v) for k, v in item.items()} if item else None


def put_item(stack: Any, obj: str, item: dict[str, Any]) -> None:
    stack.boto3_client("dynamodb").put_item(
        TableName=stack.table_name(TABLES[obj]), Item={k: _ser.serialize(v) for k, v in item.items()}
    )
    drain(stack)


def edit(stack: Any, obj: str, key: str, **values: Any) -> None:
    """A local edit the way an application makes it: UpdateItem of data attributes only."""
    sets, removes, names, vals = [], [], {}, {}
    for i, (name, value) in enumerate(values.items()):
        names[f"#f{i}"] = name
        if value is None:
            removes.append(f"#f{i}")
        else:
            sets.append(f"#f{i} = :v{i}")
            vals[f":v{i}"] = _ser.serialize(
                Decimal(str(value)) if isinstance(value, int | float) and not isinstance(value, bool) else value
            )
    expression = ("SET " + ", ".join(sets)) if sets else ""
    if removes:
        expression += (" " if expression else "") + "REMOVE " + ", ".join(removes)
    request: dict[str, Any] = {
        "TableName": stack.table_name(TABLES[obj]),
        "Key": {"Id": {"S": key}},
        "UpdateExpression": expression,
        "ExpressionAttributeNames": names,
    }
    if vals:
        request["ExpressionAttributeValues"] = vals
    stack.boto3_client("dynamodb").update_item(**request)
    drain(stack)


def errors(stack: Any, obj: str, kind: str | None = None) -> list[dict[str, Any]]:
    client = stack.boto3_client("dynamodb")
    raw = client.query(
        TableName=stack.table_name("ErrorsTable"),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"ERRORS#{obj}"}},
        ConsistentRead=True,
    )["Items"]
    rows = [{k: _de.deserialize(v) for k, v in item.items()} for item in raw]
    return [r for r in rows if kind is None or r.get("kind") == kind]


def salesforce_row(emulator: Any, obj: str, record_id: str) -> dict[str, Any]:
    return dict(emulator.admin.get(obj, record_id))


def writeback_invocations(stack: Any) -> list[Any]:
    name = stack.function_name("WriteBackFunction")
    return [inv for inv in stack.invocations if inv.function_name == name]


def collection_calls(emulator: Any) -> list[dict[str, Any]]:
    return [e for e in emulator.request_log() if "/composite/sobjects" in e["path"]]


def stream_event(stack: Any, obj: str, new: dict[str, Any], old: dict[str, Any] | None, at: float) -> dict[str, Any]:
    """A DynamoDB stream event of one MODIFY record of ``obj``'s table (for replays of stale records)."""
    client = stack.boto3_client("dynamodb")
    arn = client.describe_table(TableName=stack.table_name(TABLES[obj]))["Table"]["LatestStreamArn"]
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": at,
        "Keys": {"Id": {"S": new["Id"]}},
        "NewImage": {k: _ser.serialize(v) for k, v in new.items()},
        "SequenceNumber": "900000000000000000001",
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if old is not None:
        body["OldImage"] = {k: _ser.serialize(v) for k, v in old.items()}
    return {
        "Records": [
            {
                "eventID": "replay",
                "eventName": "MODIFY",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "eu-west-1",
                "dynamodb": body,
                "eventSourceARN": arn,
            }
        ]
    }


@contextlib.contextmanager
def held_stream(stack: Any, obj: str) -> Iterator[list[dict[str, Any]]]:
    """Writes to ``obj``'s table inside the block are not delivered; on exit the list holds their
    stream records in Lambda's event shape (to be delivered in batches, as the stream poller does)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    name = stack.table_name(TABLES[obj])
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID][stack.region].tables[name]
    mappings = dict(table.lambda_event_source_mappings)
    table.lambda_event_source_mappings.clear()
    shard = table.stream_shard
    assert shard is not None, f"{name} has no stream"
    start = len(shard.items)
    held: list[dict[str, Any]] = []
    try:
        yield held
    finally:
        table.lambda_event_source_mappings.update(mappings)
        arn = table.latest_stream_label and f"{table.table_arn}/stream/{table.latest_stream_label}"
        for sequence, record in enumerate(shard.items[start:], start=1):
            body = dict(record.to_json()["dynamodb"])
            created = body["ApproximateCreationDateTime"]
            if isinstance(created, dt.datetime):
                body["ApproximateCreationDateTime"] = created.replace(tzinfo=dt.UTC).timestamp()
            body["SequenceNumber"] = str(800000000000000000000 + sequence)
            held.append({**record.to_json(), "dynamodb": body, "eventSourceARN": arn})
        del shard.items[start:]


def field_map_cache_clear() -> None:
    """Forget the write-back's describe cache (so a test sees its describe call)."""
    from sfsync.writeback import clear_describe_cache

    clear_describe_cache()
