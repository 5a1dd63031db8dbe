"""DispatcherFunction: every minute, start one object-sync invocation per due object with work.

The API economy (org back-off, API budget, change probe through ``/composite``) decides which
due objects have work; see :mod:`sfsync.dispatcher`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.dispatcher import ApiEconomy, dispatch
from sfsync.events import ScheduleEvent, parse_event
from sfsync.observability import logger, metrics, tracer
from sfsync.wiring import DispatcherDeps, dispatcher_deps


def handle(event: Any, context: Any, deps: DispatcherDeps | None = None) -> dict[str, Any]:
    parse_event(ScheduleEvent, event)
    deps = deps or dispatcher_deps()
    now = deps.clock.now()
    economy = ApiEconomy(deps.sf, deps.state, deps.org, deps.settings, now)
    return dispatch(now, deps.settings, deps.state, deps.invoker, economy=economy).to_dict()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
