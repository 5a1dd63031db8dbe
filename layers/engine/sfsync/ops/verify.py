"""``sfsync verify``: compare one object between Salesforce and its DynamoDB table, and repair.

Salesforce side: ``queryAll`` of ``Id, SystemModstamp, IsDeleted`` (paged, deleted and archived
rows included) — what the integration user can see.  DynamoDB side: the items of the object's
family table whose ``sobject`` is the object (:class:`TableReader`; on DynamoDB
:class:`sfsync.store.verify_reader.DynamoTableReader`).  Findings:

* **missing** — alive in Salesforce, no item (a deleted row with no item is consistent: the
  tombstone may have expired);
* **extra** — an alive item whose record Salesforce no longer shows (hard-deleted, purged,
  invisible to the integration user) or shows as deleted;
* **stale** — the item's ``SystemModstamp`` is older than Salesforce's, or equal but with a
  different ``IsDeleted``; an item *newer* than Salesforce is reported as stale too (it cannot be
  repaired by the monotonic write and stays reported — investigate).

Items an application created under a key of its own (a local create waiting for its record, or the
redirect left once the record exists, ``_created_id``) are not copies of a Salesforce record and are
not compared (:func:`sfsync.writeback.is_salesforce_id` decides, as for the write-back).

``repair=True`` re-reads missing and stale records in full (the cycle's field selection from
describe; sObject Collections retrieve, ≤ 2000 ids per POST; rows retrieve cannot return — deleted
ones — through ``queryAll … WHERE Id IN``) and writes them through a :class:`RecordWriter` (the
same monotonic write as a cycle), and tombstones extras: those Salesforce shows as deleted get its
deleted row, the others ``IsDeleted = true`` on the stored item, only if the item is still the one
that was compared.

``sample`` (0 < p < 1) checks a random share of ids from both sides: every Salesforce id listed
(the cheap side, 2000 per call) but only a share looked up in DynamoDB, and a share of the table
read (random scan segments) and looked up in the Salesforce listing.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sfsync.core.exceptions import StoreError
from sfsync.core.registry import ObjectSpec, build_registry
from sfsync.inbound.cycle import select_fields
from sfsync.items.codec import stamp as item_stamp
from sfsync.salesforce.client import MAX_RETRIEVE_IDS
from sfsync.salesforce.ports import VerifyPort
from sfsync.store.records import RecordStore
from sfsync.store.verify_reader import StoredState
from sfsync.writeback import is_salesforce_id

#: ids per ``WHERE Id IN (…)`` query (keeps the SOQL far below its length limit).
IDS_PER_QUERY = 300
DEFAULT_EXAMPLES = 20

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


class TableReader(Protocol):
    """The DynamoDB side: the items of one object."""

    def items(
        self, obj: str, *, fraction: float | None = None, rng: random.Random | None = None
    ) -> Iterator[StoredState]:
        """Every item with ``sobject == obj`` (or about ``fraction`` of them, chosen at random)."""
        ...

    def get_many(self, obj: str, ids: Sequence[str]) -> dict[str, StoredState]:
        """The items among ``ids`` that exist and belong to ``obj``."""
        ...


class RecordWriter(Protocol):
    """Where repaired records go: the cycle's monotonic write (``SystemModstamp`` never goes back)."""

    def write_records(
        self, obj: str, records: list[dict[str, Any]], *, datetime_fields: frozenset[str] = frozenset()
    ) -> Mapping[str, int]: ...

    def tombstone(self, obj: str, items: Sequence[StoredState]) -> Mapping[str, int]:
        """Mark these stored items ``IsDeleted = true`` if they are still exactly as given."""
        ...


@dataclass
class Finding:
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, record_id: str, limit: int) -> None:
        self.count += 1
        if len(self.examples) < limit:
            self.examples.append(record_id)


@dataclass
class VerifyReport:
    object_name: str
    sample: float | None
    salesforce_rows: int = 0
    dynamodb_items: int = 0
    checked_salesforce: int = 0
    checked_dynamodb: int = 0
    missing: Finding = field(default_factory=Finding)
    extra: Finding = field(default_factory=Finding)
    stale: Finding = field(default_factory=Finding)
    api_calls: int = 0
    repaired: dict[str, int] | None = None

    @property
    def clean(self) -> bool:
        return self.missing.count == 0 and self.extra.count == 0 and self.stale.count == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": self.object_name,
            "sample": self.sample,
            "clean": self.clean,
            "salesforce_rows": self.salesforce_rows,
            "dynamodb_items": self.dynamodb_items,
            "checked": {"salesforce": self.checked_salesforce, "dynamodb": self.checked_dynamodb},
            "missing": {"count": self.missing.count, "examples": list(self.missing.examples)},
            "extra": {"count": self.extra.count, "examples": list(self.extra.examples)},
            "stale": {"count": self.stale.count, "examples": list(self.stale.examples)},
            "api_calls": self.api_calls,
            "repaired": dict(self.repaired) if self.repaired is not None else None,
        }


