"""The first full copy of an object: the engine logic of the full-sync workflow's steps.

This module holds the per-object steps and the router (:func:`run_step`); the steps around the
per-object loop (``plan``, ``plan_failed``, ``summarize``, ``continue_as_new``) are in
:mod:`sfsync.fullcopy.planning`, the adapters they share in :mod:`sfsync.fullcopy.deps`.

The state machine (``statemachine/full_sync.asl.json``) runs, per object, ``start_job`` ->
(``Wait`` + ``poll_job``)* -> ``load_page``* -> ``finish``, routed by the ``next`` field every step
returns; ``mark_failed`` is the Catch target.  Each step is a plain function ``step(event, deps)``
that validates its input (:class:`InvalidExecutionInput` before any work) and returns the dict the
state machine passes on.  The workflow's input is checked by ``plan``.

**The copy document is the truth, not the execution.**  Everything a step needs to continue (the
Bulk job of the current part, its next locator, the REST cursor, counts) lives in one item of the
state table (``pk=OBJECT#<name>``, ``sk=FULLCOPY``), written with an optimistic ``version`` check.
A step re-run after a kill, a Step Functions retry, or a brand-new execution reads it and carries on
from the last checkpoint; a page is checkpointed only *after* it is persisted, and the records are
written with the incremental sync's monotonic rule (an item is replaced only by a version with an
equal or newer ``SystemModstamp``), so re-reading a page never changes the result.

**Parts.**  A copy is a list of parts, each read by one Bulk 2.0 ``queryAll`` job (or by REST):
a ``SystemModstamp`` range ``[lo, hi)`` and, once cut by Id, an ``Id`` range ``[id_lo, id_hi)``
(open ends allowed).  It starts as one unbounded part.  A failed job is retried
``max_job_attempts`` times, then its part is split into ``split_factor`` pieces (recursively up to
``max_split_depth``), and a part that still fails is read with REST (``queryAll`` ordered by
``SystemModstamp, Id``, resumable by keyset when the cursor expires).  The first split cuts the
``SystemModstamp`` range; a piece that fails again is cut by ``Id`` (:func:`split_kind`): its rows
are dense in time - a mass update stamps thousands of rows with one second, which no stamp cut can
spread - while Id ranges, cut evenly between the piece's lowest and highest Id, divide rows by
count.  A stamp range too narrow to cut is cut by Id at once.  Objects Bulk cannot query
(:data:`sfsync.core.registry.BULK_UNSUPPORTED_OBJECTS`, or a query Bulk refuses with HTTP 400) are read with REST from
the start.

**Watermark.**  ``finish`` sets the watermark to the earliest Salesforce-clock start of any job (or
REST query) of the copy minus the safety overlap: a record changed after its part was read has a
``SystemModstamp`` at or after that start, so the first incremental cycle reads it.

**Writes.**  Rows become items by the one item codec (:mod:`sfsync.items`): Bulk CSV rows are
typed as REST would type them (:func:`sfsync.items.csv.typed_row`), then every row goes through
:func:`sfsync.items.codec.to_item` and :func:`sfsync.items.codec.encode`, which writes the item's
DynamoDB wire JSON and, for two-way objects (``ObjectSpec.writes_back``), its base snapshot ``_base``
in one pass, so the copy's writes are never mistaken for local changes.  DynamoDB's number and
size rules are checked there; a row that breaks them goes to the errors table and the page goes on.
Items not yet in the table are written with ``BatchWriteItem`` (25 per request) after a
``BatchGetItem`` of the keys; rows whose item exists go through
:meth:`sfsync.store.records.RecordStore.write_items` (conditional ``PutItem``, with its two-way rules: a
row identical to the stored base is skipped, so a pending local edit survives a re-read page).
The get-then-batch-put is race-free only because no other writer touches an object while its copy
runs (the dispatcher holds the incremental cycles back until ``full_copy_done``).  Both batch calls
go through :mod:`sfsync.store.ddb_wire` (signing, retries and error parsing stay botocore's); the batch
put's body is the finished JSON text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sfsync.core.clock import parse_instant, salesforce_now, to_iso_ms
from sfsync.core.exceptions import (
    BulkJobFailed,
    CopyConflict,
    InvalidExecutionInput,
    InvalidQueryLocator,
    SalesforceQueryTimeout,
    SalesforceRequestError,
)
from sfsync.core.observability import bind, count, logger, metrics_for_object
from sfsync.core.registry import ObjectSpec
from sfsync.fullcopy.deps import FullSyncDeps, note_copy_failure, validate_input
from sfsync.fullcopy.plan import (
    CopyPolicy,
    Next,
    _range_where,
    bulk_soql,
    failure_action,
    poll_wait_seconds,
    rest_soql,
    split_id_range,
    split_range,
)
from sfsync.fullcopy.planning import continue_as_new, plan, plan_failed, summarize
from sfsync.inbound.fields import check_soql_names
from sfsync.items.csv import FieldTypes
from sfsync.salesforce import BulkPage
from sfsync.store.batch_loader import BatchLoader
from sfsync.store.copies import SAVE_ATTEMPTS, Copy, Part, progress_figures

# ------------------------------------------------------------------------------------------------
# Step inputs
# ------------------------------------------------------------------------------------------------

_OBJECT = r"^[A-Za-z][A-Za-z0-9_]{0,79}$"


class _StepInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str | None = None
    object: str = Field(pattern=_OBJECT)
    execution_id: str | None = None
    requested_by: str | None = None
    pages_this_execution: int = Field(default=0, ge=0)


class _FailedInput(_StepInput):
    error: dict[str, Any] = Field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# Steps
# ------------------------------------------------------------------------------------------------


def _copy_step(
    event: Any, deps: FullSyncDeps, step: str, action: Callable[[Copy, int], Next], *, pages_read: int = 0
) -> dict[str, Any]:
    """Validate a per-object step's input, run ``action(copy, pages_this_execution)`` on the copy
    document, and pass the execution's page count on (plus ``pages_read``)."""
    request = validate_input(_StepInput, event, step)
    out = _with_copy(
        deps, request.object, lambda copy: action(copy, request.pages_this_execution), execution=request.execution_id
    )
    return {**out, "pages_this_execution": request.pages_this_execution + pages_read}


