"""The dispatcher: which objects are due, and one async object-sync invocation per due object.

An object is due when no cycle holds its lease, no earlier fan-out claim is live, and its last
cycle ended at least its pause ago (per-object override) — or a cycle stopped at the time limit
and left a checkpoint to resume (``resume_pending``), which skips the pause.  The due check and
the claim are one conditional write (:meth:`StateStore.claim_dispatch`), so two dispatchers
never start the same object twice.

API economy (:class:`ApiEconomy`, passed as ``economy``), between the due check and the fan-out:

* **org back-off**: while a cycle's ``REQUEST_LIMIT_EXCEEDED`` back-off is in force
  (:meth:`StateStore.get_org_backoff`), nothing starts and Salesforce is not called at all;
* **API budget** (:class:`sfsync.dispatch.budget.ApiBudget`, ``SFSYNC_API_BUDGET_PERCENT``): above the
  share of the org's daily allocation nothing new starts (resumes of checkpointed cycles
  included); while paused the usage is re-read at most every ``recheck_seconds`` (one ``/limits``
  call), and work starts again once it has fallen under the resume threshold.  Every decision
  is logged and metered (``ApiBudgetPaused``, ``ApiUsagePercent``) and persisted
  (:class:`sfsync.store.org_state.OrgStateStore`);
* **change probe** (:func:`sfsync.dispatch.probe.probe_gate`): objects due after their pause are probed in
  ``/composite`` calls (about one API call per twelve objects) and only those with changes start.
  Objects that never ran (``first``) or wait to resume a checkpoint (``resume``) have work by
  definition and are not probed;
* **lifecycle work while idle**: an object the probe finds idle still starts when periodic
  lifecycle work is due (:func:`sfsync.inbound.lifecycle.lifecycle_work_due` on its
  :class:`sfsync.store.state.Lifecycle` item): a formula refresh (reason ``formula-refresh``) or the
  scheduled Id reconciliation of an object without a recycle bin (``reconcile``).  Such a cycle
  reads its window (no rows), completes it, and does the due work after it.  An object the probe only
  flags because getDeleted's log was purged past its window (``needs_resync``) starts with
  reason ``resync`` (its cycle finds the gap and reconciles ids);
* ``REQUEST_LIMIT_EXCEEDED`` during the probe or the budget check backs the whole org off
  (``SFSYNC_ORG_BACKOFF_SECONDS``) exactly as a cycle does.

The reason in :class:`DispatchResult` is the dispatcher's; the object-sync event carries it when
:class:`sfsync.core.events.ObjectSyncEvent` accepts it, and ``due`` otherwise (the cycle does its due
lifecycle work whatever the reason).

Objects are independent: each due object is its own asynchronous invocation, and an object's
backlog (a ``resume`` every tick) never holds another object back.

**The first full copy** (``copies``, :class:`FullCopies`): before the due check every object's
copy state is read - its watermark, its copy document (:class:`sfsync.store.copies.CopyStore`) and the
dispatcher's own bookkeeping (:class:`sfsync.store.state.CopyRequest`) - and decided by
:func:`copy_decision` (built on :func:`sfsync.fullcopy.plan.copy_gate`):

* never copied (no watermark, no copy document): the object takes part in ONE full-sync execution
  started this tick for every such object, named :func:`sfsync.fullcopy.plan.execution_name` of the set,
  so a second start is a no-op; the dispatcher records the name per object and holds the object
  ("copy starting") until the workflow's ``plan`` has written its copy document (an execution that
  has not done so after ``COPY_START_TIMEOUT_SECONDS`` is started again under a new name);
* a copy running: held, with its progress as the reason; a copy failed: held, and started again
  (its own execution, resuming the checkpoint) ``FAILED_COPY_RETRY_SECONDS`` after the failure;
* an operator re-sync (:func:`request_resync`, the ``{"resync": [...]}`` event): the object's
  re-sync generation goes up, and the object gets its own execution named after the generation
  (``resync-<hash>-g<n>``), held until that execution's ``plan`` has taken the request up (the
  copy document then carries the request's ``requested_by``);
* copied (watermark set): incremental cycles as below.

Copy starts go through the same economy (back-off, budget) as cycles, as unprobed work, and never
start while an incremental cycle of the object holds its lease.  The finished copy sets the
watermark itself (``fullsync.finish``); the next tick starts the object's incremental cycles.

``gate`` is a further seam (a callable that receives the due objects and returns the subset to
start plus a reason for each held back), applied after the economy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, get_args

from sfsync.changes.health import CDC_REASON, cdc_health, cdc_pause, cycle_requested, emit_cdc_health
from sfsync.core.clock import parse_instant, salesforce_now, to_iso_ms
from sfsync.core.config import Settings
from sfsync.core.events import ObjectSyncEvent, ResyncEvent
from sfsync.core.exceptions import DispatchFailed, ExecutionStatusUnknown, SalesforceRateLimited
from sfsync.core.observability import count, logger, metrics_for_object
from sfsync.core.registry import ObjectSpec
from sfsync.dispatch.budget import ApiBudget, BudgetDecision, emit_budget
from sfsync.dispatch.probe import ProbeResult, probe_gate
from sfsync.fullcopy.deps import note_copy_failure
from sfsync.fullcopy.plan import copy_gate, execution_name
from sfsync.inbound.lifecycle import lifecycle_work_due
from sfsync.salesforce.ports import EconomyPort
from sfsync.store.copies import Copy, CopyProgress
from sfsync.store.org_state import BudgetRecord, OrgStateStore
from sfsync.store.state import CLAIM_SECONDS, CopyRequest, LeaseStatus, StateStore, Watermark, new_cycle_id
from sfsync.store.stepfunctions import RUNNING, ExecutionStart

#: While the API budget is paused, the org's usage is re-read (one API call) at most this often.
BUDGET_RECHECK_SECONDS = 300
#: Due reasons that mean "has work" without asking Salesforce.
UNPROBED_REASONS = frozenset({"first", "resume", CDC_REASON})
#: Reason codes for an idle object's due lifecycle work, by :func:`lifecycle_work_due`'s answer.
LIFECYCLE_REASONS = {"formula refresh due": "formula-refresh", "id reconciliation due": "reconcile"}
#: Reason of an object whose only sign of work is a purged delete log (``ObjectProbe.needs_resync``).
RESYNC_REASON = "resync"
#: Reasons the object-sync event accepts; any other is sent as ``due``.
EVENT_REASONS = frozenset(str(value) for value in get_args(ObjectSyncEvent.model_fields["reason"].annotation))

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

Gate = Callable[[Sequence[ObjectSpec]], tuple[list[ObjectSpec], dict[str, str]]]


class Invoker(Protocol):
    def start_object_sync(self, object_name: str, cycle_id: str, reason: str) -> None: ...


@dataclass
class Admission:
    """The economy's verdict on the due objects."""

    allowed: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    #: a more precise reason than the due check's for some allowed objects
    reasons: dict[str, str] = field(default_factory=dict)


