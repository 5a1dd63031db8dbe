"""Benchmark of the first full copy (issue: the full sync over Bulk API 2.0).

Copies the emulator's generated org (all object families) into the local stack's DynamoDB tables
and reports:

  * wall time and records per second end to end, as a share of the local DynamoDB's own write
    ceiling at the same item width measured in the same run (target: at least 70 %; the absolute
    rate measures the local DynamoDB more than the engine), and the same share in CPU terms (the
    ceiling's CPU per item over the process's CPU per copied record);
  * engine CPU per record of the page-loading step, against the floor of merely downloading and
    parsing the same Bulk CSV result sets, measured in the same run (target: at most 2x the floor);

The floor and the ceiling of those two targets are measured beside each page (:class:`Beside`):
right after ``load_page`` returns, the same result set is downloaded and parsed again, and a slice
of the ceiling is written at that page's width.  A shared machine's speed drifts by a third and more
within a run; page by page, each ratio's two sides see the same drift.  The time this takes is left
out of the copy's figures.  The same floor and ceiling measured once after the copy (as earlier runs
did) are printed too (``*_after_the_copy``).  Further figures:

  * the same engine CPU against the same floor, for every result set the copy read, in a process of
    its own (``whole_copy_in_a_process_of_its_own``): once against a null DynamoDB, once against
    moto in that process with its calls not counted.  The same code on the same pages runs slower
    when moto's writes come between its batches, as they do in the copy's process (not in Lambda);
  * the peak resident memory of the page-loading function for one full result set of the largest
    object (target: under 256 MB whatever the object size), measured in a child process that holds
    nothing else;
  * Salesforce API calls, by kind.

The emulator runs in its own process (``sfsync-emulator serve``), so its CPU is not counted.
Two ways to run the copy:

  * ``state machine``: the real workflow from the template (``template.yaml`` or ``--template``)
    on the local stack: moto executes the ASL and the Task states run ``FullSyncFunction``
    in-process.  Used when that function's handler is wired to ``sfsync.fullcopy.steps``;
  * ``steps loop``: otherwise (or with ``--steps``) the step functions are called directly, in the
    order the state machine calls them, and the output says so.

Engine CPU is the thread CPU time inside ``load_page`` minus the thread CPU time spent inside
DynamoDB client calls (request serialisation - botocore's, or :mod:`sfsync.store.ddb_wire`'s JSON encoding
of the bodies it builds, reported on its own - and the local, in-process DynamoDB, with the stream
deliveries it triggers), so the local DynamoDB's own cost is not charged to the engine.  The
copy's ``BatchWriteItem`` bodies are built as finished JSON text by the engine itself, so their
encoding is engine CPU.  ``load_page`` streams and parses the CSV itself, so the engine figure
includes the floor; ``engine_excluding_download_parse_*`` subtracts it (the same figures for the
page-loading probe, which runs one result set of the largest object against a null DynamoDB
client in a process of its own: no local DynamoDB, no stream deliveries, no moto heap to collect).

The copy's own writes reach the stream-triggered functions (the write-back) in-process, as the
local stack delivers them; here their records are pooled and delivered in batches of the mappings'
``BatchSize`` (:func:`sfsync_local.lambda_runtime.coalesce_stream_delivery`), as Lambda's poller fills
batches from a busy stream, instead of one invocation per ``BatchWriteItem`` of 25 items
(``--per-request-streams``: the local stack's default).  Every record is still delivered within the
timed copy.

moto's own ceiling is measured in the same run (``moto_ceiling_at_mean_width``: wire-format
``BatchWriteItem`` of items as wide as the copy's mean SELECT list, nothing else; and
``moto_ceiling_at_stored_width``: as wide as the copied items really are - present values, the
engine's attributes and ``_base`` - with values as long), and alone with
``--moto-ceiling ITEMS`` (1- and 45-attribute items, with and without the local stack's moto
speed-ups).

Usage: .venv/bin/python bench/full_sync.py [--records 1000000] [--max-records 50000] [--json]
       [--template PATH] [--steps] [--per-request-streams]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_SHARE_OF_CEILING = 0.70
TARGET_CPU_RATIO = 2.0
TARGET_RSS_MB = 256


# -- the emulator, in its own process ------------------------------------------------------------


@contextmanager
def emulator_process(records: int) -> Iterator[dict[str, Any]]:
    """``sfsync-emulator serve`` on a free port; yields its info line (URLs, credentials, CA path)."""
    command = [sys.executable, "-m", "sfsync_emulator.cli", "serve", "--port", "0", "--records", str(records)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator exited before serving (code {proc.wait()})")
        yield json.loads(line)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def secret_for(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "auth_flow": "client_credentials",
        "token_url": info["token_url"],
        "client_id": info["client_id"],
        "client_secret": info["client_secret"],
        "api_version": info["api_version"],
        "ca_bundle": Path(info["ca_bundle"]).read_text(),
    }


# -- instrumentation -------------------------------------------------------------------------------


@dataclass
class Meter:
    load_cpu: float = 0.0
    dynamodb_cpu: float = 0.0
    wire_encode_cpu: float = 0.0
    #: cyclic-GC passes that ran inside load_page but outside the DynamoDB calls (charged to the engine)
    gc_cpu: float = 0.0
    load_calls: int = 0
    steps: dict[str, int] = field(default_factory=dict)
    #: measures the floor and a slice of moto's ceiling beside each page (None: not measured)
    beside: Beside | None = None
    #: re-entrant: the cyclic GC's callback (``gc_pass``) takes it and may run while this thread holds it
    #: (a collection triggered by an allocation inside a ``with meter.lock`` block); a plain Lock deadlocked
    lock: threading.RLock = field(default_factory=threading.RLock)


@contextmanager
def metered(meter: Meter) -> Iterator[None]:
    """Count step calls, and time ``load_page`` and the DynamoDB calls made inside it."""
    import botocore.client
    from sfsync.fullcopy import steps as fullsync
    from sfsync.store import ddb_wire

    local = threading.local()
    original_call = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]
    original_encode = ddb_wire._encode_body
    originals = dict(fullsync.STEPS)

    def encode(body: Any) -> bytes:
        """The request body in wire format: what botocore's serialiser did before (a client cost)."""
        if not getattr(local, "loading", False):
            return original_encode(body)
        started = time.thread_time()
        try:
            return original_encode(body)
        finally:
            with meter.lock:
                meter.wire_encode_cpu += time.thread_time() - started

    def call(self: Any, operation_name: str, api_params: Any) -> Any:
        if not getattr(local, "loading", False) or self.meta.service_model.service_name != "dynamodb":
            return original_call(self, operation_name, api_params)
        started = time.thread_time()
        outer = getattr(local, "in_client", False)
        local.in_client = True
        try:
            return original_call(self, operation_name, api_params)
        finally:
            local.in_client = outer
            with meter.lock:
                meter.dynamodb_cpu += time.thread_time() - started

    def wrap(name: str, step: Any) -> Any:
        def run(event: Any, deps: Any) -> Any:
            # The local DynamoDB's items (tens of millions of moto objects at a million records) live in
            # this process, unlike in Lambda: move them out of the cyclic GC's reach, or every full
            # collection re-walks them and is charged to whatever step allocates at that moment.
            gc.freeze()
            with meter.lock:
                meter.steps[name] = meter.steps.get(name, 0) + 1
            if name != "load_page":
                return step(event, deps)
            page = meter.beside.page_of(event, deps) if meter.beside else None
            local.loading = True
            started = time.thread_time()
            try:
                result = step(event, deps)
            finally:
                local.loading = False
                with meter.lock:
                    meter.load_cpu += time.thread_time() - started
                    meter.load_calls += 1
            if page is not None and meter.beside is not None:
                meter.beside.measure(page)
            return result

        return run

    gc_started: list[float] = []

    def gc_pass(phase: str, info: dict[str, Any]) -> None:
        """Time the collector's passes that interrupt the engine (not the DynamoDB calls) in load_page."""
        if not getattr(local, "loading", False) or getattr(local, "in_client", False):
            return
        if phase == "start":
            gc_started.append(time.thread_time())
        elif gc_started:
            with meter.lock:
                meter.gc_cpu += time.thread_time() - gc_started.pop()

    botocore.client.BaseClient._make_api_call = call  # type: ignore[attr-defined]
    ddb_wire._encode_body = encode
    gc.callbacks.append(gc_pass)
    for name, step in originals.items():
        fullsync.STEPS[name] = wrap(name, step)
    try:
        yield
    finally:
        botocore.client.BaseClient._make_api_call = original_call  # type: ignore[attr-defined]
        ddb_wire._encode_body = original_encode
        gc.callbacks.remove(gc_pass)
        fullsync.STEPS.clear()
        fullsync.STEPS.update(originals)