def start_job(event: Any, deps: FullSyncDeps) -> dict[str, Any]:
    """Make sure the current part has a live Bulk job (reusing a recorded one), or route onwards."""
    return _copy_step(event, deps, "start_job", lambda copy, _: _start(copy, deps))


def poll_job(event: Any, deps: FullSyncDeps) -> dict[str, Any]:
    """Refresh the current part's job; a Failed job is retried, split or handed to REST here."""
    return _copy_step(event, deps, "poll_job", lambda copy, _: _poll(copy, deps))


def load_page(event: Any, deps: FullSyncDeps) -> dict[str, Any]:
    """Persist ONE result set (Bulk, by locator) or up to ``max_records`` REST rows, then checkpoint."""
    return _copy_step(event, deps, "load_page", lambda copy, pages: _load(copy, deps, pages), pages_read=1)


def finish(event: Any, deps: FullSyncDeps) -> dict[str, Any]:
    """All parts copied: watermark = earliest job start - overlap; the copy is done."""
    return _copy_step(event, deps, "finish", lambda copy, _: _finish(copy, deps))


def mark_failed(event: Any, deps: FullSyncDeps) -> dict[str, Any]:
    """Record why the object's copy failed and emit the alarmable metric; never raises for the error.

    A copy another execution has taken over meanwhile is left alone (route ``superseded``).
    """
    request = validate_input(_FailedInput, event, "mark_failed")
    if request.object not in deps.settings.registry:
        raise InvalidExecutionInput(f"mark_failed: object {request.object!r} is not configured")
    error = {str(k): str(v)[:2000] for k, v in request.error.items()}
    execution = request.execution_id

    def superseded(copy: Copy) -> bool:
        return execution is not None and copy.execution_arn not in (None, execution)

    copy = deps.copies.record_failure(
        request.object,
        error,
        now=deps.clock.now(),
        requested_by=request.requested_by,
        policy=asdict(deps.policy),
        unless=superseded,
    )
    if copy is None:
        current = deps.copies.get(request.object)
        assert current is not None
        return _output(current, deps, "superseded")
    note_copy_failure(request.object, error)
    return _output(copy, deps, "failed")


