"""Change events -> the record tables, with the cycles' write rule (:meth:`RecordStore.write_page`).

A batch of queue messages (each one Event Relay envelope) is parsed, grouped by object and applied:

* **CREATE / UPDATE: the payload is applied** (no Salesforce call).  The record's Salesforce-side
  values as stored (the base snapshot of a two-way item, the item's data otherwise) are merged with
  the event's changed fields - an UPDATE carries only those; the others are kept - and the merged row
  is written through ``write_page`` with ``SystemModstamp`` = the event's ``LastModifiedDate``, so the
  monotonic rule, the two-way ``_base`` rules and pending local edits behave exactly as for a row a
  cycle read.  The stamp is never later than the record's real ``SystemModstamp``, so a cycle can
  always overwrite what an event wrote.  Several events of one record in a batch are folded in
  commit order; duplicates are no-ops (same data).
* **Re-read** (one ``/composite`` call carries up to five queryAll reads of 300 ids): DELETE and
  UNDELETE (the deleted row gives the delete's own stamp and a merge loser's ``MasterRecordId``; a
  record queryAll no longer returns - a hard delete - is tombstoned at the commit time), every
  ``GAP_*`` event, and any CREATE/UPDATE whose payload cannot be applied safely: no
  ``LastModifiedDate`` (a system change), changed fields unknown (absent, or Pub/Sub bitmaps), values
  that do not convert, fields describe does not show (recorded in the errors table: nothing of that
  payload is written), an UPDATE of a record not stored or stored as a tombstone, and an event older
  than what an earlier event already merged (out of order: the fields of both are only known
  together in Salesforce).
* **GAP_OVERFLOW**, a wildcard record id, and an event older than the bus retention (72 h: what came
  before it may be gone) mark the object's change events unhealthy and start its cycle at once
  (the dispatcher starts it on its next tick if the direct start is refused).

Fields the integration user cannot see are never written: only fields of the cycle's own selection
(describe, ``include_fields``/``exclude_fields``, no formulas or compound values) are taken from a
payload or re-read.  Events of the write-back (``client=sfsync``) are applied like any other: they
carry Salesforce's values, which the write rule stores as value and base together, so they never
look like local changes (counted ``CdcEchoes``).

Bad input (a malformed envelope, an unknown or unsynced object, fields the object does not have)
gets one log line, ``ChangeEventsRejected`` and an errors-table row; nothing of it is written and
it is not retried.  A failure of Salesforce or DynamoDB fails the object's messages of the batch
(batch item failures): SQS delivers them again and, after its receive count, parks them in the
dead-letter queue (alarm).
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol
from urllib.parse import quote

from sfsync.changes.envelope import ChangeEvent, parse_envelope
from sfsync.core.clock import Clock, parse_instant, to_iso_ms
from sfsync.core.config import Settings
from sfsync.core.exceptions import (
    InvalidChangeEvent,
    SalesforceError,
    SalesforceRequestError,
    SfsyncError,
)
from sfsync.core.observability import count, logger, metrics_for_object
from sfsync.core.registry import ObjectSpec
from sfsync.inbound.fields import Selection, select_fields, soql_select
from sfsync.inbound.starts import CycleStarter, start_cycle
from sfsync.items.images import item_from_wire
from sfsync.items.snapshot import BASE_ATTRIBUTE, decode_base, is_data_attribute, same
from sfsync.salesforce.ports import ChangePort
from sfsync.store.put_rules import PageOutcome
from sfsync.store.records import RecordStore
from sfsync.store.state import StateStore

#: Change events stay on Salesforce's event bus for 72 hours (§9.5): an older event means what came
#: before it may be lost.
RETENTION = dt.timedelta(hours=72)
#: Ids per queryAll of a re-read, and queryAll reads per ``/composite`` call (§6.9: at most 5).
REREAD_CHUNK = 300
QUERIES_PER_CALL = 5
#: How long a describe (the field selection) is reused by the change-event function.
DESCRIBE_SECONDS = 300
#: The ``_cycle_id`` prefixes of items written from change events: from a payload, and re-read.
CDC_WRITER = "cdc-event"
CDC_READER = "cdc-read"
_NUMBER_TYPES = frozenset({"int", "double", "currency", "percent", "long"})
_WHY_REREAD_ORDER = "an earlier event arrived after a later one was applied"


class EventErrorSink(Protocol):
    def record(self, object_name: str | None, event_id: str, reason: str, body: Any, *, when: dt.datetime) -> None: ...


@dataclass(frozen=True)
class ChangeDeps:
    settings: Settings
    sf: ChangePort
    records: RecordStore
    state: StateStore
    errors: EventErrorSink
    clock: Clock
    #: starts an object's cycle at once (None: the dispatcher's next tick starts it)
    invoker: CycleStarter | None = None


@dataclass(frozen=True)
class Message:
    message_id: str
    body: Any


@dataclass
class ObjectReport:
    events: int = 0
    applied: int = 0
    reread: int = 0
    gaps: int = 0
    echoes: int = 0
    rejected: int = 0
    written: dict[str, int] = field(default_factory=dict)
    cycle_requested: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "events": self.events,
            "applied": self.applied,
            "reread": self.reread,
            "gaps": self.gaps,
            "echoes": self.echoes,
            "rejected": self.rejected,
            "written": {k: v for k, v in self.written.items() if v},
        }
        if self.cycle_requested:
            out["cycle_requested"] = self.cycle_requested
        return out


@dataclass
class BatchOutcome:
    """What a batch did: per object, the messages rejected, and the message ids to retry."""

    received: int = 0
    rejected: int = 0
    failed: list[str] = field(default_factory=list)
    objects: dict[str, ObjectReport] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "rejected": self.rejected,
            "failed": list(self.failed),
            "objects": {name: report.to_dict() for name, report in self.objects.items()},
        }


# -- the field selection (describe, reused for DESCRIBE_SECONDS) ----------------------------------------


@dataclass(frozen=True)
class _Fields:
    selection: Selection
    visible: frozenset[str]
    fetched: dt.datetime


class SelectionCache:
    """describe -> (selection, visible field names) per Salesforce adapter, reused for ``ttl`` seconds of
    the engine's clock (so a permission change reaches the change events within that time)."""

    def __init__(self, ttl: float = DESCRIBE_SECONDS) -> None:
        self.ttl = dt.timedelta(seconds=ttl)
        self._entries: weakref.WeakKeyDictionary[object, dict[str, _Fields]] = weakref.WeakKeyDictionary()

    def get(self, sf: ChangePort, spec: ObjectSpec, now: dt.datetime) -> _Fields:
        per_client = self._entries.setdefault(sf, {})
        cached = per_client.get(spec.name)
        if cached is not None and dt.timedelta(0) <= now - cached.fetched < self.ttl:
            return cached
        describe = sf.describe(spec.name)
        visible = frozenset(str(f.get("name")) for f in describe.get("fields") or [] if isinstance(f.get("name"), str))
        fresh = _Fields(select_fields(spec, describe), visible, now)
        per_client[spec.name] = fresh
        return fresh

    def forget(self, sf: ChangePort, name: str) -> None:
        self._entries.get(sf, {}).pop(name, None)

    def clear(self) -> None:
        self._entries.clear()


