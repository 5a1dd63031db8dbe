"""Every exception the engine raises, under one root: :class:`SfsyncError`.

Step Functions ``Retry``/``Catch`` (``statemachine/full_sync.asl.json``) and the alarms match these
class names, so the names are part of the contract: rename nothing.  The Salesforce adapter's errors
(:class:`SalesforceError` and its subclasses) live here too: each carries the Salesforce
``error_code`` (``errorCode`` of the §0.4 body, or the OAuth ``error``), the HTTP ``status`` (None
when no response arrived) and a human ``message``.
"""

from __future__ import annotations

from typing import Any


class SfsyncError(Exception):
    """Base class of the engine's own errors."""


class ConfigurationError(SfsyncError):
    """The function's configuration (environment, secret, object list) is unusable.

    Raised once, before any work starts, naming everything that is wrong.
    """


class InvalidEvent(SfsyncError):
    """The invocation event does not match the expected shape; nothing was written."""


class InvalidChangeEvent(SfsyncError):
    """A change event that cannot be used (malformed envelope, unknown or unsynced entity, fields the
    object does not have): recorded in the errors table and counted, never retried."""


class LeaseHeld(SfsyncError):
    """Another cycle holds the object's lease; the caller must not touch the object now."""

    def __init__(self, object_name: str, holder: str | None) -> None:
        super().__init__(f"lease on {object_name} is held by cycle {holder!r}")
        self.object_name = object_name
        self.holder = holder


class LeaseLost(SfsyncError):
    """The lease expired and another cycle took it while this one was still working."""


class StoreThrottled(SfsyncError):
    """DynamoDB kept throttling after the client's retries; the page was not checkpointed."""


class StoreError(SfsyncError):
    """A DynamoDB call failed for a reason other than throttling or a lost condition."""


class DispatchFailed(SfsyncError):
    """The dispatcher could not start an object sync (the invoke call failed)."""


class ExecutionStatusUnknown(SfsyncError):
    """Step Functions could not say what became of an execution (the copy is reconciled on a later tick)."""


class RecordNotWrittenBack(SfsyncError):
    """A stream record the write-back could not finish in this invocation: reported as a batch item
    failure, so Lambda retries it (its pending marker stays for the sweep)."""


class ChangeEventNotApplied(SfsyncError):
    """A change-event message this invocation could not finish: reported as a batch item failure, so
    SQS delivers it again (and, after the queue's receive count, moves it to the dead-letter queue)."""


class InvalidExecutionInput(InvalidEvent):
    """The full-sync workflow's (or one of its steps') input is unusable; nothing was read or written."""


class CopyConflict(SfsyncError):
    """A full copy's document changed under a step more often than the step could retry."""


class ContinuationFailed(SfsyncError):
    """The next execution of a long full copy could not be started (Step Functions refused)."""


class ObjectUnavailable(ConfigurationError):
    """The object does not exist in the org, or the integration user cannot read it."""


class UnstorableRecord(SfsyncError, ValueError):
    """A row that cannot become a DynamoDB item (reason in the message; ``field``: the field, if one)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownMetric(SfsyncError, ValueError):
    """A metric name the catalogue does not hold (a programming error, caught by the tests)."""


# -- the Salesforce adapter's errors ---------------------------------------------------------------


class SalesforceError(SfsyncError):
    """Base class of every error raised by the Salesforce adapter (:mod:`sfsync.salesforce`)."""

    def __init__(self, message: str, *, error_code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.status = status

    def __str__(self) -> str:
        parts = [p for p in (str(self.status) if self.status is not None else None, self.error_code) if p]
        prefix = " ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class SalesforceConfigError(SalesforceError):
    """The Salesforce secret is unusable (missing/invalid key, plain HTTP to a non-loopback host)."""


class SalesforceAuthError(SalesforceError):
    """The token endpoint refused us, or a fresh token was rejected as well."""


class SalesforceUnavailable(SalesforceError):
    """5xx, connection errors or timeouts that outlived the retries."""


class SalesforceRateLimited(SalesforceError):
    """``REQUEST_LIMIT_EXCEEDED``: the org's API allocation (or concurrency limit) is spent."""


class SalesforceQueryTimeout(SalesforceError):
    """``QUERY_TIMEOUT``: the SOQL query ran too long; narrow the window or use Bulk."""


class SalesforceRequestError(SalesforceError):
    """Any other request-level error (4xx with ``errorCode`` + ``message``)."""


class InvalidQueryLocator(SalesforceError):
    """``INVALID_QUERY_LOCATOR``: the query cursor expired; restart the query."""


class ReplicationWindowError(SalesforceError):
    """``INVALID_REPLICATION_DATE`` / ``EXCEEDED_ID_LIMIT`` from getUpdated/getDeleted."""


class BulkJobFailed(SalesforceError):
    """A Bulk API 2.0 job ended ``Failed`` or ``Aborted``; ``job`` is its JobInfo."""

    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        status: int | None = None,
        job: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, error_code=error_code, status=status)
        self.job = job or {}


__all__ = [
    "BulkJobFailed",
    "ChangeEventNotApplied",
    "ConfigurationError",
    "ContinuationFailed",
    "CopyConflict",
    "DispatchFailed",
    "ExecutionStatusUnknown",
    "InvalidChangeEvent",
    "InvalidEvent",
    "InvalidExecutionInput",
    "InvalidQueryLocator",
    "LeaseHeld",
    "LeaseLost",
    "ObjectUnavailable",
    "RecordNotWrittenBack",
    "ReplicationWindowError",
    "SalesforceAuthError",
    "SalesforceConfigError",
    "SalesforceError",
    "SalesforceQueryTimeout",
    "SalesforceRateLimited",
    "SalesforceRequestError",
    "SalesforceUnavailable",
    "SfsyncError",
    "StoreError",
    "StoreThrottled",
    "UnknownMetric",
    "UnstorableRecord",
]
