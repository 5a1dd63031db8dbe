"""The record-table adapter: idempotent, monotonic writes of Salesforce rows into DynamoDB.

Each row becomes one item (hash key ``Id``) in its family table, by the item codec's rules
(:mod:`sfsync.items.codec`: ``to_item``, ``encode``; re-exported here where other modules import them):

* the Salesforce fields selected by the cycle, ``attributes`` removed; JSON objects (compound
  address/location values, relationship objects) are dropped because their components arrive as
  fields of their own;
* **nulls are stored as absent attributes** (a put replaces the whole item, so a field cleared in
  Salesforce disappears), which keeps the GSIs sparse (a GSI key attribute may not be NULL);
* numbers as ``Decimal``; booleans as BOOL; datetime fields normalised to ISO ms ``Z``;
* the engine's attributes: ``sobject``, ``SystemModstamp`` (ISO ms Z), ``IsDeleted`` (BOOL),
  ``_synced_at``, ``_cycle_id``, and ``_expires_at`` (epoch seconds) on tombstones when the object
  has a tombstone retention; ``_merged_into`` (the winner's Id) on a merge loser's tombstone;
  ``_deleted_by`` (``getDeleted`` / ``reconcile``) on tombstones of rows that left Salesforce
  without a soft-delete row; ``_formulas_as_of`` (ISO ms Z) where a formula refresh wrote the
  item's formula values.

**Fields the cycle does not select are carried over** (``selected_fields``): a put keeps the stored
values of attributes outside the cycle's selection - formula fields (refreshed on their own
schedule) and fields that stopped being readable (permission or schema change: the last value
read is kept rather than lost).  A selected field that is null is removed, as before.

Each page first reads the stored versions (``BatchGetItem``); rows whose stored version is newer,
or identical apart from the engine's bookkeeping, are *skipped* without a write (overlap replays
then cost no write capacity and raise no stream events).  The write is ``PutItem`` with
``attribute_not_exists(Id) OR SystemModstamp <= :new`` (equal stamps pass: several changes can
share a whole-second stamp, and replays are harmless).  A failed
condition means a newer version is stored: the row is *skipped*, not an error.  Items too large or
with values DynamoDB cannot hold go to the errors table and count as *failed*; the page goes on.
Throttling is retried by botocore (standard mode, 10 attempts); if it persists the page fails with
:class:`~sfsync.core.exceptions.StoreThrottled` so the caller does not checkpoint it.

**Exclusive writers batch their puts.**  A page written with ``exclusive=True`` (or by a store
built with ``exclusive_writer=True``) comes from the only writer of the items it touches: the
incremental cycle under the object's lease while no full copy of the object is under way, which
:mod:`sfsync.inbound.cycle` checks before every page.  Its decision is then made on the
page's consistent read alone: the puts go out as ``BatchWriteItem`` (25 items a request, unprocessed
items retried, throttling that persists -> :class:`~sfsync.core.exceptions.StoreThrottled`), the outcome
of each row is classified against the version read, and a request DynamoDB rejects as a whole
falls back to the conditional ``PutItem`` of each of its items (which isolates the unstorable one).
A store without that guarantee (``sfsync verify``'s repairs) keeps the conditional ``PutItem``.
The page's read and batch writes are sent in wire format (:mod:`sfsync.store.ddb_wire`; the item's
wire JSON and its ``_base`` text come from one pass of :func:`sfsync.items.codec.encode`), which spares
botocore's per-attribute validation, serialisation and parsing; a stored item is decoded only as far
as its row's decision needs (a new version of a row is decided on ``SystemModstamp`` and ``_base``).

**Two-way objects** (``ObjectSpec.writes_back``) carry the base snapshot ``_base``
(:mod:`sfsync.items.snapshot`) on every item the engine writes from Salesforce values: puts (conditional
and batched), patches (back-fill, formula refresh) and tombstones (getDeleted, reconciliation,
``sfsync verify``).  A put computes it on the final item (after the carry-over; attributes carried
over keep the stored base's values, so a local edit of one stays a local edit) and never carries a
stored ``_base`` over.  The skip rules of a put:

* Salesforce's row identical to the stored base (nothing changed in Salesforce since the engine's
  last write) is *skipped*, whatever local edits the item holds: a replay never undoes a local edit;
* a row Salesforce changed is written with Salesforce's values (the write-back reconciles pending
  local edits from the stream's old image);
* the same data as stored with a different base (the local values became Salesforce's) rewrites
  the item to refresh ``_base`` (counted *skipped*: no data changed); an item without ``_base``
  (written before snapshots) and an identical row stays untouched.

Patches and tombstones set the changed attributes inside the stored base (an item without one: its
data with the changes) and are conditional on the base they read, re-reading on a race.
``_base`` is bookkeeping for the "same data" comparison (replays of identical rows stay skipped).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sfsync.core.clock import epoch_seconds, normalize_stamp, to_iso_ms
from sfsync.core.exceptions import StoreError, StoreThrottled, UnstorableRecord
from sfsync.core.registry import ObjectSpec
from sfsync.items.codec import (
    ENGINE_ATTRIBUTES,
    MAX_ITEM_BYTES,
    batch_put_body,
    boto_attribute,
    check_size,
    encode,
    item_size,
    item_value,
    synced_text,
    to_item,
    wire_with_base,
)
from sfsync.items.images import item_from_boto, item_from_wire
from sfsync.items.snapshot import BASE_ATTRIBUTE, is_data_attribute
from sfsync.store.ddb_wire import WireCalls
from sfsync.store.put_rules import (
    Outcome,
    PageOutcome,
    StoredItem,
    classify,
    decide_one_way,
    decide_two_way,
    patched_base,
    put_result,
)

BATCH_GET_KEYS = 100
BATCH_GET_ATTEMPTS = 8
BATCH_WRITE_ITEMS = 25
BATCH_WRITE_ATTEMPTS = 8
#: Conditional-write attempts of a two-way patch or tombstone whose base changed under it.
BASE_WRITE_ATTEMPTS = 3
#: DynamoDB error codes that mean "throttled" (retried by botocore; persisting -> StoreThrottled).
THROTTLE_CODES = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"})


_FAILURE_WORDS = {
    "write": ("writes", "cannot write to"),
    "read": ("reads", "cannot read from"),
    "scan": ("scans", "cannot scan"),
}


def client_failure(exc: ClientError, table: str, action: str) -> StoreError | StoreThrottled:
    """The engine error for a DynamoDB client error: throttling (retryable) or anything else."""
    code = exc.response.get("Error", {}).get("Code", "")
    throttled, failed = _FAILURE_WORDS[action]
    if code in THROTTLE_CODES:
        return StoreThrottled(f"{table} kept throttling {throttled}: {code}")
    return StoreError(f"{failed} {table}: {code}")


#: boto3 client configuration for the record and error tables.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 10})

#: The condition of every put from Salesforce's values: never over a newer ``SystemModstamp``.
NOT_NEWER = "attribute_not_exists(#id) OR #stamp <= :stamp"


def batch_get(
    table: str,
    record_ids: Iterable[str],
    call: Callable[[dict[str, Any]], Mapping[str, Any]],
    *,
    sleep: Callable[[float], None],
    attributes: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The stored items (DynamoDB JSON, as ``call`` returns them) for ``record_ids``, by Id: consistent
    ``BatchGetItem`` calls of 100 keys (``call`` takes ``RequestItems``), unprocessed keys sent again
    with a growing pause; an Id that is not stored is absent.  ``attributes``: only these (``Id`` is
    always read).  The one batch read of the record tables (the cycles, the full copy's checks, the
    write-back and verify)."""
    found: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(record_ids))
    projection: dict[str, Any] = {}
    if attributes is not None:
        names = {f"#a{i}": name for i, name in enumerate(dict.fromkeys(["Id", *attributes]))}
        projection = {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}
    for start in range(0, len(unique), BATCH_GET_KEYS):
        request: dict[str, Any] = {
            table: {
                "Keys": [{"Id": {"S": rid}} for rid in unique[start : start + BATCH_GET_KEYS]],
                "ConsistentRead": True,
                **projection,
            }
        }
        for attempt in range(BATCH_GET_ATTEMPTS):
            try:
                response = call(request)
            except ClientError as exc:
                raise client_failure(exc, table, "read") from exc
            except BotoCoreError as exc:
                raise StoreError(f"cannot read from {table}: {exc}") from exc
            for raw in response.get("Responses", {}).get(table, []):
                found[raw["Id"]["S"]] = raw
            request = dict(response.get("UnprocessedKeys") or {})
            if not request:
                break
            sleep(min(2.0, 0.05 * 2**attempt))
        else:
            raise StoreThrottled(f"{table} left keys unprocessed after {BATCH_GET_ATTEMPTS} attempts")
    return found


