"""The full-copy workflow's steps around the per-object loop: ``plan`` (which objects, one copy
document each), ``plan_failed`` (its Catch), ``summarize`` (which objects continue in a new
execution) and ``continue_as_new`` (that execution).  Routed by :func:`sfsync.fullcopy.steps.run_step`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sfsync.core.clock import to_iso_ms
from sfsync.core.exceptions import (
    ConfigurationError,
    ContinuationFailed,
    CopyConflict,
    DispatchFailed,
    InvalidExecutionInput,
)
from sfsync.core.observability import count, logger
from sfsync.fullcopy.deps import FullSyncDeps, note_copy_failure, record_failure, validate_input
from sfsync.fullcopy.plan import plan_object
from sfsync.store.copies import Copy, Part, error_text
from sfsync.store.stepfunctions import FullCopyStarter


class _Request(BaseModel):
    """What the workflow was asked to copy (the execution input), as plan and plan_failed receive it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str | None = None
    objects: list[str] | None = None
    resync: list[str] | bool = False
    requested_by: str = Field(default="unknown", min_length=1, max_length=200)
    execution_id: str | None = None


class _PlanInput(_Request):
    execution_name: str | None = Field(default=None, max_length=80)
    base_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    generation: int = Field(default=0, ge=0, le=9999)
    max_records: int | None = Field(default=None, ge=1, le=1_000_000)
    pages_per_execution: int | None = Field(default=None, ge=1, le=5_000)


class _SummaryInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str | None = None
    results: list[dict[str, Any]]
    base_name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    generation: int = Field(default=0, ge=0, le=9999)
    requested_by: str = "unknown"


def plan(event: Any, deps: FullSyncDeps) -> dict[str, Any]:
    """Validate the workflow input and prepare one copy document per object that needs a copy.

    Input ``{"objects": [...] (default: all configured), "resync": [...] | true, "requested_by":
    "...", "max_records": n}``.  Objects already copied are skipped unless named in ``resync``;
    an unfinished copy is kept (the new execution resumes it).  Output ``{"objects": [{"object",
    "mode"}...], "skipped": [...], "failed": [...], "warnings": [...], "requested_by"}``; an object
    that cannot be copied (unreadable key fields) is recorded failed and left out of ``objects``.
    """
    if isinstance(event, Mapping) and isinstance(event.get("request"), Mapping):
        # the state machine passes the execution input whole: {"step": "plan", "request.$": "$", ...}
        event = {**event["request"], **{k: v for k, v in event.items() if k != "request"}}
    request = validate_input(_PlanInput, event, "plan")
    registry = deps.settings.registry
    names = request.objects if request.objects is not None else registry.names()
    unknown = [name for name in names if name not in registry]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    resync = set(names) if request.resync is True else set(request.resync or [])
    problems = []
    if not names:
        problems.append("objects is empty")
    if unknown:
        problems.append(f"unknown object(s) {', '.join(unknown)} (configured: {', '.join(registry.names())})")
    if duplicates:
        problems.append(f"object(s) listed twice: {', '.join(duplicates)}")
    if resync - set(names):
        problems.append(f"resync names object(s) not being copied: {', '.join(sorted(resync - set(names)))}")
    if problems:
        count("InvalidExecutionInput")
        raise InvalidExecutionInput("plan: " + "; ".join(problems))

    policy = deps.policy
    if request.max_records is not None:
        policy = replace(policy, max_records=request.max_records)
    if request.pages_per_execution is not None:
        policy = replace(policy, pages_per_execution=request.pages_per_execution)
    store, now = deps.copies, deps.clock.now()
    planned: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    failed: list[dict[str, str]] = []
    warnings: list[str] = []
    for name in names:
        spec = registry.get(name)
        existing = store.get(name)
        if existing is not None and name not in resync:
            if existing.status == "done":
                skipped.append({"object": name, "reason": f"already copied (copy {existing.copy_id})"})
                continue
            if existing.status in ("failed", "running") and existing.parts:
                if existing.status == "failed":
                    _resume_failed(existing)  # a re-started copy goes on from its checkpoint
                existing.execution_arn = request.execution_id  # this execution takes the copy over
                if not store.save(existing, now=now):
                    raise CopyConflict(f"the full copy of {name} changed while it was being planned")
                current = existing.current
                mode = existing.parts[current].mode if current is not None else "bulk"
                planned.append({"object": name, "mode": mode, "resumed": True})
                continue
        calls_before = deps.sf.calls_made
        try:
            object_plan = plan_object(spec, deps.sf.describe(name), bulk_unsupported=deps.bulk_unsupported)
        except ConfigurationError as exc:
            failed.append({"object": name, "reason": str(exc)})
            record_failure(deps, name, {"Error": "ConfigurationError", "Cause": str(exc)}, request.requested_by)
            continue
        warnings.extend(object_plan.warnings)
        for warning in object_plan.warnings:
            logger.warning(warning, extra={"object": name})
        copy = Copy(
            object_name=name,
            copy_id=f"{name}-{now.strftime('%Y%m%dT%H%M%S')}{now.microsecond // 1000:03d}",
            fields=list(object_plan.fields),
            types=object_plan.types.to_doc(),
            policy=asdict(policy),
            parts=[Part(mode=object_plan.mode)],
            engine_started_at=to_iso_ms(now),
            warnings=list(object_plan.warnings),
            requested_by=request.requested_by,
            api_calls=deps.sf.calls_made - calls_before,
            execution_arn=request.execution_id,
            failures=existing.failures if existing is not None and existing.status == "failed" else 0,
        )
        store.replace_copy(copy, now=now)
        planned.append({"object": name, "mode": object_plan.mode, "resumed": False})
    logger.info("full copy planned", extra={"objects": planned, "skipped": skipped, "failed": failed})
    return {
        "objects": planned,
        "skipped": skipped,
        "failed": failed,
        "warnings": warnings,
        "requested_by": request.requested_by,
        "base_name": request.base_name or _base_name(request.execution_name),
        "generation": request.generation,
    }