SELECTIONS = SelectionCache()


# -- payload values -------------------------------------------------------------------------------------


class _Unusable(ValueError):
    """A payload value the engine cannot take as it is (the record is re-read instead)."""


def _plain(value: Any) -> Any:
    """A stored value as a REST JSON value (numbers come back from DynamoDB as Decimal), never less exact:
    a whole number as int (any size: Number(18, 0) holds more digits than a float), a fraction as the
    float that round-trips to it, else the Decimal itself (the record store writes it as it is)."""
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else value
    return value


def convert_value(value: Any, kind: str | None) -> Any:
    """A payload value as REST JSON carries it, by describe type: epoch ms datetimes/dates become strings."""
    if value is None:
        return None
    if kind == "datetime":
        if isinstance(value, bool):
            raise _Unusable(f"{value!r} is not a datetime")
        if isinstance(value, int | float):
            return to_iso_ms(dt.datetime.fromtimestamp(float(value) / 1000, tz=dt.UTC))
        if isinstance(value, str):
            try:
                return to_iso_ms(parse_instant(value))
            except ValueError as exc:
                raise _Unusable(str(exc)) from exc
        raise _Unusable(f"{value!r} is not a datetime")
    if kind == "date":
        if isinstance(value, int) and not isinstance(value, bool):
            # epoch ms, or (small values) days since the epoch
            days = value if abs(value) < 1_000_000 else value // 86_400_000
            return (dt.date(1970, 1, 1) + dt.timedelta(days=days)).isoformat()
        if isinstance(value, str):
            return value
        raise _Unusable(f"{value!r} is not a date")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        raise _Unusable(f"{value!r} is not a boolean")
    if kind in _NUMBER_TYPES:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        raise _Unusable(f"{value!r} is not a number")
    if isinstance(value, str):
        return value
    raise _Unusable(f"{value!r} is not text")