@dataclass(frozen=True)
class _Page:
    job_id: str
    locator: str | None
    width: int


@dataclass
class Beside:
    """The floor and moto's ceiling, measured beside each page the copy loads, in the copy's process.

    Right after ``load_page`` returns, the same result set is downloaded and parsed again (the floor,
    with a Salesforce client of its own: the engine's counts its calls), then a slice of the ceiling
    is written: ``BatchWriteItem`` of up to ``slice_items`` synthetic items as wide as the page's
    SELECT list, into a table of their own in the stack's moto.  The machine's speed drifts over a
    copy's minutes on a shared host (by a third and more between runs); measured page by page, each
    ratio's two sides see the same drift.  The time spent here is left out of the copy's wall clock
    and CPU (``paused_*``).
    """

    sf: Any
    client: Any
    max_records: int
    table: str = "bench-ceiling"
    slice_items: int = 2000
    floor_rows: int = 0
    floor_cpu: float = 0.0
    #: what moto alone would take, wall and CPU seconds, to write the copy's rows at their pages' widths
    ceiling_wall: float = 0.0
    ceiling_cpu: float = 0.0
    ceiling_rows: int = 0
    paused_wall: float = 0.0
    paused_cpu: float = 0.0
    _slices: int = 0

    def create_table(self) -> None:
        create_id_table(self.client, self.table)

    @contextmanager
    def _paused(self) -> Iterator[None]:
        """Time spent here is not the copy's."""
        wall_started, cpu_started = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.paused_wall += time.perf_counter() - wall_started
            self.paused_cpu += time.process_time() - cpu_started

    def page_of(self, event: Any, deps: Any) -> _Page | None:
        """The Bulk result set this ``load_page`` is about to read (None: a REST part, or no page yet)."""
        with self._paused():
            copy = deps.copies.get(event.get("object"))
        index = copy.current if copy else None
        if index is None:
            return None
        part = copy.parts[index]
        if part.mode != "bulk" or not part.job_id or part.job_state != "JobComplete":
            return None
        return _Page(part.job_id, part.locator, len(copy.fields))

    def measure(self, page: _Page) -> None:
        with self._paused():
            rows, floor_cpu = measure_floor(
                self.sf, [page.job_id], self.max_records, first_page_only=True, locator=page.locator
            )
            self.floor_cpu += floor_cpu
            self.floor_rows += rows
            if rows:
                items = min(rows, self.slice_items)
                self._slices += 1
                prefix = f"{self._slices:04d}"
                wall, cpu = write_ceiling_items(self.client, self.table, items, page.width, prefix=prefix)
                self.ceiling_wall += rows * wall / items
                self.ceiling_cpu += rows * cpu / items
                self.ceiling_rows += rows


