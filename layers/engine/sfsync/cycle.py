"""One incremental sync cycle of one object (pure logic; adapters are passed in).

``run_object_cycle`` takes the object's lease, reads ``[lo, hi)`` by ``SystemModstamp`` through
queryAll ordered by ``SystemModstamp, Id``, persists page by page with a checkpoint after each
page, stops (and checkpoints) before the Lambda time limit, advances the watermark when the window
is complete, writes the cycle summary, releases the lease and emits the log line and metrics.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sfsync.clock import Clock, parse_instant, salesforce_now, to_iso_ms, to_soql
from sfsync.config import Settings
from sfsync.exceptions import ConfigurationError, LeaseHeld, SalesforceError, SfsyncError
from sfsync.observability import CYCLE_COUNTERS, bind, count, emit_cycle_metrics, logger, tracer
from sfsync.records import RecordStore
from sfsync.registry import ObjectSpec
from sfsync.state import Checkpoint, CycleSummary, Position, StateStore, WindowPlan, plan_window, position_after

#: Stop reading new pages when less than this much Lambda time is left.
STOP_MARGIN_MS = 90_000
#: Lease length when the caller does not know its time limit.
DEFAULT_LEASE_SECONDS = 960

#: describe types never selected: compound values (their components are fields of their own) and
#: blobs (REST returns a URL per row, not the content).
SKIPPED_TYPES = frozenset({"address", "location", "base64"})
REQUIRED_FIELDS = ("IsDeleted",)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")

RunStatus = Literal["complete", "partial", "empty", "failed"]
Status = RunStatus | Literal["lease-held"]


class SalesforcePort(Protocol):
    """What a cycle needs from the Salesforce adapter."""

    calls_made: int

    def describe(self, obj: str) -> dict[str, Any]: ...

    def query_pages(self, soql: str, *, include_deleted: bool = True, batch_size: int = 2000) -> Iterator[Any]: ...


@dataclass(frozen=True, slots=True)
class CycleStores:
    state: StateStore
    records: RecordStore


@dataclass(frozen=True, slots=True)
class Selection:
    """The SELECT list of an object for this cycle and which of its fields are datetimes."""

    fields: tuple[str, ...]
    datetime_fields: frozenset[str]


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": self.object_name,
            "cycle_id": self.cycle_id,
            "status": self.status,
            "counts": dict(self.counts),
            "window": {
                "lo": to_iso_ms(self.window_lo) if self.window_lo else None,
                "hi": to_iso_ms(self.window_hi) if self.window_hi else None,
            },
            "watermark": to_iso_ms(self.watermark) if self.watermark else None,
            "backlog": self.backlog,
            "duration_ms": round(self.duration_ms, 1),
            "held_by": self.held_by,
        }


# -- field selection and SOQL --------------------------------------------------------------------


def select_fields(spec: ObjectSpec, describe: Mapping[str, Any]) -> Selection:
    """The fields to read, from describe (what the integration user can see) and the spec's options."""
    visible: dict[str, Mapping[str, Any]] = {}
    for f in describe.get("fields") or []:
        name = f.get("name")
        if isinstance(name, str) and _NAME.match(name):
            visible[name] = f
    required = (spec.key, spec.cursor, *REQUIRED_FIELDS)
    missing = [name for name in required if name not in visible]
    if missing:
        raise ConfigurationError(
            f"{spec.name} cannot be synced incrementally: the integration user cannot read {', '.join(missing)}"
        )
    if spec.include_fields:
        unknown = [name for name in spec.include_fields if name not in visible]
        if unknown:
            raise ConfigurationError(f"{spec.name}.include_fields not visible in describe: {', '.join(unknown)}")
    not_excludable = [name for name in spec.exclude_fields if name in required]
    if not_excludable:
        raise ConfigurationError(f"{spec.name}.exclude_fields cannot exclude {', '.join(not_excludable)}")

    chosen: list[str] = []
    for name, f in visible.items():
        if name not in required:
            if spec.include_fields and name not in spec.include_fields:
                continue
            if name in spec.exclude_fields:
                continue
            if f.get("type") in SKIPPED_TYPES:
                continue
            if f.get("calculated") and not spec.include_formulas:
                continue
        chosen.append(name)
    datetimes = frozenset(name for name in chosen if visible[name].get("type") == "datetime")
    return Selection(tuple(chosen), datetimes)