@dataclass(frozen=True)
class PayloadChange:
    """The part of an event the record tables take: Salesforce's values of the changed, selected fields."""

    event: ChangeEvent
    stamp: str
    values: Mapping[str, Any]

    @property
    def create(self) -> bool:
        return self.event.change_type == "CREATE"

    def order(self) -> tuple[str, dt.datetime, int, int]:
        """Commit order: stamp, then commit time, commit number (transactions of one instant), sequence."""
        event = self.event
        return (self.stamp, event.commit_at, event.commit_number or 0, event.sequence_number)


def payload_change(event: ChangeEvent, selection: Selection) -> PayloadChange | str:
    """The event's :class:`PayloadChange`, or why it cannot be applied (then its records are re-read)."""
    lmd = event.fields.get("LastModifiedDate")
    if lmd is None:
        return "no LastModifiedDate (a system change)"
    try:
        stamp = convert_value(lmd, "datetime")
    except _Unusable as exc:
        return f"LastModifiedDate: {exc}"
    if event.change_type == "CREATE":
        names: Iterable[str] = event.fields
    elif event.changed_fields is None:
        return "changed fields unknown (absent or bitmap-encoded)"
    else:
        names = dict.fromkeys((*event.changed_fields, *event.nulled_fields))
    chosen = set(selection.fields)
    values: dict[str, Any] = {}
    for name in names:
        if name not in chosen or name in ("Id", "SystemModstamp", "IsDeleted"):
            continue  # not synced: excluded, a formula, a compound value, or the engine's own
        try:
            values[name] = convert_value(event.fields.get(name), selection.types.get(name))
        except _Unusable as exc:
            return f"{name}: {exc}"
    return PayloadChange(event, str(stamp), values)


def unknown_fields(event: ChangeEvent, visible: frozenset[str]) -> list[str]:
    """Payload and changed-field names describe does not show (not on the object, or not visible)."""
    named = [*event.fields, *(event.changed_fields or ()), *event.nulled_fields]
    return sorted({name for name in named if name not in visible})


# -- one batch ----------------------------------------------------------------------------------------


def process_messages(messages: Sequence[Message], deps: ChangeDeps) -> BatchOutcome:
    """Apply one batch of change-event messages; returns the message ids to retry (see the module docstring)."""
    now = deps.clock.now()
    outcome = BatchOutcome(received=len(messages))
    count("ChangeEventsReceived", len(messages))
    by_object: dict[str, list[tuple[Message, ChangeEvent]]] = defaultdict(list)
    for message in messages:
        try:
            event = parse_envelope(message.body)
        except InvalidChangeEvent as exc:
            _reject(deps, outcome, message, object_name=None, event_id=message.message_id, reason=str(exc), now=now)
            continue
        if event.entity not in deps.settings.registry:
            configured = ", ".join(deps.settings.registry.names())
            reason = f"{event.entity} is not a synced object (synced: {configured})"
            _reject(deps, outcome, message, object_name=event.entity, event_id=event.event_id, reason=reason, now=now)
            continue
        by_object[event.entity].append((message, event))
    for name, items in by_object.items():
        spec = deps.settings.registry.get(name)
        report = outcome.objects.setdefault(name, ObjectReport())
        try:
            _apply_object(spec, items, deps, now=now, report=report, outcome=outcome)
        except (SfsyncError, SalesforceError) as exc:
            SELECTIONS.forget(deps.sf, name)
            ids = [message.message_id for message, _ in items]
            outcome.failed.extend(ids)
            logger.error(
                "change events not applied; retried",
                extra={"object": name, "messages": len(ids), "error": f"{type(exc).__name__}: {exc}"},
            )
    if outcome.failed:
        count("ChangeEventsFailed", len(outcome.failed))
    logger.info("change events", extra={"batch": outcome.to_dict()})
    return outcome


