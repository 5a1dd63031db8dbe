"""DynamoDB wire JSON back to item values: stored items read in wire format and stream images.

The inverse of :func:`sfsync.items.codec.encode`'s wire text: ``S`` -> str, ``N`` -> ``Decimal``,
``BOOL`` -> bool, ``NULL`` -> None, binary values as boto3's ``Binary``, sets, lists and maps as
boto3's ``TypeDeserializer`` gives them.  Response bodies and stream events are decoded with
``orjson`` (numbers are strings in DynamoDB's JSON, so no precision is at stake).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson
from boto3.dynamodb.types import Binary, TypeDeserializer

_DESERIALIZER = TypeDeserializer()

#: JSON text (bytes or str) -> Python values; C code (``orjson``).
loads = orjson.loads


def from_wire(attribute: Mapping[str, Any]) -> Any:
    """One DynamoDB JSON attribute as the Python value boto3's TypeDeserializer gives."""
    if "S" in attribute:
        return attribute["S"]
    if "N" in attribute:
        return Decimal(attribute["N"])
    if "BOOL" in attribute:
        return bool(attribute["BOOL"])
    ((tag, inner),) = attribute.items()
    if tag == "NULL":
        return None
    if tag == "B":
        return Binary(base64.b64decode(inner))
    if tag == "BS":
        return {Binary(base64.b64decode(b)) for b in inner}
    if tag == "M":
        return {k: from_wire(v) for k, v in inner.items()}
    if tag == "L":
        return [from_wire(v) for v in inner]
    typed: Any = dict(attribute)
    return _DESERIALIZER.deserialize(typed)  # SS, NS


def item_from_wire(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A whole item in wire format as Python values (strings, most attributes, without a call each)."""
    return {name: value["S"] if "S" in value else from_wire(value) for name, value in raw.items()}


def item_from_boto(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """An item as botocore parsed it (a call botocore serialised: binary values already bytes)."""
    return {name: _DESERIALIZER.deserialize(value) for name, value in raw.items()}  # type: ignore[arg-type]


def image(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A stream record's ``NewImage`` / ``OldImage`` / ``Keys`` as item values (None when absent or empty)."""
    return item_from_wire(raw) if raw else None


__all__ = ["from_wire", "image", "item_from_boto", "item_from_wire", "loads"]
