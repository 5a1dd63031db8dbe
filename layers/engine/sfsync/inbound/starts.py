"""Starting an object's incremental cycle: claim it, then invoke ObjectSyncFunction.

The dispatcher's tick and a change-event batch that detected a loss both start cycles the same way.
The claim (:meth:`sfsync.store.state.StateStore.claim_dispatch`) is the atomic "is it due?" check:
two starters racing for one object get one claim, so at most one cycle starts.  A failed invoke
leaves the claim to expire (the next tick starts the cycle) and is counted (``DispatchFailed``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, Protocol

from sfsync.core.exceptions import DispatchFailed
from sfsync.core.observability import count, logger
from sfsync.store.state import CLAIM_SECONDS, StateStore, new_cycle_id


class CycleStarter(Protocol):
    """What starts ObjectSyncFunction (``sfsync.store.aws.LambdaInvoker``: an asynchronous invoke)."""

    def start_object_sync(self, object_name: str, cycle_id: str, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class CycleStart:
    """``started``; ``taken``: not claimed (a cycle runs or is starting, or the object is not due);
    ``failed``: claimed, but the invoke failed (logged and counted)."""

    outcome: Literal["started", "taken", "failed"]
    cycle_id: str


def start_cycle(
    state: StateStore,
    starter: CycleStarter,
    object_name: str,
    *,
    now: dt.datetime,
    reason: str,
    not_ended_after: dt.datetime | None,
) -> CycleStart:
    """Claim ``object_name``'s next cycle and start it with ``reason`` (the event's reason).

    ``not_ended_after``: the object is due only if its last cycle ended at or before it (None: due
    whenever no cycle runs).
    """
    cycle_id = new_cycle_id(object_name, now)
    claimed = state.claim_dispatch(
        object_name, cycle_id, now=now, claim_seconds=CLAIM_SECONDS, not_ended_after=not_ended_after
    )
    if not claimed:
        return CycleStart("taken", cycle_id)
    try:
        starter.start_object_sync(object_name, cycle_id, reason)
    except DispatchFailed as exc:
        logger.error("could not start the object sync", extra={"object": object_name, "error": str(exc)})
        count("DispatchFailed")
        return CycleStart("failed", cycle_id)
    return CycleStart("started", cycle_id)


__all__ = ["CycleStart", "CycleStarter", "start_cycle"]
