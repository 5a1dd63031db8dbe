"""FullSyncFunction: the Task states of statemachine/full_sync.asl.json.

The first full copy (Bulk 2.0 jobs, result pages, setting the watermark through
``sfsync.state.StateStore.set_full_copy_watermark``) lands with its own issue.  Until then every
well-formed step event fails with ``NotImplementedYet`` (a stable class name the state machine can
``Catch``), and a malformed one with ``InvalidEvent``; nothing is written either way.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.events import FullSyncStepEvent, parse_event
from sfsync.exceptions import NotImplementedYet
from sfsync.observability import count, logger, metrics, tracer


def handle(event: Any, context: Any) -> dict[str, Any]:
    request = parse_event(FullSyncStepEvent, event)
    count("NotImplementedYet")
    raise NotImplementedYet(f"full sync step {request.step!r}: full sync lands with its issue")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
