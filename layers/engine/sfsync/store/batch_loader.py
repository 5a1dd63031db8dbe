"""The full copy's batch loader: a page of items into a record table with the monotonic rule.

Items not yet in the table are written with ``BatchWriteItem`` (25 per request) after a
``BatchGetItem`` of the keys; rows whose item exists go through
:meth:`sfsync.store.records.RecordStore.write_items` (conditional ``PutItem``).  Both batch calls go
through :mod:`sfsync.store.ddb_wire`.  Race-free only while no other writer touches the object (the
dispatcher holds the incremental cycles back until ``full_copy_done``).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sfsync.core.exceptions import (
    StoreError,
    StoreThrottled,
    UnstorableRecord,
)
from sfsync.core.registry import ObjectSpec
from sfsync.items.codec import EncodedItem, RestItems, batch_put_body
from sfsync.items.csv import CsvItems, FieldTypes, line_row
from sfsync.store.ddb_wire import WireCalls
from sfsync.store.put_rules import COUNTER_FOR
from sfsync.store.records import BATCH_GET_KEYS, BATCH_WRITE_ITEMS, THROTTLE_CODES, RecordStore

MAX_UNPROCESSED_ROUNDS = 8


# ------------------------------------------------------------------------------------------------
# Batch loading with the monotonic rule
# ------------------------------------------------------------------------------------------------


class BatchLoader:
    """Writes rows into an object's table: batch puts for new items, conditional puts otherwise."""

    def __init__(self, client: Any, records: RecordStore, *, sleep: Any = time.sleep) -> None:
        self._client = client
        self._wire = WireCalls(client) if hasattr(client, "meta") else None
        self._records = records
        self._sleep = sleep

    def write(
        self,
        spec: ObjectSpec,
        rows: Iterable[Mapping[str, Any]],
        *,
        copy_id: str,
        synced_at: dt.datetime,
        types: FieldTypes,
        bulk_csv: bool,
        selected_fields: Iterable[str] | None = None,
    ) -> dict[str, int]:
        """Persist every row (streamed, ``BATCH_GET_KEYS`` at a time); returns outcome counters.

        ``bulk_csv``: the rows are Bulk CSV rows (text values, typed by :class:`sfsync.items.csv.CsvItems`);
        otherwise REST rows.  ``selected_fields`` (the copy's SELECT list): an existing item keeps
        its attributes outside it (formula values, fields no longer readable), as with the
        incremental sync's puts.
        """
        batch = self._chunk(
            spec, types=types, bulk_csv=bulk_csv, copy_id=copy_id, synced_at=synced_at, selected=selected_fields
        )
        encoder = batch.encoder = self._encoder(batch)
        return self._write(batch, rows, encoder.encode_rows)

    def write_lines(
        self,
        spec: ObjectSpec,
        header: Sequence[str],
        lines: Iterable[Sequence[str]],
        *,
        copy_id: str,
        synced_at: dt.datetime,
        types: FieldTypes,
        selected_fields: Iterable[str] | None = None,
    ) -> dict[str, int]:
        """:meth:`write` for Bulk CSV lines as ``csv.reader`` gives them (``''``: null) under ``header``.

        The full copy's path: no dict per row (:meth:`sfsync.items.csv.CsvItems.encode_lines`); a
        line becomes a dict row only when its item is needed (an item already stored, an error).
        """
        batch = self._chunk(
            spec, types=types, bulk_csv=True, copy_id=copy_id, synced_at=synced_at, selected=selected_fields
        )
        encoder = batch.encoder = self._csv_items(batch)
        columns = tuple(header)
        batch.row_of = functools.partial(line_row, columns)
        return self._write(batch, lines, functools.partial(encoder.encode_lines, columns))

    def _chunk(
        self,
        spec: ObjectSpec,
        *,
        types: FieldTypes,
        bulk_csv: bool,
        copy_id: str,
        synced_at: dt.datetime,
        selected: Iterable[str] | None,
    ) -> _Chunk:
        fields = tuple(selected) if selected is not None else None
        return _Chunk(spec, self._records.table_for(spec), types, bulk_csv, copy_id, synced_at, fields)

    def _write(
        self, batch: _Chunk, rows: Iterable[Any], encode: Callable[[list[Any]], list[EncodedItem | UnstorableRecord]]
    ) -> dict[str, int]:
        counts = dict.fromkeys(COUNTER_FOR.values(), 0)
        chunk: list[Any] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= BATCH_GET_KEYS:
                self._add(batch, chunk, encode(chunk), counts)
                chunk = []
        if chunk:
            self._add(batch, chunk, encode(chunk), counts)
        if batch.rows:
            self._flush(batch, counts)
        return counts

    def _add(
        self,
        batch: _Chunk,
        rows: list[Any],
        results: list[EncodedItem | UnstorableRecord],
        counts: dict[str, int],
    ) -> None:
        """Queue encoded rows (the newest version of a repeated Id wins); flush full chunks."""
        spec = batch.spec
        for row, encoded in zip(rows, results, strict=True):
            if isinstance(encoded, UnstorableRecord):
                record_id = str(batch.row_of(row).get(spec.key) or "?")
                reason = str(encoded)
                self._records.record_error(spec, record_id, cycle_id=batch.copy_id, reason=reason, when=batch.synced_at)
                counts[COUNTER_FOR["failed"]] += 1
                continue
            pending = batch.rows
            previous = pending.get(encoded.record_id)
            if previous is None or previous[1].stamp <= encoded.stamp:
                pending[encoded.record_id] = (row, encoded)
            if len(pending) >= BATCH_GET_KEYS:
                self._flush(batch, counts)
                batch.rows = {}

    @staticmethod
    def _encoder(batch: _Chunk) -> CsvItems | RestItems:
        """Rows -> :class:`EncodedItem` (or the reason the rules refuse each) by the one codec (:mod:`sfsync.items`)."""
        if batch.bulk_csv:
            return BatchLoader._csv_items(batch)
        return RestItems(
            batch.spec, cycle_id=batch.copy_id, synced_at=batch.synced_at, datetime_fields=batch.types.datetimes
        )

    @staticmethod
    def _csv_items(batch: _Chunk) -> CsvItems:
        return CsvItems(batch.spec, batch.types, cycle_id=batch.copy_id, synced_at=batch.synced_at)

    def _flush(self, batch: _Chunk, counts: dict[str, int]) -> None:
        # One consistent read per chunk: new rows go out as batch puts; rows already stored (a
        # resumed or re-synced copy) go through the record store's rules with this same read.
        existing = self._records.stored_wire(batch.table, list(batch.rows))
        fresh = [encoded for record_id, (_row, encoded) in batch.rows.items() if record_id not in existing]
        known = [
            (record_id, self._item(batch, row, encoded))
            for record_id, (row, encoded) in batch.rows.items()
            if record_id in existing
        ]
        for start in range(0, len(fresh), BATCH_WRITE_ITEMS):
            items = fresh[start : start + BATCH_WRITE_ITEMS]
            if self._batch_put(batch.table, items):
                for encoded in items:
                    counts[COUNTER_FOR["deleted" if encoded.deleted else "created"]] += 1
            else:  # DynamoDB refused the batch as a whole: per-row puts isolate the bad row
                known.extend((e.record_id, self._item(batch, batch.rows[e.record_id][0], e)) for e in items)
        if known:
            outcome = self._records.write_items(
                batch.spec,
                known,
                cycle_id=batch.copy_id,
                synced_at=batch.synced_at,
                selected_fields=batch.selected,
                stored=existing,
            )
            for name, value in outcome.counts.items():
                counts[name] += value

    @staticmethod
    def _item(batch: _Chunk, row: Mapping[str, Any], encoded: EncodedItem) -> dict[str, Any]:
        """The row's item (built now when the encoder wrote only its text)."""
        if encoded.item is not None:
            return encoded.item
        assert batch.encoder is not None
        return batch.encoder.item(batch.row_of(row))

    def _batch_put(self, table: str, items: list[EncodedItem]) -> bool:
        body = batch_put_body(table, [i.text for i in items])
        try:
            response = self._call("batch_write_item", table, body=body)
        except _Rejected:
            return False
        pending: dict[str, Any] = response.get("UnprocessedItems") or {}
        for attempt in range(MAX_UNPROCESSED_ROUNDS):
            if not pending:
                return True
            self._sleep(min(2.0, 0.05 * 2**attempt))
            try:
                response = self._call("batch_write_item", table, RequestItems=pending)
            except _Rejected:
                return False
            pending = response.get("UnprocessedItems") or {}
        if not pending:
            return True
        raise StoreThrottled(f"{table} kept leaving items unprocessed in BatchWriteItem")

    def _call(self, operation: str, table: str, *, body: bytes | None = None, **kwargs: Any) -> Any:
        """One batch call; ``body``: the whole request already in wire JSON (else ``RequestItems``)."""
        try:
            if body is not None:
                if self._wire is not None and operation == "batch_write_item":
                    return self._wire.batch_write_item_encoded(table, body)
                kwargs = json.loads(body)  # a client without botocore's events: the same request, parsed
            if self._wire is not None:  # the bodies are built in wire format: skip botocore's shape walk
                return getattr(self._wire, operation)(kwargs["RequestItems"])
            return getattr(self._client, operation)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in THROTTLE_CODES:
                raise StoreThrottled(f"{table} kept throttling {operation}: {code}") from exc
            if code == "ValidationException" and operation == "batch_write_item":
                raise _Rejected from exc
            raise StoreError(f"{operation} on {table} failed: {code}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"{operation} on {table} failed: {exc}") from exc


def _as_mapping(row: Any) -> Mapping[str, Any]:
    return row  # type: ignore[no-any-return]


@dataclass
class _Chunk:
    spec: ObjectSpec
    table: str
    types: FieldTypes
    bulk_csv: bool
    copy_id: str
    synced_at: dt.datetime
    selected: tuple[str, ...] | None
    #: the rows queued for the next flush (a dict row, or a CSV line for :meth:`BatchLoader.write_lines`)
    rows: dict[str, tuple[Any, EncodedItem]] = field(default_factory=dict)
    encoder: CsvItems | RestItems | None = None
    #: a queued row as a dict row (the identity for dict rows; a CSV line's dict otherwise)
    row_of: Callable[[Any], Mapping[str, Any]] = _as_mapping


class _Rejected(Exception):
    """Internal: BatchWriteItem refused the request (one item DynamoDB cannot hold)."""


__all__ = [
    "BatchLoader",
]
