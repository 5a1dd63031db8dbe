"""The engine's single Logger, Metrics and Tracer, and the metric helpers.

Every module logs through :data:`logger`; handlers decorate with ``logger.inject_lambda_context``,
``metrics.log_metrics`` and ``tracer.capture_lambda_handler(capture_response=False)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

SERVICE = "sfsync"

logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=SERVICE)
tracer = Tracer(service=SERVICE)

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


def bind(**keys: str | None) -> None:
    """Append keys (``object``, ``cycle_id``, ``reason`` ...) to every later log line."""
    logger.append_keys(**{k: v for k, v in keys.items() if v is not None})


def count(name: str, value: float = 1) -> None:
    """A service-level counter (InvalidEvent, ConfigurationError, LeaseHeld ...)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


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
            single.add_metric(name=name, unit=MetricUnit.Count, value=counters.get(name, 0))
        if watermark_lag_seconds is not None:
            single.add_metric(name="WatermarkLagSeconds", unit=MetricUnit.Seconds, value=watermark_lag_seconds)
        if backlog is not None:
            single.add_metric(name="Backlog", unit=MetricUnit.Count, value=backlog)
        single.add_metric(name="CycleDurationMs", unit=MetricUnit.Milliseconds, value=duration_ms)


@contextmanager
def metrics_for_object(object_name: str) -> Iterator[AmazonCloudWatchEMFProvider]:
    """A metrics set with the extra dimension ``object``, flushed as its own EMF blob on exit.

    Kept apart from the shared :data:`metrics` set so the per-object dimension does not leak into
    the service-level counters.
    """
    provider = AmazonCloudWatchEMFProvider(namespace=metrics.namespace or SERVICE, service=SERVICE)
    provider.add_dimension(name="object", value=object_name)
    try:
        yield provider
    finally:
        provider.flush_metrics()


__all__ = ["CYCLE_COUNTERS", "bind", "count", "emit_cycle_metrics", "logger", "metrics", "metrics_for_object", "tracer"]
