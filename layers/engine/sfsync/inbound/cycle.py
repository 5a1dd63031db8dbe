"""One incremental sync cycle of one object (pure logic; adapters are passed in).

``run_object_cycle`` takes the object's lease, reads ``[lo, hi)`` by ``SystemModstamp`` through
queryAll ordered by ``SystemModstamp, Id``, persists page by page with a checkpoint after each
page, stops (and checkpoints) before the Lambda time limit, advances the watermark when the window
is complete, then runs the object's lifecycle work (field back-fill, getDeleted, Id
reconciliation, formula refresh), writes the cycle summary, releases the lease and emits the log
line and metrics.

Reading a window:

* **REST pages** by default.  The first page's ``totalSize`` is the window's size, for free: when
  it exceeds the object's ``bulk_threshold`` (default 10,000), the first page is persisted and the
  rest of the window (after the last persisted row) is read with a **Bulk API 2.0** queryAll job;
  the job id and the locator of the next result set are checkpointed after each persisted set,
  so a killed invocation resumes the job where it stopped (and falls back to REST from the
  checkpoint position if the job is gone).
* ``QUERY_TIMEOUT`` **splits** the remaining window in halves, recursively (down to one second,
  :func:`sfsync.core.window.split_point`), and goes on with the first half, then the second.
* ``REQUEST_LIMIT_EXCEEDED`` stops the cycle cleanly (status ``backoff``): nothing more is read,
  the watermark stays, the checkpoint keeps what was persisted, and an org-wide back-off marker is
  stored (:meth:`StateStore.set_org_backoff`) that every cycle - and the dispatcher - honours.
* DynamoDB throttling that outlives the client's retries fails the cycle before the page is
  checkpointed; the next invocation resumes from the last checkpoint (writes are idempotent).
* An object Salesforce does not have, or the integration user cannot read, fails its cycle with a
  clear error naming it (log line, errors-table row, ``ObjectUnavailable`` and ``CycleFailed``
  metrics, and the raised :class:`ObjectUnavailable`: a Lambda error); other objects are separate
  invocations and keep syncing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sfsync.changes.health import note_cycle
from sfsync.core.clock import Clock, parse_instant, salesforce_now, to_iso_ms, to_soql
from sfsync.core.config import Settings
from sfsync.core.exceptions import (
    BulkJobFailed,
    InvalidQueryLocator,
    LeaseHeld,
    ObjectUnavailable,
    SalesforceError,
    SalesforceQueryTimeout,
    SalesforceRateLimited,
    SalesforceRequestError,
    SfsyncError,
)
from sfsync.core.observability import (
    CYCLE_COUNTERS,
    bind,
    count,
    emit_cycle_metrics,
    logger,
    metrics_for_object,
    tracer,
)
from sfsync.core.registry import ObjectSpec
from sfsync.core.window import Checkpoint, Position, WindowPlan, plan_window, position_after, split_point
from sfsync.inbound.fields import (
    REQUIRED_FIELDS,
    SKIPPED_TYPES,
    DescribeCache,
    Selection,
    backfill,
    check_soql_names,
    field_changes,
    keyset_after,
    select_fields,
)
from sfsync.inbound.formulas import refresh_due, refresh_formulas
from sfsync.inbound.lifecycle import check_deletes, reconcile, reconcile_due
from sfsync.items.csv import FieldTypes, typed_row
from sfsync.salesforce.ports import CyclePort
from sfsync.store.put_rules import PageOutcome
from sfsync.store.records import RecordStore
from sfsync.store.state import CycleSummary, Lifecycle, StateStore, lease_token

#: Stop reading new pages when less than this much Lambda time is left.
STOP_MARGIN_MS = 90_000
#: A page is batched (unconditional puts) only while the lease has at least this long to run.
SOLE_WRITER_MARGIN_SECONDS = 60
#: Lease length when the caller does not know its time limit.
DEFAULT_LEASE_SECONDS = 960
#: The lease outlives the invocation by this much, so a killed invocation's lease expires soon after.
LEASE_GRACE_SECONDS = 60
#: Seconds between Bulk job status polls.
BULK_POLL_SECONDS = 2.0
#: Rows per Bulk result set requested (``maxRecords``).
BULK_MAX_RECORDS = 50_000
#: describe error codes meaning "no such object for this user".
_UNAVAILABLE_CODES = frozenset({"NOT_FOUND", "INVALID_TYPE"})
#: describe results per adapter instance (revalidated every cycle; see DescribeCache).
DESCRIBES = DescribeCache()
#: Extra per-cycle counters (log line + EMF, dimension ``object``) besides CYCLE_COUNTERS.
EXTRA_COUNTERS: tuple[str, ...] = (
    "QuerySplits",
    "BulkRows",
    "FieldsAppeared",
    "FieldsDisappeared",
    "RowsBackfilled",
    "FormulaRowsRefreshed",
    "HardDeletesTombstoned",
    "ReconcileTombstoned",
    "ReconcileReread",
)

RunStatus = Literal["complete", "partial", "empty", "failed", "backoff"]
Status = RunStatus | Literal["lease-held"]


class CopyProgressPort(Protocol):
    """What a cycle reads of the object's full copy (:class:`sfsync.store.copies.CopyStore`)."""

    def progress(self, object_name: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class CycleStores:
    state: StateStore
    records: RecordStore
    #: The full-copy documents.  With them, a page is written as the object's only writer
    #: (batched, unconditional puts) whenever no full copy of the object is under way; without
    #: them every page keeps the conditional per-item put.  See :func:`_sole_writer`.
    copies: CopyProgressPort | None = None


@dataclass
class CycleResult:
    object_name: str
    cycle_id: str
    status: Status
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CYCLE_COUNTERS, 0))
    window_lo: dt.datetime | None = None
    window_hi: dt.datetime | None = None
    watermark: dt.datetime | None = None
    backlog: int | None = None
    duration_ms: float = 0.0
    held_by: str | None = None
    error: str | None = None
    extra: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": self.object_name,
            "cycle_id": self.cycle_id,
            "status": self.status,
            "counts": dict(self.counts),
            "extra": dict(self.extra),
            "window": {
                "lo": to_iso_ms(self.window_lo) if self.window_lo else None,
                "hi": to_iso_ms(self.window_hi) if self.window_hi else None,
            },
            "watermark": to_iso_ms(self.watermark) if self.watermark else None,
            "backlog": self.backlog,
            "duration_ms": round(self.duration_ms, 1),
            "held_by": self.held_by,
            "error": self.error,
        }