def put_unless_newer(
    client: Any, table: str, item: Mapping[str, Any], *, return_old: bool = False
) -> dict[str, Any] | None:
    """A ``PutItem`` of ``item`` (Python values) unless the stored item has a newer ``SystemModstamp``.

    None: a newer version is stored (nothing written); otherwise the response (``Attributes``: the
    item replaced, with ``return_old``).  DynamoDB refusing the item raises :class:`UnstorableRecord`.
    """
    request: dict[str, Any] = {
        "TableName": table,
        "Item": {k: boto_attribute(v) for k, v in item.items()},
        "ConditionExpression": NOT_NEWER,
        "ExpressionAttributeNames": {"#id": "Id", "#stamp": "SystemModstamp"},
        "ExpressionAttributeValues": {":stamp": {"S": item["SystemModstamp"]}},
    }
    if return_old:
        request["ReturnValues"] = "ALL_OLD"
    try:
        response: dict[str, Any] = client.put_item(**request)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ConditionalCheckFailedException":
            return None
        if code == "ValidationException":
            raise UnstorableRecord(f"DynamoDB rejected the item: {exc.response['Error'].get('Message', '')}") from exc
        raise client_failure(exc, table, "write") from exc
    except BotoCoreError as exc:
        raise StoreError(f"cannot write to {table}: {exc}") from exc
    return response


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
        exclusive_writer: bool = False,
    ) -> None:
        self._client = client
        self._wire = WireCalls(client)
        self._exclusive = exclusive_writer
        self._sleep = sleep
        self._tables = dict(record_tables)
        self._errors_table = errors_table
        self._error_retention_days = error_retention_days

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
        selected_fields: Iterable[str] | None = None,
        after_put: Callable[[str], None] | None = None,
        exclusive: bool | None = None,
        stored: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> PageOutcome:
        """Write one page of rows; see the module docstring for the rules.

        ``selected_fields`` (the cycle's SELECT list): stored attributes outside it are carried
        over instead of dropped (None: the put replaces the item as read).  ``after_put`` is
        called with each written Id (a test seam for a crash in the middle of a page).
        ``exclusive`` overrides the store's ``exclusive_writer`` for this page (None: the store's):
        the incremental cycle decides it page by page (see :mod:`sfsync.inbound.cycle`).  ``stored``: the
        page's stored items as :meth:`stored_wire` read them just before (an Id not in it is not
        stored), when the caller has read them already; None: read here.
        """
        dt_fields = frozenset(datetime_fields)
        outcome = PageOutcome()
        items: list[tuple[str, dict[str, Any]]] = []
        for record in records:
            record_id = str(record.get(spec.key) or "?")
            try:
                item = to_item(spec, record, cycle_id=cycle_id, synced_at=synced_at, datetime_fields=dt_fields)
            except UnstorableRecord as exc:
                self.record_error(spec, record_id, cycle_id=cycle_id, reason=str(exc), when=synced_at)
                outcome.add(record_id, "failed")
                continue
            items.append((record_id, item))
        return self.write_items(
            spec,
            items,
            cycle_id=cycle_id,
            synced_at=synced_at,
            selected_fields=selected_fields,
            after_put=after_put,
            exclusive=exclusive,
            stored=stored,
            outcome=outcome,
        )

    def write_items(
        self,
        spec: ObjectSpec,
        items: list[tuple[str, dict[str, Any]]],
        *,
        cycle_id: str,
        synced_at: dt.datetime,
        selected_fields: Iterable[str] | None = None,
        after_put: Callable[[str], None] | None = None,
        exclusive: bool | None = None,
        stored: Mapping[str, Mapping[str, Any]] | None = None,
        outcome: PageOutcome | None = None,
    ) -> PageOutcome:
        """:meth:`write_page` for rows already made items (:func:`sfsync.items.codec.to_item`), by Id.

        The items must not hold ``_base`` (every put computes its own).  ``outcome``: counters to add to.
        """
        sole_writer = self._exclusive if exclusive is None else exclusive
        two_way = spec.writes_back
        table = self.table_for(spec)
        selected = frozenset(selected_fields) if selected_fields is not None else None
        if outcome is None:
            outcome = PageOutcome()
        if stored is None:
            stored = self.stored_wire(table, [record_id for record_id, _ in items])
        batch: list[tuple[str, bytes, Outcome]] = []
        batched: set[str] = set()
        by_id: dict[str, dict[str, Any]] = {}
        repeats: list[tuple[str, dict[str, Any]]] = []
        for record_id, item in items:
            raw = stored.get(record_id)
            current = StoredItem(raw) if raw is not None else None
            carried = current.carry_over(item, selected) if current is not None and selected is not None else []
            if two_way and current is not None:
                current.keep_pending_edits(item, carried)
            if two_way:  # the decision needs the base snapshot, built in the same pass as the wire text
                wire, own_base = encode(item, with_base=True)
                decision = decide_two_way(current, item, carried, own_base or "")
            else:
                wire, decision = b"", decide_one_way(current, item)
            if decision == "skip":
                # A newer version is stored, or this exact version (two-way: Salesforce's row is
                # the base snapshot, whatever the local edits): no write, so replays of the overlap
                # cost no write capacity, raise no stream events and never undo a local edit.
                outcome.add(record_id, "skipped")
                continue
            # two-way: the wire text was built before the decision set the base snapshot;
            # one-way: encoded only for rows that are written
            wire = wire_with_base(wire, item[BASE_ATTRIBUTE]) if two_way else encode(item, with_base=False)[0]
            try:
                check_size(item, wire, two_way=two_way)
            except UnstorableRecord as exc:
                self.record_error(spec, record_id, cycle_id=cycle_id, reason=str(exc), when=synced_at)
                outcome.add(record_id, "failed")
                continue
            if not sole_writer:
                stored_ok = self._put_one(spec, table, record_id, item, outcome, cycle_id=cycle_id, synced_at=synced_at)
                if stored_ok and after_put is not None:
                    after_put(record_id)
            elif record_id in batched or (current is not None and not current.has_text_stamp()):
                # a second row of one Id, or an item without a stamp: after the batch, conditionally
                repeats.append((record_id, item))
            else:
                # The only writer: what was read is what the put replaces (see the module docstring).
                batched.add(record_id)
                result = "skipped" if decision == "refresh" else put_result(current, item)
                batch.append((record_id, wire, result))
                by_id[record_id] = item
        for start in range(0, len(batch), BATCH_WRITE_ITEMS):
            chunk = batch[start : start + BATCH_WRITE_ITEMS]
            if self._batch_put(table, [wire for _, wire, _ in chunk]):
                for record_id, _, result in chunk:
                    outcome.add(record_id, result)
                    if after_put is not None:
                        after_put(record_id)
                continue
            singles = [(record_id, by_id[record_id]) for record_id, _, _ in chunk]  # rejected: isolate the bad item
            repeats[:0] = singles
        for record_id, item in repeats:
            stored_ok = self._put_one(spec, table, record_id, item, outcome, cycle_id=cycle_id, synced_at=synced_at)
            if stored_ok and after_put is not None:
                after_put(record_id)
        return outcome

    def _put_one(
        self,
        spec: ObjectSpec,
        table: str,
        record_id: str,
        item: dict[str, Any],
        outcome: PageOutcome,
        *,
        cycle_id: str,
        synced_at: dt.datetime,
    ) -> bool:
        """One conditional put (see :meth:`_put`); an unstorable item is recorded.  False: it failed."""
        try:
            outcome.add(record_id, self._put(table, item))
        except UnstorableRecord as exc:
            self.record_error(spec, record_id, cycle_id=cycle_id, reason=str(exc), when=synced_at)
            outcome.add(record_id, "failed")
            return False
        return True

    def _batch_put(self, table: str, items: list[bytes]) -> bool:
        """Unconditional puts of up to 25 items (each its wire JSON, see :func:`sfsync.items.codec.encode`).

        False when DynamoDB rejects the request as a whole; items left unprocessed are sent again.
        """
        body = batch_put_body(table, items)
        request: dict[str, Any] = {}
        for attempt in range(BATCH_WRITE_ATTEMPTS):
            try:
                response = (
                    self._wire.batch_write_item(request)
                    if request
                    else self._wire.batch_write_item_encoded(table, body)
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ValidationException":
                    return False
                raise client_failure(exc, table, "write") from exc
            except BotoCoreError as exc:
                raise StoreError(f"cannot write to {table}: {exc}") from exc
            request = response.get("UnprocessedItems") or {}
            if not request:
                return True
            self._sleep(min(2.0, 0.05 * 2**attempt))
        raise StoreThrottled(f"{table} left items unprocessed after {BATCH_WRITE_ATTEMPTS} attempts")

    def patch_page(
        self,
        spec: ObjectSpec,
        rows: Iterable[Mapping[str, Any]],
        fields: Iterable[str],
        *,
        datetime_fields: Iterable[str] = (),
        not_newer_than_row: bool,
        cycle_id: str,
        synced_at: dt.datetime,
        extra: Mapping[str, Any] | None = None,
    ) -> PageOutcome:
        """Set only ``fields`` (+ ``extra``) on items that exist; used by back-fills and formula refreshes.

        Nothing else of the item changes, ``SystemModstamp`` included.  With ``not_newer_than_row``
        an item whose stored ``SystemModstamp`` is newer than the row's is left alone (it was
        written from a later read, which already carried these fields).  Items whose values are
        already equal are *skipped* without a write; a row without an item is *skipped* (the
        incremental window creates it).  Null values remove the attribute.
        """
        table = self.table_for(spec)
        names = [name for name in fields if name not in ENGINE_ATTRIBUTES and name != spec.key]
        dt_fields = set(datetime_fields)
        outcome = PageOutcome()
        patches: list[tuple[str, str | None, dict[str, Any]]] = []
        for row in rows:
            record_id = row.get(spec.key)
            if not isinstance(record_id, str) or not record_id:
                continue
            values: dict[str, Any] = {}
            try:
                for name in names:
                    values[name] = item_value(name, row.get(name), is_datetime=name in dt_fields)
            except UnstorableRecord as exc:
                self.record_error(spec, record_id, cycle_id=cycle_id, reason=str(exc), when=synced_at)
                outcome.add(record_id, "failed")
                continue
            stamp = row.get(spec.cursor)
            patches.append((record_id, normalize_stamp(stamp) if isinstance(stamp, str) else None, values))
        stored = self._stored(table, [record_id for record_id, _, _ in patches])
        two_way = spec.writes_back
        for record_id, stamp, values in patches:
            current = stored.get(record_id)
            guard = stamp if not_newer_than_row else None
            result: Outcome | None = None
            for _ in range(BASE_WRITE_ATTEMPTS):
                result = self._patch_one(table, record_id, current, values, extra=extra, guard=guard, two_way=two_way)
                if result is not None:
                    break
                current = self.get(spec, record_id)  # two-way: its base moved since it was read
            outcome.add(record_id, result or "skipped")
        return outcome

    def _patch_one(
        self,
        table: str,
        record_id: str,
        current: Mapping[str, Any] | None,
        values: dict[str, Any],
        *,
        extra: Mapping[str, Any] | None,
        guard: str | None,
        two_way: bool,
    ) -> Outcome | None:
        """One patch decision and update; None when a two-way item's base changed under it (retry)."""
        if current is None:
            return "skipped"
        if guard is not None and str(current.get("SystemModstamp", "")) > guard:
            return "skipped"
        same = all(current.get(name) == value for name, value in values.items())
        if not two_way:
            if same:
                return "skipped"
            return self._update(table, record_id, {**values, **(extra or {})}, guard)
        raw = current.get(BASE_ATTRIBUTE)
        stored_base = raw if isinstance(raw, str) else None
        base = patched_base(current, values)
        if same and (stored_base is None or stored_base == base):
            return "skipped"
        changes = {**values, **(extra or {}), BASE_ATTRIBUTE: base}
        return self._update(table, record_id, changes, guard, expected_base=stored_base, guard_base=True)

    def tombstone(
        self,
        spec: ObjectSpec,
        record_id: str,
        *,
        reason: str,
        deleted_at: dt.datetime | None,
        synced_at: dt.datetime,
        cycle_id: str,
    ) -> Outcome:
        """Mark a stored live item deleted because its row left Salesforce (hard delete, purge).

        ``deleted_at`` (getDeleted's ``deletedDate``) becomes the item's ``SystemModstamp`` when it
        is newer, so an older replay of the live row can never resurrect it.  An item that is
        absent, already a tombstone, or newer than ``deleted_at`` is left alone (*skipped*).
        A two-way item's ``_base`` gets the same changes (see :func:`patched_base`).
        """
        changes: dict[str, Any] = {"IsDeleted": True, "_deleted_by": reason}
        guard: str | None = None
        if deleted_at is not None:
            guard = to_iso_ms(deleted_at)
            changes["SystemModstamp"] = guard
        return self._tombstone_update(
            spec, record_id, changes, guard, None, synced_at=synced_at, cycle_id=cycle_id, check_object=False
        )

    def tombstone_seen(
        self,
        spec: ObjectSpec,
        record_id: str,
        *,
        seen_stamp: str | None,
        synced_at: dt.datetime,
        cycle_id: str,
    ) -> Outcome:
        """Tombstone a live item only if it still has the ``SystemModstamp`` a comparison saw (verify).

        ``seen_stamp`` None: the item had no ``SystemModstamp``.  A changed, absent or already
        deleted item is left alone (*skipped*).
        """
        return self._tombstone_update(
            spec, record_id, {"IsDeleted": True}, None, (seen_stamp,), synced_at=synced_at, cycle_id=cycle_id
        )

    def _tombstone_update(
        self,
        spec: ObjectSpec,
        record_id: str,
        changes: dict[str, Any],
        not_before: str | None,
        seen: tuple[str | None] | None,
        *,
        synced_at: dt.datetime,
        cycle_id: str,
        check_object: bool = True,
    ) -> Outcome:
        """The tombstone ``UpdateItem``: ``changes`` + bookkeeping on a live item, guarded as asked.

        ``not_before``: the stored ``SystemModstamp`` must not be newer; ``seen``: it must equal
        ``seen[0]`` (absent when None).  Two-way items are read first and their base updated with
        the data changes (the update is conditional on that base, re-read on a race).
        """
        table = self.table_for(spec)
        names = {"#id": spec.key, "#del": "IsDeleted"}
        values: dict[str, Any] = {":false": {"BOOL": False}}
        condition = "attribute_exists(#id) AND #del = :false"
        if check_object:
            names["#obj"] = "sobject"
            values[":obj"] = {"S": spec.name}
            condition += " AND #obj = :obj"
        if not_before is not None:
            names["#stamp"] = "SystemModstamp"
            values[":nb"] = {"S": not_before}
            condition += " AND #stamp <= :nb"
        if seen is not None:
            names["#stamp"] = "SystemModstamp"
            if seen[0] is None:
                condition += " AND attribute_not_exists(#stamp)"
            else:
                values[":seen"] = {"S": seen[0]}
                condition += " AND #stamp = :seen"
        all_changes = {**changes, "_synced_at": synced_text(synced_at), "_cycle_id": cycle_id}
        if spec.tombstone_retention_days is not None:
            all_changes["_expires_at"] = epoch_seconds(synced_at + dt.timedelta(days=spec.tombstone_retention_days))
        if not spec.writes_back:
            result = self._update(
                table, record_id, all_changes, None, condition=(condition, names, values), success="deleted"
            )
            return result or "skipped"
        for _ in range(BASE_WRITE_ATTEMPTS):
            current = self.get(spec, record_id)
            if current is None or current.get("IsDeleted") is not False:
                return "skipped"
            if check_object and current.get("sobject") != spec.name:
                return "skipped"
            stored_stamp = current.get("SystemModstamp")
            if not_before is not None and str(stored_stamp or "") > not_before:
                return "skipped"
            if seen is not None and stored_stamp != seen[0]:
                return "skipped"
            data_changes = {name: value for name, value in changes.items() if is_data_attribute(name)}
            raw = current.get(BASE_ATTRIBUTE)
            stored_base = raw if isinstance(raw, str) else None
            result = self._update(
                table,
                record_id,
                {**all_changes, BASE_ATTRIBUTE: patched_base(current, data_changes)},
                None,
                condition=(condition, names, values),
                expected_base=stored_base,
                guard_base=True,
                success="deleted",
            )
            if result is not None:
                return result
        return "skipped"

    def stored_ids(self, spec: ObjectSpec) -> dict[str, tuple[str, bool, str | None]]:
        """Id -> (SystemModstamp, IsDeleted, _deleted_by) of every stored item of ``spec``'s object (a Scan)."""
        table = self.table_for(spec)
        found: dict[str, tuple[str, bool, str | None]] = {}
        request: dict[str, Any] = {
            "TableName": table,
            "FilterExpression": "#o = :o",
            "ProjectionExpression": "#id, #stamp, #del, #by",
            "ExpressionAttributeNames": {
                "#o": "sobject",
                "#del": "IsDeleted",
                "#id": spec.key,
                "#stamp": "SystemModstamp",
                "#by": "_deleted_by",
            },
            "ExpressionAttributeValues": {":o": {"S": spec.name}},
            "ConsistentRead": True,
        }
        while True:
            try:
                response = self._client.scan(**request)
            except ClientError as exc:
                raise client_failure(exc, table, "scan") from exc
            except BotoCoreError as exc:
                raise StoreError(f"cannot scan {table}: {exc}") from exc
            for raw in response.get("Items", []):
                by = raw.get("_deleted_by", {}).get("S")
                found[raw[spec.key]["S"]] = (
                    raw.get("SystemModstamp", {}).get("S", ""),
                    bool(raw.get("IsDeleted", {}).get("BOOL", False)),
                    by,
                )
            last = response.get("LastEvaluatedKey")
            if not last:
                return found
            request["ExclusiveStartKey"] = last

    def _update(
        self,
        table: str,
        record_id: str,
        changes: Mapping[str, Any],
        stamp: str | None,
        *,
        condition: tuple[str, Mapping[str, str], Mapping[str, Any]] | None = None,
        guard_base: bool = False,
        expected_base: str | None = None,
        success: Outcome = "updated",
    ) -> Outcome | None:
        """``UpdateItem`` of ``changes`` (None removes) on an existing item; a failed condition: *skipped*.

        ``stamp``: only if the stored ``SystemModstamp`` is not newer.  ``condition``: (expression,
        names, values) replacing the default ``attribute_exists`` guard.  ``guard_base``: only if the
        stored ``_base`` is still ``expected_base`` (absent when None); a failed condition then
        returns None (the caller re-reads the item and decides again).
        """
        sets: list[str] = []
        removes: list[str] = []
        names: dict[str, str] = {"#id": "Id"}
        values: dict[str, Any] = {}
        for i, (name, value) in enumerate(changes.items()):
            names[f"#f{i}"] = name
            if value is None:
                removes.append(f"#f{i}")
            else:
                sets.append(f"#f{i} = :v{i}")
                values[f":v{i}"] = boto_attribute(value)
        expression = ""
        if sets:
            expression += "SET " + ", ".join(sets)
        if removes:
            expression += (" " if expression else "") + "REMOVE " + ", ".join(removes)
        if condition is not None:
            text, extra_names, extra_values = condition
            names.update(extra_names)
            values.update(extra_values)
        else:
            text = "attribute_exists(#id)"
        if stamp is not None:
            names["#stamp"] = "SystemModstamp"
            values[":stamp"] = {"S": stamp}
            text += " AND #stamp <= :stamp"
        if guard_base:
            names["#base"] = BASE_ATTRIBUTE
            if expected_base is None:
                text += " AND attribute_not_exists(#base)"
            else:
                values[":base"] = {"S": expected_base}
                text += " AND #base = :base"
        request: dict[str, Any] = {
            "TableName": table,
            "Key": {"Id": {"S": record_id}},
            "UpdateExpression": expression,
            "ConditionExpression": text,
            "ExpressionAttributeNames": names,
        }
        if values:
            request["ExpressionAttributeValues"] = values
        try:
            self._client.update_item(**request)
        except ClientError as exc:
            failed = self._update_failure(table, exc)
            return None if guard_base else failed
        except BotoCoreError as exc:
            raise StoreError(f"cannot write to {table}: {exc}") from exc
        return success

    def _update_failure(self, table: str, exc: ClientError) -> Outcome:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return "skipped"
        raise client_failure(exc, table, "write") from exc

    def _stored(self, table: str, record_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored items for ``record_ids`` as Python values (see :meth:`stored_wire`)."""
        return {record_id: item_from_wire(raw) for record_id, raw in self.stored_wire(table, record_ids).items()}

    def stored_wire(self, table: str, record_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored items for ``record_ids``, wire format, by Id (:func:`batch_get` through the wire path)."""
        return batch_get(table, record_ids, self._wire.batch_get_item, sleep=self._sleep)

    def _put(self, table: str, item: dict[str, Any]) -> Outcome:
        response = put_unless_newer(self._client, table, item, return_old=True)
        if response is None:
            return "skipped"
        attrs = response.get("Attributes")
        old = item_from_boto(attrs) if attrs else None
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
            self._client.put_item(TableName=self._errors_table, Item={k: boto_attribute(v) for k, v in item.items()})
        except ClientError as exc:
            raise client_failure(exc, self._errors_table, "write") from exc

    def get(self, spec: ObjectSpec, record_id: str) -> dict[str, Any] | None:
        """One stored item as Python values (tests and the CLI)."""
        response = self._client.get_item(
            TableName=self.table_for(spec), Key={"Id": {"S": record_id}}, ConsistentRead=True
        )
        attrs = response.get("Item")
        return item_from_boto(attrs) if attrs else None


__all__ = [
    "BATCH_GET_KEYS",
    "BATCH_WRITE_ITEMS",
    "CLIENT_CONFIG",
    "ENGINE_ATTRIBUTES",
    "MAX_ITEM_BYTES",
    "NOT_NEWER",
    "THROTTLE_CODES",
    "RecordStore",
    "UnstorableRecord",
    "batch_get",
    "client_failure",
    "item_size",
    "put_unless_newer",
    "to_item",
]
