"""Cheap change detection: which due objects have work, for a fraction of an API call each.

The dispatcher asks, for every due object, "did anything change since the watermark?" before it
fans out.  Each object is asked with two sObject replication resources (spec §3):

* ``GET …/sobjects/{O}/updated/?start=…&end=…`` (getUpdated: ids of live records stamped in the window)
* ``GET …/sobjects/{O}/deleted/?start=…&end=…`` (getDeleted: the delete log, ``earliestDateAvailable``)

packed into ``/composite`` requests (spec §6.9): up to 25 subrequests count as ONE API call, and
these are sObject resources, not queries, so the "at most 5 queries per composite" rule does not
apply to them.  One call covers 12 objects, so an idle check over ``n`` objects costs ⌈n/12⌉
calls.  Objects that are not ``replicateable`` are probed with a ``queryAll … LIMIT 1`` subrequest
instead (one slot, and at most 5 of those per call); :func:`plan_batches` packs both kinds into the
fewest calls.

**The probe never owns the watermark.**  It only decides whether a cycle should run; the cycle
re-reads ``[watermark - overlap, now - lag)`` itself.  Hence the rules, all "when in doubt, work":

* window: ``start = floor_minute(watermark - overlap)`` (the replication resources ignore seconds),
  ``end = max(ceil_minute(now), start + 1 min)`` so the partial minute in progress is covered too
  (``end`` may lie up to a minute in the future; Salesforce reports up to ``latestDateCovered``).
  Because ``start`` only moves when a *cycle* advances the watermark, anything a probe could not
  see yet (a change in the last seconds, a transaction still in flight at ``end``, an engine clock
  running behind Salesforce's) is inside the next probe's window a minute later: a change can be
  detected late, never lost.  The overlap makes the probe see late commits the cycle would see.
* no watermark yet, ``start`` older than getDeleted's 15-day (getUpdated's 30-day) reach, a
  subrequest that failed (``INVALID_REPLICATION_DATE``, ``EXCEEDED_ID_LIMIT``, not replicateable,
  anything ≥ 400), a composite call that failed, or ``earliestDateAvailable`` after ``start``
  (the delete log was purged: deletes may be gone, the object needs a targeted re-sync): the object
  has work and ``error`` / ``needs_resync`` says why.  Nothing is ever silently skipped.
* a consequence of the overlap: after a change, the object keeps showing work until its watermark
  has moved ``overlap`` past the change (one or two extra, cheap, no-op cycles).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sfsync.core.clock import UTC, parse_instant, require_aware, to_soql
from sfsync.core.exceptions import SalesforceAuthError, SalesforceConfigError, SalesforceError, SalesforceRateLimited
from sfsync.core.registry import ObjectSpec
from sfsync.salesforce.ports import ProbePort

MINUTE = dt.timedelta(minutes=1)
#: How far back getUpdated / getDeleted answer (spec §3.1, §3.2).
UPDATED_REACH = dt.timedelta(days=30)
DELETED_REACH = dt.timedelta(days=15)
#: Keep this far inside the reach: Salesforce checks it against its own clock at call time.
REACH_MARGIN = dt.timedelta(minutes=10)

MAX_SUBREQUESTS = 25
MAX_QUERY_SUBREQUESTS = 5
#: getUpdated + getDeleted of one object.
PAIR_SLOTS = 2
MAX_PAIRS_PER_CALL = MAX_SUBREQUESTS // PAIR_SLOTS

#: ``error`` values the probe sets itself (Salesforce's own ``errorCode`` otherwise).
NO_WATERMARK = "NO_WATERMARK"
WINDOW_TOO_OLD = "WINDOW_TOO_OLD"
PROBE_FAILED = "PROBE_FAILED"

_FATAL = (SalesforceRateLimited, SalesforceAuthError, SalesforceConfigError)


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One due object: its watermark (None: never synced), the cycle's overlap, how to probe it."""

    object_name: str
    watermark: dt.datetime | None
    overlap: dt.timedelta = dt.timedelta(minutes=10)
    replicateable: bool = True
    cursor: str = "SystemModstamp"