# -- running the copy ------------------------------------------------------------------------------


def handler_is_wired(stack: Any) -> bool:
    code_uri = stack.template.resources["FullSyncFunction"]["Properties"]["CodeUri"]
    handler = stack.repo_root / str(code_uri) / "app.py"
    return handler.is_file() and "sfsync.fullcopy.steps" in handler.read_text()


def run_state_machine(stack: Any, objects: list[str], max_records: int) -> list[dict[str, Any]]:
    """Start the workflow and wait for it and every continuation it starts; returns the executions."""
    name = "bench-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    first = stack.run_state_machine(
        {"objects": objects, "requested_by": "bench", "max_records": max_records}, name=name, timeout_seconds=24 * 3600
    )
    sfn = stack.boto3_client("stepfunctions")
    while True:
        executions = sfn.list_executions(stateMachineArn=stack.state_machine_arn())["executions"]
        if all(e["status"] != "RUNNING" for e in executions):
            break
        time.sleep(0.2)
    if first["status"] != "SUCCEEDED":
        raise RuntimeError(f"execution {name} ended {first['status']}: {first.get('cause') or first.get('error')}")
    return [e for e in executions if e["name"].startswith(name)]


def run_steps(deps: Any, objects: list[str], max_records: int) -> None:
    """The state machine's routing, in a loop (Wait states take no time, as with fast waits)."""
    from sfsync.core.exceptions import SalesforceError, SfsyncError
    from sfsync.fullcopy import steps as fullsync

    planned = fullsync.run_step(
        {"step": "plan", "objects": objects, "requested_by": "bench", "max_records": max_records}, deps
    )
    for item in planned["objects"]:
        obj, step, pages = item["object"], "start_job", 0
        routes = {
            "wait": "poll_job",
            "load": "load_page",
            "continue": "load_page",
            "start": "start_job",
            "finish": "finish",
        }
        while True:
            try:
                out = fullsync.run_step({"step": step, "object": obj, "pages_this_execution": pages}, deps)
            except (SfsyncError, SalesforceError) as exc:
                error = {"Error": type(exc).__name__, "Cause": str(exc)}
                fullsync.run_step({"step": "mark_failed", "object": obj, "error": error}, deps)
                break
            pages = 0 if out["next"] == "continue" else out["pages_this_execution"]
            if out["next"] == "done":
                break
            step = routes[out["next"]]


def build_deps(stack: Any, secret: dict[str, Any]) -> Any:
    from sfsync.core import clock
    from sfsync.core.config import load_settings
    from sfsync.fullcopy.deps import FullSyncDeps
    from sfsync.salesforce import client_from_secret
    from sfsync.store.records import RecordStore
    from sfsync.store.state import StateStore

    settings = load_settings(stack.function_environment("FullSyncFunction"))
    client = stack.boto3_client("dynamodb")
    return FullSyncDeps(
        settings=settings,
        sf=client_from_secret(secret),
        state=StateStore(settings.state_table, region=stack.region),
        records=RecordStore(client, settings.record_tables, errors_table=settings.errors_table),
        dynamodb=client,
        clock=clock.engine_clock(),
    )


# -- the floor: download + parse the same Bulk CSV -------------------------------------------------


