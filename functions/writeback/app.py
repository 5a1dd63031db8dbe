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

from aws_lambda_powertools.utilities.typing import LambdaContext
from sfsync.core.observability import logger, metrics, tracer
from sfsync.wiring import run_writeback
from sfsync.writeback import WriteBackDeps


def handle(event: Any, context: Any, deps: WriteBackDeps | None = None) -> dict[str, Any]:
    return run_writeback(event, context, deps)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
