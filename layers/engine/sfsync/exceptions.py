"""Typed engine exceptions.

Step Functions ``Retry``/``Catch`` and the alarms match these class names, so the names are part
of the contract: rename nothing.  The Salesforce adapter's errors are re-exported so callers import
every engine error from one place.
"""

from __future__ import annotations

from sfsync.salesforce import errors as _salesforce_errors
from sfsync.salesforce.errors import *  # noqa: F403 - re-exported, see the module docstring


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


class NotImplementedYet(SfsyncError):
    """The requested engine feature lands with a later issue; nothing was done."""


class RecordNotWrittenBack(SfsyncError):
    """A stream record the write-back could not finish in this invocation: reported as a batch item
    failure, so Lambda retries it (its pending marker stays for the sweep)."""


class InvalidExecutionInput(InvalidEvent):
    """The full-sync workflow's (or one of its steps') input is unusable; nothing was read or written."""


class CopyConflict(SfsyncError):
    """A full copy's document changed under a step more often than the step could retry."""


class ContinuationFailed(SfsyncError):
    """The next execution of a long full copy could not be started (Step Functions refused)."""


__all__ = [
    "ConfigurationError",
    "ContinuationFailed",
    "CopyConflict",
    "DispatchFailed",
    "ExecutionStatusUnknown",
    "InvalidChangeEvent",
    "InvalidEvent",
    "InvalidExecutionInput",
    "LeaseHeld",
    "LeaseLost",
    "NotImplementedYet",
    "RecordNotWrittenBack",
    "SfsyncError",
    "StoreError",
    "StoreThrottled",
]
__all__ += _salesforce_errors.__all__
