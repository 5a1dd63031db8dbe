"""Rows that leave Salesforce without a row to read: hard deletes, purged recycle bins, lost access.

Soft deletes, undeletes, merges (the loser's ``MasterRecordId``), conversions and archiving all
move ``SystemModstamp`` and stay visible to queryAll, so the incremental window handles them.
What it cannot see is a row that is *gone*: a hard delete, a recycle bin emptied or purged, a
delete of an object without a recycle bin (CampaignMember, OpportunityContactRole), a row the
integration user lost access to.  Two mechanisms cover that:

* **getDeleted** after every completed window, from where the last call stopped
  (``Lifecycle.deletes_covered_until``) to the window's ``hi``: every id it lists is tombstoned
  (``IsDeleted=true``, ``_deleted_by="getDeleted"``, ``SystemModstamp`` = the delete time, only on
  an item not newer than that).  When Salesforce's ``earliestDateAvailable`` is later than our
  coverage (its delete log was purged past us) or the coverage is beyond getDeleted's reach, some
  deletes can no longer be listed: the object gets an **Id reconciliation** at once.
* **Id reconciliation** (:func:`reconcile`): page ``SELECT Id FROM X`` over queryAll (deleted rows
  included), compare with the stored items of the object, tombstone stored live items whose id is
  gone (``_deleted_by="reconcile"``), and re-read ids Salesforce has but the table lacks (or holds
  only as a reconciliation tombstone, e.g. a row that became visible again).  It also runs every
  ``reconcile_seconds`` for objects flagged ``hard_delete_without_recycle_bin``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sfsync.core.clock import parse_instant
from sfsync.core.exceptions import ReplicationWindowError, SalesforceRequestError
from sfsync.core.observability import logger
from sfsync.core.registry import ObjectSpec
from sfsync.inbound.fields import Selection, soql_select
from sfsync.salesforce.ports import LifecyclePort
from sfsync.store.put_rules import PageOutcome
from sfsync.store.records import RecordStore
from sfsync.store.state import Lifecycle

#: getDeleted answers for the last 15 days (spec §3.2); stay a little inside that.
DELETED_REACH = dt.timedelta(days=15) - dt.timedelta(hours=1)
#: Ids per ``WHERE Id IN (…)`` re-read of rows missing from the table.
REREAD_CHUNK = 300


@dataclass(frozen=True, slots=True)
class DeletesResult:
    """What a getDeleted pass found: tombstoned count, new coverage, and whether a gap needs a reconcile."""

    tombstoned: int
    covered_until: dt.datetime | None
    gap: str | None = None
    called: bool = False


def _minute(value: dt.datetime) -> dt.datetime:
    return value.replace(second=0, microsecond=0)


def check_deletes(
    sf: LifecyclePort,
    records: RecordStore,
    spec: ObjectSpec,
    *,
    covered_until: dt.datetime | None,
    hi: dt.datetime,
    sf_now: dt.datetime,
    cycle_id: str,
    synced_at: dt.datetime,
) -> DeletesResult:
    """Tombstone what getDeleted lists for ``[covered_until, hi)``; report a gap when it cannot answer.

    No coverage yet (first cycle of the object): nothing before now can be missing a delete
    (rows are read as they are now), so coverage simply starts at ``hi``.  getDeleted works in
    whole minutes: with less than a minute to cover, nothing is called.
    """
    if covered_until is None:
        return DeletesResult(0, hi)
    if sf_now - covered_until > DELETED_REACH:
        return DeletesResult(0, hi, gap=f"last getDeleted coverage {covered_until.isoformat()} is beyond its reach")
    if _minute(hi) <= _minute(covered_until):
        return DeletesResult(0, covered_until)
    try:
        answer = sf.get_deleted(spec.name, covered_until, hi)
    except ReplicationWindowError as exc:
        return DeletesResult(0, hi, gap=f"getDeleted refused the window: {exc}", called=True)
    except SalesforceRequestError as exc:
        if exc.error_code == "INVALID_TYPE_FOR_OPERATION":
            # not replicable: only an Id reconciliation can see its deletes
            return DeletesResult(0, hi, gap=f"getDeleted is not available for {spec.name}", called=True)
        raise
    gap: str | None = None
    earliest = answer.get("earliestDateAvailable")
    if isinstance(earliest, str) and parse_instant(earliest) > covered_until:
        gap = f"getDeleted's earliestDateAvailable {earliest} is after our coverage {covered_until.isoformat()}"
    tombstoned = 0
    for entry in answer.get("deletedRecords") or []:
        record_id = entry.get("id") if isinstance(entry, Mapping) else None
        when = entry.get("deletedDate") if isinstance(entry, Mapping) else None
        if not isinstance(record_id, str):
            continue
        deleted_at = parse_instant(when) if isinstance(when, str) else None
        outcome = records.tombstone(
            spec, record_id, reason="getDeleted", deleted_at=deleted_at, synced_at=synced_at, cycle_id=cycle_id
        )
        tombstoned += outcome == "deleted"
    latest = answer.get("latestDateCovered")
    covered = parse_instant(latest) if isinstance(latest, str) else _minute(hi)
    return DeletesResult(tombstoned, max(covered, covered_until), gap=gap, called=True)


@dataclass
class ReconcileResult:
    salesforce_ids: int = 0
    tombstoned: int = 0
    reread: PageOutcome | None = None


def reconcile(
    sf: LifecyclePort,
    records: RecordStore,
    spec: ObjectSpec,
    selection: Selection,
    *,
    page_size: int,
    cycle_id: str,
    synced_at: dt.datetime,
    write_rows: Callable[[list[dict[str, Any]]], PageOutcome],
) -> ReconcileResult:
    """Make the stored ids of ``spec``'s object equal the ids the integration user can see."""
    result = ReconcileResult()
    present: set[str] = set()
    for page in sf.query_pages(soql_select(spec, (spec.key,)), include_deleted=True, batch_size=page_size):
        present.update(str(row[spec.key]) for row in page.records)
    result.salesforce_ids = len(present)
    stored = records.stored_ids(spec)
    for record_id, (_stamp, deleted, _by) in stored.items():
        if not deleted and record_id not in present:
            outcome = records.tombstone(
                spec, record_id, reason="reconcile", deleted_at=None, synced_at=synced_at, cycle_id=cycle_id
            )
            result.tombstoned += outcome == "deleted"
    missing = sorted(
        record_id
        for record_id in present
        if record_id not in stored or (stored[record_id][1] and stored[record_id][2] == "reconcile")
    )
    total = PageOutcome()
    for start in range(0, len(missing), REREAD_CHUNK):
        chunk = missing[start : start + REREAD_CHUNK]
        quoted = ", ".join(f"'{record_id}'" for record_id in chunk if record_id.isalnum())
        soql = soql_select(spec, selection.fields, f"{spec.key} IN ({quoted})")
        for page in sf.query_pages(soql, include_deleted=True, batch_size=page_size):
            written = write_rows(list(page.records))
            for name, value in written.counts.items():
                total.counts[name] += value
    result.reread = total
    if result.tombstoned or missing:
        logger.info(
            "id reconciliation changed the copy",
            extra={"object": spec.name, "tombstoned": result.tombstoned, "reread": len(missing)},
        )
    return result


