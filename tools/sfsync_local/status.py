"""``sfsync status`` and the status tables the demo and ``sfsync run`` print.

Everything is read through :class:`sfsync.store.state.StateStore` (the module that owns the state
items); this module only gathers and renders: per-object watermark, lag, last cycle, lease,
last counts and full-copy state, and the per-cycle table of cycle summary rows.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .runner import EXIT_OK, EXIT_USAGE, CliError, iso_ms, load_json_file, state_file_path, utc_now

DEFAULT_REGION = "us-east-1"
STATE_TABLE_LOGICAL_ID = "StateTable"
STATE_TABLE_OUTPUT = "StateTableName"
OBJECT_SYNC_OUTPUT = "ObjectSyncFunctionName"

#: (column header, counts key) of the per-cycle table, in display order
COUNT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("read", "RecordsRead"),
    ("created", "RecordsCreated"),
    ("updated", "RecordsUpdated"),
    ("deleted", "RecordsDeleted"),
    ("failed", "RecordsFailed"),
    ("skipped", "RecordsSkipped"),
    ("api", "ApiCalls"),
)


# --------------------------------------------------------------------------- rendering


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: Iterable[int] = ()) -> str:
    """A plain-text table: a header, a rule, one line per row; ``right`` = right-aligned columns."""
    text_rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    right_set = set(right)

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(widths[i]) if i in right_set else c.ljust(widths[i]) for i, c in enumerate(cells)]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out.extend(line(row) for row in text_rows)
    return "\n".join(out)


def format_duration(seconds: float | None) -> str:
    """``42 s``, ``3m05s``, ``2h07m``, ``3d04h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    total = round(seconds)
    sign = "-" if total < 0 else ""
    total = abs(total)
    if total < 120:
        return f"{sign}{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 120:
        return f"{sign}{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{sign}{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{sign}{days}d{hours:02d}h"