def measure_floor(
    sf: Any, jobs: list[str], max_records: int, *, first_page_only: bool = False, locator: str | None = None
) -> tuple[int, float]:
    """Rows and thread CPU seconds to stream and parse the result sets of ``jobs`` (no writes), from
    ``locator`` on (each job's first result set when None)."""
    rows = 0
    started = time.thread_time()
    for job_id in jobs:
        for page in sf.bulk_results_pages(job_id, max_records=max_records, locator=locator):
            rows += _page_rows(page)
            if first_page_only:
                break
    return rows, time.thread_time() - started


def _page_rows(page: Any) -> int:
    """Read a result set's rows as dicts (the floor's parse); how many there were."""
    return sum(1 for _row in page.rows)


# -- the page-loading function's peak RSS, in a process of its own -----------------------------------


class _NullEvents:
    def register(self, *args: Any, **kwargs: Any) -> None:
        """The wire-format hooks have nothing to swap: the null client never serialises a request."""


class _NullDynamoDB:
    """Accepts every write and finds no existing item: the probe measures the engine, not a database.

    The engine still builds and encodes every request body (:mod:`sfsync.store.ddb_wire` encodes it
    before the client is called), so that cost is in the probe's figures.
    """

    class meta:  # the attribute boto3 clients have
        events = _NullEvents()

    def batch_get_item(self, **kwargs: Any) -> dict[str, Any]:
        return {"Responses": {}, "UnprocessedKeys": {}}

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        return {"UnprocessedItems": {}}


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ``ru_maxrss`` would carry the forking parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_probe(request: dict[str, Any]) -> dict[str, Any]:
    """One full result set of ``job_id`` through the page-loading path (stream, type, convert, batch)."""
    from sfsync.items.csv import FieldTypes
    from sfsync.salesforce import client_from_secret
    from sfsync.store.batch_loader import BatchLoader
    from sfsync.store.records import RecordStore

    info, obj, job_id, max_records = request["info"], request["object"], request["job_id"], request["max_records"]
    fields, types = request["fields"], request["types"]
    spec = _probe_spec(obj)
    sf = client_from_secret(secret_for(info))
    sf.describe(obj)  # warm the token and the connection, as a warm Lambda would be
    baseline_mb = _peak_rss_mb()
    loader = BatchLoader(_NullDynamoDB(), RecordStore(_NullDynamoDB(), {spec.family: "probe"}, errors_table="probe"))
    field_types = FieldTypes.from_doc(types)
    started = time.thread_time()
    page = next(sf.bulk_results_pages(job_id, max_records=max_records))
    if hasattr(loader, "write_lines"):  # the full copy's path: the result set's CSV lines
        counts = _load_lines(loader, spec, page, field_types, fields)
    else:  # an engine from before the lines path (a before/after comparison)
        counts = loader.write(
            spec,
            page.rows,
            copy_id="probe",
            synced_at=dt.datetime.now(dt.UTC),
            types=field_types,
            bulk_csv=True,
            selected_fields=fields,
        )
    engine_cpu = time.thread_time() - started
    peak_mb = _peak_rss_mb()
    rows = sum(counts.values())
    floor_rows, floor_cpu = measure_floor(sf, [job_id], max_records, first_page_only=True)
    return {
        "object": obj,
        "rows": rows,
        "fields": len(fields),
        "peak_rss_mb": round(peak_mb, 1),
        "baseline_rss_mb": round(baseline_mb, 1),
        "engine_cpu_us_per_record": _per_record(engine_cpu, rows),
        "floor_cpu_us_per_record": _per_record(floor_cpu, floor_rows),
        "engine_to_floor_ratio": _ratio(engine_cpu, rows, floor_cpu, floor_rows),
        **_excluding_floor(engine_cpu, rows, floor_cpu, floor_rows),
    }


def _load_lines(loader: Any, spec: Any, page: Any, types: Any, fields: list[str]) -> dict[str, int]:
    """One result set through the full copy's path (its CSV lines), as the probes' copy ``probe``."""
    header, lines = page.columns()
    counts: dict[str, int] = loader.write_lines(
        spec, header, lines, copy_id="probe", synced_at=dt.datetime.now(dt.UTC), types=types, selected_fields=fields
    )
    return counts


def _probe_spec(obj: str) -> Any:
    from sfsync.core.registry import build_registry, custom_spec

    return build_registry([obj]).get(obj) if not obj.endswith("__c") else custom_spec(obj)


def _close(pages: Any) -> None:
    """Close a page iterator (a generator: its open result set, if any)."""
    close = getattr(pages, "close", None)
    if callable(close):
        close()


def _per_record(seconds: float, rows: int) -> float | None:
    return round(1e6 * seconds / rows, 1) if rows else None


def _ratio(a: float, a_rows: int, b: float, b_rows: int, *, digits: int = 2) -> float | None:
    """(a per row) / (b per row), None when either side is empty."""
    return round((a / a_rows) / (b / b_rows), digits) if a_rows and b_rows and a and b else None


