"""The write-back: local edits of two-way tables (Lead, Contact, Campaign, CampaignMember) reach Salesforce.

Input: one batch of DynamoDB stream records (``NEW_AND_OLD_IMAGES``) of the two-way tables.
Output: the sequence numbers of the records to report as batch item failures (Lambda retries from
the first of them); everything else was pushed, recorded as refused, or needed nothing.

**What changed locally.**  An item carries ``_base`` (:mod:`sfsync.snapshot`), so a stream
record's NewImage holds both the local edit and the base it was made against.  Images the sync
wrote (data == base), and modifications that touched only the engine's own attributes (our
bookkeeping: ``_base`` after a push, ``_writeback_error``, redirects) are ignored without any call.

**Updates.**  Per object: fields that are not updateable (describe, formulas, system fields) are
*rejected* (errors table, once per stream record and field); the rest are judged field by field by
:func:`sfsync.conflicts.decide_field` against the current item (consistent BatchGetItem) and
Salesforce's current values (one sObject Collections retrieve per 2000 records), values are checked
against describe (type, length, restricted picklist), and the pushes go out as sObject Collections
PATCH calls of up to 200 records (``allOrNone: false``, ``Sforce-Call-Options: client=sfsync``).
After a record is accepted, the item's ``_base`` (and, where the local side won after a sync
overwrite or lost to Salesforce, the field) is updated with a write conditioned on the ``_base``
read: an edit made meanwhile stays pending (it has its own stream record); a sync write meanwhile
wins (it carries Salesforce's newer state, which includes our push or is followed by it).

**Refusals.**  ``UNABLE_TO_LOCK_ROW`` is retried with back-off inside the invocation, then the
record is reported as a batch item failure (Lambda retries, bisects, and finally sends it to the
on-failure queue); ``CANNOT_UPDATE_CONVERTED_LEAD`` (or a Lead found converted) -> the change goes
to the Contact the Lead became (fields of the same name the Contact can update); a deleted record
that was merged (``MasterRecordId``) -> the change goes to the master; every other refusal is
stored in the errors table with Salesforce's code, message and fields, and the item is marked
``_writeback_error`` (cleared by the next accepted push).

**Creates.**  An item inserted without ``_base`` whose ``Id`` is not a Salesforce id of its object
is created exactly once: by upsert on the object's configured external-id field, or else through a
create intent in the state table (``WRITEBACK#<object>`` / ``CREATE#<local id>``, owned by this
module) written before the create; a retry after an ambiguous outcome (timeout, 5xx after sending)
first looks for the record it may have created (SOQL on the values sent, ``CreatedDate`` at or
after the intent).  Afterwards the real item (keyed by the Salesforce Id, with ``_base``) is put
and the local item becomes a redirect (``_created_id``, ``_local_status = created``).

**Deletes.**  A local delete (REMOVE of a synced item, or ``IsDeleted`` set locally) is pushed only
when the object's ``allow_deletes`` option is set; otherwise it is recorded as refused.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from sfsync.conflicts import Conflict, FieldDecision, decide_field, same
from sfsync.core import clock as sfclock
from sfsync.core.config import Settings, WriteBackOptions
from sfsync.core.exceptions import (
    ConfigurationError,
    SalesforceError,
    SalesforceUnavailable,
    StoreError,
    StoreThrottled,
    UnstorableRecord,
)
from sfsync.core.observability import count, logger, metrics_for_object
from sfsync.core.registry import KEY_PREFIXES, ObjectSpec
from sfsync.inbound.fields import SKIPPED_TYPES
from sfsync.items import snapshot
from sfsync.items.codec import boto_attribute, item_value, salesforce_value, to_item
from sfsync.items.images import image
from sfsync.salesforce.client import (
    MAX_COLLECTION_RECORDS,
    MAX_COMPOSITE_QUERIES,
    MAX_COMPOSITE_SUBREQUESTS,
    MAX_RETRIEVE_IDS,
)
from sfsync.store.records import client_failure

MAX_COLLECTION = MAX_COLLECTION_RECORDS
MAX_RETRIEVE = MAX_RETRIEVE_IDS
MAX_COMPOSITE = MAX_COMPOSITE_SUBREQUESTS
MAX_COMPOSITE_COLLECTIONS = MAX_COMPOSITE_QUERIES  # collections count against the same 5 as queries
MAX_QUERY_IDS = 200
LOCK_RETRIES = 3
LOCK_BACKOFF_SECONDS = 0.2
DESCRIBE_MAX_AGE_SECONDS = 900
CALL_OPTIONS_CLIENT = "sfsync"
WRITEBACK_CYCLE_ID = "writeback"
ERROR_ATTRIBUTE = "_writeback_error"
CREATED_ID_ATTRIBUTE = "_created_id"
LOCAL_STATUS_ATTRIBUTE = "_local_status"
INTENT_PK = "WRITEBACK#{object}"
#: What the write-back needs of its configuration (its secret included).
WRITEBACK_SETTINGS = ("secret_arn", "state_table", "errors_table", "record_tables")
INTENT_SK = "CREATE#{local_id}"
DELETE_SK = "DELETE#{record_id}"
DELETE_PREFIX = "DELETE#"
#: Errors-table partition of the records that still need attention (one row per record, ``sfsync errors``).
OPEN_PK = "OPEN#{object}"
#: The pending marker (see "Pending changes" in the module docstring).
PENDING_SINCE = "_pending_since"
PENDING_SEQ = "_pending_seq"
PENDING_CLAIM = "_pending_claim"
PENDING_ATTEMPTS = "_pending_attempts"
PENDING_RETRY_AT = "_pending_retry_at"
PENDING_ATTRIBUTES = (PENDING_SINCE, PENDING_SEQ, PENDING_CLAIM, PENDING_ATTEMPTS, PENDING_RETRY_AT)
#: How long a runner's claim on a pending item holds (longer than the function's timeout).
CLAIM_SECONDS = 300
#: The stream path's claim owner: stream invocations of one item never overlap (one shard, in order).
STREAM_OWNER = "stream"
#: a create intent older than this (Salesforce's clock) is looked for from this far back
INTENT_LOOKBACK = dt.timedelta(minutes=10)
LAG_SAMPLES = 100
#: The sparse index of pending items on every two-way table (``sobject`` + ``_pending_since``, keys only).
PENDING_INDEX = "ByPending"

#: Key prefixes of the two-way objects (a local key never matches ``<prefix><12-15 more chars>``).
_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_TEXT_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "combobox", "reference", "id"}
)
_TEXT_TYPES_ALL = _TEXT_TYPES | {"encryptedstring"}
_INT_TYPES = frozenset({"int", "long"})
_DECIMAL_TYPES = frozenset({"double", "currency", "percent"})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SKIPPED_TYPES = SKIPPED_TYPES
#: Salesforce codes retried inside the invocation and then by Lambda.
RETRYABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW"})


# -- ports ---------------------------------------------------------------------------------------


class WriteBackSalesforce(Protocol):
    """The calls the write-back makes (:class:`sfsync.salesforce.SalesforceClient` has them all)."""

    @property
    def api_version(self) -> str: ...

    def describe(self, obj: str) -> dict[str, Any]: ...

    def collections(
        self,
        method: Any,
        records: list[dict[str, Any]],
        all_or_none: bool = False,
        *,
        call_options_client: str = "sfsync",
        auto_assign: bool = False,
    ) -> list[dict[str, Any]]: ...

    def upsert_collection(
        self,
        obj: str,
        ext_field: str,
        records: list[dict[str, Any]],
        all_or_none: bool = False,
        *,
        call_options_client: str = "sfsync",
        auto_assign: bool = False,
    ) -> list[dict[str, Any]]: ...

    def retrieve(self, obj: str, ids: list[str], fields: list[str]) -> list[dict[str, Any] | None]: ...

    def composite(
        self,
        subrequests: list[dict[str, Any]],
        all_or_none: bool = False,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]: ...

    def query_pages(self, soql: str, *, include_deleted: bool = True, batch_size: int = 2000) -> Any: ...

    def server_time(self) -> dt.datetime | None: ...


@dataclass(frozen=True)
class WriteBackDeps:
    """The write-back's adapters.  ``sf`` may be None with ``sf_factory`` set: the client (and its
    secret) is then made on first use, after the pending markers are down.  ``config_problem``: the
    configuration error found while loading settings without the write-back options (raised once
    the markers are down, so a bad ``WriteBackOptions`` cannot lose a local change)."""

    settings: Settings
    sf: WriteBackSalesforce | None
    dynamodb: Any
    clock: sfclock.Clock
    sleep: Callable[[float], None] = time.sleep
    wall_clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    sf_factory: Callable[[], WriteBackSalesforce] | None = None
    config_problem: Exception | None = None


# -- stream records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamChange:
    """One stream record, decoded."""

    sequence: str
    event: str
    table: str
    key: str
    new: dict[str, Any] | None
    old: dict[str, Any] | None
    at: dt.datetime | None
    by_service: bool = False

    @property
    def image(self) -> dict[str, Any] | None:
        return self.new if self.new is not None else self.old


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


def is_salesforce_id(obj: str, value: Any) -> bool:
    """``value`` looks like an Id of ``obj`` (its key prefix, 15 or 18 characters)."""
    if not isinstance(value, str) or not _SALESFORCE_ID.match(value):
        return False
    prefix = KEY_PREFIXES.get(obj)
    return prefix is None or value.startswith(prefix)


def _same_data(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    da, db = snapshot.data_of(a or {}), snapshot.data_of(b or {})
    return da.keys() == db.keys() and all(same(da[k], db[k]) for k in da)


# -- what a batch holds --------------------------------------------------------------------------


@dataclass
class Counters:
    pushed: int = 0
    created: int = 0
    conflicts: int = 0
    refused: int = 0
    rejected: int = 0
    retried: int = 0
    redirected: int = 0
    deleted: int = 0
    ignored: int = 0
    lag_seconds: list[float] = field(default_factory=list)


@dataclass
class BatchResult:
    """The outcome of one stream batch: failed sequence numbers and counters per object."""

    failed: set[str] = field(default_factory=set)
    counters: dict[str, Counters] = field(default_factory=dict)
    api_calls: int = 0

    def count(self, obj: str) -> Counters:
        return self.counters.setdefault(obj, Counters())


@dataclass
class _ItemPlan:
    """One item's update: its stream records, decisions per field, and what to send."""

    obj: str
    key: str
    changes: list[StreamChange] = field(default_factory=list)
    decisions: dict[str, FieldDecision] = field(default_factory=dict)
    current: dict[str, Any] | None = None
    target_obj: str = ""
    target_id: str = ""
    redirect_note: str | None = None
    #: the ``_writeback_error`` mark of fields refused before sending (kept when the rest is accepted)
    mark: str | None = None

    @property
    def sequences(self) -> list[str]:
        return [c.sequence for c in self.changes]

    @property
    def first_at(self) -> dt.datetime | None:
        times = [c.at for c in self.changes if c.at is not None]
        return min(times) if times else None

    def pushes(self) -> dict[str, Any]:
        return {name: d.value for name, d in self.decisions.items() if d.action == "push"}


