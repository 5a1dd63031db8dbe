"""DispatcherFunction: every minute, start one object-sync invocation per due object."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.dispatcher import dispatch
from sfsync.events import ScheduleEvent, parse_event
from sfsync.observability import logger, metrics, tracer
from sfsync.wiring import DispatcherDeps, dispatcher_deps


def handle(event: Any, context: Any, deps: DispatcherDeps | None = None) -> dict[str, Any]:
    parse_event(ScheduleEvent, event)
    deps = deps or dispatcher_deps()
    return dispatch(deps.clock.now(), deps.settings, deps.state, deps.invoker).to_dict()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