def _excluding_floor(engine_cpu: float, rows: int, floor_cpu: float, floor_rows: int) -> dict[str, float | None]:
    """The engine's CPU per record net of downloading and parsing the CSV (which it also does)."""
    if not rows or not floor_rows or not floor_cpu:
        return {"engine_excluding_download_parse_us_per_record": None, "engine_excluding_download_parse_ratio": None}
    net = engine_cpu / rows - floor_cpu / floor_rows
    return {
        "engine_excluding_download_parse_us_per_record": round(1e6 * net, 1),
        "engine_excluding_download_parse_ratio": round(net / (floor_cpu / floor_rows), 2),
    }


def run_rss_probe(info: dict[str, Any], obj: str, job_id: str, max_records: int, copy: Any) -> dict[str, Any]:
    payload = json.dumps(
        {
            "info": info,
            "object": obj,
            "job_id": job_id,
            "max_records": max_records,
            "fields": copy.fields,
            "types": copy.types,
        }
    )
    return _in_child("--rss-probe", payload, "the RSS probe")


def _in_child(flag: str, payload: str, what: str) -> dict[str, Any]:
    """This script's ``flag`` mode in a process of its own, fed ``payload``; its JSON answer."""
    result = subprocess.run(
        [sys.executable, __file__, flag], input=payload, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def whole_copy_probe(request: dict[str, Any]) -> dict[str, Any]:
    """Every result set the copy read, through the page-loading path, and the floor of the same result
    sets, in this process, page by page: the floor, then the engine against a null DynamoDB, then
    against moto in this process (with the local stack's speed-ups), its calls' CPU not counted.  The
    same code on the same pages: the difference is what moto's work between the engine's batches
    costs the engine's own code.  Page by page, the machine's drift falls on all three alike."""
    import boto3
    from moto import mock_aws
    from sfsync.items.csv import FieldTypes
    from sfsync.salesforce import client_from_secret
    from sfsync.store.batch_loader import BatchLoader
    from sfsync.store.records import RecordStore
    from sfsync_local.stack import moto_dynamodb_speedups

    info, max_records = request["info"], request["max_records"]
    sf = client_from_secret(secret_for(info))
    sf.describe(request["objects"][0]["object"])  # warm the token and the connection
    rows = dict.fromkeys(("floor", "null", "moto"), 0)
    cpu = dict.fromkeys(("floor", "null", "moto", "moto_client"), 0.0)
    null = _NullDynamoDB()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(), moto_dynamodb_speedups(), _client_cpu() as client_cpu:
        client = boto3.client("dynamodb", region_name="us-east-1")
        for table in ["probe-errors", *(f"probe-{entry['object']}" for entry in request["objects"])]:
            create_id_table(client, table)
        gc.collect()
        gc.freeze()  # as the bench does for the copy: moto's items out of the cyclic GC's reach
        for entry in request["objects"]:
            obj = entry["object"]
            spec = _probe_spec(obj)
            types = FieldTypes.from_doc(entry["types"])
            loaders = {
                "null": BatchLoader(null, RecordStore(null, {spec.family: "probe"}, errors_table="probe-errors")),
                "moto": BatchLoader(
                    client, RecordStore(client, {spec.family: f"probe-{obj}"}, errors_table="probe-errors")
                ),
            }
            for job_id in entry["job_ids"]:
                streams = {name: sf.bulk_results_pages(job_id, max_records=max_records) for name in rows}
                while True:
                    started = time.thread_time()
                    page = next(streams["floor"], None)
                    if page is None:
                        break
                    rows["floor"] += _page_rows(page)
                    cpu["floor"] += time.thread_time() - started
                    for name, loader in loaders.items():
                        client_cpu[0] = 0.0
                        started = time.thread_time()
                        counts = _load_lines(loader, spec, next(streams[name]), types, entry["fields"])
                        rows[name] += sum(counts.values())
                        spent = time.thread_time() - started
                        if name == "moto":  # moto's calls are not the engine's
                            spent -= client_cpu[0]
                            cpu["moto_client"] += client_cpu[0]
                        cpu[name] += spent
                for stream in streams.values():
                    _close(stream)

    def figures(name: str) -> dict[str, Any]:
        return {
            "rows": rows[name],
            "engine_cpu_us_per_record": _per_record(cpu[name], rows[name]),
            "engine_to_floor_ratio": _ratio(cpu[name], rows[name], cpu["floor"], rows["floor"]),
        }

    return {
        "objects": len(request["objects"]),
        "floor_cpu_us_per_record": _per_record(cpu["floor"], rows["floor"]),
        "null_dynamodb": figures("null"),
        "moto_in_this_process": {
            **figures("moto"),
            "moto_client_cpu_us_per_record": _per_record(cpu["moto_client"], rows["moto"]),
        },
        "engine_slowdown_with_moto_in_process": _ratio(cpu["moto"], rows["moto"], cpu["null"], rows["null"]),
    }


@contextmanager
def _client_cpu() -> Iterator[list[float]]:
    """Thread CPU spent in DynamoDB client calls (and the engine's wire bodies' encoding) meanwhile."""
    import botocore.client
    from sfsync.store import ddb_wire

    spent = [0.0]
    original_call = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]
    original_encode = ddb_wire._encode_body

    def timed(function: Any) -> Any:
        def run(*args: Any) -> Any:
            started = time.thread_time()
            try:
                return function(*args)
            finally:
                spent[0] += time.thread_time() - started

        return run

    botocore.client.BaseClient._make_api_call = timed(original_call)  # type: ignore[attr-defined]
    ddb_wire._encode_body = timed(original_encode)
    try:
        yield spent
    finally:
        botocore.client.BaseClient._make_api_call = original_call  # type: ignore[attr-defined]
        ddb_wire._encode_body = original_encode