STEPS = {
    "plan": plan,
    "plan_failed": plan_failed,
    "start_job": start_job,
    "poll_job": poll_job,
    "load_page": load_page,
    "finish": finish,
    "mark_failed": mark_failed,
    "summarize": summarize,
    "continue_as_new": continue_as_new,
}


def run_step(event: Any, deps: FullSyncDeps) -> dict[str, Any]:
    """The handler's entry point: ``{"step": "<name>", ...}`` -> that step."""
    step = event.get("step") if isinstance(event, Mapping) else None
    if step not in STEPS:
        count("InvalidExecutionInput")
        raise InvalidExecutionInput(f"unknown full-sync step {step!r} (known: {', '.join(STEPS)})")
    return STEPS[step](event, deps)


# ------------------------------------------------------------------------------------------------
# Step internals
# ------------------------------------------------------------------------------------------------


def _with_copy(deps: FullSyncDeps, object_name: str, action: Any, *, execution: str | None = None) -> dict[str, Any]:
    """Run ``action(copy)`` on a fresh read of the copy document; retried on a version conflict.

    ``action`` returns the ``next`` route after mutating ``copy``; Salesforce work done before a
    conflict is not lost (the records are idempotent; a job created twice is only a spare job).

    Exactly one execution drives a copy: a step of ``execution`` on a copy another execution has
    taken over (``plan`` of a newer execution) does nothing and routes ``superseded``; a copy marked
    failed meanwhile (by the dispatcher's reconciliation) routes ``failed``.  A copy without an owner
    is adopted by the first execution that works on it.
    """
    if object_name not in deps.settings.registry:
        count("InvalidExecutionInput")
        raise InvalidExecutionInput(f"object {object_name!r} is not configured for sync")
    bind(object=object_name)
    for _attempt in range(SAVE_ATTEMPTS):
        copy = deps.copies.get(object_name)
        if copy is None:
            count("InvalidExecutionInput")
            raise InvalidExecutionInput(f"{object_name} has no planned full copy; the workflow starts with 'plan'")
        if copy.status == "done":
            return _output(copy, deps, "done")
        if execution is not None and copy.execution_arn not in (None, execution):
            logger.warning("another execution has taken this copy over", extra={"owner": copy.execution_arn})
            return _output(copy, deps, "superseded")
        if copy.status == "failed":
            logger.warning("the copy was marked failed meanwhile; this execution stops working on it")
            return _output(copy, deps, "failed")
        if execution is not None:
            copy.execution_arn = execution
        calls_before = deps.sf.calls_made
        route: Next = action(copy)
        copy.api_calls += deps.sf.calls_made - calls_before
        if deps.copies.save(copy, now=deps.clock.now()):
            return _output(copy, deps, route)
        logger.warning("the copy document changed under this step; re-reading it")
    raise CopyConflict(f"the full copy of {object_name} kept changing under this step")


def _spec(copy: Copy, deps: FullSyncDeps) -> ObjectSpec:
    return deps.settings.registry.get(copy.object_name)


def _policy(copy: Copy) -> CopyPolicy:
    return CopyPolicy(**copy.policy)


def _note_start(copy: Copy, started: dt.datetime) -> None:
    """The copy's start on Salesforce's clock: the earliest start of any of its jobs or queries."""
    if copy.copy_started_at is None or started < parse_instant(copy.copy_started_at):
        copy.copy_started_at = to_iso_ms(started)