class Economy(Protocol):
    def admit(self, due: Sequence[tuple[ObjectSpec, str]]) -> Admission: ...


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


@dataclass
class DispatchResult:
    started: list[dict[str, str]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    economy: dict[str, Any] = field(default_factory=dict)
    copies: CopyReport = field(default_factory=CopyReport)
    #: seconds since each copied object was known complete (``FreshnessSeconds``)
    freshness: dict[str, float] = field(default_factory=dict)
    #: change-event status per object (off/on/quiet/unhealthy), when the stack receives change events
    cdc: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "started": list(self.started),
            "skipped": dict(self.skipped),
            "copies": self.copies.to_dict(),
            "freshness": dict(self.freshness),
        }
        if self.cdc:
            out["cdc"] = dict(self.cdc)
        out.update(self.economy)
        return out


def event_reason(reason: str) -> str:
    """The reason sent in the object-sync event: ``reason`` when the event accepts it, else ``due``."""
    return reason if reason in EVENT_REASONS else "due"


def due_reason(status: LeaseStatus, now: dt.datetime, pause_seconds: int) -> tuple[str | None, str]:
    """(reason to start, None when not due; explanation)."""
    if status.running(now):
        return None, f"running ({status.holder})"
    if status.claimed(now):
        return None, f"dispatched ({status.claimed_by})"
    if status.resume_pending:
        return "resume", "a checkpoint is waiting"
    if status.last_ended_at is None:
        return "first", "never ran"
    if now - status.last_ended_at >= dt.timedelta(seconds=pause_seconds):
        return "due", "pause passed"
    return None, f"pausing until {to_iso_ms(status.last_ended_at + dt.timedelta(seconds=pause_seconds))}"


