"""The first full copy of each object, as the dispatcher's tick decides and heals it.

Before the due check (:func:`sfsync.dispatch.dispatcher.dispatch`, ``copies``: :class:`FullCopies`)
every object's copy state is read - its watermark, its copy document
(:class:`sfsync.store.copies.CopyStore`) and the dispatcher's own bookkeeping
(:class:`sfsync.store.state.CopyRequest`) - and decided by :func:`copy_decision` (built on
:func:`sfsync.fullcopy.plan.copy_gate`):

* never copied (no watermark, no copy document): the object takes part in ONE full-sync execution
  started this tick for every such object, named :func:`sfsync.fullcopy.plan.execution_name` of the set,
  so a second start is a no-op; the dispatcher records the name per object and holds the object
  ("copy starting") until the workflow's ``plan`` has written its copy document (an execution that
  has not done so after ``COPY_START_TIMEOUT_SECONDS`` is started again under a new name);
* a copy running: held, with its progress as the reason; a copy failed: held, and started again
  (its own execution, resuming the checkpoint) ``FAILED_COPY_RETRY_SECONDS`` after the failure;
* an operator re-sync (:func:`sfsync.dispatch.dispatcher.request_resync`, the ``{"resync": [...]}``
  event): the object's re-sync generation goes up, and the object gets its own execution named after the generation
  (``resync-<hash>-g<n>``), held until that execution's ``plan`` has taken the request up (the
  copy document then carries the request's ``requested_by``);
* copied (watermark set): incremental cycles (:mod:`sfsync.dispatch.dispatcher`).

Copy starts go through the same economy (back-off, budget) as cycles, as unprobed work, and never
start while an incremental cycle of the object holds its lease.  The finished copy sets the
watermark itself (``fullsync.finish``); the next tick starts the object's incremental cycles.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from sfsync.core.clock import parse_instant, to_iso_ms
from sfsync.core.exceptions import DispatchFailed, ExecutionStatusUnknown
from sfsync.core.observability import count, logger, metrics_for_object
from sfsync.fullcopy.deps import note_copy_failure
from sfsync.fullcopy.plan import copy_gate, execution_name
from sfsync.store.copies import Copy, CopyProgress
from sfsync.store.state import CopyRequest, StateStore, Watermark
from sfsync.store.stepfunctions import RUNNING, ExecutionStart

#: A failed full copy is started again (resuming its checkpoint) this long after its first failure,
#: doubling with each further consecutive failure up to :data:`FAILED_COPY_RETRY_CAP_SECONDS`.
FAILED_COPY_RETRY_SECONDS = 120
FAILED_COPY_RETRY_CAP_SECONDS = 6 * 3600
#: After this many consecutive failures the object "needs attention" (status, metric, alarm); it is
#: still retried every :data:`FAILED_COPY_RETRY_CAP_SECONDS`, so a fixed cause heals without a person.
NEEDS_ATTENTION_AFTER = 5
#: A running copy whose heartbeat (its document's last save) is older than this has its execution's
#: real status read; an execution that ended (stopped, timed out, failed) leaves the copy failed.
COPY_HEARTBEAT_CHECK_SECONDS = 300
#: A running copy whose execution still runs but made no progress for this long (longer than any
#: step's retries) is marked failed and resumed by a new execution, which takes it over.
COPY_STALL_SECONDS = 3 * 3600
#: The execution the dispatcher started is checked after this long without having planned its copy.
PLAN_CHECK_SECONDS = 120
#: An execution the dispatcher started that has not planned its copy after this long is started again
#: under a new name (it died before ``plan``; ``plan`` itself retries Salesforce limits for ~30 min).
COPY_START_TIMEOUT_SECONDS = 3600
#: ``requested_by`` of the full-copy executions the dispatcher starts on its own.
DISPATCHER = "dispatcher"


class CopyReader(Protocol):
    """What the dispatcher reads of the copy documents (:class:`sfsync.store.copies.CopyStore`), and the
    one write it makes: marking a copy failed when its execution is gone (reconciliation)."""

    def progress(self, object_name: str) -> CopyProgress | None: ...

    def get(self, object_name: str) -> Copy | None: ...

    def record_failure(
        self,
        name: str,
        error: Mapping[str, str],
        *,
        now: dt.datetime,
        requested_by: str | None,
        policy: Mapping[str, int],
        unless: Callable[[Copy], bool] | None = None,
        fresh: bool = False,
    ) -> Copy | None: ...


class CopyStarter(Protocol):
    """Starts the full-sync workflow and reads its executions (:class:`sfsync.store.stepfunctions.FullCopyStarter`)."""

    def start_full_copy(self, name: str, execution_input: Mapping[str, Any]) -> ExecutionStart: ...

    def execution_arn(self, name: str) -> str: ...

    def execution_status(self, arn: str) -> str | None: ...


@dataclass(frozen=True)
class FullCopies:
    """The first-copy adapters of a tick: the copy documents and the workflow starter."""

    store: CopyReader
    starter: CopyStarter


@dataclass
class CopyReport:
    """What a tick did about full copies (the ``copies`` part of the dispatcher's result).

    ``reconciled``: copies found running with no live execution behind them, marked failed (and so
    retried); ``attention``: objects whose copy keeps failing, with the reason (``NeedsAttention``).
    """

    started: list[dict[str, Any]] = field(default_factory=list)
    already_started: list[dict[str, Any]] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    reconciled: dict[str, str] = field(default_factory=dict)
    attention: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "started": list(self.started),
            "already_started": list(self.already_started),
            "held": dict(self.held),
            "reconciled": dict(self.reconciled),
            "attention": dict(self.attention),
        }


CopyReason = Literal["first", "resync", "retry"]


@dataclass(frozen=True, slots=True)
class CopyDecision:
    """What a tick does about an object's full copy.

    ``sync``: copied, incremental cycles as usual; ``hold``: no cycle (``why`` says what it waits
    for); ``start``: start the workflow for it (``reason``, execution-name ``token``, ``requested_by``).
    """

    action: Literal["sync", "start", "hold"]
    why: str = ""
    reason: CopyReason | None = None
    token: str = ""
    requested_by: str = DISPATCHER
    #: set while the object's copy keeps failing: what a person should look at
    attention: str | None = None


def retry_delay(failures: int) -> dt.timedelta:
    """How long after its latest failure a copy that failed ``failures`` times in a row is retried."""
    exponent = max(0, min(failures, 30) - 1)
    return dt.timedelta(seconds=min(FAILED_COPY_RETRY_CAP_SECONDS, FAILED_COPY_RETRY_SECONDS * 2**exponent))


def attention_reason(object_name: str, progress: CopyProgress) -> str | None:
    """Why the object needs a person, once its copy failed :data:`NEEDS_ATTENTION_AFTER` times in a row."""
    if progress.status != "failed" or progress.failures < NEEDS_ATTENTION_AFTER:
        return None
    every = FAILED_COPY_RETRY_CAP_SECONDS // 3600
    return (
        f"full copy failed {progress.failures} times in a row (last: {progress.error or 'unknown error'}); "
        f"retried automatically every {every} h - fix the cause, then `sfsync resync {object_name}` "
        "to copy it again at once"
    )


def resync_requested_by(request: CopyRequest) -> str:
    """The ``requested_by`` a re-sync execution carries; its copy document keeps it (taken-up check)."""
    return f"{request.resync_requested_by or 'operator'} (re-sync g{request.generation})"


def copy_execution_name(objects: Sequence[str], reason: CopyReason, token: str = "") -> str:
    """The deterministic name of the execution copying ``objects`` (:func:`sfsync.fullcopy.plan.execution_name`)."""
    return execution_name(objects, reason="resync" if reason == "resync" else "first", token=token)


def _compact(instant: dt.datetime) -> str:
    return f"{instant.astimezone(dt.UTC):%Y%m%dT%H%M%S}Z"


def _progress_text(progress: CopyProgress) -> str:
    total = f" of {progress.total:,}" if progress.total is not None else ""
    eta = f", ETA {progress.eta_seconds:.0f} s" if progress.eta_seconds is not None else ""
    return f"full copy running: {progress.records_copied:,}{total} records{eta}"


def copy_decision(
    object_name: str,
    watermark: Watermark,
    progress: CopyProgress | None,
    request: CopyRequest,
    now: dt.datetime,
    *,
    resync_taken_up: bool = False,
    retry_seconds: int = FAILED_COPY_RETRY_SECONDS,
    start_timeout_seconds: int = COPY_START_TIMEOUT_SECONDS,
) -> CopyDecision:
    """Decide one object's full copy for this tick (see the module docstring)."""
    if request.generation > 0 and not resync_taken_up:
        why = f"re-sync g{request.generation} requested"
        token = f"g{request.generation}"
        return _own_execution(
            object_name, request, now=now, reason="resync", token=token, why=why, timeout_seconds=start_timeout_seconds
        )
    gate = copy_gate(watermark.value is not None or watermark.full_copy_done, progress.status if progress else None)
    if gate == "done":
        return CopyDecision("sync")
    if gate == "copying" and progress is not None:
        return CopyDecision("hold", _progress_text(progress))
    if gate == "failed" and progress is not None:
        attention = attention_reason(object_name, progress)
        failed_at = progress.updated_at or now
        delay = retry_delay(progress.failures) if retry_seconds == FAILED_COPY_RETRY_SECONDS else None
        retry_at = failed_at + (delay if delay is not None else dt.timedelta(seconds=retry_seconds))
        if now < retry_at:
            last = f" ({progress.error})" if progress.error else ""
            why = f"full copy failed{last}; started again after {to_iso_ms(retry_at)}"
            return CopyDecision("hold", why, attention=attention)
        token = f"retry-{_compact(failed_at)}"
        why = "failed full copy"
        decision = _own_execution(
            object_name, request, now=now, reason="retry", token=token, why=why, timeout_seconds=start_timeout_seconds
        )
        if request.generation > 0 and resync_taken_up:
            # the failed copy is the re-sync's: its retry carries the re-sync's name, so a retry that plans
            # the copy anew (the re-sync's own plan never ran) still counts as the re-sync taken up
            decision = replace(decision, requested_by=resync_requested_by(request))
        return replace(decision, attention=attention)
    if request.execution_name and request.reason in ("first", "retry"):
        if _start_timed_out(request, now, start_timeout_seconds):
            token = f"restart-{_compact(request.started_at or now)}"
            return CopyDecision("start", "full copy start timed out", "retry", token, f"{DISPATCHER} (retry)")
        return CopyDecision("hold", f"full copy starting ({request.execution_name}), waiting for its plan")
    return CopyDecision("start", "never copied", "first")


def _own_execution(
    object_name: str,
    request: CopyRequest,
    *,
    now: dt.datetime,
    reason: CopyReason,
    token: str,
    why: str,
    timeout_seconds: int,
) -> CopyDecision:
    """Start the object's own execution ``<reason>-<hash>-<token>`` unless it was started (then hold);
    one that never planned within ``timeout_seconds`` is started again as ``...-<token>-r<start>``."""
    name = copy_execution_name([object_name], reason, token)
    recorded = request.execution_name
    requested_by = resync_requested_by(request) if reason == "resync" else f"{DISPATCHER} (retry)"
    if recorded is None or not (recorded == name or recorded.startswith(name + "-")):
        return CopyDecision("start", why, reason, token, requested_by)
    if _start_timed_out(request, now, timeout_seconds):
        token = f"{token}-r{_compact(request.started_at or now)}"
        return CopyDecision("start", f"{why}; its start timed out", reason, token, requested_by)
    return CopyDecision("hold", f"{why}; {recorded} started, waiting for its plan")


def _start_timed_out(request: CopyRequest, now: dt.datetime, timeout_seconds: int) -> bool:
    """The execution started for the object never planned its copy in time (it died before ``plan``)."""
    return request.started_at is not None and now - request.started_at >= dt.timedelta(seconds=timeout_seconds)


def copy_decisions(
    names: Sequence[str], state: StateStore, copies: FullCopies, now: dt.datetime, report: CopyReport | None = None
) -> dict[str, CopyDecision]:
    """Every object's :class:`CopyDecision` (a batch read of watermarks and requests, one copy read each),
    after reconciling each copy document with its execution (:class:`CopyHealer`)."""
    watermarks = state.watermarks(list(names))
    requests = state.copy_requests(list(names))
    healer = CopyHealer(copies, now, report if report is not None else CopyReport())
    decisions: dict[str, CopyDecision] = {}
    for name in names:
        request = requests[name]
        taken_up = False
        if request.generation > 0:
            doc = copies.store.get(name)
            taken_up = doc is not None and doc.requested_by == resync_requested_by(request)
        progress = healer.heal(name, copies.store.progress(name), request, resync_taken_up=taken_up)
        if progress is not None and request.generation > 0 and not taken_up and name in healer.failed:
            taken_up = True  # the re-sync's failure was recorded on a fresh document of its own
        decisions[name] = copy_decision(name, watermarks[name], progress, request, now, resync_taken_up=taken_up)
    return decisions


class CopyHealer:
    """Reconciles copy documents with the executions behind them, once per tick.

    * a copy ``running`` whose heartbeat is older than :data:`COPY_HEARTBEAT_CHECK_SECONDS`: its
      execution's status is read (``DescribeExecution``); one that stopped, timed out, failed or
      succeeded without finishing the copy - or that still runs but made no progress for
      :data:`COPY_STALL_SECONDS` - leaves the copy marked failed (``CopyReconciled``), so the usual
      retry resumes it from its checkpoint in a new execution that takes it over;
    * an execution the dispatcher started that has not planned its copy after
      :data:`PLAN_CHECK_SECONDS` and is no longer running (it failed in ``plan`` or before): the copy
      is recorded failed at once - instead of waiting for the start time-out - and retried with the
      same back-off (a re-sync is retried from zero).

    A status Step Functions cannot give is logged and tried again next tick; nothing is marked then.
    """

    def __init__(self, copies: FullCopies, now: dt.datetime, report: CopyReport) -> None:
        self._copies = copies
        self._now = now
        self._report = report
        self._statuses: dict[str, str | None] = {}
        #: objects this tick marked failed
        self.failed: set[str] = set()

    def heal(
        self, name: str, progress: CopyProgress | None, request: CopyRequest, *, resync_taken_up: bool
    ) -> CopyProgress | None:
        try:
            if progress is not None and progress.status == "running":
                return self._running(name, progress)
            return self._unplanned(name, progress, request, resync_taken_up)
        except ExecutionStatusUnknown as exc:
            logger.warning("copy not reconciled this tick", extra={"object": name, "error": str(exc)})
            return progress

    def _status(self, arn: str) -> str | None:
        if arn not in self._statuses:
            self._statuses[arn] = self._copies.starter.execution_status(arn)
        return self._statuses[arn]

    def _running(self, name: str, progress: CopyProgress) -> CopyProgress:
        beat = progress.updated_at
        if beat is None or self._now - beat < dt.timedelta(seconds=COPY_HEARTBEAT_CHECK_SECONDS):
            return progress
        stalled = self._now - beat >= dt.timedelta(seconds=COPY_STALL_SECONDS)
        arn = progress.execution_arn
        if arn is None:
            if not stalled:
                return progress
            cause = f"no progress since {to_iso_ms(beat)} and no execution recorded"
        else:
            status = self._status(arn)
            execution = arn.rsplit(":", 1)[-1]
            if status == RUNNING:
                if not stalled:
                    return progress
                cause = f"execution {execution} made no progress since {to_iso_ms(beat)}"
            elif status is None:
                cause = f"execution {execution} does not exist"
            else:
                cause = f"execution {execution} ended {status} without finishing the copy"
        version = progress.version

        def moved_on(copy: Copy) -> bool:
            return copy.status != "running" or copy.version != version

        return self._fail(name, "CopyExecutionLost", cause, moved_on, fresh=False, requested_by=None) or progress

    def _unplanned(
        self, name: str, progress: CopyProgress | None, request: CopyRequest, resync_taken_up: bool
    ) -> CopyProgress | None:
        started, execution = request.started_at, request.execution_name
        if started is None or execution is None or self._now - started < dt.timedelta(seconds=PLAN_CHECK_SECONDS):
            return progress
        resync = request.reason == "resync"
        if resync:
            if resync_taken_up or request.generation == 0:
                return progress
        elif progress is not None and (
            progress.status == "done" or progress.updated_at is None or progress.updated_at >= started
        ):
            return progress  # the execution planned (or failed the copy) after it was started
        status = self._status(self._copies.starter.execution_arn(execution))
        if status == RUNNING:
            return progress
        cause = f"execution {execution} ended {status or 'unknown'} before planning the copy"
        requested_by = resync_requested_by(request) if resync else f"{DISPATCHER} (retry)"

        def planned_meanwhile(copy: Copy) -> bool:
            if copy.version == 0:
                return False
            if resync:
                return copy.requested_by == requested_by
            return copy.status == "running" or (copy.status == "failed" and _after(copy, started))

        copy_failed = self._fail(
            name, "CopyNotPlanned", cause, planned_meanwhile, fresh=resync, requested_by=requested_by
        )
        return copy_failed or progress

    def _fail(
        self,
        name: str,
        kind: str,
        cause: str,
        unless: Callable[[Copy], bool],
        *,
        fresh: bool,
        requested_by: str | None,
    ) -> CopyProgress | None:
        error = {"Error": kind, "Cause": cause}
        copy = self._copies.store.record_failure(
            name, error, now=self._now, requested_by=requested_by, policy={}, unless=unless, fresh=fresh
        )
        if copy is None:
            return self._copies.store.progress(name)
        self.failed.add(name)
        note_copy_failure(name, error)
        with metrics_for_object(name) as m:
            m.add("CopyReconciled", 1)
        self._report.reconciled[name] = cause
        logger.warning("copy reconciled with its execution: marked failed", extra={"object": name, "cause": cause})
        return self._copies.store.progress(name)


def _after(copy: Copy, instant: dt.datetime) -> bool:
    return copy.finished_at is not None and parse_instant(copy.finished_at) >= instant


@dataclass(frozen=True)
class _CopyGroup:
    objects: list[str]
    reason: CopyReason
    token: str
    requested_by: str

    @property
    def name(self) -> str:
        return copy_execution_name(self.objects, self.reason, self.token)

    def execution_input(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"objects": sorted(self.objects), "requested_by": self.requested_by}
        if self.reason == "resync":
            payload["resync"] = sorted(self.objects)
        return payload


def _copy_groups(starts: Sequence[tuple[str, CopyDecision]]) -> list[_CopyGroup]:
    """One execution for every never-copied object of the tick; one per re-sync or retried object."""
    first = sorted(name for name, decision in starts if decision.reason == "first")
    groups = [_CopyGroup(first, "first", "", DISPATCHER)] if first else []
    for name, decision in starts:
        if decision.reason in ("resync", "retry"):
            groups.append(_CopyGroup([name], decision.reason, decision.token, decision.requested_by))
    return groups


def start_copies(
    starts: Sequence[tuple[str, CopyDecision]],
    state: StateStore,
    copies: FullCopies,
    now: dt.datetime,
    *,
    skipped: dict[str, str],
    report: CopyReport,
) -> list[str]:
    """Start the tick's full-copy executions (each object's outcome into ``skipped``, each execution into
    ``report``); returns the objects whose start failed."""
    failures: list[str] = []
    for group in _copy_groups(starts):
        name = group.name
        try:
            outcome = copies.starter.start_full_copy(name, group.execution_input())
        except DispatchFailed as exc:
            logger.error("could not start the full copy", extra={"objects": group.objects, "error": str(exc)})
            count("DispatchFailed")
            failures.extend(group.objects)
            for obj in group.objects:
                skipped[obj] = f"full copy could not be started: {exc}"
            continue
        for obj in group.objects:
            state.record_copy_start(obj, name, reason=group.reason, now=now)
            what = "started" if outcome.started else "already started"
            skipped[obj] = f"full copy {what} ({name})"
        entry = {
            "execution_name": name,
            "execution_arn": outcome.execution_arn,
            "objects": list(group.objects),
            "reason": group.reason,
        }
        (report.started if outcome.started else report.already_started).append(entry)
        logger.info(
            "full copy started" if outcome.started else "full copy already started",
            extra={"execution": entry},
        )
    return failures


__all__ = [
    "COPY_HEARTBEAT_CHECK_SECONDS",
    "COPY_STALL_SECONDS",
    "COPY_START_TIMEOUT_SECONDS",
    "DISPATCHER",
    "FAILED_COPY_RETRY_CAP_SECONDS",
    "FAILED_COPY_RETRY_SECONDS",
    "NEEDS_ATTENTION_AFTER",
    "PLAN_CHECK_SECONDS",
    "CopyDecision",
    "CopyHealer",
    "CopyReader",
    "CopyReason",
    "CopyReport",
    "CopyStarter",
    "FullCopies",
    "attention_reason",
    "copy_decision",
    "copy_decisions",
    "copy_execution_name",
    "resync_requested_by",
    "retry_delay",
    "start_copies",
]