# -- SOQL ------------------------------------------------------------------------------------------


def build_soql(spec: ObjectSpec, fields: Iterable[str], plan: WindowPlan) -> str:
    """``SELECT … FROM X WHERE cursor >= lo AND cursor < hi [AND after(position)] ORDER BY cursor, key``."""
    names = list(fields)
    check_soql_names(*names, spec.name, spec.cursor, spec.key)
    cursor, key = spec.cursor, spec.key
    where = f"{cursor} >= {to_soql(plan.lo)} AND {cursor} < {to_soql(plan.hi)}"
    if plan.resume_after is not None:
        where += " AND " + keyset_after(spec, plan.resume_after.stamp, plan.resume_after.record_id)
    return f"SELECT {', '.join(names)} FROM {spec.name} WHERE {where} ORDER BY {cursor}, {key}"


# -- the cycle -------------------------------------------------------------------------------------


@dataclass
class _Run:
    spec: ObjectSpec
    cycle_id: str
    counts: dict[str, int]
    extra: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EXTRA_COUNTERS, 0))
    plan: WindowPlan | None = None
    watermark: dt.datetime | None = None
    backlog: int | None = None
    sf_now: dt.datetime | None = None
    position: Position | None = None
    done: int = 0
    error: str | None = None
    previous_watermark: dt.datetime | None = None
    #: The invocation-unique lease token (:func:`lease_token`): every conditional state write and
    #: the batched write path check it, so a second delivery of the same event cannot run.
    holder: str = ""
    #: Parsed cursor values of this cycle's rows (a page repeats the same few stamps).
    instants: dict[str, dt.datetime] = field(default_factory=dict)
    started: dt.datetime | None = None


@dataclass(frozen=True)
class _Ctx:
    settings: Settings
    sf: CyclePort
    store: CycleStores
    now: Clock
    time_left_ms: Callable[[], int] | None
    stop_margin_ms: int
    sleep: Callable[[float], None]

    def time_short(self) -> bool:
        return self.time_left_ms is not None and self.time_left_ms() < self.stop_margin_ms