def _short_time(value: dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone(dt.UTC).strftime("%H:%M:%S")


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else iso_ms(value)


# --------------------------------------------------------------------------- reading state


@dataclass(frozen=True)
class ObjectStatus:
    """One object's sync state as ``sfsync status`` shows it."""

    object_name: str
    watermark: dt.datetime | None
    full_copy_done: bool
    lag_seconds: float | None
    lease_holder: str | None
    lease_expires_at: dt.datetime | None
    last_ended_at: dt.datetime | None
    last_status: str | None
    last_cycle_id: str | None
    last_counts: dict[str, int]
    checkpoint_records: int | None
    copy_status: str | None = None  # the full-copy document's status: running / done / failed
    copy_records: int = 0
    copy_total: int | None = None
    copy_rate_per_s: float | None = None  # as of the copy's last checkpoint
    copy_eta_seconds: float | None = None
    copy_updated_at: dt.datetime | None = None
    copy_failures: int = 0  # consecutive failed attempts of the copy
    copy_error: str | None = None  # the last failure, one line
    #: seconds since the copy was last known complete (watermark, or a probe that found nothing)
    freshness_seconds: float | None = None
    #: why a person should look at the object (its copy keeps failing), with the command to retry
    attention: str | None = None
    #: change events (Event Relay): off / on / quiet / unhealthy, and what the state table counts
    cdc_status: str = "off"
    cdc_last_event_at: dt.datetime | None = None
    cdc_events_applied: int = 0
    cdc_gaps_handled: int = 0
    cdc_unhealthy_reason: str | None = None

    @property
    def change_events(self) -> str:
        if self.cdc_status == "off":
            return "off"
        last = _short_time(self.cdc_last_event_at) if self.cdc_last_event_at else "-"
        return f"{self.cdc_status}, last {last}, {self.cdc_events_applied:,} applied, {self.cdc_gaps_handled:,} gaps"

    @property
    def full_copy(self) -> str:
        if self.copy_status == "running":
            of = f"/{self.copy_total:,}" if self.copy_total else ""
            figures = [f"{self.copy_records:,}{of} records"]
            if self.copy_total:
                figures.append(f"{100 * self.copy_records / self.copy_total:.0f}%")
            if self.copy_rate_per_s is not None:
                figures.append(f"{self.copy_rate_per_s:,.0f}/s")
            if self.copy_eta_seconds is not None:
                figures.append(f"ETA {format_duration(self.copy_eta_seconds)}")
            if self.copy_updated_at is not None:
                figures.append(f"at {_short_time(self.copy_updated_at)}")
            return f"running ({', '.join(figures)})"
        if self.copy_status == "failed":
            tries = (
                f", {self.copy_failures} failure{'s' if self.copy_failures != 1 else ''}" if self.copy_failures else ""
            )
            why = f": {self.copy_error}" if self.copy_error else ""
            return f"failed ({self.copy_records:,} records{tries}){why}"
        if self.copy_status == "done":
            return f"done ({self.copy_records:,} records)"
        if self.full_copy_done:
            return "done"
        if self.watermark is not None:
            return "none (first cycle read everything)"
        return "not started"

    @property
    def known(self) -> bool:
        return (
            self.watermark is not None
            or self.last_ended_at is not None
            or self.lease_holder is not None
            or self.copy_status is not None
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": self.object_name,
            "watermark": _iso(self.watermark),
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "full_copy": self.full_copy,
            "full_copy_done": self.full_copy_done,
            "full_copy_status": self.copy_status,
            "full_copy_records": self.copy_records,
            "full_copy_total": self.copy_total,
            "full_copy_rate_per_s": self.copy_rate_per_s,
            "full_copy_eta_seconds": self.copy_eta_seconds,
            "full_copy_updated_at": _iso(self.copy_updated_at),
            "full_copy_failures": self.copy_failures,
            "full_copy_error": self.copy_error,
            "freshness_seconds": None if self.freshness_seconds is None else round(self.freshness_seconds, 3),
            "needs_attention": self.attention,
            "lease_holder": self.lease_holder,
            "lease_expires_at": _iso(self.lease_expires_at),
            "last_cycle_ended_at": _iso(self.last_ended_at),
            "last_cycle_status": self.last_status,
            "last_cycle_id": self.last_cycle_id,
            "last_cycle_counts": dict(self.last_counts),
            "open_window_records": self.checkpoint_records,
            "cdc": self.cdc_status,
            "cdc_last_event_at": _iso(self.cdc_last_event_at),
            "cdc_events_applied": self.cdc_events_applied,
            "cdc_gaps_handled": self.cdc_gaps_handled,
            "cdc_unhealthy_reason": self.cdc_unhealthy_reason,
        }


#: An object whose last change event is older than this shows ``quiet`` (the template's CdcPauseSeconds default).
CDC_QUIET_SECONDS = 900


def _state_store(table: str, region: str | None, endpoint_url: str | None) -> Any:
    from sfsync.store.state import StateStore

    return StateStore(table, region=region or DEFAULT_REGION, host=endpoint_url)


def read_status(
    table: str,
    objects: Sequence[str],
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    now: dt.datetime | None = None,
) -> list[ObjectStatus]:
    """The state of each object in ``objects`` (in that order) from the state table."""
    from sfsync.core.exceptions import StoreError
    from sfsync.dispatch.copies import attention_reason

    store = _state_store(table, region, endpoint_url)
    when = now or utc_now()
    copies = read_copy_progress(table, objects, region=region, endpoint_url=endpoint_url)
    try:
        leases = store.lease_statuses(list(objects))
        complete = store.known_complete(list(objects))
        cdc = store.cdc_health(list(objects))
        result: list[ObjectStatus] = []
        for name in objects:
            watermark = store.get_watermark(name)
            checkpoint = store.get_checkpoint(name)
            recent = store.recent_cycles(name, limit=1)
            lease = leases[name]
            running = lease.running(when)
            copy = copies.get(name)
            result.append(
                ObjectStatus(
                    object_name=name,
                    watermark=watermark.value,
                    full_copy_done=watermark.full_copy_done,
                    lag_seconds=None if watermark.value is None else (when - watermark.value).total_seconds(),
                    lease_holder=lease.holder if running else None,
                    lease_expires_at=lease.expires_at if running else None,
                    last_ended_at=lease.last_ended_at or (recent[0].ended_at if recent else None),
                    last_status=lease.last_status or (recent[0].status if recent else None),
                    last_cycle_id=lease.last_cycle_id or (recent[0].cycle_id if recent else None),
                    last_counts=dict(recent[0].counts) if recent else {},
                    checkpoint_records=checkpoint.records_done if checkpoint else None,
                    copy_status=copy.status if copy else None,
                    copy_records=copy.records_copied if copy else 0,
                    copy_total=copy.total if copy else None,
                    copy_rate_per_s=copy.rate_per_s if copy else None,
                    copy_eta_seconds=copy.eta_seconds if copy else None,
                    copy_updated_at=copy.updated_at if copy else None,
                    copy_failures=copy.failures if copy else 0,
                    copy_error=copy.error if copy else None,
                    freshness_seconds=(
                        None
                        if complete.get(name) is None or (copy is not None and copy.status != "done")
                        else (when - complete[name]).total_seconds()  # type: ignore[operator]
                    ),
                    attention=attention_reason(name, copy) if copy else None,
                    cdc_status=cdc[name].status(when, CDC_QUIET_SECONDS),
                    cdc_last_event_at=cdc[name].last_event_at,
                    cdc_events_applied=cdc[name].events_applied,
                    cdc_gaps_handled=cdc[name].gaps_handled,
                    cdc_unhealthy_reason=cdc[name].unhealthy_reason,
                )
            )
    except StoreError as exc:
        raise CliError(f"cannot read the state table {table}: {exc}", exit_code=1) from None
    return result


def read_cycle_summaries(
    table: str,
    objects: Sequence[str],
    *,
    since: dt.datetime,
    region: str | None = None,
    endpoint_url: str | None = None,
    limit: int = 5,
) -> list[Any]:
    """Cycle summary rows (``sfsync.store.state.CycleSummary``) that ended at or after ``since``."""
    from sfsync.core.exceptions import StoreError

    store = _state_store(table, region, endpoint_url)
    rows: list[Any] = []
    try:
        for name in objects:
            rows.extend(s for s in store.recent_cycles(name, limit=limit) if s.ended_at >= since)
    except StoreError as exc:
        raise CliError(f"cannot read the cycle history in {table}: {exc}", exit_code=1) from None
    rows.sort(key=lambda s: (s.object_name, s.ended_at))
    return rows


def format_status(statuses: Sequence[ObjectStatus], *, show_unknown: bool = False) -> str:
    rows = []
    for s in statuses:
        if not show_unknown and not s.known:
            continue
        counts = s.last_counts
        last_counts = "/".join(
            str(counts.get(key, 0)) for key in ("RecordsCreated", "RecordsUpdated", "RecordsDeleted")
        )
        rows.append(
            [
                s.object_name,
                _iso(s.watermark) or "-",
                format_duration(s.freshness_seconds if s.freshness_seconds is not None else s.lag_seconds),
                _iso(s.last_ended_at) or "-",
                s.last_status or "-",
                s.lease_holder or "-",
                last_counts if counts else "-",
                str(counts.get("RecordsFailed", 0)) if counts else "-",
                s.full_copy,
            ]
        )
    if not rows:
        return "no sync state yet (no object has run a cycle)"
    headers = ["object", "watermark", "fresh", "last cycle end", "status", "lease", "c/u/d", "failed", "full copy"]
    shown = [s for s in statuses if show_unknown or s.known]
    if any(s.cdc_status != "off" for s in statuses):  # the change events column, once any object receives them
        headers.append("change events")
        for row, s in zip(rows, shown, strict=True):
            row.append(s.change_events)
    table = render_table(headers, rows, right=(2, 6, 7))
    attention = [f"NEEDS ATTENTION {s.object_name}: {s.attention}" for s in statuses if s.attention]
    unhealthy = [
        f"CHANGE EVENTS UNHEALTHY {s.object_name}: {s.cdc_unhealthy_reason} (normal cadence until a clean cycle)"
        for s in statuses
        if s.cdc_status == "unhealthy"
    ]
    return "\n".join([table, *attention, *unhealthy])


@dataclass(frozen=True)
class WorkRow:
    """One line of the per-cycle table: an incremental cycle or a full copy of one object."""

    object_name: str
    kind: str  # "cycle" | "full copy"
    status: str
    counts: Mapping[str, int]
    watermark: dt.datetime | None
    ended_at: dt.datetime | None
    seconds: float | None
    error: str | None = None

    @classmethod
    def from_summary(cls, s: Any) -> WorkRow:
        """From a ``sfsync.store.state.CycleSummary`` (a cycle history row)."""
        return cls(
            s.object_name,
            "cycle",
            s.status,
            dict(s.counts),
            s.watermark,
            s.ended_at,
            (s.ended_at - s.started_at).total_seconds(),
            s.error,
        )

    @classmethod
    def from_copy(cls, c: Any) -> WorkRow:
        """From a ``sfsync.store.copies.Copy`` (the full-copy document)."""
        started = _parse_iso(c.engine_started_at)
        ended = _parse_iso(c.finished_at)
        counts = {**c.counts, "RecordsRead": c.records_copied, "ApiCalls": c.api_calls}
        error = None if not c.error else "; ".join(f"{k}: {v}" for k, v in c.error.items())
        took = (ended - started).total_seconds() if started and ended else None
        return cls(c.object_name, "full copy", c.status, counts, _parse_iso(c.watermark), ended, took, error)


def format_cycle(outcome: Any, *, number: int | None = None) -> str:
    """The block printed after each cycle: a headline, then one row per object that ran."""
    reasons: dict[str, int] = {}
    for item in outcome.dispatch.get("started", []):
        reason = str(item.get("reason", "due"))
        reasons[reason] = reasons.get(reason, 0) + 1
    started = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items())) or "none"
    rows = [*(WorkRow.from_copy(c) for c in outcome.copies), *(WorkRow.from_summary(s) for s in outcome.summaries)]
    api = f"API calls {sum(int(r.counts.get('ApiCalls', 0)) for r in rows)}"
    if outcome.api_calls is not None:
        api += f" (emulator counted {outcome.api_calls})"
    headline = (
        f"cycle {outcome.number if number is None else number} at {_short_time(outcome.started)} UTC: "
        f"objects started {started}; took {outcome.seconds:.1f} s; {api}"
    )
    if outcome.executions:
        headline += f"; full-copy executions {outcome.executions}"
    lines = [headline]
    economy = format_economy(outcome.dispatch)
    if economy:
        lines.append(economy)
    copies = format_copy_starts(outcome.dispatch)
    if copies:
        lines.append(copies)
    if rows:
        lines.append(format_work_table(rows))
    lines.extend(f"  {r.object_name} {r.kind} failed: {r.error}" for r in rows if r.error)
    return "\n".join(lines)


