"""WriteBackFunction: DynamoDB stream records of the two-way tables (Lead, Contact, Campaign,
CampaignMember).

The write-back itself (base snapshot comparison, sObject Collections upsert, conflicts) lands with
its own issue.  For now each record is only logged and the batch reports no failures, so streams
do not stall; nothing is sent to Salesforce.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.observability import count, logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def record_handler(record: DynamoDBRecord) -> None:
    keys = record.dynamodb.keys if record.dynamodb else None
    count("WriteBackRecordsSeen")
    logger.info(
        "stream record seen (write-back not implemented yet)",
        extra={"event_name": str(record.event_name), "keys": keys, "source_arn": record.event_source_arn},
    )


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