@tracer.capture_method(capture_response=False)
def lease_seconds_for(time_left_ms: int | None) -> int:
    """The lease of a cycle run in an invocation with ``time_left_ms`` left (None: not in Lambda)."""
    return time_left_ms // 1000 + LEASE_GRACE_SECONDS if time_left_ms is not None else DEFAULT_LEASE_SECONDS


def run_object_cycle(
    obj_name: str,
    cycle_id: str,
    *,
    settings: Settings,
    sf: CyclePort,
    store: CycleStores,
    now: Clock,
    reason: str = "due",
    time_left_ms: Callable[[], int] | None = None,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    stop_margin_ms: int = STOP_MARGIN_MS,
    sleep: Callable[[float], None] = time.sleep,
) -> CycleResult:
    """Run one cycle of ``obj_name``; a held lease gives a clean no-op result.

    Status: ``complete`` (window persisted, watermark advanced), ``empty`` (nothing to read yet),
    ``partial`` (stopped before the time limit; a checkpoint waits), ``backoff`` (the org is backed
    off; nothing read), ``lease-held`` (another cycle runs the object; nothing done).  A failure -
    an unavailable object included - is raised after the bookkeeping (cycle history ``failed``,
    ``CycleFailed``, the lease released).
    """
    spec = settings.registry.get(obj_name)
    bind(object=obj_name, cycle_id=cycle_id, reason=reason)
    started = now.now()
    t0 = time.monotonic()
    calls_before = sf.calls_made
    holder = lease_token(cycle_id)
    try:
        store.state.acquire_lease(obj_name, holder, now=started, ttl_seconds=lease_seconds)
    except LeaseHeld as exc:
        logger.info("lease held by another cycle; nothing to do", extra={"held_by": exc.holder})
        count("LeaseHeld")
        return CycleResult(obj_name, cycle_id, "lease-held", held_by=exc.holder)

    run = _Run(spec, cycle_id, dict.fromkeys(CYCLE_COUNTERS, 0), holder=holder, started=started)
    ctx = _Ctx(settings, sf, store, now, time_left_ms, stop_margin_ms, sleep)
    status: RunStatus = "failed"
    try:
        status = _run_window(run, ctx)
    except ObjectUnavailable as exc:
        # a failure like any other: the cycle is recorded failed (CycleFailed), the errors table names
        # the object, and the invocation fails (a Lambda error, its alarm, the failure queue)
        run.error = str(exc)
        count("ObjectUnavailable")
        _record_object_error(run, store.records, now.now())
        raise
    except SalesforceRateLimited as exc:
        until = now.now() + dt.timedelta(seconds=settings.org_backoff_seconds)
        store.state.set_org_backoff(until, reason=f"{obj_name}: {exc}", now=now.now())
        run.error = f"REQUEST_LIMIT_EXCEEDED: org backed off until {to_iso_ms(until)}"
        count("OrgBackoff")
        status = "backoff"
    except (SfsyncError, SalesforceError) as exc:
        run.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        run.counts["ApiCalls"] = sf.calls_made - calls_before
        try:
            _finish(run, store.state, status=status, started=started, ended=now.now(), t0=t0, reason=reason)
        except (SfsyncError, SalesforceError):
            if run.error is None:
                raise
            logger.exception("cycle bookkeeping failed after the cycle failed")
    return CycleResult(
        obj_name,
        cycle_id,
        status,
        counts=dict(run.counts),
        window_lo=run.plan.lo if run.plan else None,
        window_hi=run.plan.hi if run.plan else None,
        watermark=run.watermark,
        backlog=run.backlog,
        duration_ms=(time.monotonic() - t0) * 1000,
        error=run.error,
        extra={k: v for k, v in run.extra.items() if v},
    )


def _record_object_error(run: _Run, records: RecordStore, when: dt.datetime) -> None:
    logger.error("object cannot be synced", extra={"error": run.error})
    try:
        records.record_error(run.spec, "-", cycle_id=run.cycle_id, reason=run.error or "unavailable", when=when)
    except SfsyncError:
        logger.exception("could not write the errors-table row")