def format_economy(dispatch: Mapping[str, Any]) -> str | None:
    """The dispatcher's API-economy line: change probe, API budget, org-wide hold (None: nothing to say)."""
    parts: list[str] = []
    probe = dispatch.get("probe")
    if isinstance(probe, Mapping):
        objects = probe.get("objects") or {}
        idle = sum(1 for p in objects.values() if isinstance(p, Mapping) and not p.get("has_work"))
        parts.append(f"probe {probe.get('api_calls', 0)} API call(s) for {len(objects)} object(s), {idle} idle")
    budget = dispatch.get("api_budget")
    if isinstance(budget, Mapping):
        percent = budget.get("percent")
        usage = "usage unknown" if percent is None else f"usage {percent:g}%"
        parts.append(f"API budget {usage}, {'running' if budget.get('allow_new_work') else 'PAUSED'}")
    if dispatch.get("held_all"):
        parts.append(f"no new work: {dispatch['held_all']}")
    return f"  dispatcher: {'; '.join(parts)}" if parts else None


def format_copy_starts(dispatch: Mapping[str, Any]) -> str | None:
    """The dispatcher's full-copy line: executions started / already started, objects held for a copy."""
    copies = dispatch.get("copies")
    if not isinstance(copies, Mapping):
        return None
    parts: list[str] = []
    for key, label in (("started", "started"), ("already_started", "already started")):
        for entry in copies.get(key) or []:
            objects = ", ".join(entry.get("objects") or [])
            parts.append(f"{label} {entry.get('execution_name')} ({entry.get('reason')}: {objects})")
    held = copies.get("held") or {}
    if held:
        parts.append("waiting: " + "; ".join(f"{name} {why}" for name, why in sorted(held.items())))
    return f"  full copy: {'; '.join(parts)}" if parts else None