class _PlanFailedInput(_Request):
    error: dict[str, Any] = Field(default_factory=dict)


def plan_failed(event: Any, deps: FullSyncDeps) -> dict[str, Any]:
    """``plan`` failed (the Catch of the Plan state): record the failure on every object the execution
    was asked to copy, so the dispatcher retries them within minutes (with back-off) and shows why.

    An object whose copy is done is left alone unless the execution was a re-sync of it; a copy another
    execution drives is left alone too.  Unknown names in ``objects`` are ignored (plan refused them).
    """
    request = validate_input(_PlanFailedInput, event, "plan_failed")
    registry = deps.settings.registry
    names = [n for n in (request.objects if request.objects is not None else registry.names()) if n in registry]
    resync = set(names) if request.resync is True else set(request.resync or [])
    error = {str(k): str(v)[:2000] for k, v in request.error.items()} or {"Error": "PlanFailed", "Cause": "unknown"}

    def untouched(copy: Copy) -> bool:
        if copy.version == 0:
            return False  # no document yet: the failure is recorded on a new one
        if copy.status == "done" and copy.object_name not in resync:
            return True
        owner = copy.execution_arn
        return copy.status == "running" and owner is not None and owner != request.execution_id

    recorded: list[str] = []
    for name in names:
        stored = deps.copies.get(name) if name in resync else None
        copy = deps.copies.record_failure(
            name,
            error,
            now=deps.clock.now(),
            requested_by=request.requested_by,
            policy=asdict(deps.policy),
            unless=untouched,
            # a re-sync whose plan failed is retried from zero, never "resumed" from the old, done copy
            fresh=stored is not None and stored.requested_by != request.requested_by,
        )
        if copy is not None:
            note_copy_failure(name, error)
            recorded.append(name)
    return {"failed": recorded, "error": error_text(error)}


