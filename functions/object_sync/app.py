"""ObjectSyncFunction: one incremental cycle of one object (async invoke by the dispatcher);
see :func:`sfsync.wiring.run_object_sync`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.core.observability import logger, metrics, tracer
from sfsync.wiring import ObjectSyncDeps, run_object_sync


def handle(event: Any, context: Any, deps: ObjectSyncDeps | None = None) -> dict[str, Any]:
    return run_object_sync(event, context, deps)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
