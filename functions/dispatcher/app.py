"""DispatcherFunction: every minute, start the full copies objects need and one object-sync
invocation per due, copied object with work.

The API economy (org back-off, API budget, change probe through ``/composite``) decides which
due objects have work; never-copied objects get the full-sync workflow instead; see
:mod:`sfsync.dispatch.dispatcher`.  Invoked directly with ``{"resync": ["Lead"], "requested_by": "..."}``
it first marks those objects for a new full copy (unknown objects are refused by name, the others
go on), then runs the tick that starts their executions (:func:`sfsync.wiring.run_dispatcher`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.core.observability import logger, metrics, tracer
from sfsync.wiring import DispatcherDeps, run_dispatcher


def handle(event: Any, context: Any, deps: DispatcherDeps | None = None) -> dict[str, Any]:
    return run_dispatcher(event, deps)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