def format_work_table(rows: Sequence[WorkRow]) -> str:
    """Per object: what ran, its counts, API calls, watermark lag (at its end) and duration."""
    ordered = sorted(rows, key=lambda r: (r.object_name, r.kind))
    table_rows = []
    for r in ordered:
        lag = None if r.watermark is None or r.ended_at is None else (r.ended_at - r.watermark).total_seconds()
        status = r.status if r.kind == "cycle" else f"{r.kind} {r.status}"
        table_rows.append(
            [
                r.object_name,
                status,
                *(str(r.counts.get(key, 0)) for _, key in COUNT_COLUMNS),
                format_duration(lag),
                "-" if r.seconds is None else f"{r.seconds:.1f} s",
            ]
        )
    headers = ["object", "status", *(h for h, _ in COUNT_COLUMNS), "wm lag", "took"]
    return render_table(headers, table_rows, right=range(2, len(headers)))


def format_cycle_table(summaries: Sequence[Any]) -> str:
    """The per-object table of cycle history rows (``sfsync.store.state.CycleSummary``)."""
    return format_work_table([WorkRow.from_summary(s) for s in summaries])


def read_full_copies(
    table: str, objects: Sequence[str], *, region: str | None = None, endpoint_url: str | None = None
) -> dict[str, Any]:
    """The full-copy documents (``sfsync.store.copies.Copy``) of ``objects`` that have one."""
    return _read_copies(table, objects, lambda store, name: store.get(name), region, endpoint_url)


