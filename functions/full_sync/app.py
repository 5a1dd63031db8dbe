"""FullSyncFunction: every Task state of statemachine/full_sync.asl.json (``{"step": "<name>", ...}``).

Thin on purpose: the event's shape is checked (``InvalidEvent`` for a shapeless one, before any
adapter is built), then :func:`sfsync.fullcopy.steps.run_step` validates the step's own input
(``InvalidExecutionInput`` before any work) and does the step; its output is what the state
machine routes on.  The typed engine errors propagate unchanged so the ASL's Retry/Catch match
their class names.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.core.events import FullSyncStepEvent, parse_event
from sfsync.core.observability import bind, logger, metrics, tracer
from sfsync.fullcopy.steps import FullSyncDeps, run_step
from sfsync.wiring import full_sync_deps


def handle(event: Any, context: Any, deps: FullSyncDeps | None = None) -> dict[str, Any]:
    request = parse_event(FullSyncStepEvent, event)
    bind(step=request.step)
    return run_step(event, deps or full_sync_deps())


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
