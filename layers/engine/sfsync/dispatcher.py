"""The dispatcher: which objects are due, and one async object-sync invocation per due object.

An object is due when no cycle holds its lease, no earlier fan-out claim is live, and its last
cycle ended at least its pause ago (per-object override) — or a cycle stopped at the time limit
and left a checkpoint to resume (``resume_pending``), which skips the pause.  The due check and
the claim are one conditional write (:meth:`StateStore.claim_dispatch`), so two dispatchers
never start the same object twice.

API economy (:class:`ApiEconomy`, passed as ``economy``), between the due check and the fan-out:

* **org back-off**: while a cycle's ``REQUEST_LIMIT_EXCEEDED`` back-off is in force
  (:meth:`StateStore.get_org_backoff`), nothing starts and Salesforce is not called at all;
* **API budget** (:class:`sfsync.budget.ApiBudget`, ``SFSYNC_API_BUDGET_PERCENT``): above the
  share of the org's daily allocation nothing new starts (resumes of checkpointed cycles
  included); while paused the usage is re-read at most every ``recheck_seconds`` (one ``/limits``
  call), and work starts again once it has fallen under the resume threshold.  Every decision
  is logged and metered (``ApiBudgetPaused``, ``ApiUsagePercent``) and persisted
  (:class:`sfsync.org_state.OrgStateStore`);
* **change probe** (:func:`sfsync.probe.probe_gate`): objects due after their pause are probed in
  ``/composite`` calls (about one API call per twelve objects) and only those with changes start.
  Objects that never ran (``first``) or wait to resume a checkpoint (``resume``) have work by
  definition and are not probed;
* **lifecycle work while idle**: an object the probe finds idle still starts when periodic
  lifecycle work is due (:func:`sfsync.lifecycle.lifecycle_work_due` on its
  :class:`sfsync.state.Lifecycle` item): a formula refresh (reason ``formula-refresh``) or the
  scheduled Id reconciliation of an object without a recycle bin (``reconcile``).  Such a cycle
  reads its window (no rows), completes it, and does the due work after it.  An object the probe only
  flags because getDeleted's log was purged past its window (``needs_resync``) starts with
  reason ``resync`` (its cycle finds the gap and reconciles ids);
* ``REQUEST_LIMIT_EXCEEDED`` during the probe or the budget check backs the whole org off
  (``SFSYNC_ORG_BACKOFF_SECONDS``) exactly as a cycle does.

The reason in :class:`DispatchResult` is the dispatcher's; the object-sync event carries it when
:class:`sfsync.events.ObjectSyncEvent` accepts it, and ``due`` otherwise (the cycle does its due
lifecycle work whatever the reason).

Objects are independent: each due object is its own asynchronous invocation, and an object's
backlog (a ``resume`` every tick) never holds another object back.

``gate`` is a further seam (a callable that receives the due objects and returns the subset to
start plus a reason for each held back), applied after the economy.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, get_args

from sfsync.budget import ApiBudget, BudgetDecision, emit_budget
from sfsync.clock import to_iso_ms
from sfsync.config import Settings
from sfsync.events import ObjectSyncEvent
from sfsync.exceptions import DispatchFailed, SalesforceRateLimited
from sfsync.lifecycle import lifecycle_work_due
from sfsync.observability import count, logger
from sfsync.org_state import BudgetRecord, OrgStateStore
from sfsync.probe import CompositeClient, ProbeResult, probe_gate
from sfsync.registry import ObjectSpec
from sfsync.state import LeaseStatus, StateStore

#: How long a fan-out claim blocks another dispatch of the object (the longest Lambda run).
CLAIM_SECONDS = 900
#: While the API budget is paused, the org's usage is re-read (one API call) at most this often.
BUDGET_RECHECK_SECONDS = 300
#: Due reasons that mean "has work" without asking Salesforce.
UNPROBED_REASONS = frozenset({"first", "resume"})
#: Reason codes for an idle object's due lifecycle work, by :func:`lifecycle_work_due`'s answer.
LIFECYCLE_REASONS = {"formula refresh due": "formula-refresh", "id reconciliation due": "reconcile"}
#: Reason of an object whose only sign of work is a purged delete log (``ObjectProbe.needs_resync``).
RESYNC_REASON = "resync"
#: Reasons the object-sync event accepts; any other is sent as ``due``.
EVENT_REASONS = frozenset(str(value) for value in get_args(ObjectSyncEvent.model_fields["reason"].annotation))

Gate = Callable[[Sequence[ObjectSpec]], tuple[list[ObjectSpec], dict[str, str]]]


class Invoker(Protocol):
    def start_object_sync(self, object_name: str, cycle_id: str, reason: str) -> None: ...


class EconomyClient(CompositeClient, Protocol):
    """What the API economy needs from :class:`sfsync.salesforce.SalesforceClient`."""

    def api_usage(self) -> tuple[int, int] | None: ...

    def limits(self) -> dict[str, Any]: ...


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


@dataclass
class DispatchResult:
    started: list[dict[str, str]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    economy: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"started": list(self.started), "skipped": dict(self.skipped)}
        out.update(self.economy)
        return out


def new_cycle_id(object_name: str, now: dt.datetime) -> str:
    return f"{object_name}-{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


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


def dispatch(
    now: dt.datetime,
    settings: Settings,
    state: StateStore,
    invoker: Invoker,
    *,
    gate: Gate | None = None,
    economy: Economy | None = None,
) -> DispatchResult:
    """Start one object-sync invocation per due object; raise if any fan-out failed."""
    specs = list(settings.registry)
    statuses = state.lease_statuses([spec.name for spec in specs])
    result = DispatchResult()
    due: list[tuple[ObjectSpec, str]] = []
    for spec in specs:
        reason, why = due_reason(statuses[spec.name], now, spec.pause(settings.pause_seconds))
        if reason is None:
            result.skipped[spec.name] = why
        else:
            due.append((spec, reason))

    if economy is not None and due:
        admission = economy.admit(due)
        result.skipped.update(admission.held)
        result.economy = admission.report
        admitted = set(admission.allowed)
        due = [(spec, admission.reasons.get(spec.name, reason)) for spec, reason in due if spec.name in admitted]

    if gate is not None and due:
        allowed, held = gate([spec for spec, _ in due])
        allowed_names = {spec.name for spec in allowed}
        result.skipped.update(held)
        due = [(spec, reason) for spec, reason in due if spec.name in allowed_names]

    failures: list[str] = []
    for spec, reason in due:
        cycle_id = new_cycle_id(spec.name, now)
        pause = spec.pause(settings.pause_seconds)
        claimed = state.claim_dispatch(
            spec.name,
            cycle_id,
            now=now,
            claim_seconds=CLAIM_SECONDS,
            not_ended_after=now - dt.timedelta(seconds=pause),
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
    logger.info("dispatch finished", extra=result.to_dict())
    if failures:
        raise DispatchFailed(f"could not start the sync of {', '.join(failures)}")
    return result


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
        sf: EconomyClient,
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
            gate = probe_gate(
                self._sf,
                lambda name: self._state.get_watermark(name).value,
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
    "CLAIM_SECONDS",
    "EVENT_REASONS",
    "LIFECYCLE_REASONS",
    "RESYNC_REASON",
    "Admission",
    "ApiEconomy",
    "DispatchResult",
    "Economy",
    "EconomyClient",
    "Gate",
    "Invoker",
    "dispatch",
    "due_reason",
    "event_reason",
    "new_cycle_id",
]
