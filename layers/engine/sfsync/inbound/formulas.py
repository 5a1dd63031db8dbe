"""Formula fields, refreshed on their own schedule.

A formula's value can change without its row's ``SystemModstamp`` moving (``Contact.Account_Rating__c``
follows ``Account.Rating``), so the incremental window cannot be trusted with them.  Every
``formula_refresh_seconds`` (per-object option, global ``SFSYNC_FORMULA_REFRESH_SECONDS``, default
6 h) a cycle reads ``Id, SystemModstamp, <formula fields>`` for all rows (queryAll) and sets only
those attributes plus ``_formulas_as_of`` (ISO ms Z, the refresh time) on items whose values
changed (or never had them); unchanged items are not rewritten, so a refresh costs no write
capacity and raises no stream events for them.  The object's last refresh time is kept in the
state table (``Lifecycle.formulas_refreshed_at``).  Between refreshes, puts of newer versions
carry the stored formula values over (:func:`sfsync.store.put_rules.carry_over`).
"""

from __future__ import annotations

import datetime as dt

from sfsync.core.clock import to_iso_ms
from sfsync.core.registry import ObjectSpec
from sfsync.inbound.fields import Selection, read_columns
from sfsync.salesforce.ports import QueryPort
from sfsync.store.put_rules import PageOutcome
from sfsync.store.records import RecordStore


def refresh_due(last: dt.datetime | None, now: dt.datetime, interval_seconds: int) -> bool:
    return last is None or now - last >= dt.timedelta(seconds=interval_seconds)


def refresh_formulas(
    sf: QueryPort,
    records: RecordStore,
    spec: ObjectSpec,
    selection: Selection,
    *,
    page_size: int,
    cycle_id: str,
    as_of: dt.datetime,
) -> PageOutcome:
    """Re-read the object's formula fields and store the changed values (see the module docstring)."""
    total = PageOutcome()
    if not selection.formulas:
        return total
    stamp = {"_formulas_as_of": to_iso_ms(as_of)}
    for rows in read_columns(sf, spec, selection.formulas, page_size=page_size):
        outcome = records.patch_page(
            spec,
            rows,
            selection.formulas,
            datetime_fields=selection.datetime_fields,
            not_newer_than_row=False,
            cycle_id=cycle_id,
            synced_at=as_of,
            extra=stamp,
        )
        for name, value in outcome.counts.items():
            total.counts[name] += value
    return total


__all__ = ["refresh_due", "refresh_formulas"]
