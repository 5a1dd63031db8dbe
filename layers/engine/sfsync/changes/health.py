"""The dispatcher's side of change events: cadence, cycles asked for, and the health metric.

* **Back-off while healthy**: an object whose events flow (one received within the CDC pause, no loss
  detected) pauses ``SFSYNC_CDC_PAUSE_SECONDS`` (default 900) between cycles instead of its normal
  pause: the events keep it current, the cycle (and its cheap change probe) only has to catch what
  an event missed, so a lost event costs at most one such pause.  When the events stop (none within
  the CDC pause) or a loss is detected (unhealthy), the normal pause is back on the next tick.
* **A cycle at once**: a detected loss (``GAP_OVERFLOW``, events older than the bus retention, a
  wildcard id) asks for the object's cycle (``cycle_requested_at``); the dispatcher starts it with
  reason ``cdc`` whatever the pause, unprobed, unless a cycle ended after the request.
* ``CdcUnhealthy`` (1/0) every tick for every object that ever received an event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from sfsync.core.config import Settings
from sfsync.core.exceptions import SfsyncError
from sfsync.core.observability import logger, metrics_for_object
from sfsync.store.state import CdcHealth, LeaseStatus, StateStore

#: The dispatcher's reason for a cycle change events asked for.
CDC_REASON = "cdc"


def cdc_health(state: StateStore, names: Sequence[str], settings: Settings) -> dict[str, CdcHealth]:
    """Every object's health (one batch read), or nothing when the stack receives no change events."""
    if not settings.cdc_enabled:
        return {}
    return state.cdc_health(list(names))


def cdc_pause(pause_seconds: int, health: CdcHealth | None, now: dt.datetime, settings: Settings) -> int:
    """The object's pause: the CDC pause while its events flow healthily, else its normal pause."""
    if health is None or health.status(now, settings.cdc_pause_seconds) != "on":
        return pause_seconds
    return max(pause_seconds, settings.cdc_pause_seconds)


def cycle_requested(health: CdcHealth | None, status: LeaseStatus, now: dt.datetime) -> str | None:
    """Why change events ask for a cycle of the object now (None: they do not, or one already ran)."""
    if health is None or health.cycle_requested_at is None:
        return None
    if status.running(now) or status.claimed(now):
        return None
    if status.last_ended_at is not None and status.last_ended_at >= health.cycle_requested_at:
        return None
    return f"change events asked for a cycle ({health.unhealthy_reason or 'loss detected'})"


def note_cycle(
    state: StateStore, object_name: str, *, missed: int, started: dt.datetime, now: dt.datetime, settings: Settings
) -> None:
    """After a cycle's completed window: rows it had to write are changes no event delivered
    (``CdcMissedChanges``; the object turns unhealthy), a clean cycle heals it (see
    :meth:`StateStore.note_cycle_for_cdc`).  A failure to record it is logged, never the cycle's failure."""
    if not settings.cdc_enabled:
        return
    try:
        state.note_cycle_for_cdc(object_name, missed=missed, started=started, now=now)
    except SfsyncError as exc:
        logger.warning("could not record the cycle for the change-event health", extra={"error": str(exc)})
        return
    if missed:
        with metrics_for_object(object_name) as m:
            m.add("CdcMissedChanges", missed)


def emit_cdc_health(health: Mapping[str, CdcHealth], now: dt.datetime, settings: Settings) -> dict[str, str]:
    """``CdcUnhealthy`` per object that receives events; returns each object's status (off/on/quiet/unhealthy)."""
    statuses: dict[str, str] = {}
    for name, item in health.items():
        status = item.status(now, settings.cdc_pause_seconds)
        statuses[name] = status
        if status == "off":
            continue
        with metrics_for_object(name) as m:
            m.add("CdcUnhealthy", 1 if status == "unhealthy" else 0)
    unhealthy = {name: health[name].unhealthy_reason for name, s in statuses.items() if s == "unhealthy"}
    if unhealthy:
        logger.warning("change events unhealthy: normal cadence", extra={"cdc_unhealthy": unhealthy})
    return statuses


__all__ = ["CDC_REASON", "cdc_health", "cdc_pause", "cycle_requested", "emit_cdc_health", "note_cycle"]