# -- the first full copy -----------------------------------------------------------------------------

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


def _start_copies(
    starts: Sequence[tuple[str, CopyDecision]],
    state: StateStore,
    copies: FullCopies,
    now: dt.datetime,
    result: DispatchResult,
) -> list[str]:
    """Start the tick's full-copy executions; returns the objects whose start failed."""
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
                result.skipped[obj] = f"full copy could not be started: {exc}"
            continue
        for obj in group.objects:
            state.record_copy_start(obj, name, reason=group.reason, now=now)
            what = "started" if outcome.started else "already started"
            result.skipped[obj] = f"full copy {what} ({name})"
        entry = {
            "execution_name": name,
            "execution_arn": outcome.execution_arn,
            "objects": list(group.objects),
            "reason": group.reason,
        }
        (result.copies.started if outcome.started else result.copies.already_started).append(entry)
        logger.info(
            "full copy started" if outcome.started else "full copy already started",
            extra={"execution": entry},
        )
    return failures


# -- the tick ----------------------------------------------------------------------------------------


def dispatch(
    now: dt.datetime,
    settings: Settings,
    state: StateStore,
    invoker: Invoker,
    *,
    copies: FullCopies,
    gate: Gate | None = None,
    economy: Economy | None = None,
) -> DispatchResult:
    """Start the full copies the objects need and one object-sync invocation per due copied object;
    raise if any start failed (after every other start was tried)."""
    specs = list(settings.registry)
    names = [spec.name for spec in specs]
    statuses = state.lease_statuses(names)
    cdc = cdc_health(state, names, settings)  # change events: longer pauses while healthy, cycles on a loss
    pauses = {
        spec.name: cdc_pause(spec.pause(settings.pause_seconds), cdc.get(spec.name), now, settings) for spec in specs
    }
    result = DispatchResult()
    decisions = copy_decisions(names, state, copies, now, result.copies)
    due: list[tuple[ObjectSpec, str]] = []
    to_copy: list[tuple[ObjectSpec, CopyDecision]] = []
    for spec in specs:
        decision, status = decisions[spec.name], statuses[spec.name]
        if decision.attention is not None:
            result.copies.attention[spec.name] = decision.attention
        if decision.action == "hold":
            result.skipped[spec.name] = result.copies.held[spec.name] = decision.why
            continue
        if decision.action == "start":
            if status.running(now) or status.claimed(now):
                why = f"full copy ({decision.why}) waits for the cycle of {status.holder or status.claimed_by}"
                result.skipped[spec.name] = result.copies.held[spec.name] = why
            else:
                to_copy.append((spec, decision))
            continue
        reason, why = due_reason(status, now, pauses[spec.name])
        requested = cycle_requested(cdc.get(spec.name), status, now) if reason is None else None
        if requested is not None:
            reason, why = CDC_REASON, requested
        if reason is None:
            result.skipped[spec.name] = why
        else:
            due.append((spec, reason))

    if economy is not None and (due or to_copy):
        # a copy start is work without a probe (reason "first"): the back-off and the budget hold it too
        admission = economy.admit([*due, *((spec, "first") for spec, _ in to_copy)])
        result.skipped.update(admission.held)
        for spec, _ in to_copy:
            if spec.name in admission.held:
                result.copies.held[spec.name] = admission.held[spec.name]
        result.economy = admission.report
        admitted = set(admission.allowed)
        due = [(spec, admission.reasons.get(spec.name, reason)) for spec, reason in due if spec.name in admitted]
        to_copy = [(spec, decision) for spec, decision in to_copy if spec.name in admitted]

    if gate is not None and due:
        allowed, held = gate([spec for spec, _ in due])
        allowed_names = {spec.name for spec in allowed}
        result.skipped.update(held)
        due = [(spec, reason) for spec, reason in due if spec.name in allowed_names]

    failures = _start_copies([(spec.name, d) for spec, d in to_copy], state, copies, now, result)
    for spec, reason in due:
        cycle_id = new_cycle_id(spec.name, now)
        claimed = state.claim_dispatch(
            spec.name,
            cycle_id,
            now=now,
            claim_seconds=CLAIM_SECONDS,
            not_ended_after=None if reason == CDC_REASON else now - dt.timedelta(seconds=pauses[spec.name]),
        )
        if not claimed:
            result.skipped[spec.name] = "taken by a concurrent dispatch"
            continue
        try:
            invoker.start_object_sync(spec.name, cycle_id, event_reason(reason))
        except DispatchFailed as exc:
            logger.error("could not start the object sync", extra={"object": spec.name, "error": str(exc)})
            count("DispatchFailed")
            failures.append(spec.name)
            continue
        result.started.append({"object": spec.name, "cycle_id": cycle_id, "reason": reason})
    count("ObjectsDispatched", len(result.started))
    count("FullCopiesStarted", len(result.copies.started))
    count("FullCopiesAlreadyStarted", len(result.copies.already_started))
    count("ObjectsHeldForCopy", len(result.copies.held))
    emit_health(names, state, decisions, result, now)
    if cdc:
        result.cdc = emit_cdc_health(cdc, now, settings)
    logger.info("dispatch finished", extra=result.to_dict())
    if failures:
        raise DispatchFailed(f"could not start the sync of {', '.join(failures)}")
    return result