def build_soql(spec: ObjectSpec, fields: Iterable[str], plan: WindowPlan) -> str:
    """``SELECT … FROM X WHERE cursor >= lo AND cursor < hi [AND after(position)] ORDER BY cursor, key``."""
    names = list(fields)
    for name in (*names, spec.name, spec.cursor, spec.key):
        if not _NAME.match(name):
            raise ConfigurationError(f"refusing to put {name!r} into SOQL")
    cursor, key = spec.cursor, spec.key
    where = f"{cursor} >= {to_soql(plan.lo)} AND {cursor} < {to_soql(plan.hi)}"
    if plan.resume_after is not None:
        stamp = to_soql(plan.resume_after.stamp)
        record_id = plan.resume_after.record_id
        if not _RECORD_ID.match(record_id):
            raise ValueError(f"checkpoint holds a malformed record id {record_id!r}")
        where += f" AND ({cursor} > {stamp} OR ({cursor} = {stamp} AND {key} > '{record_id}'))"
    return f"SELECT {', '.join(names)} FROM {spec.name} WHERE {where} ORDER BY {cursor}, {key}"


# -- the cycle -------------------------------------------------------------------------------------


@dataclass
class _Run:
    spec: ObjectSpec
    cycle_id: str
    counts: dict[str, int]
    plan: WindowPlan | None = None
    watermark: dt.datetime | None = None
    backlog: int | None = None
    sf_now: dt.datetime | None = None


@tracer.capture_method(capture_response=False)
def run_object_cycle(
    obj_name: str,
    cycle_id: str,
    *,
    settings: Settings,
    sf: SalesforcePort,
    store: CycleStores,
    now: Clock,
    reason: str = "due",
    time_left_ms: Callable[[], int] | None = None,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    stop_margin_ms: int = STOP_MARGIN_MS,
) -> CycleResult:
    """Run one cycle of ``obj_name``; a held lease gives a clean no-op result."""
    spec = settings.registry.get(obj_name)
    bind(object=obj_name, cycle_id=cycle_id, reason=reason)
    started = now.now()
    t0 = time.monotonic()
    calls_before = sf.calls_made
    try:
        store.state.acquire_lease(obj_name, cycle_id, now=started, ttl_seconds=lease_seconds)
    except LeaseHeld as exc:
        logger.info("lease held by another cycle; nothing to do", extra={"held_by": exc.holder})
        count("LeaseHeld")
        return CycleResult(obj_name, cycle_id, "lease-held", held_by=exc.holder)

    run = _Run(spec, cycle_id, dict.fromkeys(CYCLE_COUNTERS, 0))
    status: RunStatus = "failed"
    error: str | None = None
    try:
        status = _run_window(
            run,
            settings=settings,
            sf=sf,
            store=store,
            now=now,
            time_left_ms=time_left_ms,
            stop_margin_ms=stop_margin_ms,
        )
    except (SfsyncError, SalesforceError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        run.counts["ApiCalls"] = sf.calls_made - calls_before
        try:
            _finish(
                run, store.state, status=status, error=error, started=started, ended=now.now(), t0=t0, reason=reason
            )
        except (SfsyncError, SalesforceError):
            if error is None:
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
    )


