"""The engine's single Logger, Metrics and Tracer, the metric catalogue and the metric helpers.

Every module logs through :data:`logger`; handlers decorate with ``logger.inject_lambda_context``,
``metrics.log_metrics`` and ``tracer.capture_lambda_handler(capture_response=False)``.

**The metric catalogue** (:data:`METRICS`) names every metric the engine emits, with its unit and
its dimensions.  Namespace :data:`NAMESPACE`; a service-level metric has the dimension ``service``
(Powertools adds it), a per-object one ``object`` and ``service``.  :func:`count`,
:func:`emit_cycle_metrics` and :class:`ObjectMetrics` refuse a name the catalogue does not hold, so
an alarm (``template.yaml``) and the code that feeds it cannot drift apart: the static template
tests check every alarm against this catalogue.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from sfsync.core.exceptions import UnknownMetric

SERVICE = "sfsync"
NAMESPACE = "sfsync"

logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=NAMESPACE)
tracer = Tracer(service=SERVICE)

#: Dimensions of a service-level metric and of a per-object metric (Powertools adds ``service``).
SERVICE_DIMENSIONS: tuple[str, ...] = ("service",)
OBJECT_DIMENSIONS: tuple[str, ...] = ("object", "service")


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One metric of the catalogue: its unit, whether it carries the ``object`` dimension, what it means."""

    unit: MetricUnit
    per_object: bool
    meaning: str

    @property
    def dimensions(self) -> tuple[str, ...]:
        return OBJECT_DIMENSIONS if self.per_object else SERVICE_DIMENSIONS


_C, _S, _MS, _P = MetricUnit.Count, MetricUnit.Seconds, MetricUnit.Milliseconds, MetricUnit.Percent


def _object(unit: MetricUnit, meaning: str) -> MetricDef:
    return MetricDef(unit, True, meaning)


def _service(unit: MetricUnit, meaning: str) -> MetricDef:
    return MetricDef(unit, False, meaning)