def _reject(
    deps: ChangeDeps,
    outcome: BatchOutcome,
    message: Message,
    *,
    object_name: str | None,
    event_id: str,
    reason: str,
    now: dt.datetime,
) -> bool:
    """One unusable event: a log line, ``ChangeEventsRejected``, an errors-table row; False when the row
    could not be written (the message is then retried, so nothing is lost)."""
    logger.error("change event rejected", extra={"object": object_name, "event_id": event_id, "reason": reason})
    count("ChangeEventsRejected")
    outcome.rejected += 1
    try:
        deps.errors.record(object_name, event_id, reason, message.body, when=now)
    except SfsyncError as exc:
        logger.error("could not record the rejected change event; retried", extra={"error": str(exc)})
        outcome.failed.append(message.message_id)
        return False
    return True


@dataclass
class _Plan:
    changes: dict[str, list[PayloadChange]] = field(default_factory=lambda: defaultdict(list))
    reread: dict[str, str] = field(default_factory=dict)  # record id -> why
    deleted_at: dict[str, dt.datetime] = field(default_factory=dict)  # DELETE ids -> commit time
    losses: list[str] = field(default_factory=list)


def _apply_object(
    spec: ObjectSpec,
    items: list[tuple[Message, ChangeEvent]],
    deps: ChangeDeps,
    *,
    now: dt.datetime,
    report: ObjectReport,
    outcome: BatchOutcome,
) -> None:
    fields = SELECTIONS.get(deps.sf, spec, now)
    selection = fields.selection
    plan = _Plan()
    seen: set[tuple[str, int, str]] = set()
    newest: dt.datetime | None = None
    applied = 0
    for message, event in items:
        report.events += 1
        newest = event.commit_at if newest is None or event.commit_at > newest else newest
        if now - event.commit_at > RETENTION:
            plan.losses.append(f"an event committed at {to_iso_ms(event.commit_at)} is older than the bus retention")
        if event.is_echo:
            report.echoes += 1
        if event.is_gap or event.wildcard:
            report.gaps += 1
        if event.change_type == "GAP_OVERFLOW" or event.wildcard:
            plan.losses.append(f"{event.change_type} event{' (wildcard ids)' if event.wildcard else ''}")
        if event.is_gap:
            for record_id in event.record_ids:
                plan.reread.setdefault(record_id, event.change_type)
                if event.change_type == "GAP_DELETE":
                    plan.deleted_at[record_id] = max(event.commit_at, plan.deleted_at.get(record_id, event.commit_at))
            applied += 1
            continue
        if event.change_type in ("DELETE", "UNDELETE"):
            for record_id in event.record_ids:
                plan.reread.setdefault(record_id, event.change_type)
                if event.change_type == "DELETE":
                    plan.deleted_at[record_id] = max(event.commit_at, plan.deleted_at.get(record_id, event.commit_at))
            applied += 1
            continue
        unknown = unknown_fields(event, fields.visible)
        if unknown:
            reason = (
                f"fields {', '.join(unknown[:20])} are not fields of {spec.name} the integration user can see: "
                "the payload is not applied, the records are re-read"
            )
            if not _reject(
                deps, outcome, message, object_name=spec.name, event_id=event.event_id, reason=reason, now=now
            ):
                continue
            report.rejected += 1
            for record_id in event.record_ids:
                plan.reread.setdefault(record_id, "unknown fields")
            continue
        change = payload_change(event, selection)
        applied += 1
        if isinstance(change, str):
            logger.info("change event re-read", extra={"event_id": event.event_id, "why": change})
            for record_id in event.record_ids:
                plan.reread.setdefault(record_id, change)
            continue
        for record_id in event.record_ids:
            key = event.key(record_id)
            if key in seen and event.transaction_key:
                continue  # the same change delivered twice in one batch
            seen.add(key)
            plan.changes[record_id].append(change)

    at = f"{now.astimezone(dt.UTC):%Y%m%dT%H%M%S}"
    if plan.changes:
        _apply_payloads(spec, plan, selection, deps, now=now, cycle_id=f"{CDC_WRITER}-{at}", report=report)
    if plan.reread:
        _reread(spec, plan, selection, deps, now=now, cycle_id=f"{CDC_READER}-{at}", report=report)
    if plan.losses:
        _request_cycle(spec, "; ".join(dict.fromkeys(plan.losses)), deps, now, report)
    report.applied += applied
    deps.state.record_cdc_events(spec.name, applied=applied, gaps=report.gaps, last_event_at=newest, now=now)
    with metrics_for_object(spec.name) as m:
        m.add("CdcEventsApplied", applied)
        if report.reread:
            m.add("CdcRecordsReread", report.reread)
        if report.gaps:
            m.add("CdcGapsHandled", report.gaps)
        if report.echoes:
            m.add("CdcEchoes", report.echoes)
        if newest is not None:
            m.add("CdcLagSeconds", max(0.0, (deps.clock.now() - newest).total_seconds()))


