"""Invocation event models and the one parse helper the handlers use.

A malformed event raises :class:`~sfsync.exceptions.InvalidEvent` (logged and counted), before
anything is read or written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sfsync.exceptions import InvalidEvent
from sfsync.observability import count, logger

OBJECT_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,79}$"
CYCLE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class ObjectSyncEvent(BaseModel):
    """``{"object": "Account", "cycle_id": "...", "reason": "due"}`` (async invoke by the dispatcher)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    object: str = Field(pattern=OBJECT_NAME)
    cycle_id: str = Field(pattern=CYCLE_ID)
    reason: Literal["due", "first", "resume", "manual", "formula-refresh", "reconcile", "resync", "lifecycle"] = "due"


class ScheduleEvent(BaseModel):
    """The EventBridge scheduled event (only the fields the dispatcher checks)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    source: Literal["aws.events"]
    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")
    time: str
    resources: list[str] = Field(default_factory=list)


class FullSyncStepEvent(BaseModel):
    """``{"step": "<name>", ...}`` from a Task state of the full-sync state machine."""

    model_config = ConfigDict(extra="allow", frozen=True)

    step: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")


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


__all__ = ["FullSyncStepEvent", "ObjectSyncEvent", "ScheduleEvent", "parse_event"]