def read_copy_progress(
    table: str, objects: Sequence[str], *, region: str | None = None, endpoint_url: str | None = None
) -> dict[str, Any]:
    """The full-copy progress (``sfsync.store.copies.CopyProgress``) of ``objects`` that have a copy."""
    return _read_copies(table, objects, lambda store, name: store.progress(name), region, endpoint_url)


def _read_copies(
    table: str,
    objects: Sequence[str],
    read: Callable[[Any, str], Any],
    region: str | None,
    endpoint_url: str | None,
) -> dict[str, Any]:
    """``read(CopyStore, name)`` for each object, keeping what is not None; a store error is a CliError."""
    from sfsync.core.exceptions import StoreError
    from sfsync.store.copies import CopyStore

    client = session_for(region).client("dynamodb", endpoint_url=endpoint_url)
    store = CopyStore(client, table)
    found: dict[str, Any] = {}
    try:
        for name in objects:
            value = read(store, name)
            if value is not None:
                found[name] = value
    except StoreError as exc:
        raise CliError(f"cannot read the full copies in {table}: {exc}", exit_code=1) from None
    return found


def _parse_iso(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


# --------------------------------------------------------------------------- the command


def session_for(region: str | None) -> Any:
    import boto3

    session = boto3.session.Session(region_name=region)
    if session.region_name is None:
        session = boto3.session.Session(region_name=DEFAULT_REGION)
    return session


def _where(endpoint_url: str | None, region: str | None) -> str:
    return endpoint_url or f"AWS ({session_for(region).region_name})"


def stack_error(stack_name: str, exc: Exception, *, region: str | None, endpoint_url: str | None) -> CliError:
    """One clear error (exit 2) for a CloudFormation call about ``stack_name`` that failed."""
    from botocore.exceptions import ClientError, NoCredentialsError

    where = _where(endpoint_url, region)
    if isinstance(exc, NoCredentialsError):
        return CliError(f"no AWS credentials to read stack {stack_name} in {where}: {exc}", exit_code=EXIT_USAGE)
    if isinstance(exc, ClientError):
        message = str(exc.response.get("Error", {}).get("Message") or exc)
        if "does not exist" in message:
            return CliError(f"stack {stack_name} does not exist in {where}", exit_code=EXIT_USAGE)
        return CliError(f"cannot read stack {stack_name} in {where}: {message}", exit_code=EXIT_USAGE)
    return CliError(f"cannot reach CloudFormation at {where}: {exc}", exit_code=EXIT_USAGE)


def aws_client(service: str, *, region: str | None, endpoint_url: str | None, **config: Any) -> Any:
    """A boto3 client of ``service`` (region: ``region``, else the boto3 chain, else us-east-1).

    ``config`` goes to ``botocore.config.Config``; lookups default to 3 attempts, so an endpoint that does
    not answer is reported in seconds, not after botocore's long back-off."""
    from botocore.config import Config

    settings = {"retries": {"mode": "standard", "max_attempts": 3}, "connect_timeout": 10, **config}
    return session_for(region).client(service, endpoint_url=endpoint_url, config=Config(**settings))


def stack_outputs(stack_name: str, *, region: str | None = None, endpoint_url: str | None = None) -> dict[str, str]:
    """Outputs of a deployed CloudFormation stack (``StateTableName``, ``DispatcherFunctionName``...).

    A stack that does not exist, or an endpoint that does not answer, is a :class:`CliError` (exit 2)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = aws_client("cloudformation", region=region, endpoint_url=endpoint_url)
    try:
        stacks = client.describe_stacks(StackName=stack_name)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        if STATE_TABLE_OUTPUT not in outputs:
            resources = client.describe_stack_resources(StackName=stack_name, LogicalResourceId=STATE_TABLE_LOGICAL_ID)
            for resource in resources.get("StackResources", []):
                outputs[STATE_TABLE_OUTPUT] = resource["PhysicalResourceId"]
    except (ClientError, BotoCoreError) as exc:
        raise stack_error(stack_name, exc, region=region, endpoint_url=endpoint_url) from None
    return outputs


def stack_output(outputs: Mapping[str, str], key: str, stack_name: str) -> str:
    """One output of the stack; a stack without it is not an sfsync stack (exit 2)."""
    try:
        return outputs[key]
    except KeyError:
        raise CliError(
            f"stack {stack_name} has no output {key}: is it a stack of sfsync's template.yaml?", exit_code=EXIT_USAGE
        ) from None


def stack_resource(
    stack_name: str, logical_id: str, *, region: str | None = None, endpoint_url: str | None = None
) -> str:
    """The physical id of one resource of a deployed stack, by its logical id (exit 2 when there is none)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = aws_client("cloudformation", region=region, endpoint_url=endpoint_url)
    try:
        resources = client.describe_stack_resources(StackName=stack_name, LogicalResourceId=logical_id)
    except (ClientError, BotoCoreError) as exc:
        raise stack_error(stack_name, exc, region=region, endpoint_url=endpoint_url) from None
    for resource in resources.get("StackResources", []):
        return str(resource["PhysicalResourceId"])
    raise CliError(f"stack {stack_name} has no resource {logical_id}", exit_code=EXIT_USAGE)


def deployed_objects(function: str, *, region: str | None = None, endpoint_url: str | None = None) -> list[str]:
    """The objects a deployed stack syncs: its ObjectSyncFunction's ``SFSYNC_OBJECTS`` and custom objects
    (what the local stack's status lists)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = aws_client("lambda", region=region, endpoint_url=endpoint_url)
    try:
        config = client.get_function_configuration(FunctionName=function)
    except (ClientError, BotoCoreError) as exc:
        raise CliError(f"cannot read the configuration of {function}: {exc}", exit_code=EXIT_USAGE) from None
    env = (config.get("Environment") or {}).get("Variables") or {}
    return objects_of(env)


def objects_of(env: Mapping[str, str]) -> list[str]:
    """``SFSYNC_OBJECTS`` + ``SFSYNC_CUSTOM_OBJECTS`` of a function's environment (default: every standard object)."""
    names = [n.strip() for n in str(env.get("SFSYNC_OBJECTS", "")).split(",") if n.strip()]
    names += [n.strip() for n in str(env.get("SFSYNC_CUSTOM_OBJECTS", "")).split(",") if n.strip()]
    return names or default_objects()


def discover_state_table(*, region: str | None, endpoint_url: str | None) -> str:
    """The one table whose name contains ``StateTable`` (how the local stack names it)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = aws_client("dynamodb", region=region, endpoint_url=endpoint_url)
    names: list[str] = []
    try:
        for page in client.get_paginator("list_tables").paginate():
            names.extend(page["TableNames"])
    except (ClientError, BotoCoreError) as exc:
        raise CliError(
            f"cannot list DynamoDB tables at {_where(endpoint_url, region)}: {exc}", exit_code=EXIT_USAGE
        ) from None
    matches = [name for name in names if STATE_TABLE_LOGICAL_ID.lower() in name.lower()]
    if len(matches) != 1:
        found = ", ".join(matches) if matches else "none"
        raise CliError(f"cannot tell which table is the state table (candidates: {found}); pass --table")
    return matches[0]


def default_objects() -> list[str]:
    from sfsync.core.registry import standard_object_names

    return standard_object_names()


def load_snapshot(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CliError(
            f"no local sync state at {path}: start `sfsync demo` or `sfsync run` first (or pass --state-file)",
            exit_code=1,
        )
    snapshot = load_json_file(str(path), "state snapshot")
    needed = ("state_table", "region", "key_schema", "attribute_definitions", "items")
    if not isinstance(snapshot, dict) or any(key not in snapshot for key in needed):
        raise CliError(f"{path} is not a state snapshot written by `sfsync demo` / `sfsync run`")
    return snapshot


@contextlib.contextmanager
def restored_state_table(snapshot: Mapping[str, Any]) -> Iterator[str]:
    """The snapshot's items in a state table of an in-process moto, for :class:`StateStore` to read.

    The copy gets its own name, so it never collides with a local stack running in this process.
    """
    import boto3
    from moto import mock_aws

    table = f"{snapshot['state_table']}-snapshot-{uuid.uuid4().hex[:8]}"
    with mock_aws():
        client = boto3.client("dynamodb", region_name=snapshot["region"])
        client.create_table(
            TableName=table,
            KeySchema=snapshot["key_schema"],
            AttributeDefinitions=snapshot["attribute_definitions"],
            BillingMode="PAY_PER_REQUEST",
        )
        items = list(snapshot["items"])
        for start in range(0, len(items), 25):
            requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            client.batch_write_item(RequestItems={table: requests})
        try:
            yield table
        finally:
            client.delete_table(TableName=table)


def status_command(args: argparse.Namespace, out: TextIO) -> int:
    if args.local and args.endpoint_url:
        raise CliError("--endpoint-url goes with --stack-name (or alone, a DynamoDB endpoint), not with --local")
    if args.local:
        path = state_file_path(args.state_file)
        snapshot = load_snapshot(path)
        objects = args.objects or list(snapshot.get("objects") or default_objects())
        saved_at = _parse_iso(snapshot.get("saved_at"))  # lags as of the snapshot
        with restored_state_table(snapshot) as table:
            statuses = read_status(table, objects, region=snapshot["region"], now=saved_at)
        where = f"local stack of `{snapshot.get('source', 'sfsync')}`, snapshot {snapshot.get('saved_at')} in {path}"
        return _print_status(out, args, str(snapshot["state_table"]), where, statuses)
    region = args.region or session_for(None).region_name
    table = args.table
    objects = args.objects
    if args.stack_name:
        # the deployed stack's own state table and objects: what the local stack's status shows
        outputs = stack_outputs(args.stack_name, region=region, endpoint_url=args.endpoint_url)
        table = table or stack_output(outputs, STATE_TABLE_OUTPUT, args.stack_name)
        if objects is None:
            function = stack_output(outputs, OBJECT_SYNC_OUTPUT, args.stack_name)
            objects = deployed_objects(function, region=region, endpoint_url=args.endpoint_url)
    elif table is None:
        table = discover_state_table(region=region, endpoint_url=args.endpoint_url)
    objects = objects or default_objects()
    statuses = read_status(table, objects, region=region, endpoint_url=args.endpoint_url)
    if args.stack_name:
        where = f"stack {args.stack_name}" + (f" at {args.endpoint_url}" if args.endpoint_url else f" in {region}")
    else:
        where = args.endpoint_url or f"DynamoDB in {region}"
    return _print_status(out, args, table, where, statuses)


def _print_status(
    out: TextIO, args: argparse.Namespace, table: str, where: str, statuses: Sequence[ObjectStatus]
) -> int:
    if args.json:
        payload = {
            "state_table": table,
            "source": where,
            "generated_at": iso_ms(utc_now()),
            "objects": [s.to_dict() for s in statuses],
        }
        print(json.dumps(payload, indent=2), file=out)
    else:
        print(f"state table {table}: {where}", file=out)
        print(format_status(statuses, show_unknown=bool(args.objects)), file=out)
    return EXIT_OK
