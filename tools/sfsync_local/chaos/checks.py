"""What a chaos schedule must leave behind, and what each fault must have shown.

After the settle phase (:mod:`sfsync_local.chaos.run`):

* **copy**: ``sfsync verify --object X --local`` finds 0 missing, extra and stale items for every
  object, and every item equals its Salesforce row field by field (alive rows; a deleted row's item,
  if any, is a tombstone);
* **local changes**: every value the application wrote is in Salesforce (or the record is listed
  refused by ``sfsync errors``); every local create made exactly one Salesforce record (and the
  application's item points at it); every local delete reached Salesforce;
* **nothing stuck**: every object's copy done, no object needing attention, no lease or open window
  left, no pending marker or delete intent, ``sfsync errors`` empty, no execution running, and the
  last tick's ``FreshnessSeconds`` of every object under the freshness alarm's threshold;
* **evidence**: every fault that fired left a signal an operator sees - a metric of the engine's
  catalogue (:data:`sfsync.core.observability.METRICS`), a failed invocation (``AWS/Lambda`` ``Errors``,
  alarmed per function), or an execution status the ``full-copy-*`` alarms watch.  Each evidence
  line names the signal and the alarm.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .plan import EPOCH_MS, OBJECTS, TWO_WAY
from .workload import scan

if TYPE_CHECKING:
    from .run import ChaosRun, FaultOutcome

#: The freshness alarm's default threshold (template parameter ``LagAlarmSeconds``).
FRESHNESS_LIMIT_SECONDS = 1800
#: How long after a fault fired (or a persistent one ended) its evidence may appear (virtual seconds).
EVIDENCE_GRACE_SECONDS = 30 * 60
_SF_ID = re.compile(r"^[A-Za-z0-9]{18}$")
_SF_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
_UNSELECTED_TYPES = frozenset({"address", "location", "base64"})
#: Alarms of template.yaml that watch the function errors (AWS/Lambda Errors).
FUNCTION_ALARMS = {
    "DispatcherFunction": "dispatcher-errors",
    "ObjectSyncFunction": "object-sync-errors",
    "FullSyncFunction": "full-sync-errors",
    "WriteBackFunction": "write-back-errors",
}
EXECUTION_ALARMS = {"FAILED": "full-copy-failed", "ABORTED": "full-copy-aborted", "TIMED_OUT": "full-copy-timed-out"}
#: Engine metrics that say "something failed" (and the alarm watching it, where there is one).
FAILURE_METRICS = {
    "CycleFailed": "cycle-failed",
    "ConfigurationError": "configuration-error",
    "NeedsAttention": "needs-attention",
    "LocalEditsOverdue": "local-edits-overdue",
    "CyclesFailed": "",
    "WriteBackRetried": "",
    "WriteBackRecordsFailed": "",
    "FullSyncFailed": "",
    "FullSyncObjectFailed": "",
    "FullSyncBulkJobFailed": "",
    "CopyReconciled": "",
    "OrgBackoff": "",
    "DispatchFailed": "",
}


@dataclass
class ScheduleReport:
    """Everything one schedule found; ``ok`` when nothing was lost, duplicated or stuck and every fault showed."""

    seed: int
    profile: str
    simulated_seconds: int = 0
    settled_after_seconds: int | None = None
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    faults: list[dict[str, Any]] = field(default_factory=list)  # one row per planned fault
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    copy: list[str] = field(default_factory=list)  # verify / field differences
    unseen: list[str] = field(default_factory=list)  # faults that fired without evidence
    unfired: list[str] = field(default_factory=list)  # armed faults that never happened
    problems: list[str] = field(default_factory=list)  # the harness's own trouble
    counts: dict[str, Any] = field(default_factory=dict)  # workload and traffic figures
    log_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.duplicated or self.stuck or self.copy or self.unseen or self.unfired or self.problems
        )

    def failures(self) -> list[str]:
        out: list[str] = []
        for title, rows in (
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("stuck", self.stuck),
            ("copy differs", self.copy),
            ("fault without evidence", self.unseen),
            ("fault never fired", self.unfired),
            ("harness", self.problems),
        ):
            out.extend(f"{title}: {row}" for row in rows)
        return out

    def fault_table(self) -> str:
        lines = [f"{'#':>3} {'fault':<34} {'fired':>5}  evidence"]
        for row in self.faults:
            evidence = "; ".join(row["evidence"]) or ("-" if not row["fired"] else "NONE")
            lines.append(f"{row['id']:>3} {row['label']:<34} {row['fired']:>5}  {evidence}")
        return "\n".join(lines)

    def replay_command(self) -> str:
        if self.profile == "ci":
            return f"make chaos SEED={self.seed}   (or: .venv/bin/python bench/chaos.py --seed {self.seed} --verbose)"
        return f".venv/bin/python bench/chaos.py --seed {self.seed} --profile {self.profile} --verbose"

    def explain(self, schedule: Any = None) -> str:
        """Everything a person needs to replay and read a failed schedule."""
        parts = [
            f"chaos schedule seed {self.seed} ({self.profile}) FAILED; replay it with:",
            f"  {self.replay_command()}",
        ]
        if schedule is not None:
            parts.append(schedule.describe())
        parts += ["", self.fault_table(), ""]
        parts += [f"  {line}" for line in self.failures()]
        parts.append(f"simulated {self.simulated_seconds / 3600:.2f} h, settled after {self.settled_after_seconds} s")
        if self.log_tail:
            parts += ["", "timeline (latest):", *(f"  {line[:300]}" for line in self.log_tail[-60:])]
        return "\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "profile": self.profile,
            "ok": self.ok,
            "simulated_seconds": self.simulated_seconds,
            "settled_after_seconds": self.settled_after_seconds,
            "wall_seconds": round(self.wall_seconds, 1),
            "cpu_seconds": round(self.cpu_seconds, 1),
            "faults": self.faults,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "stuck": self.stuck,
            "copy": self.copy,
            "unseen": self.unseen,
            "unfired": self.unfired,
            "problems": self.problems,
            "counts": self.counts,
        }


# ---------------------------------------------------------------------------------------------- the whole check


def check_run(run: ChaosRun, *, settled_after: int | None) -> ScheduleReport:
    report = ScheduleReport(run.schedule.seed, run.profile.name)
    report.simulated_seconds = run.now_s()
    report.settled_after_seconds = settled_after
    report.problems.extend(run.problems)
    report.copy.extend(copy_findings(run))
    lost, duplicated = local_change_findings(run)
    report.lost.extend(lost)
    report.duplicated.extend(duplicated)
    report.stuck.extend(stuck_findings(run, final=True))
    for outcome in run.outcomes.values():
        outcome.evidence = evidence_for(run, outcome) if outcome.fired else []
        report.faults.append(
            {
                "id": outcome.spec.id,
                "kind": outcome.spec.kind,
                "label": outcome.spec.label,
                "params": outcome.spec.params,
                "at": outcome.spec.at,
                "fired": len(outcome.fired_ms),
                "evidence": outcome.evidence,
                "notes": outcome.notes[:3],
            }
        )
        if not outcome.fired:
            report.unfired.append(outcome.spec.describe())
        elif not outcome.evidence:
            report.unseen.append(f"{outcome.spec.describe()} (fired {len(outcome.fired_ms)}x: {outcome.notes[:1]})")
    ledger = run.workload.ledger
    errors = [r for r in run.interceptor.records if r.error_type]
    report.counts = {
        "salesforce_ops": dict(ledger.salesforce_ops),
        "local_ops": dict(ledger.local_ops),
        "ticks": run.ticks,
        "sweeps": run.sweeps,
        "invocations": len(run.interceptor.records),
        "failed_invocations": len(errors),
        "executions": _count(e.status for e in run.executions.values()),
        "metrics": len(run.sink.metrics),
        "retry_sleeps": {"botocore": len(run.slept.botocore), "salesforce": len(run.slept.salesforce)},
    }
    report.log_tail = list(run.timeline)
    return report


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return out


# ---------------------------------------------------------------------------------------------- the copy


def cli(argv: Sequence[str]) -> tuple[int, str, str]:
    """Run an ``sfsync`` command in this process (the local stack's moto answers its AWS calls)."""
    from sfsync_local.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def copy_findings(run: ChaosRun) -> list[str]:
    found: list[str] = []
    sf = run.emulator.salesforce()
    for obj in OBJECTS:
        code, out, err = cli(["verify", "--object", obj, "--local", "--region", run.stack.region])
        if code not in (0, 1):
            found.append(f"verify {obj}: exit {code}: {err.strip()[:300]}")
            continue
        report = json.loads(out)
        for finding in ("missing", "extra", "stale"):
            n = int(report[finding]["count"])
            if n:
                found.append(f"verify {obj}: {n} {finding} {report[finding]['examples'][:5]}")
        found.extend(field_differences(run, sf, obj))
    return found


def field_differences(run: ChaosRun, sf: Any, obj: str, *, limit: int = 10) -> list[str]:
    """Every alive Salesforce row equals its item field by field (a null is an absent attribute)."""
    describe = getattr(sf, obj).describe()
    fields = [f["name"] for f in describe["fields"] if f["type"] not in _UNSELECTED_TYPES and not f["calculated"]]
    rows = sf.query_all(f"SELECT {', '.join(fields)} FROM {obj}", include_deleted=True)["records"]
    items = {i["Id"]: i for i in scan(run.dynamodb, run.tables[obj]) if i.get("sobject") == obj}
    found: list[str] = []
    for row in rows:
        item = items.get(row["Id"])
        if row["IsDeleted"]:
            if item is not None and item.get("IsDeleted") is not True:
                found.append(f"{obj} {row['Id']}: deleted in Salesforce, alive in DynamoDB")
            continue
        if item is None:
            found.append(f"{obj} {row['Id']}: no item")
            continue
        for name, value in row.items():
            if name == "attributes":
                continue
            expected = _stored(value)
            if (expected is None and name in item) or (expected is not None and item.get(name) != expected):
                found.append(f"{obj} {row['Id']}.{name}: DynamoDB {item.get(name)!r}, Salesforce {value!r}")
                break
        if len(found) >= limit:
            break
    return found


def _stored(value: Any) -> Any:
    """A REST JSON value as the engine stores it (datetimes ISO ms ``Z``, numbers ``Decimal``)."""
    if isinstance(value, str) and _SF_DATETIME.match(value):
        return value[:23] + "Z"
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


# ---------------------------------------------------------------------------------------------- local changes


def open_errors(run: ChaosRun) -> list[dict[str, Any]]:
    """``sfsync errors --json``: the records that still need a person."""
    table = run.stack.table_name("ErrorsTable")
    code, out, err = cli(["errors", "--table", table, "--region", run.stack.region, "--json"])
    if code != 0:
        raise RuntimeError(f"sfsync errors failed ({code}): {err}")
    rows: list[dict[str, Any]] = json.loads(out)["records"]
    return rows


def local_change_findings(run: ChaosRun) -> tuple[list[str], list[str]]:
    """(lost, duplicated) local changes against the workload's ledger."""
    ledger = run.workload.ledger
    refused = {(r["object"], r["id"]) for r in open_errors(run)}
    org = run.emulator.org
    lost: list[str] = []
    duplicated: list[str] = []
    for (obj, record_id), values in sorted(ledger.edits.items()):
        row = org.get(obj, record_id, include_deleted=True, as_api=False)
        for name, value in values.items():
            if (row or {}).get(name) != value and (obj, record_id) not in refused:
                lost.append(f"edit {obj} {record_id}.{name}={value!r}: Salesforce has {(row or {}).get(name)!r}")
    sf = run.emulator.salesforce()
    created_by_sfsync = _sfsync_changes(run, "CREATE")
    by_name: dict[tuple[str, str], list[str]] = {}
    items: dict[str, dict[str, Any]] = {}
    for obj in sorted({obj for obj, _ in ledger.creates.values()}):
        names = ", ".join(f"'{n}'" for o, n in ledger.creates.values() if o == obj)  # the ledger's own names
        for row in sf.query_all(f"SELECT Id, LastName FROM {obj} WHERE LastName IN ({names})", include_deleted=True)[
            "records"
        ]:
            by_name.setdefault((obj, str(row["LastName"])), []).append(str(row["Id"]))
        items.update({i["Id"]: i for i in scan(run.dynamodb, run.tables[obj])})
    for key, (obj, last_name) in sorted(ledger.creates.items()):
        ids = by_name.get((obj, last_name), [])
        if len(ids) > 1:
            duplicated.append(f"create {obj} {key}: {len(ids)} records {ids}")
        elif not ids and (obj, key) not in refused:
            lost.append(f"create {obj} {key} ({last_name}): no record in Salesforce")
        elif ids:
            item = items.get(key)
            if item is None or item.get("_created_id") != ids[0]:
                lost.append(f"create {obj} {key}: the application's item does not point at {ids[0]}: {item}")
            if created_by_sfsync.get(ids[0], 0) != 1:
                duplicated.append(f"create {obj} {key}: {created_by_sfsync.get(ids[0], 0)} CREATE events by sfsync")
    deleted_by_sfsync = _sfsync_changes(run, "DELETE")
    for obj, record_id in sorted(ledger.deletes):
        row = org.get(obj, record_id, include_deleted=True, as_api=False)
        if row is not None and not row.get("IsDeleted") and (obj, record_id) not in refused:
            lost.append(f"delete {obj} {record_id}: still alive in Salesforce")
        if deleted_by_sfsync.get(record_id, 0) > 1:
            duplicated.append(f"delete {obj} {record_id}: {deleted_by_sfsync[record_id]} DELETE events by sfsync")
    return lost, duplicated


def _sfsync_changes(run: ChaosRun, change_type: str) -> dict[str, int]:
    """Record Id -> how many change events of ``change_type`` the write-back (client=sfsync) caused."""
    counts: dict[str, int] = {}
    for event in run.emulator.org.cdc.since(0):
        if event.change_type == change_type and event.change_origin.endswith("client=sfsync"):
            for record_id in event.record_ids:
                counts[record_id] = counts.get(record_id, 0) + 1
    return counts


# ---------------------------------------------------------------------------------------------- stuck


def stuck_findings(run: ChaosRun, *, final: bool) -> list[str]:
    """What has not healed (``final``: also the errors list, running executions and freshness)."""
    from sfsync_local.status import read_status

    found: list[str] = []
    state_table = run.stack.table_name("StateTable")
    now = run.clock.now()
    for status in read_status(state_table, list(OBJECTS), region=run.stack.region, now=now):
        row = status.to_dict()
        obj = row["object"]
        if row["full_copy_status"] != "done":
            found.append(f"{obj}: full copy {row['full_copy']}")
        if row["needs_attention"]:
            found.append(f"{obj}: needs attention: {row['needs_attention']}")
        if row["lease_holder"]:
            found.append(f"{obj}: lease held by {row['lease_holder']} until {row['lease_expires_at']}")
        if row["open_window_records"] is not None:
            found.append(f"{obj}: a window left open ({row['open_window_records']} records)")
    for obj in TWO_WAY:
        pending = [i["Id"] for i in scan(run.dynamodb, run.tables[obj]) if "_pending_since" in i]
        if pending:
            found.append(f"{obj}: {len(pending)} local changes still pending {pending[:5]}")
    intents = [
        f"{i['pk']}/{i['sk']}"
        for i in scan(run.dynamodb, state_table)
        if str(i.get("pk", "")).startswith("WRITEBACK#") and str(i.get("sk", "")).startswith("DELETE#")
    ]
    if intents:
        found.append(f"local deletes not settled: {intents[:5]}")
    if not final:
        return found
    for row in open_errors(run):
        found.append(f"sfsync errors lists {row['object']} {row['id']}: {row['kind']} {row['code']} {row['message']}")
    sfn = run.stack.boto3_client("stepfunctions")
    running = sfn.list_executions(stateMachineArn=run.stack.state_machine_arn(), statusFilter="RUNNING")
    found.extend(f"execution {e['name']} still running" for e in running["executions"])
    freshness = (run.last_dispatch or {}).get("freshness")
    if freshness is None:
        found.append("the last dispatcher tick failed or reported no freshness")
    else:
        for obj in OBJECTS:
            age = freshness.get(obj)
            if age is None or age >= FRESHNESS_LIMIT_SECONDS:
                found.append(f"{obj}: FreshnessSeconds {age} (alarm at {FRESHNESS_LIMIT_SECONDS})")
    return found


# ---------------------------------------------------------------------------------------------- evidence


def evidence_for(run: ChaosRun, outcome: FaultOutcome) -> list[str]:
    """The signals an operator saw of one fault (empty: none)."""
    spec = outcome.spec
    start = outcome.fired_ms[0]
    end = max(outcome.fired_ms[-1], EPOCH_MS + spec.end * 1000) + EVIDENCE_GRACE_SECONDS * 1000
    kind = spec.kind

    def errors(function: str | None = None, types: Iterable[str] | None = None) -> list[str]:
        wanted = set(types) if types is not None else None
        found = _count(
            f"{r.function} {r.error_type}"
            for r in run.interceptor.records
            if start <= r.at_ms <= end
            and r.error_type
            and (function is None or r.function == function)
            and (wanted is None or r.error_type in wanted)
        )
        return [
            f"AWS/Lambda Errors {key} x{n} ({FUNCTION_ALARMS.get(key.split()[0], '?')})" for key, n in found.items()
        ]

    def metrics(names: Iterable[str], *, predicate: Callable[[float], bool] | None = None) -> list[str]:
        wanted = set(names)
        found = _count(
            m.name + (f"[{m.dimensions['object']}]" if "object" in m.dimensions else "")
            for m in run.sink.metrics
            if start <= m.at_ms <= end and m.name in wanted and (predicate or _positive)(m.value)
        )
        return [f"{key} x{n}" + _alarm(key) for key, n in found.items()]

    if kind == "kill-copy-step":
        return errors("FullSyncFunction", ["TaskKilled"])
    if kind == "kill-cycle":
        return errors("ObjectSyncFunction", ["TaskKilled"])
    if kind == "kill-write-back":
        return errors("WriteBackFunction", ["TaskKilled"])
    if kind == "ddb-throttle-copy":
        return errors("FullSyncFunction", ["StoreThrottled"])
    if kind in ("stop-execution", "time-out-execution"):
        # Step Functions says ABORTED / TIMED_OUT; moto 5.2.5 fails the Map iteration the stop or the
        # time-out interrupted and reports the execution FAILED: alarmed as well (full-copy-failed)
        wanted = {"ABORTED", "FAILED"} if kind == "stop-execution" else {"TIMED_OUT", "FAILED"}
        found = [
            f"AWS/States Executions{e.status.title().replace('_', '')} {e.name} ({EXECUTION_ALARMS[e.status]})"
            for arn, e in run.executions.items()
            if arn in outcome.targets and e.status in wanted
        ]
        return found + (metrics(["CopyReconciled"]) if found else [])
    if kind == "5xx-storm":
        return errors() + metrics(FAILURE_METRICS)
    if kind == "request-limit-write-back":
        return metrics(["WriteBackRetried", "WriteBackRecordsFailed", "OrgBackoff", "CyclesBackoff"]) + errors(
            types=["SalesforceRateLimited"]
        )
    if kind == "token-expiry-write-back":
        return metrics(["SalesforceReauthenticated"])
    if kind == "clock-skew":
        offset = float(spec.params["offset"])
        return metrics(["ClockSkewSeconds"], predicate=lambda v: abs(v - offset) <= abs(offset) / 2)
    if kind == "config-error":
        return metrics(["ConfigurationError"]) + errors(types=["ConfigurationError", "SalesforceAuthError"])
    if kind in ("concurrent-ticks", "duplicate-delivery"):
        function = "DispatcherFunction" if kind == "concurrent-ticks" else "ObjectSyncFunction"
        concurrent = [
            f"AWS/Lambda ConcurrentExecutions {name}={n} (Lambda's own metric)"
            for at, name, n in run.concurrent
            if name == function and start <= at <= end and n > 1
        ]
        if kind == "duplicate-delivery":  # the engine's own signal is required: the duplicate found the lease held
            held = metrics(["LeaseHeld"])
            return held + concurrent[:1] if held else []
        return concurrent[:1] + metrics(["LeaseHeld", "FullCopiesAlreadyStarted"])
    return []


def _positive(value: float) -> bool:
    return value > 0


def _alarm(key: str) -> str:
    name = key.split("[", maxsplit=1)[0]
    alarm = FAILURE_METRICS.get(name)
    return f" ({alarm})" if alarm else ""


__all__ = [
    "EVIDENCE_GRACE_SECONDS",
    "FRESHNESS_LIMIT_SECONDS",
    "ScheduleReport",
    "check_run",
    "copy_findings",
    "evidence_for",
    "field_differences",
    "local_change_findings",
    "open_errors",
    "stuck_findings",
]