def _route_for_part(copy: Copy) -> Next:
    index = copy.current
    if index is None:
        return "finish"
    part = copy.parts[index]
    if part.mode == "rest":
        return "load"
    if part.job_id is None:
        return "start"
    return "load" if part.job_state == "JobComplete" else "wait"


def _start(copy: Copy, deps: FullSyncDeps) -> Next:
    index = copy.current
    if index is None:
        return "finish"
    part = copy.parts[index]
    if part.mode == "rest":
        return "load"
    if part.job_id is not None:
        return _poll(copy, deps)
    spec = _spec(copy, deps)
    lo, hi = part.bounds()
    soql = bulk_soql(spec, copy.fields, lo, hi, ids=part.ids)
    try:
        job = deps.sf.bulk_query_create(soql, operation="queryAll")
    except (BulkJobFailed, SalesforceQueryTimeout) as exc:
        part.attempts += 1
        copy.bulk_jobs += 1
        return _after_failure(copy, index, deps, str(exc))
    except SalesforceRequestError as exc:
        if exc.status == 400:  # Bulk refuses this query (unsupported object or field): REST reads it
            part.mode = "rest"
            copy.warnings.append(f"Bulk API refused the query ({exc}); part {index} is read with REST")
            logger.warning("bulk query refused; falling back to REST", extra={"error": str(exc)})
            return "load"
        raise
    copy.bulk_jobs += 1
    part.job_id = str(job["id"])
    part.job_state = str(job.get("state"))
    part.attempts += 1
    part.polls = 0
    part.locator, part.records_done, part.started = None, 0, False
    created = job.get("createdDate")
    started = parse_instant(str(created)) if created else salesforce_now(deps.sf, deps.clock)[0]
    part.job_created = to_iso_ms(started)
    _note_start(copy, started)
    logger.info("bulk job created", extra={"job_id": part.job_id, "part": index, "attempt": part.attempts})
    return "load" if part.job_state == "JobComplete" else "wait"


def _poll(copy: Copy, deps: FullSyncDeps) -> Next:
    index = copy.current
    if index is None:
        return "finish"
    part = copy.parts[index]
    if part.mode == "rest":
        return "load"
    if part.job_id is None:
        return "start"
    try:
        job = deps.sf.bulk_job_status(part.job_id)
    except BulkJobFailed as exc:
        return _after_failure(copy, index, deps, str(exc))
    except SalesforceRequestError as exc:
        if exc.status == 404:  # the job is gone (deleted or expired): start the part over
            _forget_job(copy, part)
            return "start"
        raise
    part.polls += 1
    part.job_state = str(job.get("state"))
    if part.job_state == "JobComplete":
        processed = job.get("numberRecordsProcessed")
        if isinstance(processed, int):
            part.total = processed
        return "load"
    return "wait"


def _forget_job(copy: Copy, part: Part) -> None:
    """Drop the part's job; rows it already loaded will be read again, so they are uncounted."""
    copy.records_copied -= part.records_done
    part.job_id = part.job_state = part.job_created = part.locator = None
    part.polls, part.records_done, part.started, part.total = 0, 0, False, None


def _after_failure(copy: Copy, index: int, deps: FullSyncDeps, reason: str) -> Next:
    part = copy.parts[index]
    copy.bulk_failures += 1
    policy = _policy(copy)
    action = failure_action(part.attempts, part.depth, policy)
    logger.warning(
        "bulk job failed", extra={"part": index, "attempts": part.attempts, "action": action, "error": reason}
    )
    with metrics_for_object(copy.object_name) as m:
        m.add("FullSyncBulkJobFailed", 1)
    _forget_job(copy, part)
    if action == "retry":
        return "start"
    if action == "split":
        pieces = _split(copy, part, deps, policy)
        if len(pieces) > 1:
            copy.splits += 1
            copy.parts[index : index + 1] = pieces
            kind = "Id" if pieces[0].split_by == "id" else "SystemModstamp"
            copy.warnings.append(f"part {index} split into {len(pieces)} {kind} ranges after: {reason[:200]}")
            logger.info("part split", extra={"part": index, "pieces": len(pieces), "by": kind})
            return "start"
    part.mode = "rest"
    copy.warnings.append(f"part {index} read with REST after failed Bulk jobs: {reason[:200]}")
    return "load"


