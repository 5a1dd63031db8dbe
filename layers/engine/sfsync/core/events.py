"""Invocation event models and the one parse helper the handlers use.

A malformed event raises :class:`~sfsync.core.exceptions.InvalidEvent` (logged and counted), before
anything is read or written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sfsync.core.exceptions import InvalidEvent
from sfsync.core.observability import count, logger

OBJECT_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,79}$"
CYCLE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class ObjectSyncEvent(BaseModel):
    """``{"object": "Account", "cycle_id": "...", "reason": "due"}`` (async invoke by the dispatcher)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    object: str = Field(pattern=OBJECT_NAME)
    cycle_id: str = Field(pattern=CYCLE_ID)
    reason: Literal[
        "due", "first", "resume", "manual", "formula-refresh", "reconcile", "resync", "lifecycle", "cdc"
    ] = "due"


class ScheduleEvent(BaseModel):
    """The EventBridge scheduled event (only the fields the dispatcher checks)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    source: Literal["aws.events"]
    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")
    time: str
    resources: list[str] = Field(default_factory=list)


class ResyncEvent(BaseModel):
    """``{"resync": ["Lead"], "requested_by": "alice"}``: invoke the dispatcher directly to re-copy objects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resync: list[str] = Field(min_length=1, max_length=100)
    requested_by: str = Field(default="operator", min_length=1, max_length=100)


class FullSyncStepEvent(BaseModel):
    """``{"step": "<name>", ...}`` from a Task state of the full-sync state machine."""

    model_config = ConfigDict(extra="allow", frozen=True)

    step: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")


class _StreamBody(BaseModel):
    """The ``dynamodb`` part of a stream record (what the write-back reads of it)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    Keys: dict[str, dict[str, Any]] = Field(min_length=1)
    SequenceNumber: str = Field(min_length=1, max_length=64)
    NewImage: dict[str, dict[str, Any]] | None = None
    OldImage: dict[str, dict[str, Any]] | None = None
    ApproximateCreationDateTime: float | str | None = None


class StreamRecord(BaseModel):
    """One DynamoDB stream record (Lambda's event shape, ``NEW_AND_OLD_IMAGES``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    eventName: Literal["INSERT", "MODIFY", "REMOVE"]
    eventSourceARN: str = Field(pattern=r"^arn:aws[a-z-]*:dynamodb:[^:]*:[^:]*:table/[^/]+/stream/.+$")
    dynamodb: _StreamBody


class StreamBatchEvent(BaseModel):
    """``{"Records": [...]}``: a batch of stream records of the two-way tables (WriteBackFunction)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    Records: list[StreamRecord]


class SweepOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    objects: list[Annotated[str, Field(pattern=OBJECT_NAME)]] | None = None


class SweepEvent(BaseModel):
    """``{"sweep": {}}``: the write-back's schedule (every 5 minutes) re-pushes overdue local changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sweep: SweepOptions


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    object: str = Field(pattern=OBJECT_NAME)
    ids: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(default_factory=list, max_length=1000)


class RetryEvent(BaseModel):
    """``{"retry": {"object": "Lead", "ids": [...]}, "requested_by": "ops"}`` (``sfsync errors retry``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retry: RetryRequest
    requested_by: str = Field(default="operator", min_length=1, max_length=100)


WriteBackEvent = StreamBatchEvent | SweepEvent | RetryEvent


class SqsMessage(BaseModel):
    """One SQS message of a Lambda SQS batch (what the change-event function reads of it)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    messageId: str = Field(min_length=1, max_length=100)
    body: str
    eventSource: Literal["aws:sqs"]


class SqsBatchEvent(BaseModel):
    """``{"Records": [...]}``: a batch of the change-event queue (ChangeEventFunction).  Each body is one
    EventBridge event of the Event Relay partner bus; bodies are checked one by one
    (:func:`sfsync.changes.envelope.parse_envelope`), so one bad message never fails the batch."""

    model_config = ConfigDict(extra="allow", frozen=True)

    Records: list[SqsMessage] = Field(max_length=10_000)


def parse_writeback_event(event: Any) -> WriteBackEvent:
    """The write-back's three event kinds, told apart by their one top-level key."""
    if isinstance(event, Mapping):
        if "sweep" in event:
            return parse_event(SweepEvent, event)
        if "retry" in event:
            return parse_event(RetryEvent, event)
    return parse_event(StreamBatchEvent, event)


def parse_dispatcher_event(event: Any) -> ResyncEvent | None:
    """The dispatcher's events: an operator's re-sync request (returned), or the schedule (None)."""
    if isinstance(event, Mapping) and "resync" in event:
        return parse_event(ResyncEvent, event)
    parse_event(ScheduleEvent, event)
    return None


def parse_event[M: BaseModel](model: type[M], event: Any) -> M:
    """Validate ``event`` into ``model`` or raise :class:`InvalidEvent` (logged + counted)."""
    if not isinstance(event, Mapping):
        problem = f"event must be a JSON object, got {type(event).__name__}"
    else:
        try:
            return model.model_validate(dict(event))
        except ValidationError as exc:
            problem = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<event>'}: {err['msg']}" for err in exc.errors()
            )
    logger.error("invalid event", extra={"model": model.__name__, "problem": problem})
    count("InvalidEvent")
    raise InvalidEvent(f"invalid {model.__name__}: {problem}")


__all__ = [
    "FullSyncStepEvent",
    "ObjectSyncEvent",
    "ResyncEvent",
    "RetryEvent",
    "ScheduleEvent",
    "SqsBatchEvent",
    "SqsMessage",
    "StreamBatchEvent",
    "StreamRecord",
    "SweepEvent",
    "WriteBackEvent",
    "parse_dispatcher_event",
    "parse_event",
    "parse_writeback_event",
]
