"""The dispatcher: which objects are due, and one async object-sync invocation per due object.

An object is due when no cycle holds its lease, no earlier fan-out claim is live, and its last
cycle ended at least its pause ago (per-object override) — or a cycle stopped at the time limit
and left a checkpoint to resume (``resume_pending``), which skips the pause.  The due check and
the claim are one conditional write (:meth:`StateStore.claim_dispatch`), so two dispatchers
never start the same object twice.

API economy (:class:`sfsync.dispatch.economy.ApiEconomy`, passed as ``economy``), between the due check
and the fan-out: the org back-off, the API budget and the change probe decide which due objects start
(:mod:`sfsync.dispatch.economy`).

The reason in :class:`DispatchResult` is the dispatcher's; the object-sync event carries it when
:class:`sfsync.core.events.ObjectSyncEvent` accepts it, and ``due`` otherwise (the cycle does its due
lifecycle work whatever the reason).

Objects are independent: each due object is its own asynchronous invocation, and an object's
backlog (a ``resume`` every tick) never holds another object back.

**The first full copy** (``copies``, :class:`sfsync.dispatch.copies.FullCopies`): before the due check
every object's copy state is read and decided (:func:`sfsync.dispatch.copies.copy_decisions`); an object
never copied, being copied, failed or re-synced by an operator (:func:`request_resync`) is held or has
its full-sync execution started instead of a cycle (:mod:`sfsync.dispatch.copies`).  Copy starts go
through the same economy (back-off, budget) as cycles, as unprobed work, and never start while an
incremental cycle of the object holds its lease.

``gate`` is a further seam (a callable that receives the due objects and returns the subset to
start plus a reason for each held back), applied after the economy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from sfsync.changes.health import CDC_REASON, cdc_health, cdc_pause, cycle_requested, emit_cdc_health
from sfsync.core.clock import to_iso_ms
from sfsync.core.config import Settings
from sfsync.core.events import ObjectSyncEvent, ResyncEvent
from sfsync.core.exceptions import DispatchFailed
from sfsync.core.observability import count, logger, metrics_for_object
from sfsync.core.registry import ObjectSpec
from sfsync.dispatch.copies import CopyDecision, CopyReport, FullCopies, copy_decisions, start_copies
from sfsync.dispatch.economy import ApiEconomy, Economy
from sfsync.inbound.starts import CycleStarter, start_cycle
from sfsync.salesforce.ports import EconomyPort
from sfsync.store.org_state import OrgStateStore
from sfsync.store.state import LeaseStatus, StateStore

#: Reasons the object-sync event accepts; any other is sent as ``due``.
EVENT_REASONS = frozenset(str(value) for value in get_args(ObjectSyncEvent.model_fields["reason"].annotation))

Gate = Callable[[Sequence[ObjectSpec]], tuple[list[ObjectSpec], dict[str, str]]]


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


# -- the tick ----------------------------------------------------------------------------------------


def dispatch(
    now: dt.datetime,
    settings: Settings,
    state: StateStore,
    invoker: CycleStarter,
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

    starts = [(spec.name, d) for spec, d in to_copy]
    failures = start_copies(starts, state, copies, now, skipped=result.skipped, report=result.copies)
    for spec, reason in due:
        start = start_cycle(
            state,
            invoker,
            spec.name,
            now=now,
            reason=event_reason(reason),
            not_ended_after=None if reason == CDC_REASON else now - dt.timedelta(seconds=pauses[spec.name]),
        )
        if start.outcome == "taken":
            result.skipped[spec.name] = "taken by a concurrent dispatch"
        elif start.outcome == "failed":
            failures.append(spec.name)
        else:
            result.started.append({"object": spec.name, "cycle_id": start.cycle_id, "reason": reason})
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
    invoker: CycleStarter,
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


__all__ = [
    "EVENT_REASONS",
    "DispatchResult",
    "Gate",
    "ResyncOutcome",
    "dispatch",
    "due_reason",
    "emit_health",
    "event_reason",
    "request_resync",
    "run_tick",
]
