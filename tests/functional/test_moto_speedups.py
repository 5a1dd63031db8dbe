"""The local stack's moto DynamoDB speed-ups answer exactly what moto answers without them.

The same items (every attribute type, binary ones included) are written and read back with the
speed-ups off and on; every response a client sees must be equal, and the item size limit must be
enforced the same way.  DynamoDB is moto in-process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from sfsync.store.ddb_wire import WireCalls
from sfsync_local.stack import moto_dynamodb_speedups

pytestmark = pytest.mark.functional

TABLE = "speedups"


def _items() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for n in range(30):
        item: dict[str, Any] = {
            "Id": {"S": f"00Q{n:015d}"},
            "Group": {"S": "g" + str(n % 3)},
            "Name": {"S": f'Zoë "quoted" \\ name {n}\n'},
            "Score": {"N": str(Decimal(n) / 7)[:12]},
            "Flag": {"BOOL": n % 2 == 0},
            "Empty": {"NULL": True},
            "List": {"L": [{"S": "a"}, {"N": "1"}, {"M": {"k": {"S": "v"}}}]},
            "Map": {"M": {"inner": {"L": [{"BOOL": False}]}, "n": {"N": "-3.5"}}},
            "Strings": {"SS": ["x", "y"]},
            "Numbers": {"NS": ["1", "2.5"]},
        }
        if n == 27:  # binary values take moto's own serialiser (only this item and reads that include it)
            item["Blob"] = {"B": b"\x00\x01binary"}
            item["Blobs"] = {"BS": [b"one", b"two"]}
        items.append(item)
    return items


@contextlib.contextmanager
def _table(speedups: bool) -> Iterator[Any]:
    with mock_aws(), moto_dynamodb_speedups() if speedups else contextlib.nullcontext():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
            AttributeDefinitions=[
                {"AttributeName": "Id", "AttributeType": "S"},
                {"AttributeName": "Group", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by-group",
                    "KeySchema": [{"AttributeName": "Group", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _responses(speedups: bool) -> dict[str, Any]:
    """Every read the engine and the tests make, with the ResponseMetadata (request ids) dropped."""
    items = _items()
    with _table(speedups) as client:
        client.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": i}} for i in items[:25]]})
        for item in items[25:]:
            client.put_item(TableName=TABLE, Item=item)
        keys = [{"Id": i["Id"]} for i in items]
        wire = WireCalls(client)

        def by_group(group: str, **extra: Any) -> Any:
            return client.query(
                TableName=TABLE,
                IndexName="by-group",
                KeyConditionExpression="#g = :g",
                ExpressionAttributeNames={"#g": "Group"},
                ExpressionAttributeValues={":g": {"S": group}},
                **extra,
            )

        seen: dict[str, Any] = {
            "get": [client.get_item(TableName=TABLE, Key=k, ConsistentRead=True) for k in keys[:6]],
            "get_binary": client.get_item(TableName=TABLE, Key=keys[27]),
            "get_missing": client.get_item(TableName=TABLE, Key={"Id": {"S": "absent"}}),
            "get_projected": client.get_item(TableName=TABLE, Key=keys[0], ProjectionExpression="Id, Score"),
            "batch_get": client.batch_get_item(
                RequestItems={TABLE: {"Keys": [*keys[:20], {"Id": {"S": "absent"}}]}}, ReturnConsumedCapacity="TOTAL"
            ),
            "wire_batch_get": wire.batch_get_item({TABLE: {"Keys": keys[5:15]}}),
            "query": by_group("g1", Limit=4),
            "query_count": by_group("g2", Select="COUNT"),
            "scan": client.scan(TableName=TABLE, Limit=7),
            "scan_all": client.scan(TableName=TABLE),
        }
    for response in seen.values():
        for single in response if isinstance(response, list) else [response]:
            single.pop("ResponseMetadata", None)
    return seen


def _sorted_batch(response: dict[str, Any]) -> dict[str, Any]:
    out = dict(response)
    out["Responses"] = {t: sorted(v, key=lambda i: str(i["Id"])) for t, v in response.get("Responses", {}).items()}
    return out


def test_every_item_read_answers_the_same_with_the_speedups() -> None:
    plain, fast = _responses(speedups=False), _responses(speedups=True)
    assert fast.keys() == plain.keys()
    for name in plain:
        if name in {"batch_get", "wire_batch_get"}:
            assert _sorted_batch(fast[name]) == _sorted_batch(plain[name]), name
        else:
            assert fast[name] == plain[name], name
    # the reads really returned items of every type, binary ones included
    assert len(fast["scan_all"]["Items"]) == 30
    blob = next(i for i in fast["scan_all"]["Items"] if "Blob" in i)
    assert blob["Blob"] == {"B": b"\x00\x01binary"}
    assert fast["get_binary"]["Item"]["Blobs"] == {"BS": [b"one", b"two"]}
    assert fast["scan"]["LastEvaluatedKey"]
    assert len(fast["batch_get"]["Responses"][TABLE]) == 20
    assert fast["batch_get"]["ConsumedCapacity"]


def test_a_too_large_item_is_refused_the_same_way_with_the_speedups() -> None:
    huge = {"Id": {"S": "big"}, **{f"Field{n}": {"S": "x" * 10_000} for n in range(45)}}
    for speedups in (False, True):
        with _table(speedups) as client:
            with pytest.raises(ClientError) as refused:
                client.put_item(TableName=TABLE, Item=huge)
            assert refused.value.response["Error"]["Code"] == "ValidationException"
            assert "Item size has exceeded" in refused.value.response["Error"]["Message"]
            assert client.scan(TableName=TABLE)["Count"] == 0


def test_wire_batch_writes_store_the_same_items_with_the_speedups() -> None:
    stored = []
    for speedups in (False, True):
        with _table(speedups) as client:
            wire = WireCalls(client)
            body = [{"PutRequest": {"Item": i}} for i in _items()[:25]]
            assert not wire.batch_write_item({TABLE: body}).get("UnprocessedItems")
            stored.append(sorted(client.scan(TableName=TABLE)["Items"], key=lambda i: str(i["Id"])))
    assert stored[0] == stored[1]
    assert len(stored[1]) == 25