class _ContinueInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str | None = None
    state_machine_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:[0-9]{12}:stateMachine:[A-Za-z0-9_-]{1,80}$"
    )
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,80}$")
    objects: list[str] = Field(min_length=1)
    base_name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    generation: int = Field(ge=1, le=9999)
    requested_by: str = "unknown"


def continue_as_new(event: Any, deps: FullSyncDeps) -> dict[str, Any]:
    """Start the same workflow again for the objects that still have pages to copy.

    The execution name ``<base>-<generation>`` makes a repeated call (a retried Task) a no-op:
    ``ExecutionAlreadyExists`` is success.  The new execution's ``plan`` finds the copies running
    and resumes them from their checkpoints.
    """
    request = validate_input(_ContinueInput, event, "continue_as_new")
    if deps.stepfunctions is None:
        raise ConfigurationError("continue_as_new needs a Step Functions client")
    payload = {
        "objects": request.objects,
        "requested_by": request.requested_by,
        "base_name": request.base_name,
        "generation": request.generation,
    }
    starter = FullCopyStarter(request.state_machine_arn, deps.stepfunctions)
    try:
        start = starter.start_full_copy(request.name, payload)
    except DispatchFailed as exc:
        raise ContinuationFailed(f"cannot start the continuation {request.name}: {exc}") from exc
    logger.info(
        "full copy continues in a new execution", extra={"execution_name": request.name, "started": start.started}
    )
    return {
        "execution_arn": start.execution_arn,
        "name": request.name,
        "started": start.started,
        "objects": request.objects,
    }


def _base_name(execution_name: str | None) -> str:
    """A name continuation executions derive theirs from (``<base>-<generation>``, at most 80 chars)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", execution_name or "full-sync")[:64]
    return cleaned or "full-sync"


def summarize(event: Any, deps: FullSyncDeps) -> dict[str, Any]:
    """After the per-object loop: which objects must continue in a new execution, and the totals.

    Input ``{"results": [step outputs...], "base_name", "generation", "requested_by"}``; output
    ``{"continue": bool, "objects": [...], "generation": n + 1, "name": "<base>-<n+1>", "summary":
    {object: {status, records_copied, total, rate_per_s, eta_seconds, parts, api_calls, ...}},
    "records_copied": n, "total": n | None}`` (totals over this execution's objects).
    """
    request = validate_input(_SummaryInput, event, "summarize")
    remaining: list[str] = []
    summary: dict[str, Any] = {}
    for result in request.results:
        name = result.get("object")
        if not isinstance(name, str) or name not in deps.settings.registry:
            raise InvalidExecutionInput(f"summarize: result without a configured object: {result!r:.200}")
        if result.get("next") == "continue":
            remaining.append(name)
        summary[name] = {key: result.get(key) for key in _SUMMARY_KEYS}
    generation = request.generation + 1
    copied = sum(int(entry.get("records_copied") or 0) for entry in summary.values())
    totals = [entry.get("total") for entry in summary.values()]
    return {
        "continue": bool(remaining),
        "objects": remaining,
        "generation": generation,
        "name": f"{request.base_name}-{generation}",
        "base_name": request.base_name,
        "requested_by": request.requested_by,
        "summary": summary,
        "records_copied": copied,
        "total": sum(int(t) for t in totals if t is not None) if all(t is not None for t in totals) else None,
    }


_SUMMARY_KEYS = (
    "status",
    "next",
    "records_copied",
    "total",
    "rate_per_s",
    "eta_seconds",
    "parts",
    "api_calls",
    "bulk_jobs",
    "bulk_failures",
    "error",
)


def _resume_failed(copy: Copy) -> None:
    copy.status, copy.error, copy.finished_at = "running", None, None
    index = copy.current
    if index is not None:
        copy.parts[index].attempts = 0


__all__ = ["continue_as_new", "plan", "plan_failed", "summarize"]
