"""The record-table adapter: idempotent, monotonic writes of Salesforce rows into DynamoDB.

Each row becomes one item (hash key ``Id``) in its family table:

* the Salesforce fields selected by the cycle, ``attributes`` removed; JSON objects (compound
  address/location values, relationship objects) are dropped because their components arrive as
  fields of their own;
* **nulls are stored as absent attributes** (a put replaces the whole item, so a field cleared in
  Salesforce disappears), which keeps the GSIs sparse (a GSI key attribute may not be NULL);
* numbers as ``Decimal``; booleans as BOOL; datetime fields normalised to ISO ms ``Z``;
* the engine's attributes: ``sobject``, ``SystemModstamp`` (ISO ms Z), ``IsDeleted`` (BOOL),
  ``_synced_at``, ``_cycle_id``, and ``_expires_at`` (epoch seconds) on tombstones when the object
  has a tombstone retention.

Each page first reads the stored versions (``BatchGetItem``); rows whose stored version is newer,
or identical apart from the engine's bookkeeping, are *skipped* without a write (overlap replays
then cost no write capacity and raise no stream events).  The write is ``PutItem`` with
``attribute_not_exists(Id) OR SystemModstamp <= :new`` (equal stamps pass: several changes can
share a whole-second stamp, and replays are harmless).  A failed
condition means a newer version is stored: the row is *skipped*, not an error.  Items too large or
with values DynamoDB cannot hold go to the errors table and count as *failed*; the page goes on.
Throttling is retried by botocore (standard mode, 10 attempts); if it persists the page fails with
:class:`~sfsync.exceptions.StoreThrottled` so the caller does not checkpoint it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, Rounded, Underflow
from typing import Any, Literal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sfsync.clock import epoch_seconds, normalize_stamp, to_iso_ms
from sfsync.exceptions import StoreError, StoreThrottled
from sfsync.registry import ObjectSpec

MAX_ITEM_BYTES = 400 * 1024
BATCH_GET_KEYS = 100
BATCH_GET_ATTEMPTS = 8
ENGINE_ATTRIBUTES = ("sobject", "SystemModstamp", "IsDeleted", "_synced_at", "_cycle_id", "_expires_at")
_VOLATILE = frozenset({"_synced_at", "_cycle_id", "_expires_at"})
_THROTTLE_CODES = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"})
_DDB_NUMBER = Context(prec=38, Emin=-128, Emax=126, traps=[Inexact, Rounded, Overflow, Underflow, InvalidOperation])

#: boto3 client configuration for the record and error tables.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 10})

Outcome = Literal["created", "updated", "deleted", "skipped", "failed"]
COUNTER_FOR: dict[Outcome, str] = {
    "created": "RecordsCreated",
    "updated": "RecordsUpdated",
    "deleted": "RecordsDeleted",
    "skipped": "RecordsSkipped",
    "failed": "RecordsFailed",
}


class UnstorableRecord(ValueError):
    """A row that cannot become a DynamoDB item (reason in the message)."""


@dataclass
class PageOutcome:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_FOR.values(), 0))
    outcomes: list[tuple[str, Outcome]] = field(default_factory=list)

    def add(self, record_id: str, outcome: Outcome) -> None:
        self.counts[COUNTER_FOR[outcome]] += 1
        self.outcomes.append((record_id, outcome))


def _number(value: int | float) -> Decimal:
    if isinstance(value, float) and not math.isfinite(value):
        raise UnstorableRecord(f"non-finite number {value!r}")
    try:
        number = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
        return _DDB_NUMBER.create_decimal(number)
    except (Inexact, Rounded, Overflow, Underflow, InvalidOperation) as exc:
        raise UnstorableRecord(f"number {value!r} is outside DynamoDB's range/precision") from exc


def to_item(
    spec: ObjectSpec,
    record: Mapping[str, Any],
    *,
    cycle_id: str,
    synced_at: dt.datetime,
    datetime_fields: Iterable[str] = (),
) -> dict[str, Any]:
    """The DynamoDB item (Python values) for one REST row; raises :class:`UnstorableRecord`."""
    record_id = record.get(spec.key)
    if not isinstance(record_id, str) or not record_id:
        raise UnstorableRecord(f"row without {spec.key}")
    stamp = record.get(spec.cursor)
    if not isinstance(stamp, str):
        raise UnstorableRecord(f"row {record_id} without {spec.cursor}")
    dt_fields = set(datetime_fields)
    item: dict[str, Any] = {}
    for name, value in record.items():
        if name == "attributes" or value is None or isinstance(value, dict):
            continue
        if name in ENGINE_ATTRIBUTES:
            continue
        if isinstance(value, str) and name in dt_fields and value:
            try:
                item[name] = normalize_stamp(value)
            except ValueError as exc:
                raise UnstorableRecord(f"field {name}: {exc}") from exc
        elif isinstance(value, bool | str):
            item[name] = value
        elif isinstance(value, int | float):
            try:
                item[name] = _number(value)
            except UnstorableRecord as exc:
                raise UnstorableRecord(f"field {name}: {exc}") from exc
        else:
            raise UnstorableRecord(f"field {name}: unsupported value of type {type(value).__name__}")
    try:
        item["SystemModstamp"] = normalize_stamp(stamp)
    except ValueError as exc:
        raise UnstorableRecord(f"field {spec.cursor}: {exc}") from exc
    deleted = bool(record.get("IsDeleted", False))
    item["sobject"] = spec.name
    item["IsDeleted"] = deleted
    item["_synced_at"] = to_iso_ms(synced_at)
    item["_cycle_id"] = cycle_id
    if deleted and spec.tombstone_retention_days is not None:
        item["_expires_at"] = epoch_seconds(synced_at + dt.timedelta(days=spec.tombstone_retention_days))
    return item


def item_size(item: Mapping[str, Any]) -> int:
    """DynamoDB's item size rule (names + values), close enough to enforce the 400 KB limit."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if isinstance(value, str):
            size += len(value.encode())
        elif isinstance(value, bool):
            size += 1
        elif isinstance(value, Decimal):
            size += 1 + (len(value.as_tuple().digits) + 1) // 2
        else:
            size += len(json.dumps(value, default=str).encode())
    return size


