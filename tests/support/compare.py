"""The DynamoDB copy against what the integration user sees through the emulator's API."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

#: describe types the engine never selects (compound values, blobs).
UNSELECTED_TYPES = frozenset({"address", "location", "base64"})
#: a REST datetime as the emulator writes it.
SF_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


def stored_number_or_value(value: Any) -> Any:
    """A REST JSON value as DynamoDB hands it back: numbers as ``Decimal``, the rest unchanged."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def expected_value(value: Any) -> Any:
    """A REST JSON value as the engine stores it (datetimes in ISO ms ``Z``)."""
    if isinstance(value, str) and SF_DATETIME.match(value):
        return value[:23] + "Z"
    return stored_number_or_value(value)


def table_items(dynamodb: Any, table_name: str, obj: str | None = None) -> dict[str, dict[str, Any]]:
    """Every item of a record table by ``Id`` (only ``obj``'s items when given), from a full scan."""
    de = TypeDeserializer()
    items: dict[str, dict[str, Any]] = {}
    for page in dynamodb.get_paginator("scan").paginate(TableName=table_name):
        for raw in page["Items"]:
            item = {k: de.deserialize(v) for k, v in raw.items()}
            if obj is None or item["sobject"] == obj:
                items[item["Id"]] = item
    return items


def salesforce_view(emulator: Any, obj: str, fields: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """queryAll rows by Id (deleted included): ``fields``, or every readable non-compound, non-formula field."""
    sf = emulator.salesforce()
    if fields is None:
        describe = getattr(sf, obj).describe()
        fields = [f["name"] for f in describe["fields"] if f["type"] not in UNSELECTED_TYPES and not f["calculated"]]
    rows = sf.query_all(f"SELECT {', '.join(fields)} FROM {obj}", include_deleted=True)["records"]
    return {row["Id"]: row for row in rows}


def assert_items_equal_view(items: dict[str, dict[str, Any]], view: dict[str, dict[str, Any]], obj: str) -> None:
    """The items are exactly the view's rows, with equal values (a null is an absent attribute)."""
    missing, extra = sorted(set(view) - set(items)), sorted(set(items) - set(view))
    assert set(items) == set(view), f"{obj}: missing {len(missing)} {missing[:5]}, extra {len(extra)} {extra[:5]}"
    for record_id, row in view.items():
        item = items[record_id]
        for name, value in row.items():
            if name == "attributes":
                continue
            if value is None:
                assert name not in item, f"{obj} {record_id}.{name} should be absent (null in Salesforce)"
            else:
                assert item.get(name) == expected_value(value), f"{obj} {record_id}.{name}"
