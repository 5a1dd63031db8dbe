"""The write-back's DynamoDB side: reads and conditional writes of the record tables, the pending
markers and claims, the errors table (history rows and the open row per record) and the create and
delete intents of the state table.  Used by the stages of :mod:`sfsync.writeback` through their
port (:class:`sfsync.writeback.model.WriteBackStore`); holds no decision of its own.

Layout it owns:

* pending marker on a two-way item (or a delete intent): ``_pending_since`` (first change seen),
  ``_pending_seq`` (latest), ``_pending_claim`` (``<claim expiry ISO>#<owner>``),
  ``_pending_attempts`` and ``_pending_retry_at`` (re-drive back-off); the sparse ``ByPending``
  index (``sobject`` + ``_pending_since``) lists them;
* state table: ``pk = WRITEBACK#<object>``, ``sk = CREATE#<local id>`` (create intents) or
  ``DELETE#<record id>`` (delete intents);
* errors table: ``pk = OPEN#<object>``, ``sk = <record id>`` (one row per record needing attention)
  beside the ``ERRORS#<object>`` history rows.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sfsync.core import clock as sfclock
from sfsync.core.config import Settings
from sfsync.core.exceptions import StoreError
from sfsync.core.registry import ObjectSpec
from sfsync.items.codec import boto_attribute
from sfsync.items.images import image
from sfsync.store.records import batch_get, client_failure, put_unless_newer

#: State-table keys of the write-back's intents.
INTENT_PK = "WRITEBACK#{object}"
INTENT_SK = "CREATE#{local_id}"
DELETE_SK = "DELETE#{record_id}"
DELETE_PREFIX = "DELETE#"
#: Errors-table partition of the records that still need attention (one row per record, ``sfsync errors``).
OPEN_PK = "OPEN#{object}"
#: The pending marker (see "Pending changes" in :mod:`sfsync.writeback`).
PENDING_SINCE = "_pending_since"
PENDING_SEQ = "_pending_seq"
PENDING_CLAIM = "_pending_claim"
PENDING_ATTEMPTS = "_pending_attempts"
PENDING_RETRY_AT = "_pending_retry_at"
PENDING_ATTRIBUTES = (PENDING_SINCE, PENDING_SEQ, PENDING_CLAIM, PENDING_ATTEMPTS, PENDING_RETRY_AT)
#: The sparse index of pending items on every two-way table (``sobject`` + ``_pending_since``, keys only).
PENDING_INDEX = "ByPending"
#: How long a runner's claim on a pending item holds (longer than the function's timeout).
CLAIM_SECONDS = 300
#: The stream path's claim owner: stream invocations of one item never overlap (one shard, in order).
STREAM_OWNER = "stream"


class WriteBackTables:
    """Reads and conditional writes of the record tables, the errors table and the create intents."""

    def __init__(self, client: Any, settings: Settings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._sleep = sleep
        self._settings = settings
        self._retention = dt.timedelta(days=settings.error_retention_days)

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
        """The stored items for ``keys`` as Python values, by Id (the record store's :func:`batch_get`)."""
        raws = batch_get(
            table, keys, lambda request: self._client.batch_get_item(RequestItems=request), sleep=self._sleep
        )
        return {key: image(raw) or {} for key, raw in raws.items()}

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
        """Put an item the way the sync does (:func:`~sfsync.store.records.put_unless_newer`); False when a
        newer version is stored.  DynamoDB refusing the item raises :class:`UnstorableRecord`."""
        return put_unless_newer(self._client, table, item) is not None

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
        for raw in self._query(table, request):
            total += 1
            since = raw.get(PENDING_SINCE, {}).get("S", "")
            if before is None or since <= before:
                keys.append(str(raw.get("Id", {}).get("S", "")))
        return total, keys

    def _query(self, table: str, request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item (DynamoDB JSON) a Query returns, page after page."""
        request = dict(request)
        while True:
            page = self._call(table, "read", self._client.query, **request)
            yield from page.get("Items", [])
            last = page.get("LastEvaluatedKey")
            if not last:
                return
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
        return [image(raw) or {} for raw in self._query(table, request)]

    def _state_item(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """One state-table item, read consistently (None: there is none)."""
        table = str(self._settings.state_table)
        response = self._call(table, "read", self._client.get_item, TableName=table, Key=key, ConsistentRead=True)
        return image(response.get("Item"))

    def get_delete_intent(self, obj: str, record_id: str) -> dict[str, Any] | None:
        return self._state_item(self.delete_key(obj, record_id))

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
        return [image(raw) or {} for raw in self._query(table, request)]

    # create intents (state table) ---------------------------------------------------------------

    def _intent_key(self, obj: str, local_id: str) -> dict[str, Any]:
        return {
            "pk": {"S": INTENT_PK.format(object=obj)},
            "sk": {"S": INTENT_SK.format(local_id=local_id)},
        }

    def get_intent(self, obj: str, local_id: str) -> dict[str, Any] | None:
        return self._state_item(self._intent_key(obj, local_id))

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


__all__ = [
    "CLAIM_SECONDS",
    "DELETE_PREFIX",
    "DELETE_SK",
    "INTENT_PK",
    "INTENT_SK",
    "OPEN_PK",
    "PENDING_ATTEMPTS",
    "PENDING_ATTRIBUTES",
    "PENDING_CLAIM",
    "PENDING_INDEX",
    "PENDING_RETRY_AT",
    "PENDING_SEQ",
    "PENDING_SINCE",
    "STREAM_OWNER",
    "WriteBackTables",
]