def _finish(
    run: _Run,
    state: StateStore,
    *,
    status: RunStatus,
    started: dt.datetime,
    ended: dt.datetime,
    t0: float,
    reason: str,
) -> None:
    """Release the lease, record the end time and the summary row, emit metrics and the log line."""
    obj_name, cycle_id, plan = run.spec.name, run.cycle_id, run.plan
    duration_ms = (time.monotonic() - t0) * 1000
    released = state.release_lease(
        obj_name, run.holder, cycle_id=cycle_id, ended_at=ended, status=status, resume_pending=status == "partial"
    )
    if not released:
        logger.warning("lease was lost before the cycle ended")
    state.record_cycle(
        CycleSummary(
            object_name=obj_name,
            cycle_id=cycle_id,
            status=status,
            started_at=started,
            ended_at=ended,
            counts={**run.counts, **{k: v for k, v in run.extra.items() if v}},
            window_lo=plan.lo if plan else None,
            window_hi=plan.hi if plan else None,
            watermark=run.watermark,
            reason=reason,
            error=run.error,
        )
    )
    lag = (run.sf_now - run.watermark).total_seconds() if run.sf_now and run.watermark else None
    emit_cycle_metrics(obj_name, run.counts, watermark_lag_seconds=lag, backlog=run.backlog, duration_ms=duration_ms)
    extras = {k: v for k, v in run.extra.items() if v}
    if extras or status == "failed":
        with metrics_for_object(obj_name) as single:
            for name, value in extras.items():
                single.add(name, value)
            if status == "failed":
                single.add("CycleFailed", 1)
    count(f"Cycles{status.capitalize()}")
    log = logger.error if status == "failed" else logger.info
    log(
        "cycle finished",
        extra={
            "status": status,
            "counts": run.counts,
            "lifecycle": extras,
            "window_lo": to_iso_ms(plan.lo) if plan else None,
            "window_hi": to_iso_ms(plan.hi) if plan else None,
            "watermark": to_iso_ms(run.watermark) if run.watermark else None,
            "watermark_lag_s": lag,
            "backlog": run.backlog,
            "duration_ms": round(duration_ms, 1),
            "error": run.error,
        },
    )


def _describe(run: _Run, ctx: _Ctx) -> Selection:
    name = run.spec.name
    try:
        describe = DESCRIBES.describe(ctx.sf, name, now=run.sf_now or ctx.now.now())
    except SalesforceRequestError as exc:
        if exc.error_code in _UNAVAILABLE_CODES or exc.status == 404:
            raise ObjectUnavailable(
                f"object {name} does not exist in the org or the integration user cannot read it ({exc})"
            ) from exc
        raise
    selection = select_fields(run.spec, describe)
    if selection.unreadable:
        logger.warning(
            "configured include_fields are not readable; syncing the rest",
            extra={"fields": list(selection.unreadable), "hint": f"{name}.include_fields"},
        )
        count("FieldNotReadable", len(selection.unreadable))
    return selection


def _run_window(run: _Run, ctx: _Ctx) -> RunStatus:
    spec, state, now = run.spec, ctx.store.state, ctx.now
    backoff = state.get_org_backoff()
    if backoff is not None and backoff > now.now():
        run.error = f"org backed off until {to_iso_ms(backoff)}"
        logger.info("the org is backed off; nothing read", extra={"until": to_iso_ms(backoff)})
        return "backoff"
    selection = _describe(run, ctx)
    run.sf_now, time_source = salesforce_now(ctx.sf, now)
    watermark = state.get_watermark(spec.name)
    checkpoint = state.get_checkpoint(spec.name)
    run.watermark = run.previous_watermark = watermark.value
    plan = plan_window(
        watermark=watermark.value,
        checkpoint=checkpoint,
        salesforce_now=run.sf_now,
        overlap_seconds=ctx.settings.overlap_seconds,
        lag_seconds=ctx.settings.safety_lag_seconds,
    )
    run.plan = plan
    logger.debug(
        "window planned",
        extra={"lo": to_iso_ms(plan.lo), "hi": to_iso_ms(plan.hi), "resumed": plan.resumed, "time_source": time_source},
    )
    status: RunStatus
    if plan.empty:
        run.backlog = 0
        status = "empty"
    else:
        status = _read_window(run, ctx, selection, plan, checkpoint)
        if status == "partial":
            return status
        run.backlog = 0
        run.watermark = state.complete_window(spec.name, plan.hi, holder=run.holder, now=now.now())
    # change events: what the window had to write, no event had delivered (sfsync.changes.health)
    missed = sum(run.counts[name] for name in ("RecordsCreated", "RecordsUpdated", "RecordsDeleted"))
    note_cycle(state, spec.name, missed=missed, started=run.started or now.now(), now=now.now(), settings=ctx.settings)
    if status not in ("complete", "empty"):  # an empty window is complete too: lifecycle work may be due
        return status
    if ctx.time_short():
        logger.info("no time left for the lifecycle work; the next cycle does it")
        return status
    _lifecycle_work(run, ctx, selection)
    return status