def split_kind(part: Part) -> Literal["stamp", "id"]:
    """How a failed part is cut: by ``SystemModstamp`` first; by ``Id`` once a piece of a stamp split
    (or of an Id split) fails again - its rows are dense in time (a mass update stamps thousands of
    rows with one second), which more stamp cuts cannot spread, while Id ranges split by count."""
    return "stamp" if part.split_by is None else "id"


def _split(copy: Copy, part: Part, deps: FullSyncDeps, policy: CopyPolicy) -> list[Part]:
    """The part's pieces (``[part]`` when it cannot be cut): see :func:`split_kind`; a stamp range too
    narrow to cut (every row on a few stamps) is cut by Id instead."""
    if split_kind(part) == "stamp":
        pieces = _split_by_stamp(copy, part, deps, policy)
        if len(pieces) > 1:
            return pieces
    return _split_by_id(copy, part, deps, policy)


def _first_row(deps: FullSyncDeps, soql: str) -> dict[str, Any] | None:
    page = next(iter(deps.sf.query_pages(soql, include_deleted=True)), None)
    records = list(page.records) if page is not None else []
    return dict(records[0]) if records else None


def _split_by_stamp(copy: Copy, part: Part, deps: FullSyncDeps, policy: CopyPolicy) -> list[Part]:
    spec = _spec(copy, deps)
    lo, hi = part.bounds()
    first = lo
    if first is None:  # where the data starts: one REST row (a split's only non-Bulk calls)
        row = _first_row(deps, rest_soql(spec, [spec.cursor, spec.key], None, hi, ids=part.ids) + " LIMIT 1")
        if row is None:
            return [part]
        first = parse_instant(str(row[spec.cursor]))
    last = hi if hi is not None else salesforce_now(deps.sf, deps.clock)[0]
    if last <= first:
        return [part]
    ranges = split_range(lo, hi, first=first, last=last, factor=policy.split_factor)
    return [
        Part(
            lo=to_iso_ms(a) if a else None,
            hi=to_iso_ms(b) if b else None,
            depth=part.depth + 1,
            mode="bulk",
            id_lo=part.id_lo,
            id_hi=part.id_hi,
            split_by="stamp",
        )
        for a, b in ranges
    ]


def _split_by_id(copy: Copy, part: Part, deps: FullSyncDeps, policy: CopyPolicy) -> list[Part]:
    """Cut the part's Id range evenly between its lowest and highest Id (two one-row REST queries);
    every piece keeps the part's ``SystemModstamp`` range, so the pieces cover exactly the part."""
    spec = _spec(copy, deps)
    lo, hi = part.bounds()
    check_soql_names(spec.name, spec.key)
    where = _range_where(spec.cursor, lo, hi, key=spec.key, ids=part.ids)
    base = f"SELECT {spec.key} FROM {spec.name}" + (f" WHERE {' AND '.join(where)}" if where else "")
    first = _first_row(deps, f"{base} ORDER BY {spec.key} ASC LIMIT 1")
    last = _first_row(deps, f"{base} ORDER BY {spec.key} DESC LIMIT 1")
    if first is None or last is None:
        return [part]
    cuts = split_id_range(str(first[spec.key]), str(last[spec.key]), factor=policy.split_factor)
    if not cuts:
        return [part]
    bounds: list[str | None] = [part.id_lo, *cuts, part.id_hi]
    return [
        Part(
            lo=part.lo,
            hi=part.hi,
            depth=part.depth + 1,
            mode="bulk",
            id_lo=bounds[i],
            id_hi=bounds[i + 1],
            split_by="id",
        )
        for i in range(len(bounds) - 1)
    ]