# -- describe ------------------------------------------------------------------------------------

#: describe's fields per client (the client object itself is the key, so a new client - another
#: org or credentials - never sees another's entries) and object, with the time they were read.
_describes: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, dict[str, dict[str, Any]]]]] = (
    weakref.WeakKeyDictionary()
)


def field_map(sf: WriteBackSalesforce, obj: str) -> dict[str, dict[str, Any]]:
    """describe's fields of ``obj`` by name (kept per client for a quarter of an hour)."""
    per_client = _describes.setdefault(sf, {})
    cached = per_client.get(obj)
    if cached is not None and time.monotonic() - cached[0] < DESCRIBE_MAX_AGE_SECONDS:
        return cached[1]
    fields = {str(f["name"]): dict(f) for f in sf.describe(obj).get("fields") or [] if isinstance(f, dict)}
    per_client[obj] = (time.monotonic(), fields)
    return fields


def clear_describe_cache() -> None:
    _describes.clear()


def writable(describe: Mapping[str, Mapping[str, Any]], name: str, *, create: bool) -> str | None:
    """None when the integration user can set ``name``; else why not."""
    f = describe.get(name)
    if f is None:
        return f"field {name} is not visible to the integration user"
    if f.get("calculated"):
        return f"field {name} is a formula (calculated) field"
    if f.get("type") in _SKIPPED_TYPES:
        return f"field {name} is a compound field (write its components)"
    if not f.get("createable" if create else "updateable"):
        return f"field {name} is not {'createable' if create else 'updateable'}"
    return None


def check_value(name: str, value: Any, f: Mapping[str, Any]) -> tuple[str, str] | None:
    """(statusCode-like code, message) when ``value`` cannot be valid for the field; None when plausible."""
    if value is None:
        return None
    ftype = str(f.get("type", ""))
    if ftype in _TEXT_TYPES_ALL:
        if not isinstance(value, str):
            return "INVALID_TYPE", f"field {name} expects text ({ftype}), got {type(value).__name__}"
        length = int(f.get("length") or 0)
        if length and len(value) > length:
            return "STRING_TOO_LONG", f"field {name} is {len(value)} characters long, at most {length} allowed"
        if ftype == "picklist" and f.get("restrictedPicklist"):
            allowed = {str(p.get("value")) for p in f.get("picklistValues") or [] if p.get("active", True)}
            if value not in allowed:
                return (
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"field {name}: bad value for restricted picklist: {value}",
                )
        return None
    if ftype == "boolean":
        return None if isinstance(value, bool) else ("INVALID_TYPE", f"field {name} expects a boolean")
    if ftype in _INT_TYPES or ftype in _DECIMAL_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            return "INVALID_TYPE", f"field {name} expects a number ({ftype}), got {type(value).__name__}"
        if ftype in _INT_TYPES and Decimal(str(value)) != Decimal(str(value)).to_integral_value():
            return "INVALID_TYPE", f"field {name} expects a whole number"
        return None
    if ftype == "date":
        ok = isinstance(value, str) and bool(_DATE.match(value))
        return None if ok else ("INVALID_TYPE", f"field {name} expects a date YYYY-MM-DD")
    if ftype == "datetime":
        if not isinstance(value, str):
            return "INVALID_TYPE", f"field {name} expects a datetime"
        try:
            sfclock.parse_instant(value)
        except ValueError:
            return "INVALID_TYPE", f"field {name} expects an ISO-8601 datetime"
    return None


# -- DynamoDB side -------------------------------------------------------------------------------