# -- reading a window ---------------------------------------------------------------------------


def _read_window(
    run: _Run, ctx: _Ctx, selection: Selection, plan: WindowPlan, checkpoint: Checkpoint | None
) -> RunStatus:
    run.position = plan.resume_after
    run.done = checkpoint.records_done if checkpoint is not None else 0
    if checkpoint is not None and checkpoint.bulk_job_id:
        try:
            return _read_bulk(run, ctx, selection, plan, checkpoint.bulk_job_id, locator=checkpoint.bulk_locator)
        except (BulkJobFailed, InvalidQueryLocator, SalesforceRequestError) as exc:
            logger.warning(
                "the checkpointed Bulk job cannot be resumed; reading the rest with REST", extra={"error": str(exc)}
            )
    _checkpoint(run, ctx, plan)
    ends = [plan.hi]
    lo = plan.lo
    while ends:
        end = ends[-1]
        try:
            outcome = _read_rest(run, ctx, selection, plan, WindowPlan(lo, end, run.position))
        except SalesforceQueryTimeout:
            mid = split_point(lo, end)
            if mid is None:
                raise
            run.extra["QuerySplits"] += 1
            logger.warning(
                "QUERY_TIMEOUT: splitting the window",
                extra={"lo": to_iso_ms(lo), "mid": to_iso_ms(mid), "hi": to_iso_ms(end)},
            )
            ends.append(mid)
            continue
        if outcome == "partial":
            return "partial"
        if outcome == "bulk":
            return _start_bulk(run, ctx, selection, plan)
        ends.pop()
        lo = end
    return "complete"


def _threshold(ctx: _Ctx, spec: ObjectSpec) -> int:
    return spec.bulk_threshold if spec.bulk_threshold is not None else ctx.settings.bulk_threshold


def _read_rest(
    run: _Run, ctx: _Ctx, selection: Selection, plan: WindowPlan, sub: WindowPlan
) -> Literal["done", "partial", "bulk"]:
    soql = build_soql(run.spec, selection.fields, sub)
    total: int | None = None
    read = 0
    for page in ctx.sf.query_pages(soql, include_deleted=True, batch_size=ctx.settings.page_size):
        if total is None:
            total = int(page.total_size)
        records: list[dict[str, Any]] = list(page.records)
        _persist(run, ctx, selection, plan, records, next_url=page.next_url)
        read += len(records)
        if not page.done:
            run.backlog = max(0, total - read)
            if total > _threshold(ctx, run.spec):
                logger.info("large backlog: reading the rest of the window with Bulk API 2.0", extra={"rows": total})
                return "bulk"
            if ctx.time_short():
                logger.info("stopping before the time limit; the next invocation resumes from the checkpoint")
                return "partial"
    return "done"


def _start_bulk(run: _Run, ctx: _Ctx, selection: Selection, plan: WindowPlan) -> RunStatus:
    soql = build_soql(run.spec, selection.fields, WindowPlan(plan.lo, plan.hi, run.position))
    job = ctx.sf.bulk_query_create(soql, operation="queryAll")
    job_id = str(job.get("id"))
    _checkpoint(run, ctx, plan, bulk_job_id=job_id)
    return _read_bulk(run, ctx, selection, plan, job_id, locator=None)


def _read_bulk(
    run: _Run, ctx: _Ctx, selection: Selection, plan: WindowPlan, job_id: str, *, locator: str | None
) -> RunStatus:
    while True:
        info = ctx.sf.bulk_job_status(job_id)
        if info.get("state") == "JobComplete":
            break
        if ctx.time_short():
            return "partial"
        ctx.sleep(BULK_POLL_SECONDS)
    types = FieldTypes.of(selection.types)
    for page in ctx.sf.bulk_results_pages(job_id, max_records=BULK_MAX_RECORDS, locator=locator):
        rows = [typed_row(row, types) for row in page.rows]
        _persist(run, ctx, selection, plan, rows, bulk_job_id=job_id, bulk_locator=page.locator)
        run.extra["BulkRows"] += len(rows)
        if page.locator is not None and ctx.time_short():
            return "partial"
    return "complete"


