"""The sweep and the retry: pending local changes reach Salesforce whatever happened to the stream.

The stream keeps records 24 hours, and Lambda gives up on a batch after its retries (the on-failure
queue gets pointers, not records).  The write-back therefore marks every local change pending on
the item itself (``_pending_since``, the first act of every invocation, see :mod:`sfsync.writeback.settle`)
and clears the mark only when the change is settled.  The sweep (WriteBackFunction's schedule,
``{"sweep": {}}``, every 5 minutes) finds the items pending longer than :data:`OVERDUE` through the
sparse ``ByPending`` index of each two-way table, plus the overdue delete intents of the state
table, and pushes them through the stream path (the change is the item as it is now; creates keep
their create intent).  Each is claimed first (a conditional write), so a stream invocation or
another sweep working on it meanwhile is left alone.

A re-drive that fails backs off per item (:func:`next_attempt`: 5 minutes doubling up to 4 hours);
after :data:`FAILED_AFTER_ATTEMPTS` attempts (about a day) the record is listed as ``failed`` in
the errors table and still retried at the cap, never dropped.

``{"retry": {"object": "Lead", "ids": [...]}}`` (``sfsync errors retry``) re-drives named records at
once, refused ones included (their local value still differs from ``_base``); without ids, every
record of the object listed by ``sfsync errors`` or pending.

While ``SFSYNC_WRITEBACK`` is invalid neither re-drives anything (the sweep still emits its pending
and overdue counts) and both fail with the configuration error: the defaults must never decide in
place of the operator's options.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sfsync.core import clock as sfclock
from sfsync.core.events import RetryEvent, SweepEvent
from sfsync.core.observability import logger, metrics_for_object
from sfsync.store.writeback import PENDING_RETRY_AT, PENDING_SINCE
from sfsync.writeback.model import (
    BACKOFF_CAP,
    BACKOFF_FIRST,
    FAILED_AFTER_ATTEMPTS,
    OVERDUE,
    WriteBackDeps,
    next_attempt,
)
from sfsync.writeback.run import WriteBack, emit_metrics, raise_configuration_problem

#: Items (and delete intents) one sweep re-drives per object; the rest waits for the next one.
SWEEP_LIMIT = 1000


@dataclass
class ObjectSweep:
    pending: int = 0
    overdue: int = 0
    redriven: int = 0
    failed: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"pending": self.pending, "overdue": self.overdue, "redriven": self.redriven, "failed": self.failed}


@dataclass
class SweepOutcome:
    objects: dict[str, ObjectSweep] = field(default_factory=dict)
    api_calls: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"sweep": {obj: s.to_dict() for obj, s in self.objects.items()}, "api_calls": self.api_calls}


def _two_way(deps: WriteBackDeps, names: Sequence[str] | None) -> list[str]:
    objects = [spec.name for spec in deps.settings.registry if spec.writes_back]
    return [o for o in objects if names is None or o in names]


def run_sweep(event: SweepEvent, deps: WriteBackDeps) -> SweepOutcome:
    """Re-drive every overdue pending change of the two-way objects (see the module docstring)."""
    now = deps.clock.now()
    cutoff = sfclock.to_iso_ms(now - OVERDUE)
    outcome = SweepOutcome()
    owner = f"sweep-{uuid.uuid4().hex[:12]}"
    for obj in _two_way(deps, event.sweep.objects):
        run = WriteBack(deps, owner=owner)
        table = run.context.table(obj)
        pending, keys = run.tables.query_pending(table, obj, cutoff)
        intents = [i for i in run.tables.delete_intents(obj) if i.get("status") == "pending"]
        overdue_deletes = [
            str(i["sk"]).removeprefix("DELETE#")
            for i in intents
            if str(i.get(PENDING_SINCE, "")) <= cutoff and str(i.get(PENDING_RETRY_AT) or "") <= sfclock.to_iso_ms(now)
        ]
        stats = outcome.objects.setdefault(obj, ObjectSweep())
        stats.pending = pending + len(intents)
        stats.overdue = len(keys) + len(overdue_deletes)
        with metrics_for_object(obj) as single:
            single.add("LocalEditsPending", stats.pending)
            single.add("LocalEditsOverdue", stats.overdue)
        if not stats.overdue or deps.config_problem is not None:
            continue
        logger.info(
            "sweep: overdue local changes", extra={"object": obj, "pending": stats.pending, "overdue": stats.overdue}
        )
        result = run.redrive(obj, keys[:SWEEP_LIMIT], overdue_deletes[:SWEEP_LIMIT], mark_first=False)
        stats.redriven = run.redriven()
        stats.failed = len(result.failed)
        outcome.api_calls += result.api_calls
        emit_metrics(result)
    raise_configuration_problem(deps)  # the metrics above are out; nothing was re-driven
    return outcome


def run_retry(event: RetryEvent, deps: WriteBackDeps) -> dict[str, Any]:
    """Re-drive named records of one object now (``sfsync errors retry``); see the module docstring."""
    raise_configuration_problem(deps)
    obj = event.retry.object
    if obj not in _two_way(deps, None):
        known = ", ".join(_two_way(deps, None))
        return {"retry": {"object": obj, "refused": f"{obj} is not a two-way object of this stack ({known})"}}
    run = WriteBack(deps, owner=f"retry-{uuid.uuid4().hex[:12]}")
    table = run.context.table(obj)
    ids = list(dict.fromkeys(event.retry.ids))
    if not ids:
        _, pending = run.tables.query_pending(table, obj, None)
        ids = list(dict.fromkeys([str(p.get("record_id")) for p in run.tables.open_problems(obj)] + pending))
        ids += [str(i["sk"]).removeprefix("DELETE#") for i in run.tables.delete_intents(obj)]
        ids = list(dict.fromkeys(ids))
    items = run.tables.get_items(table, ids)
    intents = {str(i["sk"]).removeprefix("DELETE#") for i in run.tables.delete_intents(obj)}
    keys = [i for i in ids if i in items]
    deletes = [i for i in ids if i not in items and i in intents]
    unknown = [i for i in ids if i not in items and i not in intents]
    logger.info(
        "retry requested",
        extra={"object": obj, "requested_by": event.requested_by, "records": len(ids), "unknown": len(unknown)},
    )
    result = run.redrive(obj, keys, deletes, mark_first=True)
    emit_metrics(result)
    counters = result.counters.get(obj)
    return {
        "retry": {
            "object": obj,
            "requested_by": event.requested_by,
            "records": len(keys) + len(deletes),
            "unknown": unknown,
            "failed": len(result.failed),
            "pushed": counters.pushed if counters else 0,
            "created": counters.created if counters else 0,
            "deleted": counters.deleted if counters else 0,
            "refused": counters.refused if counters else 0,
        },
        "api_calls": result.api_calls,
    }


__all__ = [
    "BACKOFF_CAP",
    "BACKOFF_FIRST",
    "FAILED_AFTER_ATTEMPTS",
    "OVERDUE",
    "SWEEP_LIMIT",
    "SweepOutcome",
    "next_attempt",
    "run_retry",
    "run_sweep",
]