#: Every metric the engine emits (name -> definition).
METRICS: dict[str, MetricDef] = {
    # -- incremental cycles (one EMF blob per cycle, dimension object)
    "RecordsRead": _object(_C, "rows read from Salesforce by a cycle"),
    "RecordsCreated": _object(_C, "items created by a cycle"),
    "RecordsUpdated": _object(_C, "items updated by a cycle"),
    "RecordsDeleted": _object(_C, "items tombstoned by a cycle"),
    "RecordsSkipped": _object(_C, "rows a cycle did not need to write (replays, older versions)"),
    "RecordsFailed": _object(_C, "rows a cycle could not store (errors table)"),
    "ApiCalls": _object(_C, "Salesforce API calls of a cycle"),
    "WatermarkLagSeconds": _object(_S, "Salesforce's now minus the watermark at the end of a cycle"),
    "Backlog": _object(_C, "rows left in the window when a cycle stopped"),
    "CycleDurationMs": _object(_MS, "wall time of a cycle"),
    "CycleFailed": _object(_C, "a cycle ended failed (the object is unavailable, or an error was raised)"),
    "QuerySplits": _object(_C, "windows split because a query timed out"),
    "BulkRows": _object(_C, "rows a cycle read with Bulk API 2.0"),
    "FieldsAppeared": _object(_C, "fields that became readable"),
    "FieldsDisappeared": _object(_C, "fields that stopped being readable"),
    "RowsBackfilled": _object(_C, "items back-filled with a newly readable field"),
    "FormulaRowsRefreshed": _object(_C, "items whose formula values were refreshed"),
    "HardDeletesTombstoned": _object(_C, "items tombstoned from getDeleted"),
    "ReconcileTombstoned": _object(_C, "items tombstoned by an Id reconciliation"),
    "ReconcileReread": _object(_C, "items re-read by an Id reconciliation"),
    # -- per-object health, emitted by the dispatcher on every tick
    "FreshnessSeconds": _object(
        _S, "age of the newest moment at which the object's copy was known complete (copied objects only)"
    ),
    "NeedsAttention": _object(_C, "1 while the object is parked and needs a person (reason in sfsync status)"),
    "CopyReconciled": _object(_C, "a copy document left running by an execution that ended was marked failed"),
    # -- the first full copy
    "FullSyncRecordsCopied": _object(_C, "records copied so far"),
    "FullSyncRecordsPerSecond": _object(MetricUnit.CountPerSecond, "copy rate"),
    "FullSyncEtaSeconds": _object(_S, "estimated time to the end of the copy"),
    "FullSyncProgressPercent": _object(_P, "share of the object copied"),
    "FullSyncFailed": _object(_C, "an object's copy failed (recorded, retried by the dispatcher)"),
    "FullSyncBulkJobFailed": _object(_C, "a Bulk job of the copy failed (retried, split or read with REST)"),
    # -- the write-back
    "WriteBackPushed": _object(_C, "local changes Salesforce accepted"),
    "WriteBackCreated": _object(_C, "local creates made in Salesforce"),
    "WriteBackConflicts": _object(_C, "fields changed on both sides"),
    "WriteBackRefused": _object(_C, "local changes Salesforce or the engine refused (errors table)"),
    "WriteBackRejected": _object(_C, "local changes of fields that cannot be written"),
    "WriteBackRetried": _object(_C, "records reported for retry"),
    "WriteBackRedirected": _object(_C, "changes sent to a converted lead's contact or a merge master"),
    "WriteBackDeleted": _object(_C, "local deletes pushed"),
    "WriteBackLagSeconds": _object(_S, "local write to Salesforce acceptance"),
    "LocalEditsPending": _object(_C, "items whose local change is not in Salesforce yet (sweep)"),
    "LocalEditsOverdue": _object(_C, "pending local changes older than the sweep's overdue age"),
    # -- change events (Event Relay -> EventBridge -> SQS -> ChangeEventFunction, sfsync.changes)
    "CdcEventsApplied": _object(_C, "change events whose records were brought up to date"),
    "CdcRecordsReread": _object(_C, "records re-read from Salesforce because of change events (gaps, deletes, ...)"),
    "CdcGapsHandled": _object(_C, "gap events (GAP_*, GAP_OVERFLOW) and detected losses handled"),
    "CdcEchoes": _object(_C, "change events caused by the write-back (client=sfsync)"),
    "CdcLagSeconds": _object(_S, "Salesforce commit to the item written, newest event of a batch"),
    "CdcUnhealthy": _object(_C, "1 while the object's change events are unhealthy (a loss was detected)"),
    "CdcMissedChanges": _object(_C, "rows a cycle had to write that no change event had delivered"),
    # -- service level (dimension service)
    "InvalidEvent": _service(_C, "an invocation event of the wrong shape (nothing written)"),
    "InvalidExecutionInput": _service(_C, "a full-copy step input of the wrong shape (nothing written)"),
    "ConfigurationError": _service(_C, "the function's configuration or secret is unusable"),
    "LeaseHeld": _service(_C, "a cycle found its object's lease held and did nothing"),
    "ObjectUnavailable": _service(_C, "an object the integration user cannot query"),
    "FieldNotReadable": _service(_C, "a configured field the integration user cannot read"),
    "OrgBackoff": _service(_C, "REQUEST_LIMIT_EXCEEDED: the whole org backs off"),
    "SalesforceReauthenticated": _service(
        _C, "the Salesforce client logged in again after INVALID_SESSION_ID (an expired or revoked token)"
    ),
    "ClockSkewSeconds": _service(
        _S, "the engine clock minus Salesforce's (the Date of the tick's probe response); windows use Salesforce's"
    ),
    "ObjectsHeld": _service(_C, "objects the API economy held back this tick"),
    "ObjectsDispatched": _service(_C, "object syncs started this tick"),
    "DispatchFailed": _service(_C, "an object sync or copy could not be started"),
    "FullCopiesStarted": _service(_C, "full-copy executions started this tick"),
    "FullCopiesAlreadyStarted": _service(_C, "full-copy starts that found their execution running"),
    "ObjectsHeldForCopy": _service(_C, "objects held because of their full copy"),
    "FullSyncObjectFailed": _service(_C, "an object's copy failed"),
    "ProbeApiCalls": _service(_C, "API calls of the change probe"),
    "LifecycleDispatches": _service(_C, "idle objects started for due lifecycle work"),
    "ResyncRequested": _service(_C, "objects an operator asked to copy again"),
    "ResyncRejected": _service(_C, "re-sync requests naming unknown objects"),
    "ApiBudgetPaused": _service(_C, "1 while new work is held by the API budget"),
    "ApiUsagePercent": _service(_P, "the org's daily API usage"),
    "CyclesComplete": _service(_C, "cycles that completed their window"),
    "CyclesPartial": _service(_C, "cycles that stopped at the time limit (a checkpoint waits)"),
    "CyclesEmpty": _service(_C, "cycles with nothing to read yet"),
    "CyclesFailed": _service(_C, "cycles that failed"),
    "CyclesBackoff": _service(_C, "cycles that found the org backed off"),
    "WriteBackRecordsSeen": _service(_C, "stream records the write-back received"),
    "WriteBackRecordsFailed": _service(_C, "stream records reported as batch item failures"),
    "ChangeEventsReceived": _service(_C, "change-event messages the change-event function received"),
    "ChangeEventsRejected": _service(_C, "unusable change events (malformed, unknown object, ...): errors table"),
    "ChangeEventsFailed": _service(_C, "change-event messages reported for retry (batch item failures)"),
    "WriteBackRecordsIgnored": _service(_C, "stream records of an unknown table or a one-way object (logged)"),
}