@dataclass
class _Work:
    """Ids to repair, by how."""

    fetch: set[str] = field(default_factory=set)  # re-read the full row from Salesforce
    tombstone: dict[str, StoredState] = field(default_factory=dict)  # gone from Salesforce


def spec_for(obj_name: str) -> ObjectSpec:
    """The default spec of a standard or custom (``…__c``) object; ConfigurationError otherwise.

    Pass the configured registry's spec to :func:`verify_object` to honour per-object options.
    """
    if obj_name.endswith("__c"):
        return build_registry(objects=[], custom_objects=[obj_name]).get(obj_name)
    return build_registry(objects=[obj_name]).get(obj_name)


def verify_object(
    sf: VerifyPort,
    table_reader: TableReader,
    obj_name: str,
    *,
    sample: float | None = None,
    repair: bool = False,
    writer: RecordWriter | None = None,
    spec: ObjectSpec | None = None,
    examples: int = DEFAULT_EXAMPLES,
    rng: random.Random | None = None,
) -> VerifyReport:
    """Compare ``obj_name`` in Salesforce and DynamoDB; with ``repair``, fix what differs."""
    if not isinstance(obj_name, str) or not _NAME.match(obj_name):
        raise ValueError(f"invalid object name {obj_name!r}")
    if sample is not None and not 0 < sample <= 1:
        raise ValueError(f"sample must be in (0, 1], got {sample!r}")
    if repair and writer is None:
        raise ValueError("repair needs a writer")
    spec = spec or spec_for(obj_name)
    rng = rng or random.Random()
    calls_before = sf.calls_made
    report = VerifyReport(obj_name, sample)
    work = _Work()

    salesforce = _salesforce_states(sf, obj_name)
    report.salesforce_rows = len(salesforce)
    if sample is None or sample >= 1:
        stored = {s.id: s for s in table_reader.items(obj_name) if is_salesforce_id(obj_name, s.id)}
        report.dynamodb_items = len(stored)
        sf_ids: Iterable[str] = salesforce
        ddb_side: Iterable[StoredState] = stored.values()
    else:
        sf_ids = [i for i in salesforce if rng.random() < sample]
        stored = table_reader.get_many(obj_name, list(sf_ids))
        sampled = table_reader.items(obj_name, fraction=sample, rng=rng)
        ddb_side = [s for s in sampled if is_salesforce_id(obj_name, s.id)]
        report.dynamodb_items = len(ddb_side)

    compared: set[str] = set()
    for record_id in sf_ids:
        report.checked_salesforce += 1
        compared.add(record_id)
        _compare(
            record_id, salesforce.get(record_id), stored.get(record_id), report=report, work=work, examples=examples
        )
    for item in ddb_side:
        report.checked_dynamodb += 1
        if item.id not in compared:  # else already compared from the Salesforce side
            _compare(item.id, salesforce.get(item.id), item, report=report, work=work, examples=examples)

    if repair and writer is not None:
        report.repaired = _repair(sf, writer, spec, work, salesforce)
    report.api_calls = sf.calls_made - calls_before
    return report


def _compare(
    record_id: str,
    sf_state: StoredState | None,
    item: StoredState | None,
    *,
    report: VerifyReport,
    work: _Work,
    examples: int,
) -> None:
    if item is None:
        if sf_state is not None and not sf_state.is_deleted:
            report.missing.add(record_id, examples)
            work.fetch.add(record_id)
        return
    if sf_state is None:
        if not item.is_deleted:
            report.extra.add(record_id, examples)
            work.tombstone[record_id] = item
        return
    if sf_state.is_deleted and not item.is_deleted:
        report.extra.add(record_id, examples)
        work.fetch.add(record_id)
        return
    if item.system_modstamp != sf_state.system_modstamp or item.is_deleted != sf_state.is_deleted:
        report.stale.add(record_id, examples)
        work.fetch.add(record_id)


