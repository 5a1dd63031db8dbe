"""DispatcherFunction: every minute, start the full copies objects need and one object-sync
invocation per due, copied object with work.

The API economy (org back-off, API budget, change probe through ``/composite``) decides which
due objects have work; never-copied objects get the full-sync workflow instead; see
:mod:`sfsync.dispatch.dispatcher`.  Invoked directly with ``{"resync": ["Lead"], "requested_by": "..."}``
it first marks those objects for a new full copy (unknown objects are refused by name, the others
go on), then runs the tick that starts their executions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.core.events import ResyncEvent, ScheduleEvent, parse_event
from sfsync.core.observability import logger, metrics, tracer
from sfsync.dispatch.dispatcher import ApiEconomy, dispatch, request_resync
from sfsync.wiring import DispatcherDeps, dispatcher_deps


def handle(event: Any, context: Any, deps: DispatcherDeps | None = None) -> dict[str, Any]:
    resync = parse_event(ResyncEvent, event) if isinstance(event, Mapping) and "resync" in event else None
    if resync is None:
        parse_event(ScheduleEvent, event)
    deps = deps or dispatcher_deps()
    now = deps.clock.now()
    outcome = None
    if resync is not None:
        outcome = request_resync(resync.resync, deps.settings, deps.state, now, requested_by=resync.requested_by)
    economy = ApiEconomy(deps.sf, deps.state, deps.org, deps.settings, now)
    result = dispatch(now, deps.settings, deps.state, deps.invoker, copies=deps.copies, economy=economy).to_dict()
    if outcome is not None:
        result["resync"] = outcome.to_dict()
    return result


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