def _salesforce_view(
    stored: Mapping[str, Any], two_way: bool, types: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The record's Salesforce values as stored: the base snapshot of a two-way item, else its data.

    The snapshot keeps a number a float cannot hold as the text of its digits; with ``types``
    (describe's, by field) such a number field is a number again, not text.
    """
    if two_way:
        raw = stored.get(BASE_ATTRIBUTE)
        base = decode_base(raw if isinstance(raw, str) else None)
        if base is not None:
            numbers = {name for name, kind in (types or {}).items() if kind in _NUMBER_TYPES}
            return {name: _plain(_number(value) if name in numbers else value) for name, value in base.items()}
    return {name: _plain(value) for name, value in stored.items() if is_data_attribute(name)}


def _number(value: Any) -> Any:
    """A number the snapshot kept as text, as its Decimal (anything else unchanged)."""
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            return value
        return number if number.is_finite() else value
    return value


def _holds(
    stored: Mapping[str, Any] | None, row: Mapping[str, Any] | None, change: PayloadChange, two_way: bool
) -> bool:
    """Do the Salesforce values at hand already equal the change's (a duplicate, or a change repeated)?"""
    view = dict(row) if row is not None else _salesforce_view(stored or {}, two_way)
    return all(same(view.get(name), value) for name, value in change.values.items())


def _apply_payloads(
    spec: ObjectSpec,
    plan: _Plan,
    selection: Selection,
    deps: ChangeDeps,
    *,
    now: dt.datetime,
    cycle_id: str,
    report: ObjectReport,
) -> None:
    table = deps.records.table_for(spec)
    ids = [record_id for record_id in plan.changes if record_id not in plan.reread]
    stored_wire = deps.records.stored_wire(table, ids)
    rows: list[dict[str, Any]] = []
    for record_id in ids:
        raw = stored_wire.get(record_id)
        stored = item_from_wire(raw) if raw is not None else None
        row, why = _merge(spec, record_id, stored, sorted(plan.changes[record_id], key=PayloadChange.order), selection)
        if why is not None:
            plan.reread.setdefault(record_id, why)
        elif row is not None:
            rows.append(row)
    if rows:
        written = deps.records.write_page(
            spec,
            rows,
            cycle_id=cycle_id,
            synced_at=now,
            datetime_fields=selection.datetime_fields,
            selected_fields=selection.fields,
            stored=stored_wire,
        )
        _add(report, written)


def _merge(
    spec: ObjectSpec,
    record_id: str,
    stored: Mapping[str, Any] | None,
    changes: list[PayloadChange],
    selection: Selection,
) -> tuple[dict[str, Any] | None, str | None]:
    """The row to write for ``record_id`` after ``changes`` (commit order), or why it must be re-read.

    Against the stored version: a change older than it - or as old as it, when it was read from
    Salesforce (a read at a stamp holds every change of that stamp) - is already in it and skipped.
    When the stored version was merged from events, an older or equally old change it does not hold
    is re-read: the order of the two is only known in Salesforce.  Changes of one batch fold in
    commit order onto the stored values.
    """
    stamp = str(stored.get("SystemModstamp") or "") if stored is not None else None
    deleted = bool(stored.get("IsDeleted")) if stored is not None else False
    from_events = stored is not None and str(stored.get("_cycle_id") or "").startswith(CDC_WRITER)
    row: dict[str, Any] | None = None
    for change in changes:
        if stored is None and row is None:
            if not change.create:
                return None, "an UPDATE of a record not stored yet"
            row = {}
        elif deleted:
            if stamp is not None and change.stamp > stamp:
                return None, "a change newer than the stored delete (an undelete not seen yet)"
            continue
        elif row is None and stamp is not None and change.stamp <= stamp:
            if not from_events:
                continue  # the stored version was read from Salesforce at or after this change: it has it
            if not _holds(stored, row, change, spec.writes_back):
                return None, _WHY_REREAD_ORDER
            continue  # a duplicate, or a change the stored values hold already
        if row is None:
            view = _salesforce_view(stored or {}, spec.writes_back, selection.types)
            row = {name: view.get(name) for name in selection.fields}
        row.update(change.values)
        stamp = change.stamp
    if row is None:
        return None, None
    row[spec.key] = record_id
    row[spec.cursor] = stamp
    row["IsDeleted"] = False
    return row, None


def _reread(
    spec: ObjectSpec,
    plan: _Plan,
    selection: Selection,
    deps: ChangeDeps,
    *,
    now: dt.datetime,
    cycle_id: str,
    report: ObjectReport,
) -> None:
    """Read the planned records with queryAll through ``/composite`` (5 reads of 300 ids a call) and write
    them; tombstone DELETE ids Salesforce no longer returns (hard deletes)."""
    ids = sorted(plan.reread)
    chunks = [ids[i : i + REREAD_CHUNK] for i in range(0, len(ids), REREAD_CHUNK)]
    base = f"/services/data/v{deps.sf.api_version}"
    found: set[str] = set()
    for start in range(0, len(chunks), QUERIES_PER_CALL):
        subrequests = []
        for n, chunk in enumerate(chunks[start : start + QUERIES_PER_CALL]):
            quoted = ", ".join(f"'{record_id}'" for record_id in chunk)
            soql = soql_select(spec, selection.fields, f"{spec.key} IN ({quoted})")
            url = f"{base}/queryAll/?q={quote(soql, safe='')}"
            subrequests.append({"method": "GET", "url": url, "referenceId": f"r{n}"})
        for response in deps.sf.composite(subrequests, False):
            rows = _composite_rows(deps.sf, response)
            found.update(str(row.get(spec.key)) for row in rows)
            if rows:
                written = deps.records.write_page(
                    spec,
                    rows,
                    cycle_id=cycle_id,
                    synced_at=now,
                    datetime_fields=selection.datetime_fields,
                    selected_fields=selection.fields,
                )
                _add(report, written)
    report.reread += len(ids)
    for record_id, deleted_at in plan.deleted_at.items():
        if record_id not in found:
            result = deps.records.tombstone(
                spec, record_id, reason="cdc", deleted_at=deleted_at, synced_at=now, cycle_id=cycle_id
            )
            tombstones = PageOutcome()
            tombstones.add(record_id, result)
            _add(report, tombstones)


def _composite_rows(sf: ChangePort, response: Mapping[str, Any]) -> list[dict[str, Any]]:
    status = int(response.get("httpStatusCode") or 0)
    body = response.get("body")
    if status >= 400 or not isinstance(body, Mapping):
        code, text = None, str(body)[:500]
        if isinstance(body, list) and body and isinstance(body[0], Mapping):
            code, text = body[0].get("errorCode"), str(body[0].get("message"))
        raise SalesforceRequestError(
            f"re-read answered HTTP {status}: {text}", status=status, error_code=str(code) if code else None
        )
    rows = [dict(row) for row in body.get("records") or []]
    next_url = body.get("nextRecordsUrl")
    while isinstance(next_url, str) and next_url:
        page = sf.query_more(next_url, True)
        rows.extend(dict(row) for row in page.records)
        next_url = page.next_url
    return rows


def _request_cycle(spec: ObjectSpec, reason: str, deps: ChangeDeps, now: dt.datetime, report: ObjectReport) -> None:
    """A loss was detected: mark the object unhealthy, ask for a cycle, and start it at once if no cycle runs."""
    logger.warning(
        "change events may have been lost: the object's cycle starts", extra={"object": spec.name, "why": reason}
    )
    deps.state.mark_cdc_unhealthy(spec.name, reason, now=now, request_cycle=True)
    report.cycle_requested = reason
    if deps.invoker is None or deps.state.get_watermark(spec.name).value is None:
        return  # not copied yet: the dispatcher's first copy comes first
    start = start_cycle(deps.state, deps.invoker, spec.name, now=now, reason="cdc", not_ended_after=None)
    if start.outcome == "taken":
        logger.info("a cycle of the object runs or is starting; the dispatcher starts the next one")


def _add(report: ObjectReport, written: PageOutcome) -> None:
    for name, value in written.counts.items():
        report.written[name] = report.written.get(name, 0) + value


__all__ = [
    "CDC_READER",
    "CDC_WRITER",
    "DESCRIBE_SECONDS",
    "RETENTION",
    "SELECTIONS",
    "BatchOutcome",
    "ChangeDeps",
    "EventErrorSink",
    "Message",
    "ObjectReport",
    "PayloadChange",
    "SelectionCache",
    "convert_value",
    "payload_change",
    "process_messages",
    "unknown_fields",
]
