"""Cost and capacity model of a deployment, from the engine's own counters on the local stack.

Runs the real handlers, template.yaml and the real state machine on the local stack against an
emulated org (virtual clock), and counts what AWS bills, per phase:

  (a) 1,000 changed Leads through the incremental path (one mass update, the next tick's cycle, and
      the write-back invocations its stream records cause);
  (b) an idle day: the dispatcher every minute (change probes, freshness) and the write-back sweep
      every 5 minutes, measured over ``--idle-minutes`` of virtual time and scaled to 24 h;
  (c) the first copy of the generated org (Step Functions, Bulk API 2.0 result sets, per record).

What is counted:

* **Lambda**: invocations per function, and billed duration x the function's MemorySize (from the
  template) = GB-seconds.  The duration of an invocation is what it spends outside the local AWS
  (its wall time minus the time moto spends emulating AWS inside it, nested invocations excluded),
  plus ``--ddb-ms`` per DynamoDB request and ``--sf-ms`` per Salesforce API call (the network and
  service time a real DynamoDB and a real org add; the emulator answers over loopback), rounded up
  to 1 ms per invocation as Lambda bills.
* **Step Functions**: state transitions (the ``*StateEntered`` events of the executions' history).
* **DynamoDB** (on-demand): write request units (per item written: ceil(size / 1 KB), plus the same
  for every global secondary index the item is projected into; x2 in a transaction) and read
  request units (per item read: ceil(size / 4 KB), strongly consistent), counted in moto's backend.
* **Salesforce** API calls (the emulator's counter), against the org's daily allocation.

Prices are inputs (``--price name=value``), listed with the region in the output; the table is an
estimate of usage at those prices, not a bill.  CloudWatch (logs, custom metrics, alarms), Secrets
Manager and storage are listed as assumptions, not measured.

The capacity part derives the duration of a first copy of 10 and 100 million records from the
template's settings (the Map's ``MaxConcurrency``, FullSyncFunction's timeout, records per result
set), Salesforce's documented Bulk API 2.0 limits and the measured per-record cost.

Usage: .venv/bin/python bench/cost_model.py [--records 3000] [--idle-minutes 60] [--json]
       [--sf-ms 120] [--ddb-ms 8] [--price lambda_gb_s=0.0000133334 ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import EngineBench, engine_bench, handler_output_silenced

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
#: On-demand list prices in us-east-1 (USD) used by default; pass --price to use yours.
PRICES: dict[str, float] = {
    "lambda_request": 0.20 / 1_000_000,  # per invocation
    "lambda_gb_s": 0.0000133334,  # arm64, first tier
    "sfn_transition": 0.025 / 1_000,  # Standard workflows
    "ddb_wru": 0.625 / 1_000_000,  # on-demand write request unit
    "ddb_rru": 0.125 / 1_000_000,  # on-demand read request unit
}
PRICE_NOTES = {
    "lambda_request": "Lambda requests, per invocation",
    "lambda_gb_s": "Lambda duration, arm64, per GB-second",
    "sfn_transition": "Step Functions Standard, per state transition",
    "ddb_wru": "DynamoDB on-demand, per write request unit",
    "ddb_rru": "DynamoDB on-demand, per read request unit",
}
NOT_MEASURED = [
    "DynamoDB storage (per GB-month; a Salesforce row is 0.5-2 KB per item, plus its GSI copies)",
    "DynamoDB Streams reads by the write-back's triggers (free for Lambda triggers)",
    "CloudWatch Logs ingestion and storage (the functions' JSON logs), custom metrics (EMF) and alarms",
    "Secrets Manager (one secret, one read per cold start), KMS (the alarm topic's key), SQS, EventBridge",
]
CHANGED = 1_000
#: Leads added to the generated org: the 1,000 changed ones, and one large result set for the fit
EXTRA_LEADS = 6_000
PAGE_RECORDS = 50_000  # records per Bulk result set read by one load_page (sfsync.fullcopy.plan.CopyPolicy)


# --------------------------------------------------------------------------- counting


@dataclass
class _Frame:
    function: str
    started: float
    moto_s: float = 0.0
    nested_s: float = 0.0
    ddb_requests: int = 0
    sf_calls_before: int = 0
    nested_sf: int = 0
    step: str = ""
    items: int = 0  # items put into record tables (the records a load_page stored)


@dataclass
class Usage:
    """What one phase used."""

    invocations: Counter[str] = field(default_factory=Counter)
    billed_ms: Counter[str] = field(default_factory=Counter)
    gb_s: float = 0.0
    transitions: int = 0
    wru: int = 0
    rru: int = 0
    ddb_requests: int = 0
    sf_calls: int = 0
    records: int = 0
    steps: Counter[str] = field(default_factory=Counter)
    #: (local ms, DynamoDB requests, records stored) of every load_page after the function's first run
    loads: list[tuple[float, int, int]] = field(default_factory=list)

    def scaled(self, factor: float) -> Usage:
        return Usage(
            Counter({k: v * factor for k, v in self.invocations.items()}),  # type: ignore[misc]
            Counter({k: v * factor for k, v in self.billed_ms.items()}),  # type: ignore[misc]
            self.gb_s * factor,
            round(self.transitions * factor),
            round(self.wru * factor),
            round(self.rru * factor),
            round(self.ddb_requests * factor),
            round(self.sf_calls * factor),
            round(self.records * factor),
        )

    def cost(self, prices: dict[str, float]) -> dict[str, float]:
        parts = {
            "lambda": sum(self.invocations.values()) * prices["lambda_request"] + self.gb_s * prices["lambda_gb_s"],
            "step_functions": self.transitions * prices["sfn_transition"],
            "dynamodb": self.wru * prices["ddb_wru"] + self.rru * prices["ddb_rru"],
        }
        parts["total"] = sum(parts.values())
        return parts

    def to_dict(self, prices: dict[str, float]) -> dict[str, Any]:
        return {
            "lambda_invocations": dict(self.invocations),
            "lambda_invocations_total": sum(self.invocations.values()),
            "lambda_billed_seconds": {k: round(v / 1000, 3) for k, v in self.billed_ms.items()},
            "lambda_gb_seconds": round(self.gb_s, 3),
            "sfn_transitions": self.transitions,
            "dynamodb_wru": self.wru,
            "dynamodb_rru": self.rru,
            "dynamodb_requests": self.ddb_requests,
            "salesforce_api_calls": self.sf_calls,
            "records": self.records,
            "cost_usd": {k: round(v, 6) for k, v in self.cost(prices).items()},
        }


class Meter:
    """Counts Lambda time, DynamoDB request units and Salesforce calls while the stack runs.

    Patches (for its lifetime) the in-process Lambda runtime's ``_run`` (a stack of frames per thread:
    an invocation's own time excludes the invocations nested in it), moto's botocore stub (the time
    moto spends emulating AWS, charged to the frame that called it) and moto's DynamoDB backend (item
    sizes of every write and read)."""

    def __init__(self, bench: EngineBench, *, sf_ms: float, ddb_ms: float) -> None:
        self.bench = bench
        self.sf_ms = sf_ms
        self.ddb_ms = ddb_ms
        self._local = threading.local()
        self._lock = threading.Lock()
        self.usage = Usage()
        self._memory = {
            bench.stack.function_name(logical): bench.stack.runtime.spec(bench.stack.function_name(logical)).memory_mb
            for logical in ("DispatcherFunction", "ObjectSyncFunction", "FullSyncFunction", "WriteBackFunction")
        }
        self._names = {bench.stack.function_name(logical): logical for logical in self._memory_logical()}
        self._record_tables = set(bench.settings.record_tables.values())
        self._warm: set[str] = set()  # functions past their first (cold) invocation

    @staticmethod
    def _memory_logical() -> tuple[str, ...]:
        return ("DispatcherFunction", "ObjectSyncFunction", "FullSyncFunction", "WriteBackFunction")

    def _frames(self) -> list[_Frame]:
        frames: list[_Frame] | None = getattr(self._local, "frames", None)
        if frames is None:
            frames = self._local.frames = []
        return frames

    def _sf_total(self) -> int:
        return int(self.bench.emu.app.counter.total())

    @contextmanager
    def installed(self) -> Iterator[Meter]:
        from unittest import mock

        from moto.core.botocore_stubber import BotocoreStubber
        from moto.dynamodb.models import DynamoDBBackend
        from sfsync_local.lambda_runtime import InProcessLambdaRuntime, LambdaContext

        meter = self
        original_context = LambdaContext.__init__

        def context(ctx: Any, *args: Any, **kwargs: Any) -> None:
            # built under the runtime's lock, right before the handler runs: the invocation starts here
            # (a Map iteration may have waited for another iteration's function to end)
            original_context(ctx, *args, **kwargs)
            frames = meter._frames()
            if frames:
                frames[-1].started = time.perf_counter()

        original_run = InProcessLambdaRuntime._run
        original_stub = BotocoreStubber.__call__

        def run(runtime: Any, function_name: str, event: Any) -> Any:
            frames = meter._frames()
            step = str(event.get("step", "")) if isinstance(event, dict) else ""
            frame = _Frame(function_name, time.perf_counter(), sf_calls_before=meter._sf_total(), step=step)
            frames.append(frame)
            try:
                return original_run(runtime, function_name, event)
            finally:
                frames.pop()
                wall = time.perf_counter() - frame.started
                sf = meter._sf_total() - frame.sf_calls_before
                if frames:
                    frames[-1].nested_s += wall
                    frames[-1].nested_sf += sf
                meter._record(frame, wall, sf - frame.nested_sf)

        def stub(stubber: Any, *args: Any, **kwargs: Any) -> Any:
            frames = meter._frames()
            if not frames:
                return original_stub(stubber, *args, **kwargs)
            start = time.perf_counter()
            frame = frames[-1]
            nested_before = frame.nested_s
            try:
                return original_stub(stubber, *args, **kwargs)
            finally:
                # invocations nested in this call (stream triggers, sync invokes) are timed on their own
                frame.moto_s += time.perf_counter() - start - (frame.nested_s - nested_before)

        patches = [
            mock.patch.object(InProcessLambdaRuntime, "_run", run),
            mock.patch.object(LambdaContext, "__init__", context),
            mock.patch.object(BotocoreStubber, "__call__", stub),
            *self._dynamodb_patches(DynamoDBBackend, mock),
        ]
        for patch in patches:
            patch.start()
        try:
            yield self
        finally:
            for patch in reversed(patches):
                patch.stop()

    def _record(self, frame: _Frame, wall_s: float, own_sf: int) -> None:
        own_s = max(0.0, wall_s - frame.nested_s - frame.moto_s)
        billed_ms = math.ceil(own_s * 1000 + frame.ddb_requests * self.ddb_ms + own_sf * self.sf_ms)
        name = self._names.get(frame.function, frame.function)
        memory_mb = self._memory.get(frame.function, 128)
        with self._lock:
            if frame.step == "load_page" and name in self._warm:
                self.usage.loads.append((own_s * 1000, frame.ddb_requests, frame.items))
            self._warm.add(name)
            if frame.step:  # the full copy's steps
                self.usage.steps[f"{frame.step}.local_ms"] += own_s * 1000
                self.usage.steps[f"{frame.step}.ddb_requests"] += frame.ddb_requests
                self.usage.steps[f"{frame.step}.sf_calls"] += own_sf
            self.usage.invocations[name] += 1
            self.usage.billed_ms[name] += billed_ms
            self.usage.gb_s += billed_ms / 1000 * memory_mb / 1024
            self.usage.ddb_requests += frame.ddb_requests

    def _count_request(self) -> None:
        frames = self._frames()
        if frames:
            frames[-1].ddb_requests += 1

    def _add(self, *, wru: int = 0, rru: int = 0) -> None:
        with self._lock:
            self.usage.wru += wru
            self.usage.rru += rru

    def _dynamodb_patches(self, backend: Any, mock: Any) -> list[Any]:
        meter = self

        def write_units(table: Any, item: Any, factor: int = 1) -> int:
            if item is None:
                return factor
            size = item.size()
            units = math.ceil(size / 1024) or 1
            for index in table.global_indexes:
                keys = [k["AttributeName"] for k in index.schema]
                if all(k in item.attrs for k in keys):
                    projected = index.projection.get("ProjectionType", "ALL")
                    units += (math.ceil(size / 1024) or 1) if projected == "ALL" else 1
            return units * factor

        def read_units(items: Any) -> int:
            return sum(math.ceil(item.size() / 4096) or 1 for item in items if item is not None)

        def wrap_write(name: str) -> Any:
            original = getattr(backend, name)

            def wrapped(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
                result = original(self, table_name, *args, **kwargs)
                meter._add(wru=write_units(self.get_table(table_name), result))
                frames = meter._frames()
                if name == "put_item" and table_name in meter._record_tables and frames:
                    frames[-1].items += 1
                return result

            return wrapped

        original_get = backend.get_item

        def get_item(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
            result = original_get(self, table_name, *args, **kwargs)
            meter._add(rru=read_units([result]))
            return result

        def wrap_read(name: str) -> Any:
            original = getattr(backend, name)

            def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
                result = original(self, *args, **kwargs)
                items = result[0] if isinstance(result, tuple) else []
                meter._add(rru=max(1, read_units(items)))
                return result

            return wrapped

        original_transact = backend.transact_write_items

        def transact(self: Any, transact_items: list[dict[str, Any]]) -> Any:
            result = original_transact(self, transact_items)
            meter._add(wru=2 * len(transact_items))  # items of a transaction are small markers here
            return result

        from moto.dynamodb.responses import DynamoHandler

        original_action = DynamoHandler.call_action

        def call_action(handler: Any) -> Any:  # one DynamoDB API request (a BatchWriteItem of 25 is one)
            meter._count_request()
            return original_action(handler)

        return [
            mock.patch.object(DynamoHandler, "call_action", call_action),
            mock.patch.object(backend, "put_item", wrap_write("put_item")),
            mock.patch.object(backend, "update_item", wrap_write("update_item")),
            mock.patch.object(backend, "delete_item", wrap_write("delete_item")),
            mock.patch.object(backend, "get_item", get_item),
            mock.patch.object(backend, "query", wrap_read("query")),
            mock.patch.object(backend, "scan", wrap_read("scan")),
            mock.patch.object(backend, "transact_write_items", transact),
        ]

    @contextmanager
    def phase(self) -> Iterator[Usage]:
        """Usage of the block (Step Functions transitions of the executions started in it included)."""
        sfn = self.bench.stack.boto3_client("stepfunctions")
        arn = self.bench.stack.state_machine_arn()
        before = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=arn)["executions"]}
        sf_before = self._sf_total()
        self.usage = Usage()
        result = Usage()
        yield result
        usage = self.usage
        usage.sf_calls = self._sf_total() - sf_before
        for execution in sfn.list_executions(stateMachineArn=arn)["executions"]:
            if execution["executionArn"] in before:
                continue
            pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution["executionArn"])
            usage.transitions += sum(
                1 for page in pages for event in page["events"] if str(event["type"]).endswith("StateEntered")
            )
        result.__dict__.update({k: v for k, v in usage.__dict__.items() if k != "records"})


# --------------------------------------------------------------------------- the phases


def _sweep_due(bench: EngineBench, minute: int) -> None:
    if minute % 5 == 0:
        bench.stack.fire_schedule("WriteBackFunction")


def measure(records: int, idle_minutes: int, *, sf_ms: float, ddb_ms: float) -> dict[str, Usage]:
    from sfsync.core.registry import standard_object_names

    def populate(org: Any) -> None:  # Leads enough for the 1,000 changed ones, on top of the generated org
        for i in range(EXTRA_LEADS):
            org.create("Lead", {"LastName": f"Cost {i}", "Company": f"Cost Co {i % 97}"}, as_api=False)

    phases: dict[str, Usage] = {}
    objects = ",".join(standard_object_names())
    with engine_bench(objects=objects, records=records, pause_seconds=300, populate=populate) as bench:
        meter = Meter(bench, sf_ms=sf_ms, ddb_ms=ddb_ms)
        with meter.installed():
            with meter.phase() as first:
                bench.tick(bench.settings.safety_lag_seconds + 1)
            dynamodb = bench.stack.boto3_client("dynamodb")
            first.records = sum(
                int(page["Count"])
                for table in set(bench.settings.record_tables.values())
                for page in dynamodb.get_paginator("scan").paginate(TableName=table, Select="COUNT")
            )
            phases["first_copy"] = first
            bench.settle()

            with meter.phase() as idle:
                for minute in range(1, idle_minutes + 1):
                    bench.tick(60)
                    _sweep_due(bench, minute)
            phases["idle_day"] = idle.scaled(24 * 60 / idle_minutes)

            org = bench.emu.org
            with org.lock:
                query = 'SELECT "Id" FROM "Lead" WHERE "IsDeleted" = 0 AND "IsConverted" = 0 ORDER BY "Id"'
                leads = [row[0] for row in org.conn.execute(query)]
            org.mass_update("Lead", leads[:CHANGED], {"Title": "Cost model"})
            with meter.phase() as changed:
                bench.tick(bench.settings.pause_seconds + bench.settings.safety_lag_seconds + 1)
            changed.records = CHANGED
            phases["changed_1000"] = changed
    return phases


# --------------------------------------------------------------------------- capacity of a first copy


def template_settings() -> dict[str, Any]:
    from sfsync.fullcopy.plan import CopyPolicy
    from sfsync_local.cfn import load_template

    document = load_template(ROOT / "template.yaml")
    resources = document["Resources"]
    asl = json.loads((ROOT / "statemachine" / "full_sync.asl.json").read_text(encoding="utf-8"))
    maps = [s for s in asl["States"].values() if s.get("Type") == "Map"]
    policy = CopyPolicy()
    globals_ = document["Globals"]["Function"]
    full = resources["FullSyncFunction"]["Properties"]
    return {
        "map_max_concurrency": int(maps[0]["MaxConcurrency"]),
        "full_sync_timeout_s": int(full.get("Timeout", globals_["Timeout"])),
        "full_sync_memory_mb": int(full.get("MemorySize", globals_["MemorySize"])),
        "records_per_result_set": policy.max_records,
        "pages_per_execution": policy.pages_per_execution,
        "execution_timeout_s": int(asl["TimeoutSeconds"]),
    }


def capacity(
    first: Usage, settings: dict[str, Any], *, ddb_ms: float, sf_ms: float, job_rate: float, mb_per_s: float
) -> dict[str, Any]:
    """How long a first copy of 10 M and 100 M records takes with the template's settings.

    One result set (``records_per_result_set`` rows) is loaded by one ``load_page`` invocation: its
    time is the measured local time of ``load_page`` per record (parse, build items) plus its
    DynamoDB requests per record x ``ddb_ms`` (BatchWriteItem of 25, one after another) plus the
    download (1 KB a row at ``mb_per_s``) and one Salesforce call.  An object's result sets are loaded
    one after another; the Map copies up to ``MaxConcurrency`` objects at once."""
    records = max(1, first.records)
    local_ms, fixed_ms = _slope([(items, ms) for ms, _, items in first.loads])
    requests, fixed_requests = _slope([(items, float(reqs)) for _, reqs, items in first.loads])
    download_ms = 1.0 / 1024 / mb_per_s * 1000  # 1 KB per row
    per_record_ms = local_ms + requests * ddb_ms + download_ms
    page = settings["records_per_result_set"]
    page_s = (page * per_record_ms + fixed_ms + fixed_requests * ddb_ms + sf_ms) / 1000
    wru_per_record = first.wru / records
    out: dict[str, Any] = {
        "load_page_invocations_fitted": len(first.loads),
        "load_page_fixed_local_ms": round(fixed_ms, 1),
        "load_page_fixed_dynamodb_requests": round(fixed_requests, 1),
        "load_page_local_ms_per_record": round(local_ms, 4),
        "load_page_dynamodb_requests_per_record": round(requests, 4),
        "download_ms_per_record": round(download_ms, 4),
        "ms_per_record": round(per_record_ms, 4),
        "seconds_per_result_set": round(page_s, 1),
        "result_set_fits_timeout": page_s < settings["full_sync_timeout_s"],
        "bulk_job_rows_per_second_assumed": job_rate,
        "wru_per_record": round(wru_per_record, 2),
        "rows": {},
    }
    for total in (10_000_000, 100_000_000):
        pages = math.ceil(total / page)
        job_s = total / job_rate
        one_object_s = job_s + pages * page_s  # one object: its result sets are loaded one after another
        spread_s = job_s / settings["map_max_concurrency"] + pages * page_s / settings["map_max_concurrency"]
        out["rows"][str(total)] = {
            "result_sets": pages,
            "executions": math.ceil(pages / settings["pages_per_execution"]),
            "hours_one_object": round(one_object_s / 3600, 1),
            "hours_spread_over_map_concurrency": round(spread_s / 3600, 1),
            "dynamodb_wru_per_s_one_object": round(page / page_s * wru_per_record),
            "dynamodb_wru_per_s_map_concurrency": round(
                settings["map_max_concurrency"] * page / page_s * wru_per_record
            ),
            "dynamodb_wru_total": round(total * wru_per_record),
            "lambda_gb_s_loading": round(pages * page_s * settings["full_sync_memory_mb"] / 1024),
            "result_gb": round(total / 1024 / 1024, 1),
        }
    return out


def _slope(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares ``y = fixed + slope * x`` over ``points`` (x: records of one load_page); (slope, fixed)."""
    if len(points) < 2 or len({x for x, _ in points}) < 2:
        raise RuntimeError(f"need load_page runs of at least two sizes to fit a per-record cost, got {points}")
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return max(0.0, slope), max(0.0, mean_y - slope * mean_x)