def emit_health(
    names: Sequence[str],
    state: StateStore,
    decisions: Mapping[str, CopyDecision],
    result: DispatchResult,
    now: dt.datetime,
) -> None:
    """Every tick, per object: ``NeedsAttention`` (1/0) and - for objects copied and not being copied -
    ``FreshnessSeconds``: how old the newest moment is at which the copy was known complete (the later
    of the watermark and the last probe that found nothing).  A quiet org stays fresh; an object whose
    cycles fail or fall behind ages, and the freshness alarm fires."""
    complete = state.known_complete(list(names))
    fresh: dict[str, float] = {}
    for name in names:
        as_of = complete.get(name)
        copying = decisions[name].action != "sync"
        with metrics_for_object(name) as m:
            m.add("NeedsAttention", 1 if name in result.copies.attention else 0)
            if as_of is not None and not copying:
                fresh[name] = max(0.0, (now - as_of).total_seconds())
                m.add("FreshnessSeconds", fresh[name])
    result.freshness = {name: round(seconds, 1) for name, seconds in fresh.items()}
    if result.copies.attention:
        logger.error("objects need attention", extra={"attention": result.copies.attention})


# -- operator re-sync ----------------------------------------------------------------------------------


@dataclass
class ResyncOutcome:
    """The re-sync generation of each accepted object, and why the others were refused."""

    requested: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"requested": dict(self.requested), "rejected": dict(self.rejected)}


def run_tick(
    request: ResyncEvent | None,
    now: dt.datetime,
    settings: Settings,
    state: StateStore,
    invoker: Invoker,
    *,
    copies: FullCopies,
    sf: EconomyPort,
    org: OrgStateStore,
) -> dict[str, Any]:
    """One dispatcher invocation: an operator's re-sync request first (when the event is one: those
    objects are marked for a new full copy), then the tick with the API economy, which starts their
    executions among the rest."""
    outcome = None
    if request is not None:
        outcome = request_resync(request.resync, settings, state, now, requested_by=request.requested_by)
    economy = ApiEconomy(sf, state, org, settings, now)
    result = dispatch(now, settings, state, invoker, copies=copies, economy=economy).to_dict()
    if outcome is not None:
        result["resync"] = outcome.to_dict()
    return result


def request_resync(
    objects: Sequence[str], settings: Settings, state: StateStore, now: dt.datetime, *, requested_by: str
) -> ResyncOutcome:
    """Mark each configured object for a new full copy (its generation goes up); refuse the others.

    An unknown object is refused with a message naming it (logged, ``ResyncRejected``); the
    other objects are still marked.  The next dispatch starts their executions.
    """
    outcome = ResyncOutcome()
    configured = settings.registry.names()
    for name in dict.fromkeys(objects):
        if name not in settings.registry:
            outcome.rejected[name] = f"{name!r} is not a configured object (configured: {', '.join(configured)})"
            continue
        outcome.requested[name] = state.request_resync(name, requested_by=requested_by, now=now)
    if outcome.rejected:
        count("ResyncRejected", len(outcome.rejected))
        logger.error("re-sync refused", extra={"rejected": outcome.rejected})
    if outcome.requested:
        count("ResyncRequested", len(outcome.requested))
        logger.info("re-sync requested", extra={"requested": outcome.requested, "requested_by": requested_by})
    return outcome


# -- the API economy ---------------------------------------------------------------------------------


