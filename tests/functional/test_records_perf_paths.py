"""The record store's fast paths: wire-format batch calls and the
exclusive writer's batched puts, held to the same results as the conditional per-item path.

DynamoDB is moto in-process (no network).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.config import Config
from moto import mock_aws
from sfsync.core.exceptions import StoreThrottled
from sfsync.core.registry import ObjectSpec
from sfsync.items.codec import wire_attribute
from sfsync.items.images import from_wire, item_from_wire
from sfsync.store.ddb_wire import WireCalls, _encode_body
from sfsync.store.records import CLIENT_CONFIG, RecordStore

from tests.support.item_rules import rest_lead_row as row

pytestmark = pytest.mark.functional

SPEC = ObjectSpec(name="Lead", family="Lead", tombstone_retention_days=30)
SYNCED = dt.datetime(2026, 11, 24, 13, 0, tzinfo=dt.UTC)
DATETIMES = ("CreatedDate", "SystemModstamp")
SELECTED = ("Id", "IsDeleted", "SystemModstamp", "CreatedDate", "LastName", "Title", "Email", "Score__c")


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1", config=CLIENT_CONFIG)
        for name in ("plain", "batched"):
            client.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
                AttributeDefinitions=[
                    {"AttributeName": "Id", "AttributeType": "S"},
                    {"AttributeName": "Email", "AttributeType": "S"},
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": "by-email",
                        "KeySchema": [{"AttributeName": "Email", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                    }
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        client.create_table(
            TableName="errors",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def table_items(client: Any, table: str) -> dict[str, dict[str, Any]]:
    de = TypeDeserializer()
    raw = client.scan(TableName=table, ConsistentRead=True)["Items"]
    return {item["Id"]["S"]: {k: de.deserialize(v) for k, v in item.items()} for item in raw}


def error_ids(client: Any) -> list[str]:
    return sorted(item["record_id"]["S"] for item in client.scan(TableName="errors")["Items"])


# -- wire format ----------------------------------------------------------------------------------

VALUES: list[Any] = [
    "text",
    "",
    True,
    False,
    Decimal("12.50"),
    Decimal("-1E+20"),
    7,
    {"a", "b"},
    {Decimal(1), Decimal(2)},
    [Decimal(1), "x", {"k": True}],
    {"nested": {"deeper": [False]}},
    Binary(b"\x00\xff"),
    None,
]


def test_given_python_values_when_written_in_wire_format_then_boto3_reads_back_the_same(dynamodb: Any) -> None:
    wire = WireCalls(dynamodb)
    item = {"Id": "w1", **{f"v{i}": value for i, value in enumerate(VALUES)}}
    wire.batch_write_item({"plain": [{"PutRequest": {"Item": {k: wire_attribute(v) for k, v in item.items()}}}]})
    expected = {k: (Decimal(v) if type(v) is int else v) for k, v in item.items()}
    assert table_items(dynamodb, "plain")["w1"] == expected
    response = wire.batch_get_item({"plain": {"Keys": [{"Id": {"S": "w1"}}], "ConsistentRead": True}})
    assert item_from_wire(response["Responses"]["plain"][0]) == expected
    assert from_wire({"S": "x"}) == "x"


def test_given_a_wire_call_when_another_call_runs_inside_it_then_each_gets_its_own_body(dynamodb: Any) -> None:
    dynamodb.put_item(TableName="plain", Item={"Id": {"S": "inner"}})
    dynamodb.put_item(TableName="plain", Item={"Id": {"S": "outer"}})
    seen: list[list[str]] = []

    def nested(**_: Any) -> None:
        if not seen:  # the way moto runs a stream-triggered Lambda inside a write
            seen.append([])
            response = dynamodb.batch_get_item(RequestItems={"plain": {"Keys": [{"Id": {"S": "inner"}}]}})
            seen[0] = [item["Id"]["S"] for item in response["Responses"]["plain"]]

    dynamodb.meta.events.register_first("before-send.dynamodb.BatchGetItem", nested)
    outer = WireCalls(dynamodb).batch_get_item({"plain": {"Keys": [{"Id": {"S": "outer"}}]}})
    assert seen == [["inner"]]
    assert [item["Id"]["S"] for item in outer["Responses"]["plain"]] == ["outer"]


# -- batched puts of an exclusive writer == conditional puts ---------------------------------------


def scenario_pages() -> list[list[dict[str, Any]]]:
    t1, t2, t3 = "2026-11-24T12:01:00.000Z", "2026-11-24T12:02:00.000Z", "2026-11-24T12:03:00.000Z"
    first = [row(n, t1, Title="v1") for n in range(60)]
    second = (
        [row(n, t2, Title="v2") for n in range(0, 20)]  # updated
        + [row(n, t1, Title="v1") for n in range(20, 40)]  # replays
        + [row(n, t2, Title="v2", IsDeleted=True) for n in range(40, 45)]  # soft deletes
        + [row(n, t2, LastName="x" * 500_000) for n in range(45, 47)]  # too large
        + [row(n, t1, Title="v1") for n in range(60, 90)]  # created
        + [row(90, t2, Title="first"), row(90, t3, Title="second")]  # one Id twice
        + [row(91, t2, Email="")]  # an empty GSI key: DynamoDB rejects the item
    )
    third = [row(n, t1, Title="stale") for n in range(0, 10)]  # older than stored
    return [first, second, third]


def run_pages(client: Any, table: str, *, exclusive: bool) -> list[dict[str, int]]:
    store = RecordStore(client, {"Lead": table}, errors_table="errors", exclusive_writer=exclusive)
    # a formula value the cycle does not select, and an item without a stamp (the conditional put refuses it)
    client.put_item(
        TableName=table,
        Item={
            "Id": {"S": "00Q000000000000001"},
            "SystemModstamp": {"S": "2026-11-24T11:00:00.000Z"},
            "Formula__c": {"N": "3"},
        },
    )
    client.put_item(TableName=table, Item={"Id": {"S": "00Q000000000000002"}, "Formula__c": {"N": "4"}})
    counts = []
    for n, page in enumerate(scenario_pages()):
        outcome = store.write_page(
            SPEC, page, cycle_id=f"c{n}", synced_at=SYNCED, datetime_fields=DATETIMES, selected_fields=SELECTED
        )
        counts.append({k: v for k, v in outcome.counts.items() if v})
    return counts


def test_given_the_same_pages_when_written_batched_or_conditionally_then_items_counts_and_errors_agree(
    dynamodb: Any,
) -> None:
    plain_counts = run_pages(dynamodb, "plain", exclusive=False)
    plain_errors = error_ids(dynamodb)
    for item in dynamodb.scan(TableName="errors")["Items"]:
        dynamodb.delete_item(TableName="errors", Key={"pk": item["pk"], "sk": item["sk"]})
    batched_counts = run_pages(dynamodb, "batched", exclusive=True)
    assert batched_counts == plain_counts
    assert plain_counts[1] == {
        "RecordsCreated": 31,
        "RecordsUpdated": 20,
        "RecordsDeleted": 5,
        "RecordsSkipped": 21,
        "RecordsFailed": 3,
    }
    assert plain_counts[2] == {"RecordsSkipped": 10}
    plain, batched = table_items(dynamodb, "plain"), table_items(dynamodb, "batched")
    assert batched == plain
    assert plain["00Q000000000000090"]["Title"] == "second"
    assert plain["00Q000000000000001"]["Formula__c"] == 3  # carried over
    assert plain["00Q000000000000001"]["Title"] == "v2"
    assert "SystemModstamp" not in plain["00Q000000000000002"]
    assert "00Q000000000000091" not in plain
    assert error_ids(dynamodb) == plain_errors == [f"00Q0000000000000{n}" for n in (45, 46, 91)]


def test_given_a_replayed_page_when_written_batched_then_nothing_is_written(dynamodb: Any) -> None:
    store = RecordStore(dynamodb, {"Lead": "batched"}, errors_table="errors", exclusive_writer=True)
    page = [row(n, "2026-11-24T12:01:00.000Z") for n in range(30)]
    store.write_page(SPEC, page, cycle_id="c1", synced_at=SYNCED, datetime_fields=DATETIMES)
    written: list[str] = []
    later = SYNCED + dt.timedelta(minutes=5)
    outcome = store.write_page(
        SPEC, page, cycle_id="c2", synced_at=later, datetime_fields=DATETIMES, after_put=written.append
    )
    assert outcome.counts["RecordsSkipped"] == 30
    assert written == []
    assert {item["_cycle_id"] for item in table_items(dynamodb, "batched").values()} == {"c1"}


def test_given_dynamodb_keeps_throttling_when_a_batch_is_written_then_the_page_fails_throttled() -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
        client.create_table(
            TableName="batched",
            KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        body = b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow"}'

        def throttle(request: Any, **_: Any) -> AWSResponse:
            return AWSResponse(request.url, 400, HTTPHeaders(), _Raw(body))

        client.meta.events.register_first("before-send.dynamodb.BatchWriteItem", throttle)
        store = RecordStore(client, {"Lead": "batched"}, errors_table=None, exclusive_writer=True)
        with pytest.raises(StoreThrottled, match="throttling"):
            store.write_page(SPEC, [row(1, "2026-11-24T12:01:00.000Z")], cycle_id="c", synced_at=SYNCED)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def test_given_non_ascii_text_when_written_in_wire_format_then_it_round_trips(dynamodb: Any) -> None:
    wire = WireCalls(dynamodb)
    item = {"Id": "u1", "Name": "Soci\u00e9t\u00e9 G\u00e9n\u00e9rale \u6771\u4eac \u2713"}
    wire.batch_write_item({"plain": [{"PutRequest": {"Item": {k: wire_attribute(v) for k, v in item.items()}}}]})
    assert table_items(dynamodb, "plain")["u1"]["Name"] == item["Name"]


def test_given_a_lone_surrogate_when_a_body_is_encoded_then_it_is_escaped_as_json_dumps_does() -> None:
    body = {"RequestItems": {"t": [{"Name": {"S": "broken \ud800 text"}}]}}
    assert _encode_body(body) == json.dumps(body, separators=(",", ":")).encode()
    assert _encode_body({"x": "\u00e9"}) == '{"x":"\u00e9"}'.encode()


@pytest.mark.parametrize(("store_default", "exclusive", "batched"), [(False, True, True), (True, False, False)])
def test_given_a_per_page_exclusive_flag_when_writing_then_it_overrides_the_store_default(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch, store_default: bool, exclusive: bool, batched: bool
) -> None:
    calls = {"batch": 0}
    original = RecordStore._batch_put

    def counted(self: RecordStore, table: str, items: list[bytes]) -> bool:
        calls["batch"] += 1
        return original(self, table, items)

    monkeypatch.setattr(RecordStore, "_batch_put", counted)
    store = RecordStore(dynamodb, {"Lead": "plain"}, errors_table="errors", exclusive_writer=store_default)
    page = [row(n, "2026-11-24T12:01:00.000Z") for n in range(30)]
    outcome = store.write_page(
        SPEC, page, cycle_id="c1", synced_at=SYNCED, datetime_fields=DATETIMES, exclusive=exclusive
    )
    assert outcome.counts["RecordsCreated"] == 30
    assert calls["batch"] == (2 if batched else 0)
    assert len(table_items(dynamodb, "plain")) == 30