def reconcile_due(
    spec: ObjectSpec, *, last: dt.datetime | None, now: dt.datetime, interval_seconds: int, gap: bool
) -> bool:
    """An Id reconciliation runs on a getDeleted gap, or on schedule for objects without a recycle bin."""
    if gap:
        return True
    if not spec.hard_delete_without_recycle_bin:
        return False
    return last is None or now - last >= dt.timedelta(seconds=interval_seconds)


def lifecycle_work_due(
    spec: ObjectSpec,
    lifecycle: Lifecycle,
    *,
    now: dt.datetime,
    formula_refresh_seconds: int,
    reconcile_seconds: int,
) -> str | None:
    """Why ``spec`` needs a cycle even without changed rows (for the dispatcher's idle probe), or None.

    The global intervals are the settings'; the object's options override them.
    """
    refresh_every = (
        spec.formula_refresh_seconds if spec.formula_refresh_seconds is not None else formula_refresh_seconds
    )
    refreshed = lifecycle.formulas_refreshed_at
    if refreshed is not None and now - refreshed >= dt.timedelta(seconds=refresh_every):
        return "formula refresh due"
    every = spec.reconcile_seconds if spec.reconcile_seconds is not None else reconcile_seconds
    last = lifecycle.reconciled_at
    if spec.hard_delete_without_recycle_bin and last is not None and now - last >= dt.timedelta(seconds=every):
        return "id reconciliation due"
    return None


__all__ = [
    "DELETED_REACH",
    "DeletesResult",
    "LifecyclePort",
    "ReconcileResult",
    "check_deletes",
    "lifecycle_work_due",
    "reconcile",
    "reconcile_due",
]