def _same_data(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    strip = lambda d: {k: v for k, v in d.items() if k not in _VOLATILE}  # noqa: E731
    return strip(old) == strip(new)


def classify(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> Outcome:
    """What a successful put did: created, updated, deleted (tombstoned) or skipped (no change)."""
    if old is None:
        return "deleted" if new["IsDeleted"] else "created"
    if _same_data(old, new):
        return "skipped"
    if new["IsDeleted"] and not old.get("IsDeleted", False):
        return "deleted"
    return "updated"


class RecordStore:
    """Writes rows to the family tables; failures go to the errors table."""

    def __init__(
        self,
        client: Any,
        record_tables: Mapping[str, str],
        *,
        errors_table: str | None,
        error_retention_days: int = 30,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._sleep = sleep
        self._tables = dict(record_tables)
        self._errors_table = errors_table
        self._error_retention_days = error_retention_days
        self._ser = TypeSerializer()
        self._de = TypeDeserializer()

    def table_for(self, spec: ObjectSpec) -> str:
        try:
            return self._tables[spec.family]
        except KeyError:
            raise StoreError(f"no record table configured for family {spec.family}") from None

    def write_page(
        self,
        spec: ObjectSpec,
        records: Iterable[Mapping[str, Any]],
        *,
        cycle_id: str,
        synced_at: dt.datetime,
        datetime_fields: Iterable[str] = (),
    ) -> PageOutcome:
        table = self.table_for(spec)
        dt_fields = tuple(datetime_fields)
        outcome = PageOutcome()
        items: list[tuple[str, dict[str, Any]]] = []
        for record in records:
            record_id = str(record.get(spec.key) or "?")
            try:
                item = to_item(spec, record, cycle_id=cycle_id, synced_at=synced_at, datetime_fields=dt_fields)
                size = item_size(item)
                if size > MAX_ITEM_BYTES:
                    raise UnstorableRecord(f"item of about {size} bytes exceeds DynamoDB's 400 KB limit")
            except UnstorableRecord as exc:
                self.record_error(spec, record_id, cycle_id=cycle_id, reason=str(exc), when=synced_at)
                outcome.add(record_id, "failed")
                continue
            items.append((record_id, item))

        stored = self._stored(table, [record_id for record_id, _ in items])
        for record_id, item in items:
            current = stored.get(record_id)
            if current is not None and (
                str(current.get("SystemModstamp", "")) > item["SystemModstamp"] or _same_data(current, item)
            ):
                # A newer version is stored, or this exact version: no write, so replays of the
                # overlap cost no write capacity and raise no stream events.
                outcome.add(record_id, "skipped")
                continue
            try:
                outcome.add(record_id, self._put(table, item))
            except UnstorableRecord as exc:
                self.record_error(spec, record_id, cycle_id=cycle_id, reason=str(exc), when=synced_at)
                outcome.add(record_id, "failed")
        return outcome

    def _stored(self, table: str, record_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored items for ``record_ids`` (BatchGetItem, 100 keys a call, unprocessed keys retried)."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(record_ids))
        for start in range(0, len(unique), BATCH_GET_KEYS):
            request: dict[str, Any] = {
                table: {
                    "Keys": [{"Id": {"S": rid}} for rid in unique[start : start + BATCH_GET_KEYS]],
                    "ConsistentRead": True,
                }
            }
            for attempt in range(BATCH_GET_ATTEMPTS):
                try:
                    response = self._client.batch_get_item(RequestItems=request)
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code", "")
                    if code in _THROTTLE_CODES:
                        raise StoreThrottled(f"{table} kept throttling reads: {code}") from exc
                    raise StoreError(f"cannot read from {table}: {code}") from exc
                except BotoCoreError as exc:
                    raise StoreError(f"cannot read from {table}: {exc}") from exc
                for raw in response.get("Responses", {}).get(table, []):
                    item = {k: self._de.deserialize(v) for k, v in raw.items()}
                    found[str(item["Id"])] = item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                self._sleep(min(2.0, 0.05 * 2**attempt))
            else:
                raise StoreThrottled(f"{table} left keys unprocessed after {BATCH_GET_ATTEMPTS} attempts")
        return found

    def _put(self, table: str, item: dict[str, Any]) -> Outcome:
        try:
            response = self._client.put_item(
                TableName=table,
                Item={k: self._ser.serialize(v) for k, v in item.items()},
                ConditionExpression="attribute_not_exists(#id) OR #stamp <= :stamp",
                ExpressionAttributeNames={"#id": "Id", "#stamp": "SystemModstamp"},
                ExpressionAttributeValues={":stamp": {"S": item["SystemModstamp"]}},
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                return "skipped"
            if code in _THROTTLE_CODES:
                raise StoreThrottled(f"{table} kept throttling writes: {code}") from exc
            if code == "ValidationException":
                raise UnstorableRecord(
                    f"DynamoDB rejected the item: {exc.response['Error'].get('Message', '')}"
                ) from exc
            raise StoreError(f"cannot write to {table}: {code}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"cannot write to {table}: {exc}") from exc
        attrs = response.get("Attributes")
        old = {k: self._de.deserialize(v) for k, v in attrs.items()} if attrs else None
        return classify(old, item)

    def record_error(self, spec: ObjectSpec, record_id: str, *, cycle_id: str, reason: str, when: dt.datetime) -> None:
        """One errors-table row: ``pk=ERRORS#<object>``, ``sk=<when>#<Id>``, TTL ``expires_at``."""
        if not self._errors_table:
            raise StoreError(f"record {record_id} of {spec.name} failed ({reason}) and no errors table is configured")
        item = {
            "pk": f"ERRORS#{spec.name}",
            "sk": f"{to_iso_ms(when)}#{record_id}",
            "object": spec.name,
            "record_id": record_id,
            "cycle_id": cycle_id,
            "kind": "inbound",
            "reason": reason[:2000],
            "created_at": to_iso_ms(when),
            "expires_at": epoch_seconds(when + dt.timedelta(days=self._error_retention_days)),
        }
        try:
            self._client.put_item(
                TableName=self._errors_table, Item={k: self._ser.serialize(v) for k, v in item.items()}
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _THROTTLE_CODES:
                raise StoreThrottled(f"{self._errors_table} kept throttling writes: {code}") from exc
            raise StoreError(f"cannot write to {self._errors_table}: {code}") from exc

    def get(self, spec: ObjectSpec, record_id: str) -> dict[str, Any] | None:
        """One stored item as Python values (tests and the CLI)."""
        response = self._client.get_item(
            TableName=self.table_for(spec), Key={"Id": {"S": record_id}}, ConsistentRead=True
        )
        attrs = response.get("Item")
        return {k: self._de.deserialize(v) for k, v in attrs.items()} if attrs else None


__all__ = [
    "CLIENT_CONFIG",
    "ENGINE_ATTRIBUTES",
    "MAX_ITEM_BYTES",
    "Outcome",
    "PageOutcome",
    "RecordStore",
    "UnstorableRecord",
    "classify",
    "item_size",
    "to_item",
]