def _persist(
    run: _Run,
    ctx: _Ctx,
    selection: Selection,
    plan: WindowPlan,
    records: list[dict[str, Any]],
    *,
    next_url: str | None = None,
    bulk_job_id: str | None = None,
    bulk_locator: str | None = None,
) -> None:
    spec = run.spec
    outcome = ctx.store.records.write_page(
        spec,
        records,
        cycle_id=run.cycle_id,
        synced_at=ctx.now.now(),
        datetime_fields=selection.datetime_fields,
        selected_fields=selection.fields,
        exclusive=_sole_writer(run, ctx) if records else False,
    )
    _add(run.counts, outcome)
    run.counts["RecordsRead"] += len(records)
    run.done += len(records)
    last = _last_position(run, records)
    if last is not None:
        run.position = position_after(run.position, last.stamp, last.record_id)
    _checkpoint(run, ctx, plan, next_url=next_url, bulk_job_id=bulk_job_id, bulk_locator=bulk_locator)


def _sole_writer(run: _Run, ctx: _Ctx) -> bool:
    """May this page be written as the only writer of its items (batched, unconditional puts)?

    Yes only when nothing else can write the object's items between the page's consistent read and
    its writes:

    * incremental cycles of the object are excluded by the lease this cycle holds (a holder that
      outlives its lease is stopped at its next checkpoint, which is conditional on the holder);
    * a full copy does not take the lease: while one is under way (its document ``running``, or
      ``failed`` and waiting to be resumed) it may put newer versions of the same rows, which an
      unconditional put could overwrite with an older one.  The copy's document is read before
      every page (one GetItem a page), so a copy started mid-cycle turns the next page
      conditional.  No copy document, or a ``done`` copy: batched.
    * without the copy documents (``CycleStores.copies`` is None) nothing proves it: conditional.

    * the lease is read again (consistently) before every batched page: only the invocation that
      holds it - by its own token, with at least :data:`SOLE_WRITER_MARGIN_SECONDS` left - batches,
      so a cycle that outlived its lease, or a second delivery of the same event, never does.

    Every other writer (``sfsync verify`` repairs, the full copy, the lifecycle work) keeps the
    conditional put.
    """
    copies = ctx.store.copies
    if copies is None:
        return False
    state = ctx.store.state
    if not state.holds_lease(run.spec.name, run.holder, now=ctx.now.now(), margin_seconds=SOLE_WRITER_MARGIN_SECONDS):
        logger.warning("the lease is not held with time to spare: this page keeps the conditional put")
        return False
    progress = copies.progress(run.spec.name)
    return progress is None or getattr(progress, "status", None) == "done"


def _last_position(run: _Run, records: list[dict[str, Any]]) -> Position | None:
    """The page's greatest ``(cursor, key)``: one parse per distinct cursor text, not per row.

    Pages arrive ordered by ``cursor, key`` (the last row is the greatest), but the maximum is
    taken over the page so an unordered page (a Bulk result set) cannot move the position back.
    """
    cursor, key, instants = run.spec.cursor, run.spec.key, run.instants
    previous_text: str | None = None
    instant: dt.datetime | None = None
    best: tuple[dt.datetime, str] | None = None
    for record in records:
        text = str(record[cursor])
        if text != previous_text or instant is None:
            instant = instants.get(text)
            if instant is None:
                if len(instants) >= 4096:
                    instants.clear()
                instant = instants[text] = parse_instant(text)
            previous_text = text
        candidate = (instant, str(record[key]))
        if best is None or candidate > best:
            best = candidate
    return Position(*best) if best is not None else None


def _checkpoint(
    run: _Run,
    ctx: _Ctx,
    plan: WindowPlan,
    *,
    next_url: str | None = None,
    bulk_job_id: str | None = None,
    bulk_locator: str | None = None,
) -> None:
    ctx.store.state.save_checkpoint(
        run.spec.name,
        Checkpoint(run.cycle_id, plan.lo, plan.hi, run.position, next_url, run.done, bulk_job_id, bulk_locator),
        holder=run.holder,
        now=ctx.now.now(),
    )


def _add(counts: dict[str, int], outcome: PageOutcome) -> None:
    for name, value in outcome.counts.items():
        counts[name] = counts.get(name, 0) + value


# -- lifecycle work after a completed window --------------------------------------------------------