class _Tables:
    """Reads and conditional writes of the record tables, the errors table and the create intents."""

    def __init__(self, deps: WriteBackDeps) -> None:
        self._client = deps.dynamodb
        self._sleep = deps.sleep
        self._settings = deps.settings
        self._retention = dt.timedelta(days=deps.settings.error_retention_days)

    def table(self, spec: ObjectSpec) -> str:
        return self._settings.table_for(spec.family)

    @staticmethod
    def _call(table: str, action: str, method: Callable[..., Any], *, conditional: bool = False, **request: Any) -> Any:
        """One DynamoDB call; its failures as the engine's errors (throttling: :class:`StoreThrottled`,
        anything else: :class:`StoreError`), which fail only the step's records.  ``conditional``: a
        failed condition returns None instead."""
        try:
            return method(**request)
        except ClientError as exc:
            if conditional and exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise client_failure(exc, table, action) from exc
        except BotoCoreError as exc:
            raise StoreError(f"{action} on {table} failed: {exc}") from exc

    def get_items(self, table: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 100):
            request: dict[str, Any] = {
                table: {"Keys": [{"Id": {"S": k}} for k in unique[start : start + 100]], "ConsistentRead": True}
            }
            for _ in range(8):
                response = self._call(table, "read", self._client.batch_get_item, RequestItems=request)
                for raw in response.get("Responses", {}).get(table, []):
                    item = image(raw) or {}
                    found[str(item.get("Id"))] = item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                self._sleep(0.05)
            else:
                raise StoreThrottled(f"{table} left keys unprocessed after 8 BatchGetItem attempts")
        return found

    def update(
        self,
        table: str,
        key: str,
        *,
        sets: Mapping[str, Any],
        removes: Iterable[str] = (),
        expect: Mapping[str, Any] | None = None,
        must_exist: bool = True,
    ) -> bool:
        """One UpdateItem; ``expect``: attribute -> value it must hold (None: absent).  False: condition failed."""
        names: dict[str, str] = {"#id": "Id"}
        values: dict[str, Any] = {}
        set_parts: list[str] = []
        remove_parts: list[str] = []
        index = 0
        for name, value in sets.items():
            index += 1
            names[f"#a{index}"] = name
            if value is None:
                remove_parts.append(f"#a{index}")
            else:
                values[f":a{index}"] = boto_attribute(value)
                set_parts.append(f"#a{index} = :a{index}")
        for name in removes:
            if name in sets:
                continue
            index += 1
            names[f"#a{index}"] = name
            remove_parts.append(f"#a{index}")
        conditions = ["attribute_exists(#id)"] if must_exist else []
        for name, value in (expect or {}).items():
            index += 1
            names[f"#c{index}"] = name
            if value is None:
                conditions.append(f"attribute_not_exists(#c{index})")
            else:
                values[f":c{index}"] = boto_attribute(value)
                conditions.append(f"#c{index} = :c{index}")
        expression = ""
        if set_parts:
            expression = "SET " + ", ".join(set_parts)
        if remove_parts:
            expression += (" " if expression else "") + "REMOVE " + ", ".join(remove_parts)
        if not expression:
            return True
        request: dict[str, Any] = {
            "TableName": table,
            "Key": {"Id": {"S": key}},
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
        }
        if conditions:
            request["ConditionExpression"] = " AND ".join(conditions)
        if values:
            request["ExpressionAttributeValues"] = values
        return self._call(table, "write", self._client.update_item, conditional=True, **request) is not None

    def put_synced(self, table: str, item: dict[str, Any]) -> bool:
        """Put an item the way the sync does (never over a newer ``SystemModstamp``)."""
        return self._put_if(
            table,
            item,
            "attribute_not_exists(#id) OR #stamp <= :stamp",
            ExpressionAttributeNames={"#id": "Id", "#stamp": "SystemModstamp"},
            ExpressionAttributeValues={":stamp": {"S": item["SystemModstamp"]}},
        )

    def _put_if(self, table: str, item: Mapping[str, Any], condition: str, **expression: Any) -> bool:
        """A PutItem of ``item`` (Python values) under ``condition``; False when the condition failed."""
        written = self._call(
            table,
            "write",
            self._client.put_item,
            conditional=True,
            TableName=table,
            Item={k: boto_attribute(v) for k, v in item.items()},
            ConditionExpression=condition,
            **expression,
        )
        return written is not None

    def record(self, obj: str, record_id: str, kind: str, when: dt.datetime, tag: str, **details: Any) -> None:
        """One errors-table row, idempotent: a redelivered stream record does not add a second row."""
        table = self._settings.errors_table
        if not table:
            raise StoreError(f"{kind} of {obj} {record_id} cannot be recorded: no errors table is configured")
        created = sfclock.to_iso_ms(when)
        item: dict[str, Any] = {
            "pk": f"ERRORS#{obj}",
            "sk": f"{created}#{record_id}#{kind}#{tag}",
            "object": obj,
            "record_id": record_id,
            "kind": kind,
            "created_at": created,
            "expires_at": sfclock.epoch_seconds(when + self._retention),
        }
        for name, value in details.items():
            if value is None:
                continue
            item[name] = value if isinstance(value, str | bool) else json.dumps(value, default=str)[:4000]
        self._put_if(table, item, "attribute_not_exists(sk)")

    # pending markers and claims -------------------------------------------------------------------

    @staticmethod
    def claim_text(owner: str, now: dt.datetime) -> str:
        """``<claim expiry ISO>#<owner>``: lexically below an ISO instant once that instant is past the expiry."""
        return f"{sfclock.to_iso_ms(now + dt.timedelta(seconds=CLAIM_SECONDS))}#{owner}"

    @staticmethod
    def _claim_free(owner: str) -> str:
        """The condition under which ``owner`` may take the claim (absent, expired, or the stream's own)."""
        free = "(attribute_not_exists(#claim) OR #claim < :now"
        return free + (" OR contains(#claim, :stream))" if owner == STREAM_OWNER else ")")

    def mark(self, table: str, key: dict[str, Any], seq: str, owner: str, now: dt.datetime) -> str:
        """Set the pending marker on an item or a delete intent and claim it for ``owner``.

        ``_pending_since`` keeps its first value; ``_pending_seq`` names the latest change seen.
        Returns ``claimed``; ``held`` when another runner's live claim holds it (the marker is set,
        the change is left to that runner and to the sweep); ``absent`` when the item is gone.
        """
        stamp = sfclock.to_iso_ms(now)
        names = {"#since": PENDING_SINCE, "#seq": PENDING_SEQ, "#claim": PENDING_CLAIM}
        values: dict[str, Any] = {
            ":since": {"S": stamp},
            ":seq": {"S": seq},
            ":claim": {"S": self.claim_text(owner, now)},
            ":now": {"S": stamp},
        }
        if owner == STREAM_OWNER:
            values[":stream"] = {"S": f"#{STREAM_OWNER}"}
        exists = "attribute_exists(#k)"
        key_name = next(iter(key))
        expression = "SET #since = if_not_exists(#since, :since), #seq = :seq, #claim = :claim"
        request: dict[str, Any] = {
            "TableName": table,
            "Key": key,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if table == self._settings.state_table:  # a delete intent: created by the mark itself
            expression += ", #status = :pending"
            names["#status"] = "status"
            values[":pending"] = {"S": "pending"}
            request["ConditionExpression"] = self._claim_free(owner)
        else:
            names["#k"] = key_name
            request["ConditionExpression"] = f"{exists} AND {self._claim_free(owner)}"
        request["UpdateExpression"] = expression
        if self._call(table, "write", self._client.update_item, conditional=True, **request) is not None:
            return "claimed"
        # held by another runner (or gone): keep the marker's news without the claim
        plain: dict[str, Any] = {
            "TableName": table,
            "Key": key,
            "UpdateExpression": "SET #since = if_not_exists(#since, :since), #seq = :seq",
            "ExpressionAttributeNames": {"#since": PENDING_SINCE, "#seq": PENDING_SEQ, "#k": key_name},
            "ExpressionAttributeValues": {":since": {"S": stamp}, ":seq": {"S": seq}},
            "ConditionExpression": exists,
        }
        held = self._call(table, "write", self._client.update_item, conditional=True, **plain)
        return "held" if held is not None else "absent"

    def claim(self, table: str, key: dict[str, Any], owner: str, now: dt.datetime, *, due_only: bool) -> bool:
        """Claim a pending item (or delete intent) for ``owner``: it is still marked, nobody else holds
        it and (``due_only``) its back-off has passed.  False: leave it alone."""
        stamp = sfclock.to_iso_ms(now)
        condition = f"attribute_exists(#since) AND {self._claim_free(owner)}"
        names = {"#since": PENDING_SINCE, "#claim": PENDING_CLAIM}
        if due_only:
            condition += " AND (attribute_not_exists(#retry) OR #retry <= :now)"
            names["#retry"] = PENDING_RETRY_AT
        values: dict[str, Any] = {":claim": {"S": self.claim_text(owner, now)}, ":now": {"S": stamp}}
        if owner == STREAM_OWNER:
            values[":stream"] = {"S": f"#{STREAM_OWNER}"}
        request = {
            "TableName": table,
            "Key": key,
            "UpdateExpression": "SET #claim = :claim",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        return self._call(table, "write", self._client.update_item, conditional=True, **request) is not None

    def back_off(self, table: str, key: dict[str, Any], seq: str | None, attempts: int, retry_at: dt.datetime) -> bool:
        """After a failed attempt: count it, set the next attempt's time, give the claim back."""
        names = {"#att": PENDING_ATTEMPTS, "#retry": PENDING_RETRY_AT, "#claim": PENDING_CLAIM, "#seq": PENDING_SEQ}
        values: dict[str, Any] = {":att": {"N": str(attempts)}, ":retry": {"S": sfclock.to_iso_ms(retry_at)}}
        condition = "attribute_exists(#seq) AND #seq = :seq" if seq is not None else "attribute_not_exists(#seq)"
        if seq is not None:
            values[":seq"] = {"S": seq}
        request = {
            "TableName": table,
            "Key": key,
            "UpdateExpression": "SET #att = :att, #retry = :retry REMOVE #claim",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        return self._call(table, "write", self._client.update_item, conditional=True, **request) is not None

    def query_pending(self, table: str, obj: str, before: str | None) -> tuple[int, list[str]]:
        """The sparse ``ByPending`` index of a two-way table: how many items of ``obj`` are pending, and
        the keys of those pending since before ``before`` (oldest first; None: all of them)."""
        total = 0
        keys: list[str] = []
        request: dict[str, Any] = {
            "TableName": table,
            "IndexName": PENDING_INDEX,
            "KeyConditionExpression": "#o = :o",
            "ExpressionAttributeNames": {"#o": "sobject"},
            "ExpressionAttributeValues": {":o": {"S": obj}},
        }
        while True:
            page = self._call(table, "read", self._client.query, **request)
            for raw in page.get("Items", []):
                total += 1
                since = raw.get(PENDING_SINCE, {}).get("S", "")
                if before is None or since <= before:
                    keys.append(str(raw.get("Id", {}).get("S", "")))
            last = page.get("LastEvaluatedKey")
            if not last:
                return total, keys
            request["ExclusiveStartKey"] = last

    # delete intents (state table) ------------------------------------------------------------------

    def delete_key(self, obj: str, record_id: str) -> dict[str, Any]:
        return {"pk": {"S": INTENT_PK.format(object=obj)}, "sk": {"S": DELETE_SK.format(record_id=record_id)}}

    def delete_intents(self, obj: str) -> list[dict[str, Any]]:
        """Every delete intent of ``obj`` (pending or refused)."""
        table = str(self._settings.state_table)
        request: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": INTENT_PK.format(object=obj)}, ":prefix": {"S": DELETE_PREFIX}},
            "ConsistentRead": True,
        }
        found: list[dict[str, Any]] = []
        while True:
            page = self._call(table, "read", self._client.query, **request)
            found.extend(image(raw) or {} for raw in page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                return found
            request["ExclusiveStartKey"] = last

    def get_delete_intent(self, obj: str, record_id: str) -> dict[str, Any] | None:
        table = str(self._settings.state_table)
        response = self._call(
            table,
            "read",
            self._client.get_item,
            TableName=table,
            Key=self.delete_key(obj, record_id),
            ConsistentRead=True,
        )
        return image(response.get("Item"))

    def settle_delete_intent(self, obj: str, record_id: str, seq: str | None, *, refused: bool) -> bool:
        """A delete is settled: pushed (the intent goes) or refused (kept, unclaimed, for ``sfsync errors retry``)."""
        table = str(self._settings.state_table)
        names = {"#seq": PENDING_SEQ}
        values: dict[str, Any] = {}
        condition = "attribute_not_exists(#seq)"
        if seq is not None:
            condition, values[":seq"] = "#seq = :seq", {"S": seq}
        request: dict[str, Any] = {
            "TableName": table,
            "Key": self.delete_key(obj, record_id),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
        }
        if refused:
            names.update({"#s": "status", "#claim": PENDING_CLAIM})
            values[":s"] = {"S": "refused"}
            request["UpdateExpression"] = "SET #s = :s REMOVE #claim"
            request["ExpressionAttributeValues"] = values
            return self._call(table, "write", self._client.update_item, conditional=True, **request) is not None
        if values:
            request["ExpressionAttributeValues"] = values
        return self._call(table, "write", self._client.delete_item, conditional=True, **request) is not None

    # records that need attention (errors table, one row per record) --------------------------------

    def open_problem(
        self,
        obj: str,
        record_id: str,
        kind: str,
        *,
        code: str,
        message: str,
        fields: Sequence[str],
        since: dt.datetime,
        now: dt.datetime,
        attempts: int | None = None,
    ) -> None:
        """The record's row in ``OPEN#<object>``: what ``sfsync errors`` lists until it is resolved."""
        table = self._settings.errors_table
        if not table:
            raise StoreError(f"{kind} of {obj} {record_id} cannot be recorded: no errors table is configured")
        values: dict[str, Any] = {
            ":o": {"S": obj},
            ":id": {"S": record_id},
            ":k": {"S": kind},
            ":c": {"S": code},
            ":m": {"S": message[:4000]},
            ":f": {"S": json.dumps(list(fields))},
            ":since": {"S": sfclock.to_iso_ms(since)},
            ":now": {"S": sfclock.to_iso_ms(now)},
        }
        expression = (
            "SET #o = :o, record_id = :id, kind = :k, code = :c, message = :m, #f = :f,"
            " since = if_not_exists(since, :since), updated_at = :now"
        )
        names = {"#o": "object", "#f": "fields"}
        if attempts is not None:
            expression += ", attempts = :a"
            values[":a"] = {"N": str(attempts)}
        self._call(
            table,
            "write",
            self._client.update_item,
            TableName=table,
            Key={"pk": {"S": OPEN_PK.format(object=obj)}, "sk": {"S": record_id}},
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def resolve_problem(self, obj: str, record_id: str) -> None:
        """The record's change reached Salesforce (or is gone): it leaves ``sfsync errors``."""
        table = self._settings.errors_table
        if not table:
            return
        self._call(
            table,
            "write",
            self._client.delete_item,
            TableName=table,
            Key={"pk": {"S": OPEN_PK.format(object=obj)}, "sk": {"S": record_id}},
        )

    def open_problems(self, obj: str) -> list[dict[str, Any]]:
        table = self._settings.errors_table
        if not table:
            return []
        request: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": OPEN_PK.format(object=obj)}},
            "ConsistentRead": True,
        }
        found: list[dict[str, Any]] = []
        while True:
            page = self._call(table, "read", self._client.query, **request)
            found.extend(image(raw) or {} for raw in page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                return found
            request["ExclusiveStartKey"] = last

    # create intents (state table) ---------------------------------------------------------------

    def _intent_key(self, obj: str, local_id: str) -> dict[str, Any]:
        return {
            "pk": {"S": INTENT_PK.format(object=obj)},
            "sk": {"S": INTENT_SK.format(local_id=local_id)},
        }

    def get_intent(self, obj: str, local_id: str) -> dict[str, Any] | None:
        table = str(self._settings.state_table)
        response = self._call(
            table,
            "read",
            self._client.get_item,
            TableName=table,
            Key=self._intent_key(obj, local_id),
            ConsistentRead=True,
        )
        return image(response.get("Item"))

    def put_intent(self, obj: str, local_id: str, intent_at: dt.datetime) -> None:
        item = {
            **self._intent_key(obj, local_id),
            "status": {"S": "pending"},
            "intent_at": {"S": sfclock.to_iso_ms(intent_at)},
            "expires_at": {"N": str(sfclock.epoch_seconds(intent_at + dt.timedelta(days=30)))},
        }
        table = str(self._settings.state_table)
        self._call(table, "write", self._client.put_item, TableName=table, Item=item)

    def intent_created(self, obj: str, local_id: str, sf_id: str) -> None:
        table = str(self._settings.state_table)
        self._call(
            table,
            "write",
            self._client.update_item,
            TableName=table,
            Key=self._intent_key(obj, local_id),
            UpdateExpression="SET #s = :s, #id = :id",
            ExpressionAttributeNames={"#s": "status", "#id": "salesforce_id"},
            ExpressionAttributeValues={":s": {"S": "created"}, ":id": {"S": sf_id}},
        )


# -- the batch -----------------------------------------------------------------------------------


class WriteBack:
    """Processes one stream batch, or re-drives pending items (sweep, retry); see the module docstring."""

    def __init__(self, deps: WriteBackDeps, *, owner: str = STREAM_OWNER) -> None:
        self.deps = deps
        self._sf = deps.sf
        self.settings = deps.settings
        self.tables = _Tables(deps)
        self.result = BatchResult()
        self.owner = owner
        self._tables_to_objects = {table: family for family, table in deps.settings.record_tables.items()}
        #: (object, item key) -> the ``_pending_seq`` this run claimed the item with (None: no marker)
        self._marks: dict[tuple[str, str], str | None] = {}
        #: (object, record id) -> the ``_pending_seq`` of a delete intent this run claimed
        self._delete_marks: dict[tuple[str, str], str | None] = {}
        #: marks cleared (or intents settled) by this run
        self._settled: set[tuple[str, str]] = set()
        #: (object, key) -> the stream sequences (or synthetic ones) of its changes in this run
        self._sequences: dict[tuple[str, str], list[str]] = {}
        #: failed sequence -> (code, message) of its failure
        self._why: dict[str, tuple[str, str]] = {}
        #: (object, key) -> attempts made before this run / pending since (re-drives only)
        self._attempts: dict[tuple[str, str], int] = {}
        self._since: dict[tuple[str, str], dt.datetime] = {}

    @property
    def sf(self) -> WriteBackSalesforce:
        """The Salesforce client, made on first use (after the markers are down)."""
        if self._sf is None:
            if self.deps.sf_factory is None:
                raise ConfigurationError("the write-back has no Salesforce client")
            self._sf = self.deps.sf_factory()
        return self._sf

    # entry ---------------------------------------------------------------------------------

    def run(self, raw_records: Sequence[Mapping[str, Any]]) -> BatchResult:
        """One stream batch: mark every local change pending (first act), then push, then settle."""
        classified = self._classify_all(decode_records(raw_records))
        deferred = self._mark_all(classified)
        # the markers are down: the sweep pushes once the configuration is fixed
        raise_configuration_problem(self.deps)
        self._process([c for c in classified if (c[0], c[2].key) not in deferred])
        self._finish()
        return self.result

    def redrive(self, obj: str, keys: Sequence[str], delete_ids: Sequence[str], *, mark_first: bool) -> BatchResult:
        """Push pending items and delete intents of ``obj`` through the stream path (sweep, retry).

        Each is claimed first (conditional write; one held by another runner, or whose back-off has not
        passed, is left alone), then read consistently: the change is the item as it is now.
        ``mark_first`` (retry): the items are marked pending first, as a stream record would.
        """
        spec = self.settings.registry.get(obj)
        table = self.tables.table(spec)
        now = self.deps.clock.now()
        claimed: list[str] = []
        for key in dict.fromkeys(keys):
            item_key = {"Id": {"S": key}}
            if mark_first:
                ok = self.tables.mark(table, item_key, f"{self.owner}", self.owner, now) == "claimed"
            else:
                ok = self.tables.claim(table, item_key, self.owner, now, due_only=True)
            if ok:
                claimed.append(key)
        changes: list[tuple[str, str, StreamChange]] = []
        for key, item in self.tables.get_items(table, claimed).items():
            mark = (obj, key)
            seq = item.get(PENDING_SEQ)
            self._marks[mark] = seq if isinstance(seq, str) else None
            self._attempts[mark] = int(item.get(PENDING_ATTEMPTS) or 0)
            since = _instant(item.get(PENDING_SINCE)) or now
            self._since[mark] = since
            change = StreamChange(f"{self.owner}#{key}", "MODIFY", table, key, item, None, since)
            changes.append((obj, self._classify_one(obj, change), change))
        state = str(self.settings.state_table)
        for record_id in dict.fromkeys(delete_ids):
            intent_key = self.tables.delete_key(obj, record_id)
            if not self.tables.claim(state, intent_key, self.owner, now, due_only=not mark_first):
                continue
            intent = self.tables.get_delete_intent(obj, record_id) or {}
            seq = intent.get(PENDING_SEQ)
            self._delete_marks[(obj, record_id)] = seq if isinstance(seq, str) else None
            self._attempts[(obj, DELETE_SK.format(record_id=record_id))] = int(intent.get(PENDING_ATTEMPTS) or 0)
            since = _instant(intent.get(PENDING_SINCE)) or now
            self._since[(obj, DELETE_SK.format(record_id=record_id))] = since
            old = {"Id": record_id, "sobject": obj, snapshot.BASE_ATTRIBUTE: "{}"}
            change = StreamChange(
                f"{self.owner}#{DELETE_SK.format(record_id=record_id)}", "REMOVE", table, record_id, None, old, since
            )
            changes.append((obj, "delete", change))
        self._process([c for c in changes if c[1] != "invalid"])
        self._finish()
        return self.result

    # classification, markers ---------------------------------------------------------------

    def _classify_all(self, changes: list[StreamChange]) -> list[tuple[str, str, StreamChange]]:
        """(object, kind, change) of every record the write-back handles; the others are logged and counted."""
        classified: list[tuple[str, str, StreamChange]] = []
        for change in changes:
            obj, why = self._object_of(change)
            if obj is None:
                logger.info(
                    "write-back record ignored",
                    extra={"reason": why, "table": change.table, "id": change.key, "event_name": change.event},
                )
                count("WriteBackRecordsIgnored")
                continue
            kind = self._classify_one(obj, change)
            if kind == "invalid":
                continue
            if kind == "ignore":
                self.result.count(obj).ignored += 1
            classified.append((obj, kind, change))
        return classified

    def _classify_one(self, obj: str, change: StreamChange) -> str:
        try:
            return self._classify(obj, change)
        except ValueError as exc:  # a _base an application overwrote with something unreadable
            self.result.count(obj).refused += 1
            self._refuse(obj, change, "INVALID_BASE", f"the item's {snapshot.BASE_ATTRIBUTE} is unreadable: {exc}", [])
            return "invalid"

    def _mark_all(self, classified: list[tuple[str, str, StreamChange]]) -> set[tuple[str, str]]:
        """Mark every changed item (or delete intent) pending and claim it; returns the items another
        runner holds (their changes are left to it and to the sweep)."""
        latest: dict[tuple[str, str, bool], tuple[str, StreamChange]] = {}
        for obj, kind, change in classified:
            if kind in ("update", "create", "delete"):
                latest[(obj, change.key, change.event == "REMOVE")] = (kind, change)
        now = self.deps.clock.now()
        deferred: set[tuple[str, str]] = set()
        for (obj, key, removed), (_, change) in latest.items():
            if removed:
                table = str(self.settings.state_table)
                outcome = self.tables.mark(table, self.tables.delete_key(obj, key), change.sequence, self.owner, now)
                if outcome == "claimed":
                    self._delete_marks[(obj, key)] = change.sequence
            else:
                table = self.tables.table(self.settings.registry.get(obj))
                outcome = self.tables.mark(table, {"Id": {"S": key}}, change.sequence, self.owner, now)
                if outcome == "claimed":
                    self._marks[(obj, key)] = change.sequence
            if outcome == "held":
                deferred.add((obj, key))
                logger.info("item held by another write-back run; left to it", extra={"object": obj, "id": key})
        return deferred

    def _process(self, classified: list[tuple[str, str, StreamChange]]) -> None:
        updates: dict[str, list[StreamChange]] = {}
        creates: dict[str, list[StreamChange]] = {}
        deletes: dict[str, list[StreamChange]] = {}
        for obj, kind, change in classified:
            groups = {"update": updates, "create": creates, "delete": deletes}.get(kind)
            if groups is None:
                continue
            groups.setdefault(obj, []).append(change)
            self._sequences.setdefault(self._mark_key(obj, change), []).append(change.sequence)
        for obj, group in creates.items():
            self._guard(obj, group, self._creates)
        for obj, group in updates.items():
            self._guard(obj, group, self._updates)
        for obj, group in deletes.items():
            self._guard(obj, group, self._deletes)

    @staticmethod
    def _mark_key(obj: str, change: StreamChange) -> tuple[str, str]:
        return (obj, DELETE_SK.format(record_id=change.key)) if change.event == "REMOVE" else (obj, change.key)

    def _fail(self, sequences: Iterable[str], code: str, message: str) -> None:
        for sequence in sequences:
            self.result.failed.add(sequence)
            self._why.setdefault(sequence, (code, message))

    def _finish(self) -> None:
        """Settle the markers this run holds: released when the change needed nothing more (pushed,
        refused, superseded), kept (with a back-off, for re-drives) when it failed."""
        now = self.deps.clock.now()
        for (obj, key), seq in self._marks.items():
            if (obj, key) in self._settled:
                continue
            failed = [s for s in self._sequences.get((obj, key), []) if s in self.result.failed]
            table = self.tables.table(self.settings.registry.get(obj))
            if failed:
                self._failed_attempt(obj, key, table, {"Id": {"S": key}}, seq, failed, now)
            elif self._clear_mark(obj, key, table, seq):
                self._settled.add((obj, key))
        for (obj, record_id), seq in self._delete_marks.items():
            mark = (obj, DELETE_SK.format(record_id=record_id))
            if mark in self._settled:
                continue
            failed = [s for s in self._sequences.get(mark, []) if s in self.result.failed]
            if failed:
                state = str(self.settings.state_table)
                self._failed_attempt(obj, record_id, state, self.tables.delete_key(obj, record_id), seq, failed, now)

    def _clear_mark(
        self, obj: str, key: str, table: str, seq: str | None, sets: Mapping[str, Any] | None = None
    ) -> bool:
        """Remove the marker (and ``sets``) unless a newer change was seen since this run claimed the item."""
        return self.tables.update(table, key, sets=sets or {}, removes=PENDING_ATTRIBUTES, expect={PENDING_SEQ: seq})

    def _failed_attempt(  # noqa: PLR0917 - one call site, each argument named there
        self,
        obj: str,
        record_id: str,
        table: str,
        key: dict[str, Any],
        seq: str | None,
        failed: list[str],
        now: dt.datetime,
    ) -> None:
        """A re-drive that failed: back off (doubling, capped); after a day's attempts, record it as failed."""
        if self.owner == STREAM_OWNER:
            return  # Lambda retries the records; the marker stays for the sweep
        from sfsync.sweep import FAILED_AFTER_ATTEMPTS, next_attempt

        mark = (obj, key["sk"]["S"]) if "sk" in key else (obj, record_id)
        attempts = self._attempts.get(mark, 0) + 1
        self.tables.back_off(table, key, seq, attempts, next_attempt(attempts, now))
        code, message = self._why.get(failed[0], ("UNKNOWN", "the push failed"))
        logger.warning(
            "pending local change still not in Salesforce",
            extra={"object": obj, "id": record_id, "attempts": attempts, "code": code},
        )
        if attempts >= FAILED_AFTER_ATTEMPTS:
            since = self._since.get(mark, now)
            self.tables.record(
                obj, record_id, "failed", since, "pending", code=code, message=message, attempts=attempts
            )
            self.tables.open_problem(
                obj, record_id, "failed", code=code, message=message, fields=[], since=since, now=now, attempts=attempts
            )

    def _guard(self, obj: str, group: list[StreamChange], step: Callable[[str, list[StreamChange]], None]) -> None:
        """Run one object's step; a Salesforce or store outage fails only its records (Lambda retries them)."""
        try:
            step(obj, group)
        except (SalesforceError, StoreError, StoreThrottled) as exc:
            logger.warning(
                "write-back step failed; its records are reported for retry",
                extra={"object": obj, "records": len(group), "error": f"{exc.__class__.__name__}: {exc}"},
            )
            self._fail((c.sequence for c in group), exc.__class__.__name__, str(exc))

    def _object_of(self, change: StreamChange) -> tuple[str | None, str]:
        """The two-way object of a record, or None and why it is ignored."""
        image = change.image or {}
        name = image.get("sobject")
        family = self._tables_to_objects.get(change.table)
        if family is None:
            return None, f"table {change.table or '?'} is not a record table of this stack"
        if name is not None:
            spec = (
                self.settings.registry.get(name) if isinstance(name, str) and name in self.settings.registry else None
            )
            if spec is not None and spec.writes_back and spec.family == family:
                return str(name), ""
            return None, f"{name} is not a two-way object of table {change.table}"
        if family in self.settings.registry and self.settings.registry.get(family).writes_back:
            return family, ""
        return None, f"table {change.table} holds no two-way object"

    def _classify(self, obj: str, change: StreamChange) -> str:
        if change.event == "REMOVE":
            old = change.old or {}
            if change.by_service or old.get("IsDeleted") or snapshot.BASE_ATTRIBUTE not in old:
                return "ignore"  # TTL expiry of a tombstone, or a local item that never reached Salesforce
            return "delete" if is_salesforce_id(obj, old.get("Id")) else "ignore"
        new = change.new
        if not new or new.get(LOCAL_STATUS_ATTRIBUTE) == "created":
            return "ignore"
        if change.event == "MODIFY" and _same_data(new, change.old):
            return "ignore"  # only the engine's attributes changed (our own bookkeeping)
        if snapshot.BASE_ATTRIBUTE not in new:
            return "ignore" if is_salesforce_id(obj, new.get("Id")) else "create"
        changes = snapshot.local_changes(new, ignore=("Id",))
        if not changes:
            return "ignore"  # written by the sync: no echo
        if "IsDeleted" in changes and new.get("IsDeleted") is True:
            return "delete"
        return "update"

    # updates -------------------------------------------------------------------------------

    def _updates(self, obj: str, group: list[StreamChange]) -> None:
        spec = self.settings.registry.get(obj)
        options = self.settings.writeback.get(obj, WriteBackOptions())
        describe = field_map(self.sf, obj)
        plans: dict[str, _ItemPlan] = {}
        for change in group:
            new = change.new or {}
            changes = snapshot.local_changes(new, ignore=("Id", "IsDeleted"))
            fields_ok: list[str] = []
            old = change.old or {}
            for name in sorted(changes):
                why = writable(describe, name, create=False)
                if why is None:
                    fields_ok.append(name)
                elif change.event == "INSERT" or not same(new.get(name), old.get(name)):
                    self._reject(obj, change, name, why)  # once: when this record changed the field
            if fields_ok:
                plans.setdefault(change.key, _ItemPlan(obj, change.key)).changes.append(change)
        if not plans:
            return
        table = self.tables.table(spec)
        current = self.tables.get_items(table, list(plans))
        wanted: set[str] = set()
        for plan in plans.values():
            plan.current = current.get(plan.key)
            for change in plan.changes:
                wanted.update(
                    n
                    for n in snapshot.local_changes(change.new or {}, ignore=("Id", "IsDeleted"))
                    if writable(describe, n, create=False) is None
                )
        live = {k: p for k, p in plans.items() if p.current is not None}
        salesforce, unstorable = self._retrieve(obj, list(live), sorted(wanted), describe)
        gone: list[_ItemPlan] = []
        converted: list[_ItemPlan] = []
        for key, problem in unstorable.items():
            self._refuse_plan(live.pop(key), "UNSTORABLE", str(problem), [problem.field] if problem.field else [])
        for plan in live.values():
            row = salesforce.get(plan.key)
            if row is None:
                gone.append(plan)
                continue
            self._decide(plan, row, options, describe)
            if obj == "Lead" and row.get("IsConverted") is True and plan.pushes():
                plan.target_obj, plan.target_id = "Contact", str(row.get("ConvertedContactId") or "")
                converted.append(plan)
            else:
                plan.target_obj, plan.target_id = obj, plan.key
        set_aside = {id(p) for p in gone} | {id(p) for p in converted}
        ready = [p for p in live.values() if id(p) not in set_aside]
        self._redirect_merged(obj, gone, options, describe)
        ready += [p for p in gone if p.target_id]
        ready += self._redirect_converted(converted)
        for plan in plans.values():
            if plan.current is None:
                logger.info("item deleted locally before its change was pushed", extra={"object": obj, "id": plan.key})
        self._push(ready, describe, options)

    def _retrieve(
        self, obj: str, ids: list[str], fields: list[str], describe: Mapping[str, Mapping[str, Any]]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, UnstorableRecord]]:
        """Salesforce's current values of ``fields`` (+ the stamp, a Lead's conversion) as item values.

        A record holding a value DynamoDB cannot hold (the codec's rules, :func:`item_value`) is
        returned apart with the reason: its change is refused, not judged against a value the item
        could never hold.
        """
        if not ids:
            return {}, {}
        names = list(dict.fromkeys(["Id", "SystemModstamp", *fields]))
        if obj == "Lead":
            names += [n for n in ("IsConverted", "ConvertedContactId") if n in describe and n not in names]
        rows: dict[str, dict[str, Any]] = {}
        unstorable: dict[str, UnstorableRecord] = {}
        for start in range(0, len(ids), MAX_RETRIEVE):
            chunk = ids[start : start + MAX_RETRIEVE]
            for record_id, row in zip(chunk, self.sf.retrieve(obj, chunk, names), strict=False):
                if row is None:
                    continue
                try:
                    rows[record_id] = {
                        n: item_value(n, v, is_datetime=describe.get(n, {}).get("type") == "datetime")
                        for n, v in row.items()
                        if n != "attributes"
                    }
                except UnstorableRecord as exc:
                    unstorable[record_id] = exc
        return rows, unstorable

    def _decide(
        self,
        plan: _ItemPlan,
        row: Mapping[str, Any],
        options: WriteBackOptions,
        describe: Mapping[str, Mapping[str, Any]],
    ) -> None:
        current = plan.current or {}
        current_base = snapshot.base_of(current) or {}
        sf_time = _instant(row.get("SystemModstamp"))
        for change in plan.changes:
            new = change.new or {}
            record_base = snapshot.base_of(new) or {}
            for name, local_change in snapshot.local_changes(new, ignore=("Id", "IsDeleted")).items():
                if writable(describe, name, create=False) is not None:
                    continue
                decision = decide_field(
                    name,
                    local=local_change.local,
                    record_base=record_base,
                    current_item=current,
                    current_base=current_base,
                    salesforce=row.get(name),
                    policy=options.policy_for(name),
                    object_name=plan.obj,
                    local_time=change.at,
                    salesforce_time=sf_time,
                )
                if decision.action != "skip":
                    plan.decisions[name] = decision

    def _redirect_merged(
        self,
        obj: str,
        gone: list[_ItemPlan],
        options: WriteBackOptions,
        describe: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """Deleted in Salesforce: a merge loser's change goes to the master; anything else is refused."""
        if not gone:
            return
        masters: dict[str, str] = {}
        unknown = []
        for plan in gone:
            merged = (plan.current or {}).get("_merged_into")
            if isinstance(merged, str) and merged:
                masters[plan.key] = merged
            else:
                unknown.append(plan.key)
        masters.update(self._masters(obj, unknown))
        for plan in gone:
            master = masters.get(plan.key)
            if not master:
                self._refuse_plan(plan, "ENTITY_IS_DELETED", "entity is deleted", [])
                continue
            for change in plan.changes:  # no conflict check against another record: the local values go
                for name, lc in snapshot.local_changes(change.new or {}, ignore=("Id", "IsDeleted")).items():
                    if writable(describe, name, create=False) is None:
                        plan.decisions[name] = FieldDecision(name, "push", lc.local)
            plan.target_obj, plan.target_id = obj, master
            plan.redirect_note = f"merged into {master}"

    def _masters(self, obj: str, ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(ids), MAX_QUERY_IDS):
            chunk = [i for i in ids[start : start + MAX_QUERY_IDS] if _SALESFORCE_ID.match(i)]
            if not chunk:
                continue
            quoted = ", ".join(f"'{i}'" for i in chunk)
            soql = f"SELECT Id, IsDeleted, MasterRecordId FROM {obj} WHERE Id IN ({quoted})"
            for page in self.sf.query_pages(soql, include_deleted=True):
                for row in page.records:
                    if row.get("MasterRecordId"):
                        found[str(row["Id"])] = str(row["MasterRecordId"])
        return found

    def _redirect_converted(self, plans: list[_ItemPlan]) -> list[_ItemPlan]:
        """A converted Lead's pushes go to its Contact: fields of the same name the Contact can update."""
        if not plans:
            return []
        contact = field_map(self.sf, "Contact")
        ready = []
        for plan in plans:
            if not plan.target_id:
                self._refuse_plan(plan, "CANNOT_UPDATE_CONVERTED_LEAD", "converted lead without a contact", [])
                continue
            kept: dict[str, FieldDecision] = {}
            for name, decision in plan.decisions.items():
                if decision.action != "push":
                    continue
                why = writable(contact, name, create=False)
                if why is None:
                    kept[name] = decision
                else:
                    for change in plan.changes:
                        self._reject(plan.obj, change, name, f"lead is converted and Contact {why}")
            plan.decisions = kept
            plan.redirect_note = f"lead converted to Contact {plan.target_id}"
            if kept:
                ready.append(plan)
        return ready

    def _push(
        self,
        plans: list[_ItemPlan],
        describe: Mapping[str, Mapping[str, Any]],
        options: WriteBackOptions,
    ) -> None:
        to_send: list[_ItemPlan] = []
        for plan in plans:
            if not plan.decisions:
                continue  # every change of this item was stale or already in Salesforce
            self._record_conflicts(plan)
            target_describe = describe if plan.target_obj == plan.obj else field_map(self.sf, plan.target_obj)
            problems = [
                (name, problem)
                for name, value in plan.pushes().items()
                if (problem := check_value(name, value, target_describe.get(name, {}))) is not None
            ]
            if problems:
                # the malformed fields are refused (named); the record's other changes still go
                code = problems[0][1][0]
                message = "; ".join(p[1] for _, p in problems)
                bad = [name for name, _ in problems]
                values = {name: plan.decisions[name].value for name in bad}
                self.result.count(plan.obj).refused += 1
                for change in plan.changes:
                    plan.mark = self._refuse(plan.obj, change, code, message, bad, values=values)
                for name in bad:
                    del plan.decisions[name]
            if plan.pushes():
                to_send.append(plan)
            elif plan.decisions:
                self._settle(plan)  # nothing to send: the base catches up (Salesforce wins / same values)
        attempt = 0
        while to_send:
            retry: list[_ItemPlan] = []
            chunks = [to_send[start : start + MAX_COLLECTION] for start in range(0, len(to_send), MAX_COLLECTION)]
            for chunk, results in zip(chunks, self._send_updates(chunks, options), strict=True):
                for plan, outcome in zip(chunk, results, strict=False):
                    retry += self._outcome(plan, outcome, options)
            if not retry:
                return
            attempt += 1
            if attempt > LOCK_RETRIES:
                for plan in retry:
                    self._fail(plan.sequences, "UNABLE_TO_LOCK_ROW", "the record stayed locked")
                    logger.warning(
                        "write-back gave up retrying in this invocation",
                        extra={"object": plan.obj, "id": plan.key, "code": "UNABLE_TO_LOCK_ROW"},
                    )
                return
            self.result.count(retry[0].obj).retried += len(retry)
            self.deps.sleep(LOCK_BACKOFF_SECONDS * 2 ** (attempt - 1))
            to_send = retry

    def _send_updates(self, chunks: list[list[_ItemPlan]], options: WriteBackOptions) -> list[list[dict[str, Any]]]:
        """SaveResults per chunk of <= 200 updates.

        One chunk: one sObject Collections PATCH.  Several: packed five at a time into one
        ``/composite`` request (five collections subrequests count as one API call, spec §6.9).
        """
        bodies = [
            [
                {
                    "attributes": {"type": plan.target_obj},
                    "id": plan.target_id,
                    **{name: salesforce_value(value) for name, value in plan.pushes().items()},
                }
                for plan in chunk
            ]
            for chunk in chunks
        ]
        if len(bodies) == 1:
            self.result.api_calls += 1
            return [
                self.sf.collections(
                    "PATCH", bodies[0], False, call_options_client=CALL_OPTIONS_CLIENT, auto_assign=options.auto_assign
                )
            ]
        headers = {
            "Sforce-Call-Options": f"client={CALL_OPTIONS_CLIENT}",
            "Sforce-Auto-Assign": "TRUE" if options.auto_assign else "FALSE",
        }
        url = f"/services/data/v{self.sf.api_version}/composite/sobjects"
        results: list[list[dict[str, Any]]] = []
        for start in range(0, len(bodies), MAX_COMPOSITE_COLLECTIONS):
            group = bodies[start : start + MAX_COMPOSITE_COLLECTIONS]
            subrequests = [
                {
                    "method": "PATCH",
                    "url": url,
                    "referenceId": f"u{i}",
                    "body": {"allOrNone": False, "records": records},
                    "httpHeaders": headers,
                }
                for i, records in enumerate(group)
            ]
            responses = self.sf.composite(subrequests, all_or_none=False, headers=headers)
            self.result.api_calls += 1
            for records, response in zip(group, responses, strict=True):
                status = int(response.get("httpStatusCode", 500))
                body = response.get("body")
                if status < 300 and isinstance(body, list):
                    results.append(body)
                    continue
                if status >= 500:
                    raise SalesforceUnavailable(f"composite update subrequest answered HTTP {status}")
                first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}
                error = {
                    "statusCode": str(first.get("errorCode") or first.get("statusCode") or f"HTTP_{status}"),
                    "message": str(first.get("message", "")),
                    "fields": first.get("fields") or [],
                }
                results.append([{"success": False, "errors": [error]} for _ in records])
        return results

    def _outcome(self, plan: _ItemPlan, outcome: Mapping[str, Any], options: WriteBackOptions) -> list[_ItemPlan]:
        """Handle one SaveResult; returns the plan when it is to be retried."""
        if outcome.get("success"):
            self._settle(plan, pushed=True)
            return []
        errors = outcome.get("errors") or [{}]
        first = errors[0] if isinstance(errors[0], dict) else {}
        code = str(first.get("statusCode") or "UNKNOWN")
        message = str(first.get("message") or "")
        fields = [str(f) for f in first.get("fields") or []]
        if code in RETRYABLE_CODES:
            return [plan]
        if code == "CANNOT_UPDATE_CONVERTED_LEAD" and plan.target_obj == "Lead":
            rows = self.sf.retrieve("Lead", [plan.target_id], ["Id", "ConvertedContactId"])
            contact = (rows[0] or {}).get("ConvertedContactId") if rows else None
            plan.target_obj, plan.target_id = "Contact", str(contact or "")
            redirected = self._redirect_converted([plan])
            if redirected:
                self._push(redirected, field_map(self.sf, "Contact"), options)
            return []
        if code == "ENTITY_IS_DELETED" and plan.target_id == plan.key and plan.redirect_note is None:
            masters = self._masters(plan.obj, [plan.key])
            if plan.key in masters:
                plan.target_id = masters[plan.key]
                plan.redirect_note = f"merged into {plan.target_id}"
                self._push([plan], field_map(self.sf, plan.obj), options)
                return []
        self._refuse_plan(plan, code, message, fields)
        return []

    def _settle(self, plan: _ItemPlan, *, pushed: bool = False) -> None:
        """After Salesforce accepted (or needed nothing): base := pushed values, conditional on the base read."""
        current = plan.current or {}
        base = dict(snapshot.base_of(current) or {})
        sets: dict[str, Any] = {}
        expect: dict[str, Any] = {snapshot.BASE_ATTRIBUTE: current.get(snapshot.BASE_ATTRIBUTE)}
        redirected = plan.target_id != plan.key or plan.target_obj != plan.obj
        for name, decision in plan.decisions.items():
            if decision.value is None:
                base.pop(name, None)
            else:
                base[name] = decision.value
            if decision.write_item:
                sets[name] = decision.value
                expect[name] = decision.expected_item_value
        sets[snapshot.BASE_ATTRIBUTE] = snapshot.encode_base(base)
        sets[ERROR_ATTRIBUTE] = plan.mark  # cleared by an accepted push, unless part of it was refused
        table = self.tables.table(self.settings.registry.get(plan.obj))
        if not self._update_settling(plan.obj, plan.key, table, sets, expect):
            logger.info(
                "item changed while its push was in flight; the next sync brings Salesforce's state",
                extra={"object": plan.obj, "id": plan.key},
            )
        if plan.mark is None and _had_problem(current):
            self.tables.resolve_problem(plan.obj, plan.key)
        counters = self.result.count(plan.obj)
        if pushed:
            counters.pushed += 1
            started = plan.first_at
            if started is not None and len(counters.lag_seconds) < LAG_SAMPLES:
                counters.lag_seconds.append(max(0.0, (self.deps.wall_clock() - started).total_seconds()))
        if redirected and pushed:
            counters.redirected += 1
            for change in plan.changes:
                self.tables.record(
                    plan.obj,
                    plan.key,
                    "redirected",
                    change.at or self.deps.clock.now(),
                    change.sequence,
                    target_object=plan.target_obj,
                    target_id=plan.target_id,
                    reason=plan.redirect_note,
                    fields=sorted(plan.pushes()),
                )

    def _update_settling(
        self, obj: str, key: str, table: str, sets: Mapping[str, Any], expect: Mapping[str, Any]
    ) -> bool:
        """An update that settles the item's change: it also clears the pending marker this run holds,
        unless a newer change was seen meanwhile (then the marker stays for it)."""
        mark = (obj, key)
        if mark in self._marks and mark not in self._settled:
            done = self.tables.update(
                table, key, sets=sets, removes=PENDING_ATTRIBUTES, expect={**expect, PENDING_SEQ: self._marks[mark]}
            )
            if done:
                self._settled.add(mark)
                return True
        return self.tables.update(table, key, sets=sets, expect=expect)

    def _record_conflicts(self, plan: _ItemPlan) -> None:
        for decision in plan.decisions.values():
            conflict: Conflict | None = decision.conflict
            if conflict is None:
                continue
            self.result.count(plan.obj).conflicts += 1
            change = plan.changes[-1]
            self.tables.record(
                plan.obj,
                plan.key,
                "conflict",
                change.at or self.deps.clock.now(),
                f"{change.sequence}#{conflict.field}",
                field=conflict.field,
                local_value=json.dumps(salesforce_value(conflict.local)),
                salesforce_value=json.dumps(salesforce_value(conflict.salesforce)),
                base_value=json.dumps(salesforce_value(conflict.base)),
                policy=conflict.policy,
                winner=conflict.winner,
            )
            logger.info(
                "write-back conflict",
                extra={"object": plan.obj, "id": plan.key, "field": conflict.field, "winner": conflict.winner},
            )

    def _reject(self, obj: str, change: StreamChange, name: str, why: str) -> None:
        self.result.count(obj).rejected += 1
        self.tables.record(
            obj,
            change.key,
            "rejected",
            change.at or self.deps.clock.now(),
            f"{change.sequence}#{name}",
            code="FIELD_NOT_WRITABLE",
            message=why,
            fields=[name],
        )

    def _refuse_plan(self, plan: _ItemPlan, code: str, message: str, fields: list[str]) -> None:
        self.result.count(plan.obj).refused += 1
        for change in plan.changes:
            self._refuse(plan.obj, change, code, message, fields, values=plan.pushes() or None)

    def _refuse(
        self,
        obj: str,
        change: StreamChange,
        code: str,
        message: str,
        fields: list[str],
        *,
        values: Mapping[str, Any] | None = None,
        mark: bool = True,
    ) -> str:
        when = change.at or self.deps.clock.now()
        self.tables.record(
            obj,
            change.key,
            "refused",
            when,
            change.sequence,
            code=code,
            message=message,
            fields=fields,
            values=dict(values) if values else None,
        )
        logger.info("write-back refused", extra={"object": obj, "id": change.key, "code": code, "fields": fields})
        since = self._since.get(self._mark_key(obj, change), when)
        self.tables.open_problem(
            obj,
            change.key,
            "refused",
            code=code,
            message=message,
            fields=fields,
            since=since,
            now=self.deps.clock.now(),
        )
        mark_value = json.dumps(
            {"code": code, "message": message, "fields": fields, "at": sfclock.to_iso_ms(when)}, sort_keys=True
        )
        if mark and change.event != "REMOVE":
            table = self.tables.table(self.settings.registry.get(obj))
            self.tables.update(table, change.key, sets={ERROR_ATTRIBUTE: mark_value})
        return mark_value

    # creates -------------------------------------------------------------------------------

    def _creates(self, obj: str, group: list[StreamChange]) -> None:
        options = self.settings.writeback.get(obj, WriteBackOptions())
        describe = field_map(self.sf, obj)
        latest: dict[str, StreamChange] = {}
        for change in group:
            latest[change.key] = change  # the last image of a local item holds everything to create
        pending: list[tuple[StreamChange, dict[str, Any]]] = []
        for change in latest.values():
            new = change.new or {}
            values: dict[str, Any] = {}
            for name, value in snapshot.data_of(new).items():
                if name in ("Id", "IsDeleted", "SystemModstamp"):
                    continue
                why = writable(describe, name, create=True)
                if why is None:
                    values[name] = value
                else:
                    self._reject(obj, change, name, why)
            problems = [(n, p) for n, v in values.items() if (p := check_value(n, v, describe[n])) is not None]
            if problems:
                self.result.count(obj).refused += 1
                self._refuse(
                    obj, change, problems[0][1][0], "; ".join(p for _, (_, p) in problems), [n for n, _ in problems]
                )
                continue
            pending.append((change, values))
        if not pending:
            return
        if options.external_id_field:
            self._upsert_creates(obj, pending, options, describe)
        else:
            self._intent_creates(obj, pending, options, describe)

    def _upsert_creates(
        self,
        obj: str,
        pending: list[tuple[StreamChange, dict[str, Any]]],
        options: WriteBackOptions,
        describe: Mapping[str, Mapping[str, Any]],
    ) -> None:
        ext = str(options.external_id_field)
        for start in range(0, len(pending), MAX_COLLECTION):
            chunk = pending[start : start + MAX_COLLECTION]
            records = [
                {**{n: salesforce_value(v) for n, v in values.items()}, ext: values.get(ext) or change.key}
                for change, values in chunk
            ]
            results = self.sf.upsert_collection(
                obj, ext, records, False, call_options_client=CALL_OPTIONS_CLIENT, auto_assign=options.auto_assign
            )
            self.result.api_calls += 1
            self._created(obj, chunk, results, describe)

    def _intent_creates(
        self,
        obj: str,
        pending: list[tuple[StreamChange, dict[str, Any]]],
        options: WriteBackOptions,
        describe: Mapping[str, Mapping[str, Any]],
    ) -> None:
        fresh: list[tuple[StreamChange, dict[str, Any]]] = []
        done: list[tuple[StreamChange, dict[str, Any], str]] = []
        for change, values in pending:
            intent = self.tables.get_intent(obj, change.key)
            if intent is not None and intent.get("status") == "created" and intent.get("salesforce_id"):
                done.append((change, values, str(intent["salesforce_id"])))
                continue
            if intent is not None:  # sent before, outcome unknown: look before creating again
                found = self._find_created(obj, values, str(intent.get("intent_at", "")), describe)
                if found is not None:
                    self.tables.intent_created(obj, change.key, found)
                    done.append((change, values, found))
                    continue
            fresh.append((change, values))
        if done:
            self._finish_creates(obj, done, describe)
        for start in range(0, len(fresh), MAX_COLLECTION):
            chunk = fresh[start : start + MAX_COLLECTION]
            intent_at = self._salesforce_now() - INTENT_LOOKBACK
            for change, _ in chunk:
                self.tables.put_intent(obj, change.key, intent_at)
            records = [
                {"attributes": {"type": obj}, **{n: salesforce_value(v) for n, v in values.items()}}
                for _, values in chunk
            ]
            try:
                results = self.sf.collections(
                    "POST", records, False, call_options_client=CALL_OPTIONS_CLIENT, auto_assign=options.auto_assign
                )
            except SalesforceUnavailable as exc:
                self._fail((change.sequence for change, _ in chunk), "CREATE_OUTCOME_UNKNOWN", str(exc))
                self.result.count(obj).retried += len(chunk)
                logger.warning("create outcome unknown; the retry looks before creating", extra={"object": obj})
                continue
            self.result.api_calls += 1
            self._created(obj, chunk, results, describe)

    def _salesforce_now(self) -> dt.datetime:
        server = self.sf.server_time()
        return server if server is not None else self.deps.clock.now()

    def _find_created(
        self, obj: str, values: Mapping[str, Any], intent_at: str, describe: Mapping[str, Mapping[str, Any]]
    ) -> str | None:
        """The record a lost create made, if any: same values, created at or after the intent."""
        terms = []
        for name, value in sorted(values.items()):
            f = describe.get(name, {})
            if not f.get("filterable") or value is None:
                continue
            if f.get("type") in _TEXT_TYPES and isinstance(value, str):
                escaped = value.replace("\\", "\\\\").replace("'", "\\'")
                terms.append(f"{name} = '{escaped}'")
            elif f.get("type") == "boolean" and isinstance(value, bool):
                terms.append(f"{name} = {'true' if value else 'false'}")
        if not terms:
            raise SalesforceUnavailable(
                f"cannot tell whether an earlier create of {obj} succeeded (no filterable values)"
            )
        when = sfclock.to_soql(sfclock.parse_instant(intent_at)) if intent_at else "1970-01-01T00:00:00.000Z"
        soql = f"SELECT Id FROM {obj} WHERE CreatedDate >= {when} AND " + " AND ".join(terms[:8])
        soql += " ORDER BY CreatedDate LIMIT 1"
        for page in self.sf.query_pages(soql, include_deleted=False):
            for row in page.records:
                return str(row["Id"])
        return None

    def _created(
        self,
        obj: str,
        chunk: list[tuple[StreamChange, dict[str, Any]]],
        results: list[dict[str, Any]],
        describe: Mapping[str, Mapping[str, Any]],
    ) -> None:
        done: list[tuple[StreamChange, dict[str, Any], str]] = []
        for (change, values), outcome in zip(chunk, results, strict=False):
            if outcome.get("success") and outcome.get("id"):
                sf_id = str(outcome["id"])
                if self.settings.writeback.get(obj, WriteBackOptions()).external_id_field is None:
                    self.tables.intent_created(obj, change.key, sf_id)
                done.append((change, values, sf_id))
                continue
            errors = outcome.get("errors") or [{}]
            first = errors[0] if isinstance(errors[0], dict) else {}
            code = str(first.get("statusCode") or "UNKNOWN")
            if code in RETRYABLE_CODES:
                self._fail([change.sequence], code, str(first.get("message") or ""))
                self.result.count(obj).retried += 1
                continue
            self.result.count(obj).refused += 1
            self._refuse(
                obj,
                change,
                code,
                str(first.get("message") or ""),
                [str(f) for f in first.get("fields") or []],
                values=values,
            )
        if done:
            self._finish_creates(obj, done, describe)

    def _finish_creates(
        self,
        obj: str,
        done: list[tuple[StreamChange, dict[str, Any], str]],
        describe: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """Put the real items (as the sync would) and turn the local items into redirects."""
        spec = self.settings.registry.get(obj)
        table = self.tables.table(spec)
        names = [n for n, f in describe.items() if f.get("type") not in _SKIPPED_TYPES and not f.get("calculated")]
        datetimes = frozenset(n for n in names if describe[n].get("type") == "datetime")
        rows: dict[str, dict[str, Any]] = {}
        ids = [sf_id for _, _, sf_id in done]
        for start in range(0, len(ids), MAX_RETRIEVE):
            chunk = ids[start : start + MAX_RETRIEVE]
            for sf_id, row in zip(chunk, self.sf.retrieve(obj, chunk, names), strict=False):
                if row is not None:
                    rows[sf_id] = row
        now = self.deps.clock.now()
        counters = self.result.count(obj)
        for change, _, sf_id in done:
            row = rows.get(sf_id)
            if row is not None:
                try:
                    item = snapshot.with_base(
                        to_item(spec, row, cycle_id=WRITEBACK_CYCLE_ID, synced_at=now, datetime_fields=datetimes)
                    )
                except UnstorableRecord as exc:
                    # The record exists in Salesforce: the redirect still goes on (a retry would
                    # meet the same row); the inbound sync records the same reason when it reads it.
                    self.tables.record(
                        obj, sf_id, "unstorable", now, change.sequence, code="UNSTORABLE", message=str(exc)
                    )
                else:
                    self.tables.put_synced(table, item)
            self._update_settling(
                obj,
                change.key,
                table,
                {CREATED_ID_ATTRIBUTE: sf_id, LOCAL_STATUS_ATTRIBUTE: "created", ERROR_ATTRIBUTE: None},
                {},
            )
            if _had_problem(change.new or {}):
                self.tables.resolve_problem(obj, change.key)
            counters.created += 1
            if change.at is not None and len(counters.lag_seconds) < LAG_SAMPLES:
                counters.lag_seconds.append(max(0.0, (self.deps.wall_clock() - change.at).total_seconds()))

    # deletes -------------------------------------------------------------------------------

    def _deletes(self, obj: str, group: list[StreamChange]) -> None:
        options = self.settings.writeback.get(obj, WriteBackOptions())
        if not options.allow_deletes:
            for change in group:
                self.result.count(obj).refused += 1
                self._refuse(
                    obj,
                    change,
                    "DELETE_NOT_ALLOWED",
                    f"local deletes of {obj} are not pushed (allow_deletes is off)",
                    [],
                )
                self._delete_settled(obj, change, refused=True)
            return
        version = self.sf.api_version
        for start in range(0, len(group), MAX_COMPOSITE):
            chunk = group[start : start + MAX_COMPOSITE]
            subrequests = [
                {
                    "method": "DELETE",
                    "url": f"/services/data/v{version}/sobjects/{obj}/{change.key}",
                    "referenceId": f"d{i}",
                    "httpHeaders": {"Sforce-Call-Options": f"client={CALL_OPTIONS_CLIENT}"},
                }
                for i, change in enumerate(chunk)
            ]
            responses = self.sf.composite(
                subrequests, all_or_none=False, headers={"Sforce-Call-Options": f"client={CALL_OPTIONS_CLIENT}"}
            )
            self.result.api_calls += 1
            for change, response in zip(chunk, responses, strict=False):
                status = int(response.get("httpStatusCode", 500))
                if status < 300 or _error_code(response) == "ENTITY_IS_DELETED":
                    self.result.count(obj).deleted += 1
                    self._delete_settled(obj, change, refused=False)
                    continue
                if _error_code(response) in RETRYABLE_CODES:
                    self._fail([change.sequence], str(_error_code(response)), "the record stayed locked")
                    continue
                body = response.get("body")
                first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}
                self.result.count(obj).refused += 1
                self._refuse(
                    obj,
                    change,
                    _error_code(response) or f"HTTP_{status}",
                    str(first.get("message", "")),
                    [str(f) for f in first.get("fields") or []],
                )
                self._delete_settled(obj, change, refused=True)

    def _delete_settled(self, obj: str, change: StreamChange, *, refused: bool) -> None:
        """A local delete reached Salesforce (its intent goes) or was refused (its intent stays, for a retry)."""
        if change.event != "REMOVE":
            if not refused:
                self.tables.resolve_problem(obj, change.key)
            return  # IsDeleted set on the item: its marker is released at the end of the run
        mark = (obj, change.key)
        if mark in self._delete_marks:
            self.tables.settle_delete_intent(obj, change.key, self._delete_marks[mark], refused=refused)
            self._settled.add((obj, DELETE_SK.format(record_id=change.key)))
        if not refused:
            self.tables.resolve_problem(obj, change.key)


def _had_problem(item: Mapping[str, Any]) -> bool:
    """Might the item have a row in ``sfsync errors`` (refused, or failed after many attempts)?"""
    from sfsync.sweep import FAILED_AFTER_ATTEMPTS

    attempts = item.get(PENDING_ATTEMPTS)
    return ERROR_ATTRIBUTE in item or (attempts is not None and int(attempts) >= FAILED_AFTER_ATTEMPTS)


def _error_code(response: Mapping[str, Any]) -> str | None:
    body = response.get("body")
    if isinstance(body, list) and body and isinstance(body[0], dict):
        code = body[0].get("errorCode") or body[0].get("statusCode")
        return str(code) if code else None
    return None


def _instant(value: Any) -> dt.datetime | None:
    if isinstance(value, str) and value:
        try:
            return sfclock.parse_instant(value)
        except ValueError:
            return None
    return None


def process_batch(records: Sequence[Mapping[str, Any]], deps: WriteBackDeps) -> BatchResult:
    """Process one stream batch; emits the metrics and returns the failed sequence numbers."""
    result = WriteBack(deps).run(records)
    emit_metrics(result)
    return result


def emit_metrics(result: BatchResult) -> None:
    """One EMF blob per object: pushed, created, conflicts, refused, rejected, retried, lag."""

    for obj, c in result.counters.items():
        if c == Counters(ignored=c.ignored):
            continue  # only the sync's own writes and our bookkeeping: nothing to report
        with metrics_for_object(obj) as single:
            for name, value in (
                ("WriteBackPushed", c.pushed),
                ("WriteBackCreated", c.created),
                ("WriteBackConflicts", c.conflicts),
                ("WriteBackRefused", c.refused),
                ("WriteBackRejected", c.rejected),
                ("WriteBackRetried", c.retried),
                ("WriteBackRedirected", c.redirected),
                ("WriteBackDeleted", c.deleted),
            ):
                single.add(name, value)
            for lag in c.lag_seconds:
                single.add("WriteBackLagSeconds", lag)
        logger.info(
            "write-back batch",
            extra={
                "object": obj,
                "pushed_count": c.pushed,
                "created_count": c.created,
                "conflict_count": c.conflicts,
                "refused_count": c.refused,
                "rejected_count": c.rejected,
                "retried_count": c.retried,
                "ignored_count": c.ignored,
            },
        )


def raise_configuration_problem(deps: WriteBackDeps) -> None:
    """Raise the write-back options' problem if the settings were read without them.

    Nothing may be pushed, refused or settled then: the defaults would decide instead of the
    operator's options (a broken Lead option would refuse Contact's deletes).  Reported as every
    other configuration problem (with the secret's, all at once, counted).
    """
    if deps.config_problem is None:
        return
    from sfsync.wiring import configuration

    configuration(*WRITEBACK_SETTINGS)
    raise deps.config_problem


def writeback_deps() -> WriteBackDeps:
    """The handler's adapters: settings, DynamoDB, the clock, and the Salesforce client made on first
    use (its secret is read then, cached per secret).

    Invalid write-back options (``SFSYNC_WRITEBACK``) do not stop the pending markers: the settings
    are then read without them and the problem is raised once the markers are down.
    """
    import os

    from sfsync import wiring
    from sfsync.core.config import load_settings
    from sfsync.store.aws import dynamodb_client

    problem: ConfigurationError | None = None
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        problem = exc
        try:
            settings = load_settings({k: v for k, v in os.environ.items() if k != "SFSYNC_WRITEBACK"})
        except ConfigurationError:
            raise exc from None  # more than the write-back options is wrong: nothing can be marked
    settings.require("state_table", "errors_table", "record_tables")

    def salesforce() -> WriteBackSalesforce:
        _, secret = wiring.configuration(*WRITEBACK_SETTINGS)  # every problem at once, counted
        client: WriteBackSalesforce = wiring.salesforce_client(secret)
        return client

    return WriteBackDeps(
        settings, None, dynamodb_client(), sfclock.engine_clock(), sf_factory=salesforce, config_problem=problem
    )


__all__ = [
    "BatchResult",
    "Counters",
    "StreamChange",
    "WriteBack",
    "WriteBackDeps",
    "WriteBackSalesforce",
    "check_value",
    "clear_describe_cache",
    "decode_records",
    "emit_metrics",
    "field_map",
    "is_salesforce_id",
    "process_batch",
    "raise_configuration_problem",
    "writable",
    "writeback_deps",
]
