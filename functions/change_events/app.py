"""ChangeEventFunction: Salesforce change events (Event Relay -> EventBridge -> SQS) -> the record tables.

An SQS batch event (``{"Records": [...]}``, each body one EventBridge event of the partner bus) is
checked (:class:`~sfsync.core.events.SqsBatchEvent`), applied at once by
:func:`sfsync.changes.apply.process_messages`
(through :func:`sfsync.wiring.run_change_events`), and the messages it could not finish are reported as
batch item failures (``ReportBatchItemFailures``): SQS delivers them again and, after the queue's
receive count, moves them to the dead-letter queue (alarm ``change-event-dead-letters``).  Events that
cannot be used are recorded in the errors table and not retried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.core.observability import logger, metrics, tracer
from sfsync.wiring import run_change_events

if TYPE_CHECKING:
    from sfsync.changes.apply import ChangeDeps


def handle(event: Any, context: Any, deps: ChangeDeps | None = None) -> dict[str, Any]:
    return run_change_events(event, context, deps)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
