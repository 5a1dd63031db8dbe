"""ChangeEventFunction: Salesforce change events (Event Relay -> EventBridge -> SQS) -> the record tables.

An SQS batch event (``{"Records": [...]}``, each body one EventBridge event of the partner bus) is
checked (:class:`~sfsync.core.events.SqsBatchEvent`), applied at once by
:func:`sfsync.changes.apply.process_messages`, and the messages it could not finish are reported as
batch item failures (``ReportBatchItemFailures``): SQS delivers them again and, after the queue's
receive count, moves them to the dead-letter queue (alarm ``change-event-dead-letters``).  Events that
cannot be used are recorded in the errors table and not retried.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.changes.apply import ChangeDeps, Message, process_messages
from sfsync.core.events import SqsBatchEvent, parse_event
from sfsync.core.exceptions import ChangeEventNotApplied
from sfsync.core.observability import logger, metrics, tracer
from sfsync.wiring import change_events_deps

processor = BatchProcessor(event_type=EventType.SQS)


def handle(event: Any, context: Any, deps: ChangeDeps | None = None) -> dict[str, Any]:
    batch = parse_event(SqsBatchEvent, event)
    messages = [Message(record.messageId, record.body) for record in batch.Records]
    outcome = process_messages(messages, deps or change_events_deps())
    failed = set(outcome.failed)

    def record_handler(record: SQSRecord) -> None:
        if record.message_id in failed:
            raise ChangeEventNotApplied(f"change-event message {record.message_id} is retried")

    if failed:
        logger.warning("change-event messages reported for retry", extra={"failed": len(failed)})
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