# --------------------------------------------------------------------------- report


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def report(
    phases: dict[str, Usage], cap: dict[str, Any], settings: dict[str, Any], prices: dict[str, float], args: Any
) -> str:
    first = phases["first_copy"]
    columns = {
        "1,000 changed records": phases["changed_1000"],
        "idle day": phases["idle_day"],
        f"first copy, {first.records:,} records": first,
    }
    names = ("DispatcherFunction", "ObjectSyncFunction", "FullSyncFunction", "WriteBackFunction")
    rows: list[list[str]] = []
    for name in names:
        rows.append([f"Lambda invocations {name}", *(f"{u.invocations.get(name, 0):,.0f}" for u in columns.values())])
    rows.append(["Lambda GB-seconds", *(f"{u.gb_s:,.1f}" for u in columns.values())])
    rows.append(["Step Functions transitions", *(f"{u.transitions:,}" for u in columns.values())])
    rows.append(["DynamoDB write request units", *(f"{u.wru:,}" for u in columns.values())])
    rows.append(["DynamoDB read request units", *(f"{u.rru:,}" for u in columns.values())])
    rows.append(["Salesforce API calls", *(f"{u.sf_calls:,}" for u in columns.values())])
    for part in ("lambda", "step_functions", "dynamodb", "total"):
        rows.append([f"USD {part}", *(f"{u.cost(prices)[part]:.4f}" for u in columns.values())])
    head = (
        "first copy capacity (template: Map MaxConcurrency {map_max_concurrency}, FullSyncFunction "
        "{full_sync_memory_mb} MB / {full_sync_timeout_s} s, {records_per_result_set:,} records per result set, "
        "{pages_per_execution} result sets per execution)"
    ).format(**settings)
    lines = [
        f"sfsync cost model ({REGION}, on-demand list prices as inputs; an estimate of usage, not a bill)",
        f"measured on the local stack: first copy of {first.records:,} records (10 standard objects), "
        f"{CHANGED:,} Leads changed, idle {args.idle_minutes} min scaled to 24 h",
        f"duration model: local time outside the AWS emulation + {args.ddb_ms:g} ms per DynamoDB request "
        f"+ {args.sf_ms:g} ms per Salesforce call",
        "",
        _table(rows, ["", *columns]),
        "",
        "write-back invocations are an upper bound: locally each DynamoDB request's stream records reach the "
        "write-back at once; Lambda's poller batches up to 1,000 records per second (BatchSize, batching window)",
        "prices: " + "; ".join(f"{PRICE_NOTES[k]} {v:.10g}" for k, v in prices.items()),
        "not measured: " + "; ".join(NOT_MEASURED),
        "",
        head,
        f"  load_page (fitted over {cap['load_page_invocations_fitted']} warm runs: "
        f"{cap['load_page_fixed_local_ms']} ms + {cap['load_page_fixed_dynamodb_requests']} requests fixed) "
        "per record: "
        f"{cap['load_page_local_ms_per_record']} ms local + "
        f"{cap['load_page_dynamodb_requests_per_record']} DynamoDB requests x {args.ddb_ms:g} ms + "
        f"{cap['download_ms_per_record']} ms download = {cap['ms_per_record']} ms -> {cap['seconds_per_result_set']} s "
        f"per result set (within the timeout: {cap['result_set_fits_timeout']}); {cap['wru_per_record']} WRU per "
        f"record; Bulk job preparation assumed {cap['bulk_job_rows_per_second_assumed']:,.0f} rows/s",
    ]
    for total, row in cap["rows"].items():
        lines.append(
            f"  {int(total):>11,} records: {row['result_sets']:,} result sets in {row['executions']} execution(s); "
            f"{row['hours_one_object']} h as one object ({row['dynamodb_wru_per_s_one_object']:,} WRU/s), "
            f"{row['hours_spread_over_map_concurrency']} h spread over {settings['map_max_concurrency']} objects "
            f"({row['dynamodb_wru_per_s_map_concurrency']:,} WRU/s); DynamoDB {row['dynamodb_wru_total']:,} WRU; "
            f"Lambda {row['lambda_gb_s_loading']:,} GB-s loading; ~{row['result_gb']} GB of results"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=3000, help="records in the generated org (3000), +6,000 Leads")
    parser.add_argument("--idle-minutes", type=int, default=60, help="idle minutes measured, scaled to a day (60)")
    parser.add_argument("--sf-ms", type=float, default=120.0, help="latency of a Salesforce API call (120 ms)")
    parser.add_argument("--ddb-ms", type=float, default=8.0, help="latency of a DynamoDB request (8 ms)")
    parser.add_argument("--bulk-rows-per-s", type=float, default=20_000.0, help="Bulk job preparation rate (20,000/s)")
    parser.add_argument(
        "--price", action="append", default=[], metavar="NAME=USD", help=f"override: {', '.join(PRICES)}"
    )
    parser.add_argument("--download-mb-per-s", type=float, default=20.0, help="Bulk result download rate (20 MB/s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    prices = dict(PRICES)
    for item in args.price:
        key, _, value = item.partition("=")
        if key not in prices:
            parser.error(f"unknown price {key!r}; known: {', '.join(prices)}")
        prices[key] = float(value)
    with handler_output_silenced() as out:
        started = time.monotonic()
        phases = measure(args.records, args.idle_minutes, sf_ms=args.sf_ms, ddb_ms=args.ddb_ms)
        settings = template_settings()
        cap = capacity(
            phases["first_copy"],
            settings,
            ddb_ms=args.ddb_ms,
            sf_ms=args.sf_ms,
            job_rate=args.bulk_rows_per_s,
            mb_per_s=args.download_mb_per_s,
        )
        if args.json:
            payload = {
                "region": REGION,
                "prices": prices,
                "phases": {k: v.to_dict(prices) for k, v in phases.items()},
                "template": settings,
                "first_copy_capacity": cap,
                "seconds": round(time.monotonic() - started, 1),
            }
            print(json.dumps(payload, indent=2), file=out)
        else:
            print(report(phases, cap, settings, prices, args), file=out)
            print(f"(measured in {time.monotonic() - started:.0f} s)", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