def _lifecycle_work(run: _Run, ctx: _Ctx, selection: Selection) -> None:
    spec, state, records, settings = run.spec, ctx.store.state, ctx.store.records, ctx.settings
    now = ctx.now.now()
    current = state.get_lifecycle(spec.name)

    appeared, disappeared = field_changes(current.known_fields, selection)
    run.extra["FieldsAppeared"] += len(appeared)
    run.extra["FieldsDisappeared"] += len(disappeared)
    if disappeared:
        logger.warning(
            "fields no longer readable: not read any more, stored values kept", extra={"fields": disappeared}
        )
    to_backfill = [name for name in appeared if name in selection.fields]
    if to_backfill:
        logger.info("new readable fields: back-filling stored items", extra={"fields": to_backfill})
        filled = backfill(
            ctx.sf,
            records,
            spec,
            to_backfill,
            selection,
            page_size=settings.page_size,
            cycle_id=run.cycle_id,
            synced_at=now,
        )
        run.extra["RowsBackfilled"] += filled.counts["RecordsUpdated"]
        run.counts["RecordsFailed"] += filled.counts["RecordsFailed"]

    # getDeleted coverage starts where the copy stood before this object's first cycle (the full
    # copy's watermark); an object read from the epoch has nothing it could have missed.
    covered = current.deletes_covered_until or run.previous_watermark
    gap: str | None = None
    if run.watermark is not None:
        deletes = check_deletes(
            ctx.sf,
            records,
            spec,
            covered_until=covered,
            hi=run.watermark,
            sf_now=run.sf_now or now,
            cycle_id=run.cycle_id,
            synced_at=now,
        )
        covered, gap = deletes.covered_until, deletes.gap
        run.extra["HardDeletesTombstoned"] += deletes.tombstoned
        run.counts["RecordsDeleted"] += deletes.tombstoned

    reconciled_at = current.reconciled_at
    interval = spec.reconcile_seconds if spec.reconcile_seconds is not None else settings.reconcile_seconds
    if gap is not None or (
        reconciled_at is not None
        and reconcile_due(spec, last=reconciled_at, now=now, interval_seconds=interval, gap=False)
    ):
        if gap is not None:
            logger.warning("deletes may have been missed; reconciling ids", extra={"reason": gap})
        result = reconcile(
            ctx.sf,
            records,
            spec,
            selection,
            page_size=settings.page_size,
            cycle_id=run.cycle_id,
            synced_at=now,
            write_rows=lambda rows: records.write_page(
                spec,
                rows,
                cycle_id=run.cycle_id,
                synced_at=now,
                datetime_fields=selection.datetime_fields,
                selected_fields=selection.fields,
            ),
        )
        reconciled_at = now
        run.extra["ReconcileTombstoned"] += result.tombstoned
        run.counts["RecordsDeleted"] += result.tombstoned
        if result.reread is not None:
            run.extra["ReconcileReread"] += sum(result.reread.counts.values())
            _add(run.counts, result.reread)
    elif reconciled_at is None:
        reconciled_at = now  # the schedule starts with the first cycle, which read everything

    refreshed_at = current.formulas_refreshed_at
    refresh_every = (
        spec.formula_refresh_seconds if spec.formula_refresh_seconds is not None else settings.formula_refresh_seconds
    )
    formula_appeared = any(name in selection.formulas for name in appeared)
    if selection.formulas and (formula_appeared or refresh_due(refreshed_at, now, refresh_every)):
        refreshed = refresh_formulas(
            ctx.sf, records, spec, selection, page_size=settings.page_size, cycle_id=run.cycle_id, as_of=now
        )
        refreshed_at = now
        run.extra["FormulaRowsRefreshed"] += refreshed.counts["RecordsUpdated"]
        run.counts["RecordsFailed"] += refreshed.counts["RecordsFailed"]

    state.save_lifecycle(
        spec.name,
        Lifecycle(selection.tracked, covered, reconciled_at, refreshed_at),
        holder=run.holder,
        now=ctx.now.now(),
    )


__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "EXTRA_COUNTERS",
    "LEASE_GRACE_SECONDS",
    "REQUIRED_FIELDS",
    "SKIPPED_TYPES",
    "STOP_MARGIN_MS",
    "CopyProgressPort",
    "CycleResult",
    "CycleStores",
    "Selection",
    "build_soql",
    "lease_seconds_for",
    "run_object_cycle",
    "select_fields",
]
