"""Window maths: what a cycle reads, where it resumes, when a window is split.  Pure: no I/O.

A cycle reads a half-open window ``[lo, hi)`` of ``SystemModstamp`` in ``(SystemModstamp, Id)``
order.  Rules (persistence is :mod:`sfsync.store.state`, reading is :mod:`sfsync.inbound.cycle`):

* ``lo = watermark - overlap`` (never below the epoch), ``hi = salesforce_now - lag`` truncated to
  milliseconds; an object never copied reads from the epoch; a window that would move the
  watermark backwards is empty (:func:`plan_window`).
* An unfinished :class:`Checkpoint` wins: its own window, after its last persisted row (exclusive).
* The position inside a window never moves back (:func:`position_after`); nor does the watermark
  (:func:`advance_watermark`).
* ``QUERY_TIMEOUT`` halves the part of the window still to read, down to :data:`MIN_SPLIT`
  (:func:`split_point`).

This module sits in ``core`` so that both the store (which persists checkpoints) and the cycle
(which plans and reads windows) can use its value types with the import graph pointing down.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sfsync.core.clock import EPOCH, UTC, require_aware

#: A window is not split below this span on QUERY_TIMEOUT (the error is raised instead).
MIN_SPLIT = dt.timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Position:
    """A point in ``(SystemModstamp, Id)`` order: the last persisted row."""

    stamp: dt.datetime
    record_id: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    cycle_id: str
    lo: dt.datetime
    hi: dt.datetime
    last: Position | None = None
    next_url: str | None = None
    records_done: int = 0
    #: A Bulk API 2.0 job reading the rest of the window (large backlogs), and the locator of its
    #: next unread result set (None: the first).
    bulk_job_id: str | None = None
    bulk_locator: str | None = None


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """What a cycle reads: ``[lo, hi)`` after ``resume_after`` (exclusive) when set."""

    lo: dt.datetime
    hi: dt.datetime
    resume_after: Position | None = None
    resumed: bool = False

    @property
    def empty(self) -> bool:
        return self.hi <= self.lo


def truncate_ms(instant: dt.datetime) -> dt.datetime:
    """``instant`` without its sub-millisecond part (the stored and queried form has milliseconds)."""
    return instant.replace(microsecond=(instant.microsecond // 1000) * 1000)


def plan_window(
    *,
    watermark: dt.datetime | None,
    checkpoint: Checkpoint | None,
    salesforce_now: dt.datetime,
    overlap_seconds: int,
    lag_seconds: int,
) -> WindowPlan:
    """The next window for an object.

    An unfinished checkpoint wins: its window is finished first, from after its last persisted
    row, with its original ``hi`` (so a resumed window is exactly the window that was started).
    Otherwise ``[max(epoch, watermark - overlap), salesforce_now - lag)``; if that is empty (clock
    skew, or the lag not yet passed) nothing is read and the watermark stays.
    """
    if checkpoint is not None:
        return WindowPlan(checkpoint.lo, checkpoint.hi, checkpoint.last, resumed=True)
    base = require_aware(watermark) if watermark is not None else EPOCH
    lo = max(EPOCH, base - dt.timedelta(seconds=overlap_seconds))
    hi = truncate_ms(require_aware(salesforce_now).astimezone(UTC) - dt.timedelta(seconds=lag_seconds))
    if watermark is not None and hi < base:
        hi = lo  # never plan a window that would move the watermark backwards
    return WindowPlan(lo, hi)


def advance_watermark(current: dt.datetime | None, window_hi: dt.datetime) -> dt.datetime:
    """The watermark after a completed window: ``hi``, never lower than before."""
    return window_hi if current is None or window_hi > current else current


def position_after(position: Position | None, stamp: dt.datetime, record_id: str) -> Position:
    """The checkpoint position after persisting a row; never moves backwards."""
    candidate = Position(stamp, record_id)
    if position is None:
        return candidate
    if (candidate.stamp, candidate.record_id) > (position.stamp, position.record_id):
        return candidate
    return position


def split_point(lo: dt.datetime, end: dt.datetime) -> dt.datetime | None:
    """Where ``[lo, end)`` is cut after a ``QUERY_TIMEOUT``: its middle, truncated to milliseconds;
    None when the span is :data:`MIN_SPLIT` or less (it is not split: the timeout stands)."""
    if end - lo <= MIN_SPLIT:
        return None
    return truncate_ms(lo + (end - lo) / 2)


__all__ = [
    "MIN_SPLIT",
    "Checkpoint",
    "Position",
    "WindowPlan",
    "advance_watermark",
    "plan_window",
    "position_after",
    "split_point",
    "truncate_ms",
]