@dataclass(frozen=True, slots=True)
class ObjectProbe:
    """What the probe learned about one object."""

    object_name: str
    has_updates: bool = False
    has_deletes: bool = False
    updated_ids_count: int = 0
    deleted_ids_count: int = 0
    earliest_date_available: dt.datetime | None = None
    latest_date_covered: dt.datetime | None = None
    needs_resync: bool = False
    error: str | None = None
    window: tuple[dt.datetime, dt.datetime] | None = None

    @property
    def has_work(self) -> bool:
        return self.has_updates or self.has_deletes or self.needs_resync or self.error is not None

    @property
    def reason(self) -> str:
        if self.error is not None:
            return f"error: {self.error}"
        if self.needs_resync:
            return "delete log purged after the window start: re-sync needed"
        parts = []
        if self.has_updates:
            parts.append(f"{self.updated_ids_count} updated")
        if self.has_deletes:
            parts.append(f"{self.deleted_ids_count} deleted")
        return ", ".join(parts) if parts else "no change"


@dataclass
class ProbeResult:
    objects: dict[str, ObjectProbe] = field(default_factory=dict)
    api_calls: int = 0

    def with_work(self) -> list[str]:
        return [name for name, probe in self.objects.items() if probe.has_work]

    def idle(self) -> list[str]:
        return [name for name, probe in self.objects.items() if not probe.has_work]

    def to_dict(self) -> dict[str, Any]:
        return {
            "api_calls": self.api_calls,
            "objects": {name: {"has_work": p.has_work, "reason": p.reason} for name, p in self.objects.items()},
        }


# -- window arithmetic -----------------------------------------------------------------------------


def floor_minute(value: dt.datetime) -> dt.datetime:
    utc = require_aware(value).astimezone(UTC)
    return utc.replace(second=0, microsecond=0)


def ceil_minute(value: dt.datetime) -> dt.datetime:
    floor = floor_minute(value)
    return floor if floor == value else floor + MINUTE