def run_whole_copy_probe(info: dict[str, Any], copies: dict[str, Any], max_records: int) -> dict[str, Any] | None:
    objects = [
        {
            "object": name,
            "job_ids": [p.job_id for p in c.parts if p.mode == "bulk" and p.job_id],
            "fields": c.fields,
            "types": c.types,
        }
        for name, c in copies.items()
        if c and any(p.mode == "bulk" and p.job_id for p in c.parts)
    ]
    from sfsync.store.batch_loader import BatchLoader

    if not hasattr(BatchLoader, "write_lines") or not objects:
        return None  # an engine from before the lines path
    payload = json.dumps({"info": info, "max_records": max_records, "objects": objects})
    return _in_child("--whole-copy-probe", payload, "the whole-copy probe")


# -- moto's own ceiling ------------------------------------------------------------------------------


def stored_width(client: Any, tables: list[str]) -> dict[str, float]:
    """The copied items as stored: mean attributes per item (nulls are absent; the engine's attributes
    and ``_base`` count) and mean bytes per attribute value (wire JSON text)."""
    items = attributes = value_bytes = 0
    for table in tables:
        for page in client.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                items += 1
                attributes += len(item)
                value_bytes += sum(len(json.dumps(v)) for v in item.values())
    return {
        "items": items,
        "attributes": round(attributes / max(1, items), 1),
        "value_bytes": round(value_bytes / max(1, attributes), 1),
    }


def moto_ceiling(items: int, attributes: int, *, speedups: bool, value_bytes: int | None = None) -> dict[str, Any]:
    """Items/s and CPU per item of wire-format ``BatchWriteItem`` (25 items a call) into moto, in-process.

    ``attributes``: the item's width (1 = only the key; a generated Lead row has about 45);
    ``value_bytes``: each value's length (default: about 30 characters).  No engine, no stream, no
    state machine: the most the local DynamoDB can take on this machine.
    """
    import boto3
    from moto import mock_aws
    from sfsync_local.stack import moto_dynamodb_speedups

    with mock_aws(), moto_dynamodb_speedups() if speedups else contextlib.nullcontext():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_id_table(client, "ceiling")
        wall, cpu = write_ceiling_items(client, "ceiling", items, attributes, value_bytes=value_bytes)
    return {
        "items": items,
        "attributes": attributes,
        "local_stack_speedups": speedups,
        "items_per_second": round(items / wall, 1),
        "cpu_us_per_item": round(1e6 * cpu / items, 1),
        "cpu_bound_items_per_second": round(items / cpu, 1),
    }


def create_id_table(client: Any, table: str) -> None:
    """An on-demand table keyed by ``Id`` (a string), as the record tables are."""
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def write_ceiling_items(
    client: Any, table: str, items: int, attributes: int, *, value_bytes: int | None = None, prefix: str = ""
) -> tuple[float, float]:
    """Wall and process CPU seconds to write ``items`` synthetic items, 25 per wire-format ``BatchWriteItem``."""
    from sfsync.store.ddb_wire import WireCalls

    wire = WireCalls(client)
    fields = [f"Field{n}__c" for n in range(attributes - 1)]
    wall_started, cpu_started = time.perf_counter(), time.process_time()
    for start in range(0, items, 25):
        batch = []
        for n in range(start, min(items, start + 25)):
            item = {"Id": {"S": f"00Q{prefix}{n:015d}"}}
            for name in fields:
                text = f"{name} value of record {n}"
                item[name] = {"S": text if value_bytes is None else (text * 8)[: max(1, value_bytes - 8)]}
            batch.append({"PutRequest": {"Item": item}})
        wire.batch_write_item({table: batch})
    return time.perf_counter() - wall_started, time.process_time() - cpu_started


