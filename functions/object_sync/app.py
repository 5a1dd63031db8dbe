"""ObjectSyncFunction: one incremental cycle of one object (async invoke by the dispatcher)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.core.events import ObjectSyncEvent, parse_event
from sfsync.core.observability import logger, metrics, tracer
from sfsync.inbound.cycle import DEFAULT_LEASE_SECONDS, run_object_cycle
from sfsync.wiring import ObjectSyncDeps, configured_object, object_sync_deps, remaining_ms

#: The lease outlives the invocation by this much, so a killed invocation's lease expires soon after.
LEASE_GRACE_SECONDS = 60


def handle(event: Any, context: Any, deps: ObjectSyncDeps | None = None) -> dict[str, Any]:
    request = parse_event(ObjectSyncEvent, event)
    deps = deps or object_sync_deps()
    left = remaining_ms(context)
    lease_seconds = left // 1000 + LEASE_GRACE_SECONDS if left is not None else DEFAULT_LEASE_SECONDS
    result = run_object_cycle(
        configured_object(deps.settings, request.object),
        request.cycle_id,
        settings=deps.settings,
        sf=deps.sf,
        store=deps.stores,
        now=deps.clock,
        reason=request.reason,
        time_left_ms=(lambda: remaining_ms(context) or 0) if left is not None else None,
        lease_seconds=lease_seconds,
    )
    return result.to_dict()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
