"""WriteBackFunction: local edits of the two-way tables (Lead, Contact, Campaign, CampaignMember)
-> Salesforce (see :mod:`sfsync.writeback`; the sweep and the retry: :mod:`sfsync.writeback.sweep`).

Three events, each validated before anything is read or written (:class:`~sfsync.core.exceptions.InvalidEvent`):

* a DynamoDB stream batch (``{"Records": [...]}``): every local change is first marked pending on
  its item, then the batch is pushed at once (sObject Collections calls of up to 200 records) and
  Powertools' BatchProcessor reports the records it could not finish as batch item failures
  (``ReportBatchItemFailures``: Lambda retries from the first of them, bisects on error, finally
  sends the batch to the on-failure queue - the marker stays, and the sweep pushes it);
* the schedule ``{"sweep": {}}`` (every 5 minutes): overdue pending changes are pushed again;
* ``{"retry": {"object": "Lead", "ids": [...]}, "requested_by": "..."}`` (``sfsync errors retry``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.core.events import RetryEvent, SweepEvent, parse_writeback_event
from sfsync.core.exceptions import RecordNotWrittenBack
from sfsync.core.observability import count, logger, metrics, tracer
from sfsync.wiring import writeback_deps
from sfsync.writeback import WriteBackDeps, process_batch, run_retry, run_sweep

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def handle(event: Any, context: Any, deps: WriteBackDeps | None = None) -> dict[str, Any]:
    request = parse_writeback_event(event)
    if isinstance(request, SweepEvent):
        return run_sweep(request, deps or writeback_deps()).to_dict()
    if isinstance(request, RetryEvent):
        return run_retry(request, deps or writeback_deps())
    records = event["Records"]
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
