"""Stage 1, decode: what arrives becomes typed :class:`~sfsync.writeback.model.StreamChange` values.

Three inputs: a DynamoDB stream batch (Lambda's event shape, :func:`decode_records`), and the two
re-drive inputs of the sweep and the retry - a pending item read as it is now
(:func:`pending_item_change`) and a pending delete intent (:func:`delete_intent_change`).  The
change's two-way object comes from its table and its ``sobject`` (:func:`object_of`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sfsync.core import clock as sfclock
from sfsync.core.config import Settings
from sfsync.items import snapshot
from sfsync.items.images import image
from sfsync.store.writeback import DELETE_SK
from sfsync.writeback.model import StreamChange


def _table_of(arn: str) -> str:
    # arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>
    parts = arn.split(":", 5)[-1].split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "table" else ""


def _creation_time(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
    if isinstance(value, str) and value:
        try:
            return sfclock.parse_instant(value)
        except ValueError:
            try:
                return dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
            except ValueError:
                return None
    return None


def decode_records(records: Iterable[Mapping[str, Any]]) -> list[StreamChange]:
    """Raw stream records (Lambda's event shape) as :class:`StreamChange` values, in order."""
    changes: list[StreamChange] = []
    for record in records:
        body = record.get("dynamodb") or {}
        keys = image(body.get("Keys")) or {}
        identity = record.get("userIdentity") or {}
        changes.append(
            StreamChange(
                sequence=str(body.get("SequenceNumber", "")),
                event=str(record.get("eventName", "")),
                table=_table_of(str(record.get("eventSourceARN", ""))),
                key=str(keys.get("Id", "")),
                new=image(body.get("NewImage")),
                old=image(body.get("OldImage")),
                at=_creation_time(body.get("ApproximateCreationDateTime")),
                by_service=identity.get("type") == "Service",
            )
        )
    return changes


def pending_item_change(owner: str, table: str, key: str, item: dict[str, Any], since: dt.datetime) -> StreamChange:
    """A re-drive of a pending item: the change is the item as it is now (a MODIFY of itself)."""
    return StreamChange(f"{owner}#{key}", "MODIFY", table, key, item, None, since)


def delete_intent_change(owner: str, obj: str, table: str, record_id: str, since: dt.datetime) -> StreamChange:
    """A re-drive of a pending delete intent: a REMOVE of a synced item."""
    old = {"Id": record_id, "sobject": obj, snapshot.BASE_ATTRIBUTE: "{}"}
    sequence = f"{owner}#{DELETE_SK.format(record_id=record_id)}"
    return StreamChange(sequence, "REMOVE", table, record_id, None, old, since)


def object_of(settings: Settings, tables_to_objects: Mapping[str, str], change: StreamChange) -> tuple[str | None, str]:
    """The two-way object of a record, or None and why it is ignored."""
    item = change.image or {}
    name = item.get("sobject")
    family = tables_to_objects.get(change.table)
    if family is None:
        return None, f"table {change.table or '?'} is not a record table of this stack"
    if name is not None:
        spec = settings.registry.get(name) if isinstance(name, str) and name in settings.registry else None
        if spec is not None and spec.writes_back and spec.family == family:
            return str(name), ""
        return None, f"{name} is not a two-way object of table {change.table}"
    if family in settings.registry and settings.registry.get(family).writes_back:
        return family, ""
    return None, f"table {change.table} holds no two-way object"


__all__ = ["decode_records", "delete_intent_change", "object_of", "pending_item_change"]
