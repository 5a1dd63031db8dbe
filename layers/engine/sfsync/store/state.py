"""The watermark contract, persisted: watermarks, checkpoints, leases and cycle history.

This is the only module that reads or writes the engine's per-object state items; everything else
goes through :class:`StateStore`.  The pure window maths (planning ``[lo, hi)``, positions, the
QUERY_TIMEOUT split) is :mod:`sfsync.core.window`; the items' keys and PynamoDB models are
:mod:`sfsync.store.state_items`.

Items in the state table (``pk`` / ``sk``):

==================  ==============  ==========================================================
pk                  sk              attributes
==================  ==============  ==========================================================
``OBJECT#<name>``   ``WATERMARK``   ``watermark`` (ISO ms Z; everything with a lower
                                    ``SystemModstamp`` is persisted), ``full_copy_done``,
                                    ``updated_at``, ``updated_by``
``OBJECT#<name>``   ``CHECKPOINT``  the open window of an unfinished cycle: ``lo``, ``hi``,
                                    ``last_stamp``/``last_id`` (last persisted row, in
                                    ``(SystemModstamp, Id)`` order), ``next_url``, ``cycle_id``,
                                    ``records_done``, ``updated_at``, ``bulk_job_id`` +
                                    ``bulk_locator`` (a Bulk 2.0 read of the rest of the window)
``OBJECT#<name>``   ``COPYREQUEST`` the dispatcher's full-copy bookkeeping: ``generation`` (operator
                                    re-sync counter), ``resync_requested_at``/``resync_requested_by``
                                    (the latest re-sync request), ``execution_name`` +
                                    ``started_at`` (the last full-copy execution it started) and
                                    ``reason`` (see :class:`CopyRequest`)
``OBJECT#<name>``   ``LIFECYCLE``   ``known_fields``, ``deletes_covered_until``, ``reconciled_at``,
                                    ``formulas_refreshed_at`` (see :class:`Lifecycle`)
``OBJECT#<name>``   ``LEASE``       ``holder`` + ``expires_at`` (epoch ms) while a cycle runs;
                                    ``claimed_by`` + ``claim_expires_at`` between the
                                    dispatcher's fan-out and the cycle's start; the last cycle's
                                    ``last_ended_at``, ``last_cycle_id``, ``last_status`` and
                                    ``resume_pending`` (a checkpoint is waiting, skip the pause)
``OBJECT#<name>``   ``FRESHNESS``   ``clear_until``: the dispatcher's change probe found nothing up to
                                    this instant (the object's copy was known complete then, although
                                    no cycle ran); never moves back
``OBJECT#<name>``   ``CDC``         change events (:mod:`sfsync.changes`): ``last_event_at`` (commit time
                                    of the newest event applied), ``last_received_at``,
                                    ``events_applied``, ``gaps_handled``, ``unhealthy_since`` +
                                    ``unhealthy_reason`` (a loss was detected; cleared by the next
                                    cycle that finds nothing missed), ``cycle_requested_at`` (a cycle
                                    is wanted at once, whatever the pause) (see :class:`CdcHealth`)
``ORG``             ``BACKOFF``     ``until``, ``reason``, ``set_at``: org-wide back-off after
                                    ``REQUEST_LIMIT_EXCEEDED`` (never shortened)
``CYCLES#<name>``   ``<end>#<id>``  cycle summary: status, window, counts; ``expires_at`` TTL
                                    (epoch seconds, 30 days)
==================  ==============  ==========================================================

Window rules (:mod:`sfsync.core.window`): ``lo = watermark - overlap`` (never below the epoch),
``hi = salesforce_now - lag``, half-open ``[lo, hi)``.  A window is persisted page by page; after
each page the checkpoint records the last persisted ``(SystemModstamp, Id)``; a later invocation
resumes the same window after that point (``SystemModstamp > s OR (SystemModstamp = s AND Id >
id)``).  The watermark moves to ``hi`` only when the whole window is persisted, in the same transaction that drops the
checkpoint, and only while the cycle still holds the lease.  An object never copied has no
watermark: the cycle reads from the epoch; the full-copy workflow will instead call
:meth:`StateStore.set_full_copy_watermark`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pynamodb.exceptions import PynamoDBException, TransactWriteError, UpdateError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from sfsync.core import window
from sfsync.core.clock import epoch_seconds, parse_instant, to_iso_ms
from sfsync.core.clock import now as engine_now
from sfsync.core.exceptions import LeaseHeld, LeaseLost, StoreError
from sfsync.store.state_items import (
    BACKOFF_SK,
    CDC_SK,
    CHECKPOINT_SK,
    COPY_REQUEST_SK,
    CYCLES_PREFIX,
    FRESHNESS_SK,
    LEASE_SK,
    LIFECYCLE_SK,
    OBJECT_PREFIX,
    ORG_PK,
    WATERMARK_SK,
    condition_failed,
    epoch_ms,
    from_epoch_ms,
    models_for,
    optional_instant,
    optional_iso,
    read_item,
)

CYCLE_HISTORY_DAYS = 30

#: How long a fan-out claim blocks another dispatch of the object (the longest Lambda run).
CLAIM_SECONDS = 900


def new_cycle_id(object_name: str, now: dt.datetime) -> str:
    return f"{object_name}-{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Watermark:
    value: dt.datetime | None
    full_copy_done: bool = False


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    object_name: str
    holder: str | None = None
    expires_at: dt.datetime | None = None
    claimed_by: str | None = None
    claim_expires_at: dt.datetime | None = None
    last_ended_at: dt.datetime | None = None
    last_cycle_id: str | None = None
    last_status: str | None = None
    resume_pending: bool = False

    def running(self, now: dt.datetime) -> bool:
        return self.holder is not None and self.expires_at is not None and self.expires_at > now

    def claimed(self, now: dt.datetime) -> bool:
        return self.claimed_by is not None and self.claim_expires_at is not None and self.claim_expires_at > now


@dataclass(frozen=True, slots=True)
class CycleSummary:
    object_name: str
    cycle_id: str
    status: str
    started_at: dt.datetime
    ended_at: dt.datetime
    counts: dict[str, int]
    window_lo: dt.datetime | None = None
    window_hi: dt.datetime | None = None
    watermark: dt.datetime | None = None
    reason: str | None = None
    error: str | None = None


ReleaseStatus = Literal["complete", "partial", "empty", "failed", "backoff"]


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """Per-object lifecycle bookkeeping (item ``OBJECT#<name>`` / ``LIFECYCLE``).

    ``known_fields``: the fields the last completed cycle selected (None: never recorded), to
    notice fields that appear (back-fill) or disappear (kept, no longer read);
    ``deletes_covered_until``: getDeleted has been read up to this instant;
    ``reconciled_at``: the last Id reconciliation; ``formulas_refreshed_at``: the last formula
    refresh.
    """

    known_fields: tuple[str, ...] | None = None
    deletes_covered_until: dt.datetime | None = None
    reconciled_at: dt.datetime | None = None
    formulas_refreshed_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class CopyRequest:
    """The dispatcher's bookkeeping of an object's full copy (item ``OBJECT#<name>`` / ``COPYREQUEST``).

    ``generation``: how many operator re-syncs were asked for (0: none); the latest request's
    ``resync_requested_at`` / ``resync_requested_by``.  ``execution_name`` / ``started_at`` /
    ``reason``: the last full-copy execution the dispatcher started for the object (a later tick
    does not start it again).
    """

    object_name: str
    generation: int = 0
    resync_requested_at: dt.datetime | None = None
    resync_requested_by: str | None = None
    execution_name: str | None = None
    started_at: dt.datetime | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CdcHealth:
    """An object's change-event health (item ``OBJECT#<name>`` / ``CDC``), see :mod:`sfsync.changes`.

    No item: the object never received a change event (CDC off for it).  ``unhealthy_since``: a
    loss was detected (gap overflow, events older than the bus retention, a cycle that found
    changes no event delivered) and no cycle has caught up since.  ``cycle_requested_at``: a cycle
    is wanted at once (the dispatcher starts it whatever the pause).
    """

    object_name: str
    last_event_at: dt.datetime | None = None
    last_received_at: dt.datetime | None = None
    events_applied: int = 0
    gaps_handled: int = 0
    unhealthy_since: dt.datetime | None = None
    unhealthy_reason: str | None = None
    cycle_requested_at: dt.datetime | None = None
    exists: bool = False

    def status(self, now: dt.datetime, quiet_seconds: int) -> Literal["off", "on", "quiet", "unhealthy"]:
        """``off`` (no event ever), ``unhealthy``, ``on`` (an event within ``quiet_seconds``) or ``quiet``."""
        if not self.exists:
            return "off"
        if self.unhealthy_since is not None:
            return "unhealthy"
        received = self.last_received_at
        if received is not None and now - received <= dt.timedelta(seconds=quiet_seconds):
            return "on"
        return "quiet"


class StateStore:
    """PynamoDB-backed state for one state table."""

    def __init__(self, table_name: str, *, region: str | None = None, host: str | None = None) -> None:
        self.table_name = table_name
        self._m = models_for(table_name, region, host)

    # -- watermark -------------------------------------------------------------------------
    def get_watermark(self, object_name: str) -> Watermark:
        item = read_item(
            self._m.watermark, OBJECT_PREFIX + object_name, WATERMARK_SK, f"the watermark of {object_name}"
        )
        if item is None:
            return Watermark(None, False)
        return Watermark(optional_instant(item.watermark), bool(item.full_copy_done))

    def set_full_copy_watermark(self, object_name: str, watermark: dt.datetime, *, by: str) -> None:
        """Seam for the full-copy workflow: the copy is done and everything below ``watermark`` is stored."""
        item = self._m.watermark(
            OBJECT_PREFIX + object_name,
            WATERMARK_SK,
            watermark=to_iso_ms(watermark),
            full_copy_done=True,
            updated_at=to_iso_ms(engine_now()),
            updated_by=by,
        )
        wm = self._m.watermark
        try:
            item.save(condition=wm.watermark.does_not_exist() | (wm.watermark <= to_iso_ms(watermark)))
        except PynamoDBException as exc:
            if condition_failed(exc):
                return  # a later watermark is already stored; never move it back
            raise StoreError(f"cannot set the watermark of {object_name}: {exc}") from exc

    @staticmethod
    def _object_items(model: type[Model], sk: str, object_names: list[str], what: str) -> list[tuple[str, Any]]:
        """(object name, stored item) of each object's ``sk`` item that exists (one consistent batch read,
        all of it read before any is used); ``what`` names the read in the :class:`StoreError`."""
        keys = [(OBJECT_PREFIX + name, sk) for name in object_names]
        try:
            items: list[Any] = list(model.batch_get(keys, consistent_read=True))
        except PynamoDBException as exc:
            raise StoreError(f"{what}: {exc}") from exc
        return [(item.pk.removeprefix(OBJECT_PREFIX), item) for item in items]

    def watermarks(self, object_names: list[str]) -> dict[str, Watermark]:
        """The watermarks of several objects (one consistent batch read)."""
        result = {name: Watermark(None, False) for name in object_names}
        for name, item in self._object_items(self._m.watermark, WATERMARK_SK, object_names, "cannot read watermarks"):
            result[name] = Watermark(optional_instant(item.watermark), bool(item.full_copy_done))
        return result

    # -- freshness (what the dispatcher reports every tick) ----------------------------------------
    def note_clear(self, object_name: str, until: dt.datetime, *, now: dt.datetime) -> None:
        """The change probe found nothing up to ``until``: the copy is known complete as of then.

        Kept only when later than what is stored (a probe never makes an object look staler).
        """
        m: Any = self._m.freshness
        until_iso = to_iso_ms(until)
        item = m(OBJECT_PREFIX + object_name, FRESHNESS_SK, clear_until=until_iso, updated_at=to_iso_ms(now))
        try:
            item.save(condition=m.clear_until.does_not_exist() | (m.clear_until < until_iso))
        except PynamoDBException as exc:
            if condition_failed(exc):
                return
            raise StoreError(f"cannot record the freshness of {object_name}: {exc}") from exc

    def known_complete(self, object_names: list[str]) -> dict[str, dt.datetime | None]:
        """Per object, the newest instant at which its copy is known complete: the later of its
        watermark (everything below is persisted) and the last clear probe (one batch read each)."""
        marks = self.watermarks(object_names)
        result: dict[str, dt.datetime | None] = {name: marks[name].value for name in object_names}
        for name, item in self._object_items(
            self._m.freshness, FRESHNESS_SK, object_names, "cannot read the freshness of the objects"
        ):
            clear = optional_instant(item.clear_until)
            current = result.get(name)
            if clear is not None and current is not None and clear > current:
                result[name] = clear  # a probe only counts once the object has a watermark
        return result

    # -- full-copy requests (the dispatcher) -------------------------------------------------
    def copy_requests(self, object_names: list[str]) -> dict[str, CopyRequest]:
        """Each object's :class:`CopyRequest` (an empty one when none was stored), one batch read."""
        result = {name: CopyRequest(name) for name in object_names}
        for name, item in self._object_items(
            self._m.copy_request, COPY_REQUEST_SK, object_names, "cannot read the full-copy requests"
        ):
            result[name] = CopyRequest(
                object_name=name,
                generation=int(item.generation or 0),
                resync_requested_at=optional_instant(item.resync_requested_at),
                resync_requested_by=item.resync_requested_by,
                execution_name=item.execution_name,
                started_at=optional_instant(item.started_at),
                reason=item.reason,
            )
        return result

    def request_resync(self, object_name: str, *, requested_by: str, now: dt.datetime) -> int:
        """Ask for a new full copy of ``object_name``: the re-sync generation goes up by one (returned)."""
        m: Any = self._m.copy_request
        actions = [
            m.generation.add(1),
            m.resync_requested_at.set(to_iso_ms(now)),
            m.resync_requested_by.set(requested_by[:200]),
        ]
        try:
            item = m(OBJECT_PREFIX + object_name, COPY_REQUEST_SK)
            item.update(actions=actions)
        except PynamoDBException as exc:
            raise StoreError(f"cannot record the re-sync of {object_name}: {exc}") from exc
        return int(item.generation)

    def record_copy_start(self, object_name: str, execution_name: str, *, reason: str, now: dt.datetime) -> None:
        """Remember the full-copy execution the dispatcher started (or found started) for the object."""
        m: Any = self._m.copy_request
        actions = [m.execution_name.set(execution_name), m.started_at.set(to_iso_ms(now)), m.reason.set(reason)]
        try:
            m(OBJECT_PREFIX + object_name, COPY_REQUEST_SK).update(actions=actions)
        except PynamoDBException as exc:
            raise StoreError(f"cannot record the full-copy start of {object_name}: {exc}") from exc

    # -- checkpoint ------------------------------------------------------------------------
    def get_checkpoint(self, object_name: str) -> window.Checkpoint | None:
        item = read_item(
            self._m.checkpoint, OBJECT_PREFIX + object_name, CHECKPOINT_SK, f"the checkpoint of {object_name}"
        )
        if item is None:
            return None
        last = (
            window.Position(parse_instant(item.last_stamp), item.last_id) if item.last_stamp and item.last_id else None
        )
        return window.Checkpoint(
            cycle_id=item.cycle_id,
            lo=parse_instant(item.lo),
            hi=parse_instant(item.hi),
            last=last,
            next_url=item.next_url,
            records_done=int(item.records_done or 0),
            bulk_job_id=item.bulk_job_id,
            bulk_locator=item.bulk_locator,
        )

    def save_checkpoint(
        self, object_name: str, checkpoint: window.Checkpoint, *, holder: str, now: dt.datetime
    ) -> None:
        """Record progress inside a window, only while ``holder`` still holds the lease."""
        item = self._m.checkpoint(
            OBJECT_PREFIX + object_name,
            CHECKPOINT_SK,
            cycle_id=checkpoint.cycle_id,
            lo=to_iso_ms(checkpoint.lo),
            hi=to_iso_ms(checkpoint.hi),
            last_stamp=optional_iso(checkpoint.last.stamp if checkpoint.last else None),
            last_id=checkpoint.last.record_id if checkpoint.last else None,
            next_url=checkpoint.next_url,
            records_done=checkpoint.records_done,
            updated_at=to_iso_ms(now),
            bulk_job_id=checkpoint.bulk_job_id,
            bulk_locator=checkpoint.bulk_locator,
        )
        self._transact_as_holder(object_name, holder, now, lambda t: t.save(item), "save the checkpoint")

    def complete_window(self, object_name: str, hi: dt.datetime, *, holder: str, now: dt.datetime) -> dt.datetime:
        """The whole window is persisted: watermark -> ``hi`` (never lower) and drop the checkpoint."""
        current = self.get_watermark(object_name)
        new_value = window.advance_watermark(current.value, hi)
        item = self._m.watermark(
            OBJECT_PREFIX + object_name,
            WATERMARK_SK,
            watermark=to_iso_ms(new_value),
            full_copy_done=current.full_copy_done,
            updated_at=to_iso_ms(now),
            updated_by=holder,
        )
        wm = self._m.watermark
        cond = wm.watermark.does_not_exist() | (wm.watermark <= to_iso_ms(new_value))
        checkpoint_key = self._m.checkpoint(OBJECT_PREFIX + object_name, CHECKPOINT_SK)

        def ops(t: TransactWrite) -> None:
            t.save(item, condition=cond)
            t.delete(checkpoint_key)

        try:
            self._transact_as_holder(object_name, holder, now, ops, "advance the watermark")
        except _WatermarkAhead:
            # Someone (the full copy) stored a later watermark meanwhile: keep it, drop our checkpoint.
            self._transact_as_holder(
                object_name, holder, now, lambda t: t.delete(checkpoint_key), "drop the checkpoint"
            )
            return self.get_watermark(object_name).value or new_value
        return new_value

    # -- lease -----------------------------------------------------------------------------
    def lease_status(self, object_name: str) -> LeaseStatus:
        return self.lease_statuses([object_name])[object_name]

    def lease_statuses(self, object_names: list[str]) -> dict[str, LeaseStatus]:
        result = {name: LeaseStatus(name) for name in object_names}
        for name, item in self._object_items(self._m.lease, LEASE_SK, object_names, "cannot read leases"):
            result[name] = LeaseStatus(
                object_name=name,
                holder=item.holder,
                expires_at=from_epoch_ms(item.expires_at),
                claimed_by=item.claimed_by,
                claim_expires_at=from_epoch_ms(item.claim_expires_at),
                last_ended_at=optional_instant(item.last_ended_at),
                last_cycle_id=item.last_cycle_id,
                last_status=item.last_status,
                resume_pending=bool(item.resume_pending),
            )
        return result

    def claim_dispatch(
        self,
        object_name: str,
        cycle_id: str,
        *,
        now: dt.datetime,
        claim_seconds: int,
        not_ended_after: dt.datetime | None,
    ) -> bool:
        """The dispatcher's atomic "due" check + claim; False when the object is not due any more.

        Succeeds only when no lease is running, no other claim is live, and (unless a resume is
        pending) the last cycle ended at or before ``not_ended_after``.
        """
        m: Any = self._m.lease
        now_ms = epoch_ms(now)
        cond = (m.holder.does_not_exist() | (m.expires_at < now_ms)) & (
            m.claimed_by.does_not_exist() | (m.claim_expires_at < now_ms)
        )
        if not_ended_after is not None:
            cond &= (
                m.last_ended_at.does_not_exist()
                | (m.last_ended_at <= to_iso_ms(not_ended_after))
                | (m.resume_pending == True)  # noqa: E712 - PynamoDB condition, not a comparison
            )
        actions = [m.claimed_by.set(cycle_id), m.claim_expires_at.set(now_ms + claim_seconds * 1000)]
        return self._update_lease(object_name, actions, cond, "claim")

    def acquire_lease(self, object_name: str, holder: str, *, now: dt.datetime, ttl_seconds: int) -> None:
        """Take the object's lease (absent or expired) for ``holder`` or raise :class:`LeaseHeld`.

        ``holder`` is an invocation-unique token (:func:`lease_token`), never an id two deliveries
        of one event share: a lease held by anyone - the same cycle id included - is not taken.
        """
        m: Any = self._m.lease
        now_ms = epoch_ms(now)
        actions = [
            m.holder.set(holder),
            m.expires_at.set(now_ms + ttl_seconds * 1000),
            m.acquired_at.set(to_iso_ms(now)),
            m.claimed_by.remove(),
            m.claim_expires_at.remove(),
        ]
        cond = m.holder.does_not_exist() | (m.expires_at < now_ms)
        if not self._update_lease(object_name, actions, cond, "acquire the lease of"):
            raise LeaseHeld(object_name, self.lease_status(object_name).holder)

    def holds_lease(self, object_name: str, holder: str, *, now: dt.datetime, margin_seconds: int = 0) -> bool:
        """Does ``holder`` hold the object's lease for at least ``margin_seconds`` more (consistent read)?"""
        status = self.lease_status(object_name)
        if status.holder != holder or status.expires_at is None:
            return False
        return status.expires_at > now + dt.timedelta(seconds=margin_seconds)

    def release_lease(
        self,
        object_name: str,
        holder: str,
        *,
        cycle_id: str,
        ended_at: dt.datetime,
        status: ReleaseStatus,
        resume_pending: bool,
    ) -> bool:
        """Give the lease back (only its holder can) and record the end time; False if it was lost."""
        m: Any = self._m.lease
        actions = [
            m.holder.remove(),
            m.expires_at.remove(),
            m.last_ended_at.set(to_iso_ms(ended_at)),
            m.last_cycle_id.set(cycle_id),
            m.last_status.set(status),
            m.resume_pending.set(resume_pending),
        ]
        return self._update_lease(object_name, actions, m.holder == holder, "release the lease of")

    # -- cycle history ---------------------------------------------------------------------
    def record_cycle(self, summary: CycleSummary) -> None:
        ended = to_iso_ms(summary.ended_at)
        item = self._m.cycle(
            CYCLES_PREFIX + summary.object_name,
            f"{ended}#{summary.cycle_id}",
            cycle_id=summary.cycle_id,
            object_name=summary.object_name,
            status=summary.status,
            reason=summary.reason,
            started_at=to_iso_ms(summary.started_at),
            ended_at=ended,
            window_lo=optional_iso(summary.window_lo),
            window_hi=optional_iso(summary.window_hi),
            watermark=optional_iso(summary.watermark),
            counts=dict(summary.counts),
            error=summary.error,
            expires_at=epoch_seconds(summary.ended_at + dt.timedelta(days=CYCLE_HISTORY_DAYS)),
        )
        try:
            item.save()
        except PynamoDBException as exc:
            raise StoreError(f"cannot record cycle {summary.cycle_id}: {exc}") from exc

    def recent_cycles(self, object_name: str, limit: int = 10) -> list[CycleSummary]:
        try:
            items: list[Any] = list(
                self._m.cycle.query(CYCLES_PREFIX + object_name, scan_index_forward=False, limit=limit)
            )
        except PynamoDBException as exc:
            raise StoreError(f"cannot read the cycles of {object_name}: {exc}") from exc
        return [
            CycleSummary(
                object_name=item.object_name,
                cycle_id=item.cycle_id,
                status=item.status,
                started_at=parse_instant(item.started_at),
                ended_at=parse_instant(item.ended_at),
                counts={k: int(v) for k, v in (item.counts.as_dict() if item.counts else {}).items()},
                window_lo=optional_instant(item.window_lo),
                window_hi=optional_instant(item.window_hi),
                watermark=optional_instant(item.watermark),
                reason=item.reason,
                error=item.error,
            )
            for item in items
        ]

    # -- lifecycle bookkeeping ---------------------------------------------------------------
    def get_lifecycle(self, object_name: str) -> Lifecycle:
        item = read_item(
            self._m.lifecycle, OBJECT_PREFIX + object_name, LIFECYCLE_SK, f"the lifecycle state of {object_name}"
        )
        if item is None:
            return Lifecycle()
        return Lifecycle(
            known_fields=tuple(item.known_fields) if item.known_fields is not None else None,
            deletes_covered_until=optional_instant(item.deletes_covered_until),
            reconciled_at=optional_instant(item.reconciled_at),
            formulas_refreshed_at=optional_instant(item.formulas_refreshed_at),
        )

    def save_lifecycle(self, object_name: str, lifecycle: Lifecycle, *, holder: str, now: dt.datetime) -> None:
        """Store the lifecycle bookkeeping, only while ``holder`` holds the object's lease."""
        item = self._m.lifecycle(
            OBJECT_PREFIX + object_name,
            LIFECYCLE_SK,
            known_fields=list(lifecycle.known_fields) if lifecycle.known_fields is not None else None,
            deletes_covered_until=optional_iso(lifecycle.deletes_covered_until),
            reconciled_at=optional_iso(lifecycle.reconciled_at),
            formulas_refreshed_at=optional_iso(lifecycle.formulas_refreshed_at),
            updated_at=to_iso_ms(now),
        )
        self._transact_as_holder(object_name, holder, now, lambda t: t.save(item), "save the lifecycle state")

    # -- change events (CDC health) ---------------------------------------------------------
    def cdc_health(self, object_names: list[str]) -> dict[str, CdcHealth]:
        """Each object's :class:`CdcHealth` (``exists`` False when it never received an event), one batch read."""
        result = {name: CdcHealth(name) for name in object_names}
        for name, item in self._object_items(
            self._m.cdc, CDC_SK, object_names, "cannot read the change-event health of the objects"
        ):
            result[name] = CdcHealth(
                object_name=name,
                last_event_at=optional_instant(item.last_event_at),
                last_received_at=optional_instant(item.last_received_at),
                events_applied=int(item.events_applied or 0),
                gaps_handled=int(item.gaps_handled or 0),
                unhealthy_since=optional_instant(item.unhealthy_since),
                unhealthy_reason=item.unhealthy_reason,
                cycle_requested_at=optional_instant(item.cycle_requested_at),
                exists=True,
            )
        return result

    def record_cdc_events(
        self, object_name: str, *, applied: int, gaps: int, last_event_at: dt.datetime | None, now: dt.datetime
    ) -> None:
        """Count a batch's events of the object (``ADD``: concurrent batches add up) and move
        ``last_event_at`` forward (never back)."""
        m: Any = self._m.cdc
        item = m(OBJECT_PREFIX + object_name, CDC_SK)
        actions = [
            m.events_applied.add(applied),
            m.gaps_handled.add(gaps),
            m.last_received_at.set(to_iso_ms(now)),
        ]
        try:
            item.update(actions=actions)
            if last_event_at is not None:
                stamp = to_iso_ms(last_event_at)
                try:
                    item.update(
                        actions=[m.last_event_at.set(stamp)],
                        condition=m.last_event_at.does_not_exist() | (m.last_event_at < stamp),
                    )
                except UpdateError as exc:
                    if not condition_failed(exc):
                        raise
        except PynamoDBException as exc:
            raise StoreError(f"cannot record the change events of {object_name}: {exc}") from exc

    def mark_cdc_unhealthy(
        self, object_name: str, reason: str, *, now: dt.datetime, request_cycle: bool = True
    ) -> None:
        """A loss of change events was detected: the object is unhealthy (its normal cadence comes
        back) and, with ``request_cycle``, a cycle is wanted at once."""
        m: Any = self._m.cdc
        actions = [
            m.unhealthy_since.set(m.unhealthy_since | to_iso_ms(now)),
            m.unhealthy_reason.set(reason[:500]),
        ]
        if request_cycle:
            actions.append(m.cycle_requested_at.set(to_iso_ms(now)))
        try:
            m(OBJECT_PREFIX + object_name, CDC_SK).update(actions=actions)
        except PynamoDBException as exc:
            raise StoreError(f"cannot mark the change events of {object_name} unhealthy: {exc}") from exc

    def note_cycle_for_cdc(self, object_name: str, *, missed: int, started: dt.datetime, now: dt.datetime) -> None:
        """After a cycle's completed window (only for an object that receives change events): ``missed``
        rows it had to write that no event had delivered make the object unhealthy; a cycle that
        started after the object became unhealthy and missed nothing makes it healthy again (it
        has caught up).  Objects without a ``CDC`` item are left alone."""
        m: Any = self._m.cdc
        item = m(OBJECT_PREFIX + object_name, CDC_SK)
        try:
            if missed > 0:
                reason = f"a cycle found {missed} change(s) no event delivered"
                item.update(
                    actions=[m.unhealthy_since.set(m.unhealthy_since | to_iso_ms(now)), m.unhealthy_reason.set(reason)],
                    condition=m.pk.exists(),
                )
            else:
                item.update(
                    actions=[m.unhealthy_since.remove(), m.unhealthy_reason.remove(), m.cycle_requested_at.remove()],
                    condition=m.pk.exists()
                    & (m.unhealthy_since.does_not_exist() | (m.unhealthy_since <= to_iso_ms(started)))
                    & (m.cycle_requested_at.does_not_exist() | (m.cycle_requested_at <= to_iso_ms(started))),
                )
        except UpdateError as exc:
            if condition_failed(exc):
                return
            raise StoreError(f"cannot note the cycle for the change events of {object_name}: {exc}") from exc
        except PynamoDBException as exc:
            raise StoreError(f"cannot note the cycle for the change events of {object_name}: {exc}") from exc

    # -- org-wide back-off ------------------------------------------------------------------
    def set_org_backoff(self, until: dt.datetime, *, reason: str = "", now: dt.datetime | None = None) -> dt.datetime:
        """Ask every cycle (and the dispatcher) to leave Salesforce alone until ``until``.

        Never shortens a back-off already stored; returns the back-off in force afterwards.
        """
        until_iso = to_iso_ms(until)
        m: Any = self._m.backoff
        item = m(ORG_PK, BACKOFF_SK, until=until_iso, reason=reason[:500], set_at=to_iso_ms(now or engine_now()))
        try:
            item.save(condition=m.until.does_not_exist() | (m.until < until_iso))
        except PynamoDBException as exc:
            if condition_failed(exc):
                return self.get_org_backoff() or until
            raise StoreError(f"cannot record the org back-off: {exc}") from exc
        return until

    def get_org_backoff(self) -> dt.datetime | None:
        """The instant until which the org is backed off (may be in the past), or None."""
        item = read_item(self._m.backoff, ORG_PK, BACKOFF_SK, "the org back-off")
        return None if item is None else optional_instant(item.until)

    # -- helpers ---------------------------------------------------------------------------
    def _update_lease(self, object_name: str, actions: list[Any], condition: Any, what: str) -> bool:
        """Update the object's lease item under ``condition``; False when the condition failed."""
        try:
            self._m.lease(OBJECT_PREFIX + object_name, LEASE_SK).update(actions=actions, condition=condition)
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise StoreError(f"cannot {what} {object_name}: {exc}") from exc
        return True

    def _transact_as_holder(self, object_name: str, holder: str, now: dt.datetime, ops: Any, what: str) -> None:
        m: Any = self._m.lease
        try:
            with TransactWrite(connection=self._m.connection) as t:
                t.condition_check(
                    m,
                    OBJECT_PREFIX + object_name,
                    LEASE_SK,
                    condition=(m.holder == holder) & (m.expires_at >= epoch_ms(now)),
                )
                ops(t)
        except TransactWriteError as exc:
            reasons = list(getattr(exc, "cancellation_reasons", None) or [])
            failed = [i for i, r in enumerate(reasons) if r is not None and r.code == "ConditionalCheckFailed"]
            if failed and 0 not in failed:
                raise _WatermarkAhead from exc
            if failed or condition_failed(exc):
                raise LeaseLost(f"cycle {holder} no longer holds the lease of {object_name}; cannot {what}") from exc
            raise StoreError(f"cannot {what} for {object_name}: {exc}") from exc


def lease_token(cycle_id: str) -> str:
    """An invocation-unique lease holder for a cycle: ``<cycle id>~<random>``.

    Lambda delivers an asynchronous event at least once (and a retry keeps its request id), so the
    cycle id - and the request id - may be shared by two running invocations; the random part is not.
    """
    return f"{cycle_id}~{uuid.uuid4().hex[:12]}"


def lease_cycle_id(holder: str | None) -> str | None:
    """The cycle id of a lease holder token (the token itself when it has no random part)."""
    return holder.split("~", 1)[0] if holder else holder


class _WatermarkAhead(Exception):
    """Internal: a transaction's watermark condition failed while the lease check passed."""


__all__ = [
    "CLAIM_SECONDS",
    "CdcHealth",
    "CopyRequest",
    "CycleSummary",
    "LeaseStatus",
    "Lifecycle",
    "StateStore",
    "Watermark",
    "lease_cycle_id",
    "lease_token",
    "new_cycle_id",
]
