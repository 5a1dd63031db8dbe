"""What every step of the full-copy workflow shares: its adapters, its input check, its failure report.

:class:`FullSyncDeps` is built by the handler (:mod:`sfsync.wiring`) or by tests; the per-object
steps (:mod:`sfsync.fullcopy.steps`) and the planning steps (:mod:`sfsync.fullcopy.planning`) take it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from sfsync.core.clock import Clock
from sfsync.core.config import Settings
from sfsync.core.exceptions import InvalidExecutionInput
from sfsync.core.observability import count, logger, metrics_for_object
from sfsync.core.registry import BULK_UNSUPPORTED_OBJECTS
from sfsync.fullcopy.plan import CopyPolicy
from sfsync.salesforce.ports import CopyPort
from sfsync.store.copies import Copy, CopyStore
from sfsync.store.records import RecordStore
from sfsync.store.state import StateStore

# The errors InvalidExecutionInput, CopyConflict, ContinuationFailed: sfsync.core.exceptions


@dataclass(frozen=True)
class FullSyncDeps:
    """The adapters a step runs against (built by the handler, or by tests)."""

    settings: Settings
    sf: CopyPort
    state: StateStore
    records: RecordStore
    dynamodb: Any  # boto3 DynamoDB client (batch writes and the copy document)
    clock: Clock
    policy: CopyPolicy = field(default_factory=CopyPolicy)
    bulk_unsupported: frozenset[str] = BULK_UNSUPPORTED_OBJECTS
    stepfunctions: Any = None  # boto3 Step Functions client (continue_as_new only)

    @property
    def copies(self) -> CopyStore:
        return CopyStore(self.dynamodb, self.settings.state_table)


def validate_input[M: BaseModel](model: type[M], event: Any, step: str) -> M:
    if not isinstance(event, Mapping):
        raise InvalidExecutionInput(f"{step}: input must be a JSON object, got {type(event).__name__}")
    try:
        return model.model_validate(dict(event))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<input>'}: {err['msg']}" for err in exc.errors()
        )
        count("InvalidExecutionInput")
        raise InvalidExecutionInput(f"{step}: invalid input: {problems}") from None


def record_failure(deps: FullSyncDeps, name: str, error: dict[str, str], requested_by: str | None) -> Copy:
    copy = deps.copies.record_failure(
        name, error, now=deps.clock.now(), requested_by=requested_by, policy=asdict(deps.policy)
    )
    assert copy is not None  # no ``unless``: always recorded
    note_copy_failure(name, error)
    return copy


def note_copy_failure(name: str, error: Mapping[str, str]) -> None:
    """The log line and the alarmable metrics of a failed copy."""
    count("FullSyncObjectFailed")
    with metrics_for_object(name) as m:
        m.add("FullSyncFailed", 1)
    logger.error("full copy of the object failed", extra={"object": name, "error": dict(error)})


__all__ = ["FullSyncDeps", "note_copy_failure", "record_failure", "validate_input"]