#: Cycle counters, in the order they are emitted (dimension ``object``).
CYCLE_COUNTERS: tuple[str, ...] = (
    "RecordsRead",
    "RecordsCreated",
    "RecordsUpdated",
    "RecordsDeleted",
    "RecordsSkipped",
    "RecordsFailed",
    "ApiCalls",
)


def metric_def(name: str, *, per_object: bool) -> MetricDef:
    """The catalogue entry of ``name``; :class:`UnknownMetric` when it is absent or of the other kind."""
    found = METRICS.get(name)
    if found is None or found.per_object != per_object:
        kind = "per-object" if per_object else "service-level"
        raise UnknownMetric(f"{name!r} is not a {kind} metric of sfsync.core.observability.METRICS")
    return found


def bind(**keys: str | None) -> None:
    """Append keys (``object``, ``cycle_id``, ``reason`` ...) to every later log line."""
    logger.append_keys(**{k: v for k, v in keys.items() if v is not None})


def count(name: str, value: float = 1) -> None:
    """A service-level metric of the catalogue (InvalidEvent, ConfigurationError, LeaseHeld ...)."""
    definition = metric_def(name, per_object=False)
    metrics.add_metric(name=name, unit=definition.unit, value=value)


class ObjectMetrics:
    """Per-object metrics of one EMF blob (see :func:`metrics_for_object`)."""

    def __init__(self, provider: AmazonCloudWatchEMFProvider) -> None:
        self._provider = provider

    def add(self, name: str, value: float) -> None:
        definition = metric_def(name, per_object=True)
        self._provider.add_metric(name=name, unit=definition.unit, value=value)


def emit_cycle_metrics(
    object_name: str,
    counters: Mapping[str, int],
    *,
    watermark_lag_seconds: float | None,
    backlog: int | None,
    duration_ms: float,
) -> None:
    """One EMF blob per cycle, dimension ``object``."""
    with metrics_for_object(object_name) as single:
        for name in CYCLE_COUNTERS:
            single.add(name, counters.get(name, 0))
        if watermark_lag_seconds is not None:
            single.add("WatermarkLagSeconds", watermark_lag_seconds)
        if backlog is not None:
            single.add("Backlog", backlog)
        single.add("CycleDurationMs", duration_ms)


@contextmanager
def metrics_for_object(object_name: str) -> Iterator[ObjectMetrics]:
    """A metrics set with the extra dimension ``object``, flushed as its own EMF blob on exit.

    Kept apart from the shared :data:`metrics` set so the per-object dimension does not leak into
    the service-level counters.
    """
    provider = AmazonCloudWatchEMFProvider(namespace=metrics.namespace or NAMESPACE, service=SERVICE)
    provider.add_dimension(name="object", value=object_name)
    try:
        yield ObjectMetrics(provider)
    finally:
        provider.flush_metrics()


__all__ = [
    "CYCLE_COUNTERS",
    "METRICS",
    "NAMESPACE",
    "OBJECT_DIMENSIONS",
    "SERVICE",
    "SERVICE_DIMENSIONS",
    "MetricDef",
    "ObjectMetrics",
    "bind",
    "count",
    "emit_cycle_metrics",
    "logger",
    "metric_def",
    "metrics",
    "metrics_for_object",
    "tracer",
]
