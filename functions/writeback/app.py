"""WriteBackFunction: DynamoDB stream batches of the two-way tables (Lead, Contact, Campaign,
CampaignMember) -> Salesforce (see :mod:`sfsync.writeback`).

The engine processes the whole batch at once (pushes go out in sObject Collections calls of up to
200 records), then Powertools' BatchProcessor reports the records it could not finish as batch item
failures (``ReportBatchItemFailures``): Lambda retries from the first of them, bisects on error and
finally sends the batch to the on-failure queue.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.observability import count, logger, metrics, tracer
from sfsync.writeback import WriteBackDeps, process_batch, writeback_deps

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


class RecordNotWrittenBack(Exception):
    """A stream record the write-back could not finish in this invocation (retried by Lambda)."""


def handle(event: dict[str, Any], context: Any, deps: WriteBackDeps | None = None) -> dict[str, Any]:
    records = event.get("Records") or []
    count("WriteBackRecordsSeen", len(records))
    result = process_batch(records, deps or writeback_deps())
    failed = result.failed

    def record_handler(record: DynamoDBRecord) -> None:
        sequence = record.dynamodb.sequence_number if record.dynamodb else None
        if sequence in failed:
            raise RecordNotWrittenBack(f"stream record {sequence} is retried")

    if failed:
        count("WriteBackRecordsFailed", len(failed))
        logger.warning("write-back records reported for retry", extra={"failed": len(failed)})
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