# -- main ------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--records", type=int, default=1_000_000, help="records the emulator generates (100..1,000,000)"
    )
    parser.add_argument("--max-records", type=int, default=50_000, help="rows per Bulk result set (one load_page)")
    parser.add_argument("--template", default=str(REPO / "template.yaml"), help="template to deploy on the local stack")
    parser.add_argument("--steps", action="store_true", help="drive the steps in a loop instead of the state machine")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--per-request-streams",
        action="store_true",
        help="deliver the copy's stream records when each request ends (the local stack's default) "
        "instead of in batches of the mappings' BatchSize",
    )
    parser.add_argument("--rss-probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--whole-copy-probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--moto-ceiling",
        type=int,
        metavar="ITEMS",
        help="only measure moto's raw BatchWriteItem ceiling with ITEMS items (1 and 45 attributes)",
    )
    parser.add_argument("--out", help="also write the figures as JSON to this file")
    args = parser.parse_args()

    if args.moto_ceiling:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        ceilings = [
            moto_ceiling(args.moto_ceiling, width, speedups=speedups) for width in (1, 45) for speedups in (False, True)
        ]
        print(json.dumps(ceilings, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(ceilings, indent=2))
        return 0

    if args.rss_probe or args.whole_copy_probe:
        request = json.loads(sys.stdin.read())
        print(json.dumps(rss_probe(request) if args.rss_probe else whole_copy_probe(request)))
        return 0

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    from sfsync.core.registry import standard_object_names
    from sfsync.salesforce import client_from_secret
    from sfsync.store.copies import CopyStore
    from sfsync_local.lambda_runtime import coalesce_stream_delivery
    from sfsync_local.stack import LocalStack

    seed_started = time.perf_counter()
    with emulator_process(args.records) as info:
        seed_seconds = time.perf_counter() - seed_started
        secret = secret_for(info)
        objects = standard_object_names()
        custom = ["Project__c", "Milestone__c"]
        stack = LocalStack.deploy(
            template_path=args.template,
            parameters={"SyncObjects": ",".join(objects), "CustomObjects": ",".join(custom), "LogLevel": "WARNING"},
            salesforce_secret=secret,
            record_invocations=False,  # a million stream records: do not keep every event
        )
        try:
            wired = handler_is_wired(stack)
            mode = "state machine" if wired and not args.steps else "steps loop"
            deps = build_deps(stack, secret)
            beside = Beside(client_from_secret(secret), deps.dynamodb, args.max_records)
            beside.sf.describe(objects[0])  # its token and connection, before the copy
            beside.create_table()
            meter = Meter(beside=beside)
            batch_size = stack.runtime.stream_batch_size()
            streams = (
                contextlib.nullcontext()
                if args.per_request_streams or not batch_size
                else coalesce_stream_delivery(batch_size)
            )
            started = time.perf_counter()
            cpu_started = time.process_time()
            with metered(meter), redirect_stdout(sys.stderr), streams:  # EMF metric lines go to stderr
                if mode == "state machine":
                    executions = run_state_machine(stack, objects + custom, args.max_records)
                else:
                    executions = []
                    run_steps(deps, objects + custom, args.max_records)
            # the copy's own time: without what was measured beside its pages
            wall = time.perf_counter() - started - beside.paused_wall
            process_cpu = time.process_time() - cpu_started - beside.paused_cpu

            store = CopyStore(deps.dynamodb, deps.settings.state_table)
            copies = {name: store.get(name) for name in objects + custom}
            copied = sum(c.records_copied for c in copies.values() if c)
            api_calls = sum(c.api_calls for c in copies.values() if c)
            not_done = {
                name: (c.status if c else "missing") for name, c in copies.items() if not c or c.status != "done"
            }
            if copied == 0:
                raise SystemExit(f"nothing was copied (objects not done: {not_done}); see the log above")
            jobs = [p.job_id for c in copies.values() if c for p in c.parts if p.mode == "bulk" and p.job_id]
            floor_rows, floor_cpu = measure_floor(deps.sf, jobs, args.max_records)
            largest = max((c for c in copies.values() if c), key=lambda c: c.records_copied)
            largest_job = next(p.job_id for p in largest.parts if p.job_id)
            probe = run_rss_probe(info, largest.object_name, str(largest_job), args.max_records, largest)
            whole_copy = run_whole_copy_probe(info, copies, args.max_records)
            per_object = {
                name: {"records": c.records_copied, "fields": len(c.fields)} for name, c in copies.items() if c
            }
            settings = deps.settings
            stored = stored_width(deps.dynamodb, sorted(set(settings.record_tables.values())))
        finally:
            stack.close()
        load_average = os.getloadavg()

    # moto's put cost grows with the item's width: its ceiling for items as wide as the mean SELECT list
    mean_width = round(sum(o["records"] * o["fields"] for o in per_object.values()) / max(1, copied))
    ceiling = moto_ceiling(min(copied, 20_000), mean_width, speedups=True)
    # The same at the width of the items as stored (what moto really writes: present values only, plus the
    # engine's attributes and the two-way objects' _base), measured right after.
    stored_ceiling = moto_ceiling(
        min(copied, 20_000),
        round(stored["attributes"]),
        speedups=True,
        value_bytes=round(stored["value_bytes"]),
    )
    client_cpu = meter.dynamodb_cpu + meter.wire_encode_cpu
    engine_cpu = meter.load_cpu - client_cpu
    figures = {
        "mode": mode,
        "mode_note": (
            "the real state machine from the template on the local stack"
            if mode == "state machine"
            else "FullSyncFunction is not wired to sfsync.fullcopy.steps in this template (or --steps): "
            "the steps were driven in a loop the way the state machine routes them"
        ),
        "stream_delivery": "per request"
        if args.per_request_streams or not batch_size
        else f"pooled, batches of up to {batch_size} records (the mappings' BatchSize)",
        "records_generated": args.records,
        "emulator_seed_seconds": round(seed_seconds, 1),
        "records_copied": copied,
        "objects_not_done": not_done,
        "executions": len(executions),
        "wall_seconds": round(wall, 2),
        "records_per_second": round(copied / wall, 1) if wall else None,
        "process_cpu_seconds": round(process_cpu, 2),
        "load_page_calls": meter.load_calls,
        "step_calls": meter.steps,
        "load_page_cpu_us_per_record": round(1e6 * meter.load_cpu / copied, 1) if copied else None,
        "dynamodb_client_cpu_us_per_record": round(1e6 * client_cpu / copied, 1) if copied else None,
        "of_which_wire_body_encoding_us_per_record": round(1e6 * meter.wire_encode_cpu / copied, 1) if copied else None,
        "of_engine_cyclic_gc_us_per_record": round(1e6 * meter.gc_cpu / copied, 1) if copied else None,
        "of_engine_cyclic_gc_note": "collections of the in-process local DynamoDB's heap, triggered by the engine",
        "engine_cpu_us_per_record": round(1e6 * engine_cpu / copied, 1) if copied else None,
        # the floor measured beside each page (see Beside): the target's figure
        "floor_download_parse_cpu_us_per_record": _per_record(beside.floor_cpu, beside.floor_rows),
        "engine_to_floor_ratio": _ratio(engine_cpu, copied, beside.floor_cpu, beside.floor_rows),
        **_excluding_floor(engine_cpu, copied, beside.floor_cpu, beside.floor_rows),
        "target_ratio": TARGET_CPU_RATIO,
        # the same floor measured once, after the whole copy (how earlier runs measured it)
        "floor_after_the_copy_cpu_us_per_record": _per_record(floor_cpu, floor_rows),
        "engine_to_floor_ratio_floor_after_the_copy": _ratio(engine_cpu, copied, floor_cpu, floor_rows),
        "page_loading_peak_rss": probe,
        # The same engine code on every result set the copy read, in a process of its own: against a null
        # DynamoDB, and against moto in that process (its calls not counted); see docs/decisions.md.
        "whole_copy_in_a_process_of_its_own": whole_copy,
        "target_rss_mb": TARGET_RSS_MB,
        "load_average_1_5_15_min_at_end": [round(x, 2) for x in load_average],
        "objects": per_object,
        "mean_item_attributes": mean_width,
        # moto's ceiling measured beside each page, at that page's width (see Beside): the target's figure
        "moto_ceiling_beside_the_pages": {
            "items_per_second": round(beside.ceiling_rows / beside.ceiling_wall, 1) if beside.ceiling_wall else None,
            "cpu_us_per_item": _per_record(beside.ceiling_cpu, beside.ceiling_rows),
            "records_covered": beside.ceiling_rows,
        },
        "end_to_end_share_of_moto_ceiling": _ratio(beside.ceiling_wall, beside.ceiling_rows, wall, copied, digits=3),
        "end_to_end_cpu_share_of_moto_ceiling": _ratio(
            beside.ceiling_cpu, beside.ceiling_rows, process_cpu, copied, digits=3
        ),
        "target_share_of_moto_ceiling": TARGET_SHARE_OF_CEILING,
        "measured_beside_the_pages_seconds": {
            "wall": round(beside.paused_wall, 2),
            "cpu": round(beside.paused_cpu, 2),
            "note": "left out of the copy's wall and process CPU",
        },
        # the ceiling measured once after the copy at the copy's mean width (how earlier runs measured it)
        "moto_ceiling_at_mean_width": ceiling,
        "end_to_end_share_of_moto_ceiling_after_the_copy": round(copied / wall / ceiling["items_per_second"], 3)
        if wall and ceiling["items_per_second"]
        else None,
        # In CPU terms: the ceiling's CPU per item over the whole process's CPU per copied record (the
        # emulator runs in its own process, so it is not in either).
        "end_to_end_cpu_share_of_moto_ceiling_after_the_copy": round(
            ceiling["cpu_us_per_item"] / (1e6 * process_cpu / copied), 3
        )
        if copied and process_cpu
        else None,
        "stored_item_width": stored,
        "moto_ceiling_at_stored_width": stored_ceiling,
        "end_to_end_share_of_moto_ceiling_at_stored_width": round(copied / wall / stored_ceiling["items_per_second"], 3)
        if wall and stored_ceiling["items_per_second"]
        else None,
        "end_to_end_cpu_share_of_moto_ceiling_at_stored_width": round(
            stored_ceiling["cpu_us_per_item"] / (1e6 * process_cpu / copied), 3
        )
        if copied and process_cpu
        else None,
        "salesforce_api_calls": api_calls,
        "salesforce_api_calls_note": (
            "describe per object + Bulk job create/status/result sets, as counted by the engine's client"
        ),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:40} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
