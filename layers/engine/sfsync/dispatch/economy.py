"""The dispatcher's API economy (:class:`ApiEconomy`): between the due check and the fan-out of a tick
(:func:`sfsync.dispatch.dispatcher.dispatch`, ``economy``), which of the due objects may start.

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
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sfsync.changes.health import CDC_REASON
from sfsync.core.clock import salesforce_now, to_iso_ms
from sfsync.core.config import Settings
from sfsync.core.exceptions import SalesforceRateLimited
from sfsync.core.observability import count, logger
from sfsync.core.registry import ObjectSpec
from sfsync.dispatch.budget import ApiBudget, BudgetDecision, emit_budget
from sfsync.dispatch.probe import ProbeResult, probe_gate
from sfsync.inbound.lifecycle import lifecycle_work_due
from sfsync.salesforce.ports import EconomyPort
from sfsync.store.org_state import BudgetRecord, OrgStateStore
from sfsync.store.state import StateStore

#: While the API budget is paused, the org's usage is re-read (one API call) at most this often.
BUDGET_RECHECK_SECONDS = 300
#: Due reasons that mean "has work" without asking Salesforce.
UNPROBED_REASONS = frozenset({"first", "resume", CDC_REASON})
#: Reason codes for an idle object's due lifecycle work, by :func:`lifecycle_work_due`'s answer.
LIFECYCLE_REASONS = {"formula refresh due": "formula-refresh", "id reconciliation due": "reconcile"}
#: Reason of an object whose only sign of work is a purged delete log (``ObjectProbe.needs_resync``).
RESYNC_REASON = "resync"


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
    "LIFECYCLE_REASONS",
    "RESYNC_REASON",
    "UNPROBED_REASONS",
    "Admission",
    "ApiEconomy",
    "Economy",
]
