"""FullSyncFunction: every Task state of statemachine/full_sync.asl.json (``{"step": "<name>", ...}``).

Thin on purpose: :func:`sfsync.wiring.run_full_sync_step` checks the event's shape (``InvalidEvent``
for a shapeless one, before any adapter is built), then :func:`sfsync.fullcopy.steps.run_step`
validates the step's own input (``InvalidExecutionInput`` before any work) and does the step; its
output is what the state machine routes on.  The typed engine errors propagate unchanged so the
ASL's Retry/Catch match their class names.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.core.observability import logger, metrics, tracer
from sfsync.fullcopy.deps import FullSyncDeps
from sfsync.wiring import run_full_sync_step


def handle(event: Any, context: Any, deps: FullSyncDeps | None = None) -> dict[str, Any]:
    return run_full_sync_step(event, deps)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