def _finish(
    run: _Run,
    state: StateStore,
    *,
    status: RunStatus,
    error: str | None,
    started: dt.datetime,
    ended: dt.datetime,
    t0: float,
    reason: str,
) -> None:
    """Release the lease, record the end time and the summary row, emit metrics and the log line."""
    obj_name, cycle_id, plan = run.spec.name, run.cycle_id, run.plan
    duration_ms = (time.monotonic() - t0) * 1000
    if not state.release_lease(obj_name, cycle_id, ended_at=ended, status=status, resume_pending=status == "partial"):
        logger.warning("lease was lost before the cycle ended")
    state.record_cycle(
        CycleSummary(
            object_name=obj_name,
            cycle_id=cycle_id,
            status=status,
            started_at=started,
            ended_at=ended,
            counts=dict(run.counts),
            window_lo=plan.lo if plan else None,
            window_hi=plan.hi if plan else None,
            watermark=run.watermark,
            reason=reason,
            error=error,
        )
    )
    lag = (run.sf_now - run.watermark).total_seconds() if run.sf_now and run.watermark else None
    emit_cycle_metrics(obj_name, run.counts, watermark_lag_seconds=lag, backlog=run.backlog, duration_ms=duration_ms)
    count(f"Cycles{status.capitalize()}")
    log = logger.error if status == "failed" else logger.info
    log(
        "cycle finished",
        extra={
            "status": status,
            "counts": run.counts,
            "window_lo": to_iso_ms(plan.lo) if plan else None,
            "window_hi": to_iso_ms(plan.hi) if plan else None,
            "watermark": to_iso_ms(run.watermark) if run.watermark else None,
            "backlog": run.backlog,
            "duration_ms": round(duration_ms, 1),
            "error": error,
        },
    )


def _run_window(
    run: _Run,
    *,
    settings: Settings,
    sf: SalesforcePort,
    store: CycleStores,
    now: Clock,
    time_left_ms: Callable[[], int] | None,
    stop_margin_ms: int,
) -> RunStatus:
    spec, cycle_id, state = run.spec, run.cycle_id, store.state
    selection = select_fields(spec, sf.describe(spec.name))
    run.sf_now, time_source = salesforce_now(sf, now)
    watermark = state.get_watermark(spec.name)
    checkpoint = state.get_checkpoint(spec.name)
    run.watermark = watermark.value
    plan = plan_window(
        watermark=watermark.value,
        checkpoint=checkpoint,
        salesforce_now=run.sf_now,
        overlap_seconds=settings.overlap_seconds,
        lag_seconds=settings.safety_lag_seconds,
    )
    run.plan = plan
    logger.debug(
        "window planned",
        extra={"lo": to_iso_ms(plan.lo), "hi": to_iso_ms(plan.hi), "resumed": plan.resumed, "time_source": time_source},
    )
    if plan.empty:
        run.backlog = 0
        return "empty"

    position: Position | None = plan.resume_after
    done = checkpoint.records_done if checkpoint is not None else 0
    state.save_checkpoint(
        spec.name, Checkpoint(cycle_id, plan.lo, plan.hi, position, None, done), holder=cycle_id, now=now.now()
    )
    soql = build_soql(spec, selection.fields, plan)
    read_in_query = 0
    total: int | None = None
    for page in sf.query_pages(soql, include_deleted=True, batch_size=settings.page_size):
        if total is None:
            total = int(page.total_size)
        records: list[dict[str, Any]] = list(page.records)
        outcome = store.records.write_page(
            spec, records, cycle_id=cycle_id, synced_at=now.now(), datetime_fields=selection.datetime_fields
        )
        for name, value in outcome.counts.items():
            run.counts[name] += value
        run.counts["RecordsRead"] += len(records)
        read_in_query += len(records)
        done += len(records)
        for record in records:
            position = position_after(position, parse_instant(str(record[spec.cursor])), str(record[spec.key]))
        state.save_checkpoint(
            spec.name,
            Checkpoint(cycle_id, plan.lo, plan.hi, position, page.next_url, done),
            holder=cycle_id,
            now=now.now(),
        )
        if not page.done and time_left_ms is not None and time_left_ms() < stop_margin_ms:
            run.backlog = max(0, total - read_in_query)
            logger.info("stopping before the time limit; the next invocation resumes from the checkpoint")
            return "partial"
    run.backlog = 0
    run.watermark = state.complete_window(spec.name, plan.hi, holder=cycle_id, now=now.now())
    return "complete"


__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "STOP_MARGIN_MS",
    "CycleResult",
    "CycleStores",
    "SalesforcePort",
    "Selection",
    "build_soql",
    "run_object_cycle",
    "select_fields",
]