def _salesforce_states(sf: VerifyPort, obj_name: str) -> dict[str, StoredState]:
    out: dict[str, StoredState] = {}
    soql = f"SELECT Id, SystemModstamp, IsDeleted FROM {obj_name}"
    for page in sf.query_pages(soql, include_deleted=True):
        for row in page.records:
            stamp = row.get("SystemModstamp")
            out[str(row["Id"])] = StoredState(
                str(row["Id"]), item_stamp(stamp) if isinstance(stamp, str) else None, bool(row.get("IsDeleted"))
            )
    return out


def _repair(
    sf: VerifyPort,
    writer: RecordWriter,
    spec: ObjectSpec,
    work: _Work,
    salesforce: Mapping[str, StoredState],
) -> dict[str, int]:
    selection = select_fields(spec, sf.describe(spec.name))
    fields = list(selection.fields)
    totals: dict[str, int] = {}

    def add(counts: Mapping[str, int]) -> None:
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + int(value)

    alive = sorted(i for i in work.fetch if i in salesforce and not salesforce[i].is_deleted)
    via_query = sorted(set(work.fetch) - set(alive))
    for chunk in _chunks(alive, MAX_RETRIEVE_IDS):
        rows = sf.retrieve(spec.name, chunk, fields)
        found = [row for row in rows if isinstance(row, dict)]
        got = {str(row.get("Id")) for row in found}
        via_query.extend(i for i in chunk if i not in got)  # deleted or hidden since the listing
        if found:
            add(writer.write_records(spec.name, _clean(found), datetime_fields=selection.datetime_fields))
    for chunk in _chunks(sorted(set(via_query)), IDS_PER_QUERY):
        for record_id in chunk:
            if not _RECORD_ID.match(record_id):
                raise ValueError(f"refusing to put malformed id {record_id!r} into SOQL")
        id_list = ", ".join(f"'{i}'" for i in chunk)
        soql = f"SELECT {', '.join(fields)} FROM {spec.name} WHERE Id IN ({id_list})"
        got_ids: set[str] = set()
        for page in sf.query_pages(soql, include_deleted=True):
            if page.records:
                got_ids.update(str(r.get("Id")) for r in page.records)
                add(writer.write_records(spec.name, _clean(page.records), datetime_fields=selection.datetime_fields))
        add({"NotFound": len([i for i in chunk if i not in got_ids])})
    if work.tombstone:
        add(writer.tombstone(spec.name, list(work.tombstone.values())))
    return totals


def _clean(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "attributes"} for row in rows]


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


# -- the writer ------------------------------------------------------------------------------------


class RecordStoreWriter:
    """:class:`RecordWriter` on :class:`sfsync.store.records.RecordStore` (the cycle's own write path).

    ``tombstone`` is :meth:`RecordStore.tombstone_seen`: an ``UpdateItem`` guarded by the compared
    ``SystemModstamp`` and ``IsDeleted = false``, so a version a cycle wrote meanwhile is never
    overwritten (two-way items get their base snapshot updated with it).
    """

    def __init__(
        self,
        store: RecordStore,
        client: Any,
        *,
        spec_of: Callable[[str], ObjectSpec] = spec_for,
        cycle_id: str = "verify",
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self._store = store
        self._client = client
        self._spec_of = spec_of
        self._cycle_id = cycle_id
        self._now: Callable[[], dt.datetime] = now or (lambda: dt.datetime.now(dt.UTC))

    def write_records(
        self, obj: str, records: list[dict[str, Any]], *, datetime_fields: frozenset[str] = frozenset()
    ) -> Mapping[str, int]:
        outcome = self._store.write_page(
            self._spec_of(obj), records, cycle_id=self._cycle_id, synced_at=self._now(), datetime_fields=datetime_fields
        )
        return outcome.counts

    def tombstone(self, obj: str, items: Sequence[StoredState]) -> Mapping[str, int]:
        spec = self._spec_of(obj)
        counts = {"RecordsDeleted": 0, "RecordsSkipped": 0}
        now = self._now()
        for item in items:
            try:
                outcome = self._store.tombstone_seen(
                    spec, item.id, seen_stamp=item.system_modstamp, synced_at=now, cycle_id=self._cycle_id
                )
            except StoreError as exc:
                raise StoreError(f"cannot tombstone {item.id} in {self._store.table_for(spec)}: {exc}") from exc
            counts["RecordsDeleted" if outcome == "deleted" else "RecordsSkipped"] += 1
        return counts


__all__ = [
    "DEFAULT_EXAMPLES",
    "Finding",
    "RecordStoreWriter",
    "RecordWriter",
    "TableReader",
    "VerifyReport",
    "spec_for",
    "verify_object",
]
