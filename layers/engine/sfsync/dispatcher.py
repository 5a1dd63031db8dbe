"""The dispatcher: which objects are due, and one async object-sync invocation per due object.

An object is due when no cycle holds its lease, no earlier fan-out claim is live, and its last
cycle ended at least its pause ago (per-object override) — or a cycle stopped at the time limit
and left a checkpoint to resume (``resume_pending``), which skips the pause.  The due check and
the claim are one conditional write (:meth:`StateStore.claim_dispatch`), so two dispatchers
never start the same object twice.

Seam for a later issue: change probes through ``/composite`` and the API-budget gate plug in as
``gate`` (a callable that receives the due objects and returns the subset to start plus a reason
for each held back), between the due check and the fan-out.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sfsync.clock import to_iso_ms
from sfsync.config import Settings
from sfsync.exceptions import DispatchFailed
from sfsync.observability import count, logger
from sfsync.registry import ObjectSpec
from sfsync.state import LeaseStatus, StateStore

#: How long a fan-out claim blocks another dispatch of the object (the longest Lambda run).
CLAIM_SECONDS = 900

Gate = Callable[[Sequence[ObjectSpec]], tuple[list[ObjectSpec], dict[str, str]]]


class Invoker(Protocol):
    def start_object_sync(self, object_name: str, cycle_id: str, reason: str) -> None: ...


@dataclass
class DispatchResult:
    started: list[dict[str, str]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"started": list(self.started), "skipped": dict(self.skipped)}


def new_cycle_id(object_name: str, now: dt.datetime) -> str:
    return f"{object_name}-{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


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
            invoker.start_object_sync(spec.name, cycle_id, reason)
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


__all__ = ["CLAIM_SECONDS", "DispatchResult", "Gate", "Invoker", "dispatch", "due_reason", "new_cycle_id"]