def _load(copy: Copy, deps: FullSyncDeps, pages_this_execution: int) -> Next:
    index = copy.current
    if index is None:
        return "finish"
    part = copy.parts[index]
    if part.mode == "bulk":
        if part.job_id is None:
            return "start"
        if part.job_state != "JobComplete":
            return "wait"
        route = _load_bulk(copy, index, deps)
    else:
        route = _load_rest(copy, index, deps)
    if route == "load" and pages_this_execution + 1 >= _policy(copy).pages_per_execution:
        return "continue"
    return route


def _after_part(copy: Copy) -> Next:
    return _route_for_part(copy)


def _persist(copy: Copy, deps: FullSyncDeps, source: BulkPage | Iterable[Mapping[str, Any]]) -> int:
    """Write a Bulk result set's CSV lines (no dict per row) or REST rows; returns how many were read.

    Counters are added to the copy.
    """
    loader = BatchLoader(deps.dynamodb, deps.records)
    spec = _spec(copy, deps)
    target: dict[str, Any] = {
        "copy_id": copy.copy_id,
        "synced_at": deps.clock.now(),
        "types": FieldTypes.from_doc(copy.types),
        "selected_fields": copy.fields,
    }
    if isinstance(source, BulkPage):
        header, lines = source.columns()
        counted: _Counted[Any] = _Counted(lines)
        outcome = loader.write_lines(spec, header, counted, **target)
    else:
        counted = _Counted(source)
        outcome = loader.write(spec, counted, bulk_csv=False, **target)
    for name, value in outcome.items():
        copy.counts[name] = copy.counts.get(name, 0) + value
    return counted.read


class _Counted[T]:
    """Iterates ``source`` once, counting what it gives."""

    def __init__(self, source: Iterable[T]) -> None:
        self._source = source
        self.read = 0

    def __iter__(self) -> Iterator[T]:
        for row in self._source:
            self.read += 1
            yield row


def _load_bulk(copy: Copy, index: int, deps: FullSyncDeps) -> Next:
    part = copy.parts[index]
    assert part.job_id is not None
    pages = deps.sf.bulk_results_pages(part.job_id, max_records=_policy(copy).max_records, locator=part.locator)
    try:
        page = next(pages, None)
    except InvalidQueryLocator:
        logger.warning("the job's result locator expired; the part starts over with a new job")
        _forget_job(copy, part)
        return "start"
    except SalesforceRequestError as exc:
        if exc.status != 404:
            raise
        _forget_job(copy, part)
        return "start"
    try:
        read = 0 if page is None else _persist(copy, deps, page)
        next_locator = None if page is None else page.locator
    finally:
        close = getattr(pages, "close", None)
        if callable(close):
            close()
    part.started = True
    part.locator = next_locator
    part.records_done += read
    copy.records_copied += read
    copy.pages += 1
    if next_locator is None:
        part.done = True
        if part.total is None:
            part.total = part.records_done
    return _after_part(copy)