def _probe_reasons(probe: ProbeResult) -> dict[str, str]:
    """``resync`` for objects whose only sign of work is a delete log purged past their window."""
    return {
        name: RESYNC_REASON
        for name, p in probe.objects.items()
        if p.needs_resync and not (p.has_updates or p.has_deletes) and p.error is None
    }


class ApiEconomy:
    """Org back-off, API budget and change probe for one dispatcher tick (see the module docstring)."""

    def __init__(
        self,
        sf: EconomyPort,
        state: StateStore,
        org: OrgStateStore,
        settings: Settings,
        now: dt.datetime,
        *,
        budget: ApiBudget | None = None,
        recheck_seconds: int = BUDGET_RECHECK_SECONDS,
    ) -> None:
        self._sf = sf
        self._state = state
        self._org = org
        self._settings = settings
        self._now = now
        self._budget = budget or ApiBudget(settings.api_budget_percent)
        self._recheck = dt.timedelta(seconds=recheck_seconds)

    def admit(self, due: Sequence[tuple[ObjectSpec, str]]) -> Admission:
        names = [spec.name for spec, _ in due]
        backoff = self._state.get_org_backoff()
        if backoff is not None and backoff > self._now:
            return self._hold_all(names, f"org backed off until {to_iso_ms(backoff)} (REQUEST_LIMIT_EXCEEDED)")

        record = self._org.get_budget()
        decision: BudgetDecision | None = None
        if record.state.paused:
            if record.checked_at is not None and self._now - record.checked_at < self._recheck:
                decision = self._budget.evaluate(None, None, state=record.state, now=self._now)
                emit_budget(decision)
                usage = f" at {record.percent:.1f}%" if record.percent is not None else ""
                next_check = to_iso_ms(record.checked_at + self._recheck)
                return self._hold_all(names, f"api budget: paused{usage}; usage re-read after {next_check}", decision)
            try:
                limits = self._sf.limits()
            except SalesforceRateLimited as exc:
                return self._back_off(names, exc, record)
            decision = self._decide(record, limits)
            if not decision.allow_new_work:
                return self._hold_all(names, f"api budget: {decision.reason}", decision)
            record = self._record(record, decision)

        allowed = [spec.name for spec, reason in due if reason in UNPROBED_REASONS]
        to_probe = [spec for spec, reason in due if reason not in UNPROBED_REASONS]
        held: dict[str, str] = {}
        reasons: dict[str, str] = {}
        probe: ProbeResult | None = None
        if to_probe:
            probed: list[ProbeResult] = []
            marks = self._state.watermarks([spec.name for spec in to_probe])
            gate = probe_gate(
                self._sf,
                lambda name: marks[name].value,
                overlap=dt.timedelta(seconds=self._settings.overlap_seconds),
                now=self._now,
                on_result=probed.append,
            )
            try:
                with_work, held = gate(to_probe)
            except SalesforceRateLimited as exc:
                return self._back_off(names, exc, record)
            probe = probed[0] if probed else None
            chosen = set(allowed) | {spec.name for spec in with_work}
            if probe is not None:
                reasons.update(_probe_reasons(probe))
            lifecycle = self._lifecycle_due([spec for spec in to_probe if spec.name in held])
            for name, (reason, why) in lifecycle.items():
                chosen.add(name)
                reasons[name] = reason
                held.pop(name, None)
                logger.info("idle, but lifecycle work is due", extra={"object": name, "why": why})
            if lifecycle:
                count("LifecycleDispatches", len(lifecycle))
            allowed = [name for name in names if name in chosen]
        if probe is not None:
            count("ProbeApiCalls", probe.api_calls)
            logger.info("change probe", extra={"probe": probe.to_dict()})
            self._note_clear(probe)
            self._note_skew(probe)

        if decision is None or (probe is not None and probe.api_calls):
            decision = self._decide(record, None)  # the probe's responses carry a fresher reading
        report: dict[str, Any] = {"api_budget": decision.log_fields()["api_budget"]}
        if probe is not None:
            report["probe"] = probe.to_dict()
        if reasons:
            report["reasons"] = dict(reasons)
        if not decision.allow_new_work:
            reason = f"api budget: {decision.reason}"
            logger.info("no new work starts", extra={"reason": reason, "objects": names})
            count("ObjectsHeld", len(names))
            return Admission([], dict.fromkeys(names, reason), report)
        return Admission(allowed, held, report, {name: r for name, r in reasons.items() if name in allowed})

    # -- helpers -------------------------------------------------------------------------------------

    def _note_clear(self, probe: ProbeResult) -> None:
        """An object the probe found idle is known complete up to what the probe covered, less the lag."""
        lag = dt.timedelta(seconds=self._settings.safety_lag_seconds)
        for name, found in probe.objects.items():
            if found.has_work or found.window is None:
                continue
            covered = min(found.latest_date_covered or found.window[1], self._now)
            self._state.note_clear(name, covered - lag, now=self._now)

    def _note_skew(self, probe: ProbeResult) -> None:
        """``ClockSkewSeconds``: the engine clock minus Salesforce's, read from the probe's response (whole
        seconds, later than the tick's start by the tick's own duration) - only when the probe called."""
        salesforce, source = salesforce_now(self._sf)
        if probe.api_calls and source == "salesforce":
            count("ClockSkewSeconds", round((self._now - salesforce).total_seconds(), 1))

    def _lifecycle_due(self, idle: Sequence[ObjectSpec]) -> dict[str, tuple[str, str]]:
        """Idle objects whose periodic lifecycle work is due: name -> (reason code, explanation)."""
        due: dict[str, tuple[str, str]] = {}
        for spec in idle:
            why = lifecycle_work_due(
                spec,
                self._state.get_lifecycle(spec.name),
                now=self._now,
                formula_refresh_seconds=self._settings.formula_refresh_seconds,
                reconcile_seconds=self._settings.reconcile_seconds,
            )
            if why is not None:
                due[spec.name] = (LIFECYCLE_REASONS.get(why, "lifecycle"), why)
        return due

    def _decide(self, record: BudgetRecord, limits: dict[str, Any] | None) -> BudgetDecision:
        """Evaluate the freshest reading, persist it, log and meter the decision."""
        decision = self._budget.evaluate(self._sf.api_usage(), limits, state=record.state, now=self._now)
        if decision.used is not None or decision.changed:
            self._org.save_budget(self._record(record, decision))
        emit_budget(decision)
        return decision

    def _record(self, record: BudgetRecord, decision: BudgetDecision) -> BudgetRecord:
        if decision.used is None:
            return BudgetRecord(decision.state, record.used, record.max, record.source, record.checked_at)
        return BudgetRecord(decision.state, decision.used, decision.max, decision.source, self._now)

    def _back_off(self, names: list[str], exc: SalesforceRateLimited, record: BudgetRecord) -> Admission:
        until = self._now + dt.timedelta(seconds=self._settings.org_backoff_seconds)
        until = self._state.set_org_backoff(until, reason=f"dispatcher: {exc}", now=self._now)
        count("OrgBackoff")
        logger.warning(
            "REQUEST_LIMIT_EXCEEDED: the whole org backs off", extra={"until": to_iso_ms(until), "error": str(exc)}
        )
        decision = self._decide(record, None)
        return self._hold_all(names, f"org backed off until {to_iso_ms(until)} (REQUEST_LIMIT_EXCEEDED)", decision)

    def _hold_all(self, names: list[str], reason: str, budget: BudgetDecision | None = None) -> Admission:
        logger.info("no new work starts", extra={"reason": reason, "objects": names})
        count("ObjectsHeld", len(names))
        report: dict[str, Any] = {"held_all": reason}
        if budget is not None:
            report["api_budget"] = budget.log_fields()["api_budget"]
        return Admission([], dict.fromkeys(names, reason), report)


__all__ = [
    "BUDGET_RECHECK_SECONDS",
    "COPY_START_TIMEOUT_SECONDS",
    "DISPATCHER",
    "EVENT_REASONS",
    "FAILED_COPY_RETRY_SECONDS",
    "LIFECYCLE_REASONS",
    "RESYNC_REASON",
    "Admission",
    "ApiEconomy",
    "CopyDecision",
    "CopyReader",
    "CopyReport",
    "CopyStarter",
    "DispatchResult",
    "Economy",
    "FullCopies",
    "Gate",
    "Invoker",
    "ResyncOutcome",
    "copy_decision",
    "copy_decisions",
    "copy_execution_name",
    "dispatch",
    "due_reason",
    "event_reason",
    "request_resync",
    "resync_requested_by",
    "run_tick",
]