def probe_window(watermark: dt.datetime, overlap: dt.timedelta, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` on whole minutes: from the watermark less the overlap up to ``now`` rounded up."""
    if overlap < dt.timedelta(0):
        raise ValueError(f"overlap must not be negative, got {overlap}")
    start = floor_minute(require_aware(watermark) - overlap)
    end = max(ceil_minute(require_aware(now)), start + MINUTE)
    return start, end


def window_too_old(start: dt.datetime, now: dt.datetime) -> str | None:
    """Why the replication resources cannot answer for ``start`` (None when they can)."""
    if start < now - DELETED_REACH + REACH_MARGIN:
        return f"window start {to_soql(start)} is beyond getDeleted's {DELETED_REACH.days}-day reach"
    return None


# -- batching ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """One composite call: objects probed with getUpdated + getDeleted, and objects probed by query."""

    pairs: tuple[str, ...] = ()
    queries: tuple[str, ...] = ()

    @property
    def subrequests(self) -> int:
        return PAIR_SLOTS * len(self.pairs) + len(self.queries)


def calls_needed(pairs: int, queries: int) -> int:
    """Fewest composite calls for ``pairs`` two-slot and ``queries`` one-slot (≤ 5 per call) probes."""
    if pairs < 0 or queries < 0:
        raise ValueError("counts must not be negative")
    if pairs == 0 and queries == 0:
        return 0
    n = max(1, math.ceil(queries / MAX_QUERY_SUBREQUESTS))
    while _pair_capacity(n, queries) < pairs:
        n += 1
    return n


def _pair_capacity(calls: int, queries: int) -> int:
    # One query fits in the odd 25th slot for free; every further two cost one pair.
    extra = max(0, queries - calls)
    return MAX_PAIRS_PER_CALL * calls - math.ceil(extra / 2)


def plan_batches(pairs: Sequence[str], queries: Sequence[str]) -> list[Batch]:
    """Pack the probes into the fewest composite calls (≤ 25 subrequests, ≤ 5 of them queries)."""
    n = calls_needed(len(pairs), len(queries))
    if n == 0:
        return []
    # spread the queries: one per call first (free), then two at a time (each two cost a pair)
    per_call = [0] * n
    left = len(queries)
    for i in range(n):
        if left:
            per_call[i] += 1
            left -= 1
    i = 0
    while left:
        take = min(left, 2, MAX_QUERY_SUBREQUESTS - per_call[i])
        per_call[i] += take
        left -= take
        i = (i + 1) % n
    batches: list[Batch] = []
    pair_iter, query_iter = iter(pairs), iter(queries)
    pairs_left = len(pairs)
    for q in per_call:
        k = min(pairs_left, (MAX_SUBREQUESTS - q) // PAIR_SLOTS)
        pairs_left -= k
        batches.append(Batch(tuple(next(pair_iter) for _ in range(k)), tuple(next(query_iter) for _ in range(q))))
    return [b for b in batches if b.pairs or b.queries]


# -- the probe -------------------------------------------------------------------------------------


@dataclass
class _Planned:
    target: ProbeTarget
    start: dt.datetime
    end: dt.datetime


def probe_changes(sf: ProbePort, due: Sequence[ProbeTarget], *, now: dt.datetime) -> ProbeResult:
    """Probe every due object; see the module docstring for what counts as work.

    ``now`` should be Salesforce's clock (:func:`sfsync.core.clock.salesforce_now`); an engine clock
    that is off by seconds only delays a detection by one dispatcher tick.  Raises the adapter's
    rate-limit, auth and configuration errors (the whole org must back off / is misconfigured);
    any other failure of a composite call marks that call's objects as having work.
    """
    now = require_aware(now).astimezone(UTC)
    names = [t.object_name for t in due]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"objects probed twice: {', '.join(duplicates)}")
    result = ProbeResult()
    planned: dict[str, _Planned] = {}
    for target in due:
        if target.watermark is None:
            result.objects[target.object_name] = ObjectProbe(target.object_name, error=NO_WATERMARK)
            continue
        start, end = probe_window(target.watermark, target.overlap, now)
        too_old = window_too_old(start, now) if target.replicateable else None
        if too_old is not None:
            result.objects[target.object_name] = ObjectProbe(
                target.object_name, error=f"{WINDOW_TOO_OLD}: {too_old}", window=(start, end)
            )
            continue
        planned[target.object_name] = _Planned(target, start, end)

    pairs = [name for name, p in planned.items() if p.target.replicateable]
    queries = [name for name, p in planned.items() if not p.target.replicateable]
    calls_before = sf.calls_made
    try:
        for batch in plan_batches(pairs, queries):
            result.objects.update(_run_batch(sf, batch, planned))
    finally:
        result.api_calls = sf.calls_made - calls_before
    # keep the caller's order
    result.objects = {name: result.objects[name] for name in names}
    return result


def probe_gate(
    sf: ProbePort,
    watermark_of: Callable[[str], dt.datetime | None],
    *,
    overlap: dt.timedelta,
    now: dt.datetime,
    not_replicateable: Collection[str] = (),
    on_result: Callable[[ProbeResult], None] | None = None,
) -> Callable[[Sequence[ObjectSpec]], tuple[list[ObjectSpec], dict[str, str]]]:
    """A :data:`sfsync.dispatch.dispatcher.Gate`: keep the due objects the probe finds work for.

    ``watermark_of`` reads an object's watermark (``StateStore.get_watermark(name).value``);
    ``on_result`` receives the whole :class:`ProbeResult` (log it, meter ``api_calls``).
    """

    def gate(specs: Sequence[ObjectSpec]) -> tuple[list[ObjectSpec], dict[str, str]]:
        due = [
            ProbeTarget(spec.name, watermark_of(spec.name), overlap, spec.name not in not_replicateable, spec.cursor)
            for spec in specs
        ]
        result = probe_changes(sf, due, now=now)
        if on_result is not None:
            on_result(result)
        allowed = [spec for spec in specs if result.objects[spec.name].has_work]
        held = {
            name: f"probe: no change since {to_soql(p.window[0]) if p.window else '?'}"
            for name, p in result.objects.items()
            if not p.has_work
        }
        return allowed, held

    return gate


def _run_batch(sf: ProbePort, batch: Batch, planned: dict[str, _Planned]) -> dict[str, ObjectProbe]:
    base = f"/services/data/v{sf.api_version}"
    subrequests: list[dict[str, Any]] = []
    refs: dict[str, tuple[str, str]] = {}
    for i, name in enumerate(batch.pairs):
        p = planned[name]
        window = f"?start={_param(p.start)}&end={_param(p.end)}"
        for kind in ("updated", "deleted"):
            ref = f"{kind[0]}{i}"
            refs[ref] = (name, kind)
            subrequests.append({"method": "GET", "url": f"{base}/sobjects/{name}/{kind}/{window}", "referenceId": ref})
    for i, name in enumerate(batch.queries):
        p = planned[name]
        soql = f"SELECT Id FROM {name} WHERE {p.target.cursor} >= {to_soql(p.start)} LIMIT 1"
        ref = f"q{i}"
        refs[ref] = (name, "query")
        subrequests.append({"method": "GET", "url": f"{base}/queryAll/?q={quote(soql, safe='')}", "referenceId": ref})

    members = [*batch.pairs, *batch.queries]
    try:
        responses = sf.composite(subrequests, all_or_none=False)
    except _FATAL:
        raise
    except SalesforceError as exc:
        return {
            name: ObjectProbe(name, error=f"{PROBE_FAILED}: {exc}", window=(planned[name].start, planned[name].end))
            for name in members
        }

    found: dict[str, dict[str, Any]] = {name: {} for name in members}
    errors: dict[str, list[str]] = {name: [] for name in members}
    for response in responses:
        ref = str(response.get("referenceId", ""))
        if ref not in refs:
            continue
        name, kind = refs.pop(ref)
        status = response.get("httpStatusCode")
        body = response.get("body")
        if not isinstance(status, int) or status >= 400 or not isinstance(body, dict):
            errors[name].append(f"{kind}: {_error_text(status, body)}")
        else:
            found[name][kind] = body
    for ref, (name, kind) in refs.items():  # a subrequest Salesforce did not answer
        errors[name].append(f"{kind}: no response for subrequest {ref}")

    out: dict[str, ObjectProbe] = {}
    for name in members:
        p = planned[name]
        try:
            out[name] = _interpret(name, p, found[name], errors[name])
        except (ValueError, TypeError) as exc:
            out[name] = ObjectProbe(name, error=f"{PROBE_FAILED}: unreadable answer ({exc})", window=(p.start, p.end))
    return out


def _interpret(name: str, p: _Planned, bodies: dict[str, Any], errors: list[str]) -> ObjectProbe:
    window = (p.start, p.end)
    error = "; ".join(errors) if errors else None
    if "query" in bodies:
        body = bodies["query"]
        records = body.get("records") or []
        hits = max(int(body.get("totalSize", 0)), len(records))
        return ObjectProbe(name, has_updates=hits > 0, updated_ids_count=hits, error=error, window=window)
    updated = bodies.get("updated", {})
    deleted = bodies.get("deleted", {})
    ids = updated.get("ids") or []
    deleted_records = deleted.get("deletedRecords") or []
    earliest = _instant(deleted.get("earliestDateAvailable"))
    latest = _instant(updated.get("latestDateCovered"))
    return ObjectProbe(
        name,
        has_updates=len(ids) > 0,
        has_deletes=len(deleted_records) > 0,
        updated_ids_count=len(ids),
        deleted_ids_count=len(deleted_records),
        earliest_date_available=earliest,
        latest_date_covered=latest,
        needs_resync=earliest is not None and earliest > p.start,
        error=error,
        window=window,
    )


def _instant(value: Any) -> dt.datetime | None:
    return parse_instant(value) if isinstance(value, str) and value else None


def _param(value: dt.datetime) -> str:
    """ISO-8601 with offset, URL-encoded (spec §3.1: ``2013-05-06T00%3A00%3A00%2B00%3A00``)."""
    return quote(value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00"), safe="")


def _error_text(status: Any, body: Any) -> str:
    if isinstance(body, list) and body and isinstance(body[0], dict):
        first = body[0]
        code = first.get("errorCode") or first.get("statusCode") or "ERROR"
        return f"{code} (HTTP {status}): {first.get('message', '')}".strip()
    return f"HTTP {status}: {str(body)[:200]}"


__all__ = [
    "DELETED_REACH",
    "NO_WATERMARK",
    "PROBE_FAILED",
    "UPDATED_REACH",
    "WINDOW_TOO_OLD",
    "Batch",
    "ObjectProbe",
    "ProbeResult",
    "ProbeTarget",
    "calls_needed",
    "ceil_minute",
    "floor_minute",
    "plan_batches",
    "probe_changes",
    "probe_gate",
    "probe_window",
    "window_too_old",
]