def _load_rest(copy: Copy, index: int, deps: FullSyncDeps) -> Next:
    part = copy.parts[index]
    spec = _spec(copy, deps)
    limit = _policy(copy).max_records
    loaded = 0
    while True:
        page = None
        if part.next_url:
            try:
                page = deps.sf.query_more(part.next_url, include_deleted=True)
            except InvalidQueryLocator:
                logger.warning("REST cursor expired; resuming the part after its last persisted row")
                part.next_url = None
        if page is None:
            if not part.started:
                _note_start(copy, salesforce_now(deps.sf, deps.clock)[0])
            lo, hi = part.bounds()
            after = (part.rest_after[0], part.rest_after[1]) if part.rest_after else None
            soql = rest_soql(spec, copy.fields, lo, hi, after, ids=part.ids)
            page = next(iter(deps.sf.query_pages(soql, include_deleted=True, batch_size=2000)))
            part.total = part.records_done + int(page.total_size)
        records: list[dict[str, Any]] = list(page.records)
        read = _persist(copy, deps, records)
        part.started = True
        if records:
            last = records[-1]
            part.rest_after = [str(last[spec.cursor]), str(last[spec.key])]
        part.next_url = page.next_url
        part.records_done += read
        copy.records_copied += read
        copy.pages += 1
        loaded += read
        if page.done or not page.next_url:
            part.done = True
            part.next_url = None
            return _after_part(copy)
        if loaded >= limit:
            return "load"
        # persist the checkpoint after every REST page: a kill loses at most the page in flight
        if not deps.copies.save(copy, now=deps.clock.now()):
            raise CopyConflict(f"the full copy of {copy.object_name} changed during a REST page")


def _finish(copy: Copy, deps: FullSyncDeps) -> Next:
    route = _route_for_part(copy)
    if route != "finish":
        return route
    started = parse_instant(copy.copy_started_at) if copy.copy_started_at else None
    if started is None:  # nothing was ever read (no part started): use Salesforce's clock now
        started = salesforce_now(deps.sf, deps.clock)[0]
    watermark = started - dt.timedelta(seconds=deps.settings.overlap_seconds)
    deps.state.set_full_copy_watermark(copy.object_name, watermark, by=f"fullsync:{copy.copy_id}")
    copy.watermark = to_iso_ms(watermark)
    copy.status = "done"
    copy.failures = 0
    copy.error = None
    copy.finished_at = to_iso_ms(deps.clock.now())
    logger.info(
        "full copy done",
        extra={"records_copied": copy.records_copied, "watermark": copy.watermark, "api_calls": copy.api_calls},
    )
    return "done"


def _output(copy: Copy, deps: FullSyncDeps, route: Next) -> dict[str, Any]:
    """What the state machine passes on (and the execution's output shows per object)."""
    index = copy.current
    part = copy.parts[index] if index is not None else None
    policy = _policy(copy) if copy.policy else deps.policy
    now = deps.clock.now()
    elapsed = (now - parse_instant(copy.engine_started_at)).total_seconds() if copy.engine_started_at else 0.0
    total = copy.total
    figures = progress_figures(copy.records_copied, total, elapsed)
    if route in ("load", "finish", "done"):
        with metrics_for_object(copy.object_name) as m:
            m.add("FullSyncRecordsCopied", copy.records_copied)
            if figures["rate_per_s"] is not None:
                m.add("FullSyncRecordsPerSecond", figures["rate_per_s"])
            if figures["eta_seconds"] is not None:
                m.add("FullSyncEtaSeconds", figures["eta_seconds"])
            if total:
                m.add("FullSyncProgressPercent", 100.0 * copy.records_copied / total)
    return {
        "object": copy.object_name,
        "copy_id": copy.copy_id,
        "status": copy.status,
        "next": route,
        "wait_seconds": poll_wait_seconds(part.polls if part else 0, policy),
        "mode": part.mode if part else None,
        "part": index,
        "parts": len(copy.parts),
        "job_id": part.job_id if part else None,
        "job_state": part.job_state if part else None,
        "locator": part.locator if part else None,
        "records_copied": copy.records_copied,
        "total": total,
        "rate_per_s": figures["rate_per_s"],
        "eta_seconds": figures["eta_seconds"],
        "pages": copy.pages,
        "api_calls": copy.api_calls,
        "bulk_jobs": copy.bulk_jobs,
        "bulk_failures": copy.bulk_failures,
        "watermark": copy.watermark,
        "error": copy.error,
    }


__all__ = [
    "STEPS",
    "finish",
    "load_page",
    "mark_failed",
    "poll_job",
    "run_step",
    "split_kind",
    "start_job",
]
