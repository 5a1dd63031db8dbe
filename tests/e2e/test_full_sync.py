"""The first full copy end to end: template.yaml deployed on the local stack, the REAL state machine
(statemachine/full_sync.asl.json) and the real FullSyncFunction over a seeded emulator org (HTTPS).

Wait states and Retry back-offs take no real time; each requested wait moves the emulator's virtual
clock (the engine reads the same clock), so Bulk jobs with a processing time complete while the
state machine polls them, and a test can change the org "between steps".
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sfsync.core import clock as sfsync_clock
from sfsync.core.clock import parse_instant, to_iso_ms
from sfsync.core.config import Settings, load_settings
from sfsync.fullcopy import steps as fullsync
from sfsync.store.batch_loader import BatchLoader
from sfsync.store.copies import CopyStore

import tests.support.compare as compare
from tests.support.emulator import EmulatorTime, pin_salesforce_time, reset_engine_caches, salesforce_secret
from tests.support.fullcopy import wait_until_quiet

pytestmark = pytest.mark.e2e

START = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
STANDARD = "Lead,Contact,Account,User,Opportunity,OpportunityContactRole,Campaign,CampaignMember,Task,Event"
CUSTOM = "Project__c,Milestone__c"
EVERY_OBJECT = [*STANDARD.split(","), *CUSTOM.split(",")]
PAGE = 150  # rows per Bulk result set: several pages for the bigger objects
SMALL_ORG = 500  # records, for the scenarios (every record copied also runs the write-back stream trigger)
SMALL_PAGE = 40  # rows per result set in the small org: Lead (~100 rows) takes three pages
LAG_SECONDS = int(Settings.model_fields["safety_lag_seconds"].default)


class VirtualWaits(list[float]):
    """Attached to the stack's fast waits: every Wait/back-off moves the emulator's clock instead."""

    def __init__(self, emulator: Any) -> None:
        super().__init__()
        self._emulator = emulator
        self._lock = threading.Lock()

    def append(self, seconds: float) -> None:
        with self._lock:
            super().append(seconds)
            self._emulator.clock.advance(seconds)


@pytest.fixture
def org_records() -> int:
    """The seeded org's size (a test overrides it with ``@pytest.mark.parametrize("org_records", ...)``)."""
    return 1500


@pytest.fixture
def emulator(org_records: int) -> Iterator[Any]:
    from sfsync_emulator.clock import Clock
    from sfsync_emulator.emulator import Emulator

    emu = Emulator.start(seed=11, records=org_records, clock=Clock(int(START.timestamp() * 1000), running=False))
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def stack(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from sfsync_local.stack import LocalStack, _FastWaits

    # the engine's "Salesforce now" must be the emulator's virtual clock (see tests/support/emulator.py)
    pin_salesforce_time(emulator, monkeypatch)
    secret = salesforce_secret(emulator)
    reset_engine_caches()
    waits = VirtualWaits(emulator)
    with sfsync_clock.use_clock(EmulatorTime(emulator.clock)):
        deployed = LocalStack.deploy(
            parameters={"SyncObjects": STANDARD, "CustomObjects": CUSTOM}, salesforce_secret=secret
        )
        _FastWaits.attach(waits)
        try:
            yield deployed
        finally:
            _FastWaits.detach(waits)
            deployed.close()
            reset_engine_caches()


# ------------------------------------------------------------------------------------------------
# What the copy must equal
# ------------------------------------------------------------------------------------------------


def settings_of(stack: Any) -> Settings:
    return load_settings(stack.function_environment("FullSyncFunction"))


def table_items(stack: Any, obj: str) -> dict[str, dict[str, Any]]:
    settings = settings_of(stack)
    table = settings.record_tables[settings.registry.get(obj).family]
    return compare.table_items(stack.boto3_client("dynamodb"), table, obj)


def assert_equal_to_salesforce(stack: Any, emulator: Any, obj: str, *, every_field: bool = False) -> int:
    """The object's table holds exactly queryAll's rows (Id, SystemModstamp, IsDeleted; or every field)."""
    view = compare.salesforce_view(emulator, obj, None if every_field else ["Id", "SystemModstamp", "IsDeleted"])
    compare.assert_items_equal_view(table_items(stack, obj), view, obj)
    return len(view)


def execution_output(description: dict[str, Any]) -> dict[str, Any]:
    assert description["status"] == "SUCCEEDED", description
    output: dict[str, Any] = json.loads(description["output"])
    return output


def copied_objects(output: dict[str, Any]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = output["summary"]["summary"]
    return summary


def run_copy(stack: Any, objects: list[str], *, page: int = PAGE) -> dict[str, Any]:
    request = {"objects": objects, "requested_by": "e2e", "max_records": page}
    return stack.run_state_machine(request, timeout_seconds=90)


def status_text(stack: Any, obj: str, *options: str) -> str:
    """What `sfsync status --table <state table> --object <obj>` prints."""
    from sfsync_local.cli import main

    out = io.StringIO()
    argv = ["status", "--table", settings_of(stack).state_table, "--region", stack.region, f"--object={obj}"]
    assert main([*argv, *options], stdout=out) == 0
    return out.getvalue()


def status_of(stack: Any, obj: str) -> dict[str, Any]:
    rows = json.loads(status_text(stack, obj, "--json"))["objects"]
    assert [row["object"] for row in rows] == [obj]
    row: dict[str, Any] = rows[0]
    return row


def deleted_some_records(emulator: Any) -> None:
    """A few deleted rows (IsDeleted = true in queryAll) the copy must carry too."""
    sf = emulator.salesforce()
    for obj in ("Lead", "Account", "Task"):
        for row in sf.query(f"SELECT Id FROM {obj} ORDER BY Id LIMIT 2")["records"]:
            emulator.org.delete(obj, row["Id"], as_api=False)


# ------------------------------------------------------------------------------------------------


def test_given_a_seeded_org_when_the_state_machine_runs_then_every_object_equals_queryall_with_progress(
    emulator: Any, stack: Any
) -> None:
    deleted_some_records(emulator)
    emulator.reset_counters()
    output = execution_output(run_copy(stack, EVERY_OBJECT))
    by_family = emulator.app.counter.by_family()  # before this test's own queryAll calls

    summary = copied_objects(output)
    assert set(summary) == set(EVERY_OBJECT)
    total_calls = 0
    for obj in EVERY_OBJECT:
        copied = assert_equal_to_salesforce(stack, emulator, obj, every_field=obj in ("Account", "Lead", "Project__c"))
        assert copied > 0, f"the seeded org has {obj} rows"
        progress = summary[obj]
        assert progress["status"] == "done" and progress["error"] is None
        assert progress["records_copied"] == progress["total"] == copied, obj
        total_calls += progress["api_calls"]
    assert set(by_family) == {"describe", "bulk"}  # describe at planning, then Bulk 2.0 only
    assert sum(by_family.values()) == total_calls  # every call counted and reported
    assert any(rows["IsDeleted"] for rows in compare.salesforce_view(emulator, "Lead", ["Id", "IsDeleted"]).values())

    shown = status_of(stack, "Lead")
    assert shown["full_copy_status"] == "done" and shown["full_copy_done"] is True
    assert shown["full_copy_records"] == shown["full_copy_total"] == summary["Lead"]["records_copied"]
    assert shown["full_copy_updated_at"] is not None
    assert f"done ({summary['Lead']['records_copied']:,} records)" in status_text(stack, "Lead")


@pytest.mark.parametrize("org_records", [SMALL_ORG])
def test_given_changes_in_salesforce_during_the_copy_when_it_ends_then_the_first_incremental_cycle_brings_them(
    emulator: Any, stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sfsync_emulator.bulk import JobTiming

    emulator.bulk.timing = JobTiming(in_progress_after_s=1, complete_after_s=40)  # polled several times
    objects = ["Account", "Contact", "Lead"]
    sf = emulator.salesforce()
    targets = {
        obj: [r["Id"] for r in sf.query(f"SELECT Id FROM {obj} ORDER BY Id LIMIT 3")["records"]] for obj in objects
    }
    changed: dict[str, str] = {}
    polled: set[str] = set()
    real_poll = fullsync.STEPS["poll_job"]
    guard = threading.Lock()

    def poll_then_change(event: Any, deps: Any) -> dict[str, Any]:
        out = real_poll(event, deps)
        with guard:
            polled.add(event["object"])
            if polled == set(objects) and not changed:  # every job has been polled: its snapshot is taken
                change_org()
        return out

    def change_org() -> None:
        emulator.clock.advance(1)
        changed["at"] = to_iso_ms(EmulatorTime(emulator.clock).now())
        emulator.org.update("Account", targets["Account"][0], {"Name": "Renamed During Copy"}, as_api=False)
        emulator.org.update("Contact", targets["Contact"][1], {"LastName": "Changed-During-Copy"}, as_api=False)
        emulator.org.delete("Lead", targets["Lead"][2], as_api=False)
        changed["Account"] = emulator.org.create("Account", {"Name": "Created During Copy"}, as_api=False)

    monkeypatch.setitem(fullsync.STEPS, "poll_job", poll_then_change)
    summary = copied_objects(execution_output(run_copy(stack, objects)))
    assert changed, "the org changed while the copy ran"
    assert {summary[o]["status"] for o in objects} == {"done"}

    account = table_items(stack, "Account")
    assert changed["Account"] not in account  # the copy's snapshot predates the changes...
    assert account[targets["Account"][0]]["Name"] != "Renamed During Copy"
    assert table_items(stack, "Lead")[targets["Lead"][2]]["IsDeleted"] is False
    assert table_items(stack, "Contact")[targets["Contact"][1]]["LastName"] != "Changed-During-Copy"
    copies = CopyStore(stack.boto3_client("dynamodb"), settings_of(stack).state_table)
    for obj in objects:  # each watermark is below the changes: the first cycle's window covers them
        doc = copies.get(obj)
        assert doc is not None and doc.watermark is not None
        assert parse_instant(doc.watermark) < parse_instant(changed["at"])

    emulator.clock.advance(LAG_SECONDS + 1)
    for obj in objects:  # ... and the first incremental cycle after the copy brings every one
        result = stack.invoke("ObjectSyncFunction", {"object": obj, "cycle_id": f"{obj}-after-copy", "reason": "due"})
        assert result["status"] == "complete", result
        assert_equal_to_salesforce(stack, emulator, obj, every_field=True)
    assert table_items(stack, "Account")[changed["Account"]]["Name"] == "Created During Copy"


@pytest.mark.parametrize("org_records", [SMALL_ORG])
@pytest.mark.parametrize("fault", ["failed_bulk_job", "query_timeout_on_a_big_object"])
def test_given_a_bulk_fault_when_the_copy_runs_then_it_still_ends_with_the_complete_copy(
    emulator: Any, stack: Any, fault: str
) -> None:
    if fault == "failed_bulk_job":
        objects, failures = ["Account", "Contact"], 1  # retried with a new job
        emulator.bulk.fail_next_jobs(1, "InvalidBatch : Failed to process query: INTERNAL_ERROR: job failed")
    else:
        objects, failures = ["Lead"], 2  # Bulk's QUERY_TIMEOUT twice: the object is split into ranges
        emulator.bulk.fail_next_jobs(2)
    summary = copied_objects(execution_output(run_copy(stack, objects)))
    for obj in objects:
        copied = assert_equal_to_salesforce(stack, emulator, obj)
        assert summary[obj]["status"] == "done"
        assert summary[obj]["records_copied"] == copied
    copies = CopyStore(stack.boto3_client("dynamodb"), settings_of(stack).state_table)
    docs = [copies.get(obj) for obj in objects]
    assert sum(doc.bulk_failures for doc in docs if doc) == failures
    if fault == "query_timeout_on_a_big_object":
        assert docs[0] is not None and len(docs[0].parts) > 1 and docs[0].splits == 1


@pytest.mark.parametrize("org_records", [SMALL_ORG])
def test_given_a_mass_update_and_a_big_object_timing_out_when_copied_then_the_dense_slice_is_split_by_id(
    emulator: Any, stack: Any
) -> None:
    sf = emulator.salesforce()
    contacts = [row["Id"] for row in sf.query("SELECT Id FROM Contact")["records"]]
    emulator.org.mass_update("Contact", contacts, {"Title": "Mass Updated"}, as_api=False)  # one stamp for all
    # The whole-object job times out twice: split by SystemModstamp; the piece holding the mass update
    # times out twice too (more stamp cuts cannot spread one second): split by Id.
    emulator.bulk.fail_next_jobs(4, "InvalidBatch : Failed to process query: QUERY_TIMEOUT: query timed out")
    summary = copied_objects(execution_output(run_copy(stack, ["Contact"], page=SMALL_PAGE)))
    copied = assert_equal_to_salesforce(stack, emulator, "Contact", every_field=True)
    assert summary["Contact"]["status"] == "done" and summary["Contact"]["records_copied"] == copied
    doc = CopyStore(stack.boto3_client("dynamodb"), settings_of(stack).state_table).get("Contact")
    assert doc is not None and doc.bulk_failures == 4 and doc.splits == 2
    by_id = [part for part in doc.parts if part.split_by == "id"]
    assert len(by_id) == 4 and {part.mode for part in doc.parts} == {"bulk"}  # no REST needed
    assert by_id[0].id_lo is None and by_id[-1].id_hi is None
    assert all(a.id_hi == b.id_lo for a, b in itertools.pairwise(by_id))
    assert all(part.records_done > 0 for part in by_id)  # Id ranges spread the dense slice by count
    assert sum(part.records_done for part in by_id) == copied >= len(contacts)


@pytest.mark.parametrize("org_records", [SMALL_ORG])
def test_given_bulk_jobs_that_always_fail_when_copied_then_they_are_retried_split_and_read_with_rest(
    emulator: Any, stack: Any
) -> None:
    emulator.add_fault("bulk_job_failed", family="bulk", records=1000, message="InvalidBatch : INTERNAL_ERROR")
    summary = copied_objects(execution_output(run_copy(stack, ["Account"], page=SMALL_PAGE)))
    copied = assert_equal_to_salesforce(stack, emulator, "Account", every_field=True)
    assert summary["Account"]["status"] == "done" and summary["Account"]["records_copied"] == copied
    doc = CopyStore(stack.boto3_client("dynamodb"), settings_of(stack).state_table).get("Account")
    assert doc is not None and doc.splits >= 1
    assert {part.mode for part in doc.parts} == {"rest"}  # every part ended up read with REST
    assert {part.split_by for part in doc.parts} >= {"id"}  # stamp pieces that failed again were cut by Id
    assert doc.bulk_failures == doc.bulk_jobs  # no Bulk job ever succeeded...
    assert sum(part.records_done for part in doc.parts) == copied  # ...and every row came through REST
    assert any("read with REST" in warning for warning in doc.warnings)


class TaskKilled(Exception):
    """Stands for the Lambda being killed in the middle of a page (not an engine error: no Retry)."""


@pytest.mark.parametrize("org_records", [SMALL_ORG])
def test_given_a_task_killed_mid_page_when_the_execution_is_started_again_then_it_continues_from_the_checkpoint(
    emulator: Any, stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = BatchLoader.write_lines
    pages = {"n": 0}

    def write_then_die(self: Any, *args: Any, **kwargs: Any) -> Any:
        pages["n"] += 1
        if pages["n"] == 3:  # the third page: part of it written, then the task dies
            real_write(self, *args, **kwargs)
            raise TaskKilled("killed after persisting part of page 3")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(BatchLoader, "write_lines", write_then_die)
    first = copied_objects(execution_output(run_copy(stack, ["Lead"], page=SMALL_PAGE)))["Lead"]
    assert first["status"] == "failed" and first["error"]["Error"] == "TaskKilled"
    checkpoint = first["records_copied"]
    assert checkpoint == 2 * SMALL_PAGE  # two pages checkpointed; the killed one is not

    emulator.reset_counters()
    second = copied_objects(execution_output(run_copy(stack, ["Lead"], page=SMALL_PAGE)))["Lead"]
    calls = emulator.app.counter.by_family()
    copied = assert_equal_to_salesforce(stack, emulator, "Lead", every_field=True)
    assert second["status"] == "done" and second["records_copied"] == copied  # nothing counted twice
    doc = CopyStore(stack.boto3_client("dynamodb"), settings_of(stack).state_table).get("Lead")
    assert doc is not None and doc.bulk_jobs == 1  # the same Bulk job, resumed at its locator
    remaining_pages = -(-(copied - checkpoint) // SMALL_PAGE)
    assert calls == {"bulk": 1 + remaining_pages}  # no describe, no new job: one status check, then the rest


@pytest.mark.parametrize("org_records", [SMALL_ORG])
def test_given_an_execution_stopped_midway_when_started_again_then_it_resumes_the_copy_and_ends_complete(
    emulator: Any, stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_load = fullsync.STEPS["load_page"]
    loaded: list[int] = []

    def load_then_stop(event: Any, deps: Any) -> dict[str, Any]:
        emulator.clock.advance(30)  # the page takes 30 s: a rate and an ETA to show
        out = real_load(event, deps)
        loaded.append(out["records_copied"])
        if len(loaded) == 1:  # the operator stops the execution after the first page
            stack.boto3_client("stepfunctions").stop_execution(
                executionArn=event["execution_id"], error="Operator", cause="stopped by the e2e test"
            )
        return out

    monkeypatch.setitem(fullsync.STEPS, "load_page", load_then_stop)
    stopped = run_copy(stack, ["Lead"], page=SMALL_PAGE)
    # Step Functions reports ABORTED; moto 5.2.5's interpreter fails the stopped Map iteration
    # ("MapIterationAborted") and reports FAILED. Either way the execution ended midway.
    assert stopped["status"] in {"ABORTED", "FAILED"}, stopped
    copies = CopyStore(stack.boto3_client("dynamodb"), settings_of(stack).state_table)
    wait_until_quiet(stack)
    at_stop = copies.get("Lead")
    assert at_stop is not None and at_stop.status == "running"
    total = len(compare.salesforce_view(emulator, "Lead", ["Id"]))
    assert at_stop.records_copied == loaded[-1] == SMALL_PAGE < total

    shown = status_of(stack, "Lead")  # `sfsync status` while the copy is under way
    assert shown["full_copy_status"] == "running"
    assert (shown["full_copy_records"], shown["full_copy_total"]) == (SMALL_PAGE, total)
    assert at_stop.engine_started_at is not None and shown["full_copy_updated_at"] is not None
    elapsed = (parse_instant(shown["full_copy_updated_at"]) - parse_instant(at_stop.engine_started_at)).total_seconds()
    assert elapsed >= 30  # the page's 30 s, after the job's polls
    rate = shown["full_copy_rate_per_s"]
    assert rate == pytest.approx(SMALL_PAGE / elapsed, abs=0.05)
    assert shown["full_copy_eta_seconds"] == pytest.approx((total - SMALL_PAGE) / (SMALL_PAGE / elapsed), rel=0.05)
    assert shown["full_copy_updated_at"] is not None
    text = status_text(stack, "Lead")
    assert f"running ({SMALL_PAGE}/{total} records, {100 * SMALL_PAGE / total:.0f}%, {rate:,.0f}/s, ETA " in text, text

    again = execution_output(run_copy(stack, ["Lead"], page=SMALL_PAGE))
    assert again["plan"]["objects"] == [{"object": "Lead", "mode": "bulk", "resumed": True}]
    summary = copied_objects(again)["Lead"]
    copied = assert_equal_to_salesforce(stack, emulator, "Lead", every_field=True)
    assert summary["status"] == "done" and summary["records_copied"] == copied
    done = copies.get("Lead")
    assert done is not None and done.bulk_jobs == 1 and done.pages == -(-copied // SMALL_PAGE)  # no page read twice


@pytest.mark.parametrize("org_records", [100])
@pytest.mark.parametrize(
    ("execution_input", "problem"),
    [
        ({"objects": ["Account", "Nope"]}, "unknown object.*Nope"),
        ({"objects": "Account"}, "objects"),
        ({"objects": ["Account"], "max_records": 0}, "max_records"),
        ({"objects": ["Account"], "resync": ["Lead"]}, "resync names object.*Lead"),
    ],
)
def test_given_an_invalid_execution_input_when_started_then_it_fails_with_a_clear_error_before_any_work(
    emulator: Any, stack: Any, execution_input: dict[str, Any], problem: str
) -> None:
    emulator.reset_counters()
    description = stack.run_state_machine(execution_input, timeout_seconds=30)
    assert description["status"] == "FAILED"
    history = stack.boto3_client("stepfunctions").get_execution_history(executionArn=description["executionArn"])
    failed = [e["executionFailedEventDetails"] for e in history["events"] if e["type"] == "ExecutionFailed"]
    assert failed and failed[0]["error"] == "InvalidExecutionInput", failed
    assert re.search(problem, failed[0]["cause"]), failed[0]["cause"]
    assert emulator.api_calls() == 0
    state = stack.boto3_client("dynamodb").scan(TableName=settings_of(stack).state_table)["Items"]
    assert not [item for item in state if item["sk"]["S"] == "FULLCOPY"]
    assert table_items(stack, "Account") == {}


@pytest.mark.parametrize("org_records", [SMALL_ORG])
def test_given_bulk_refusing_one_objects_query_when_copied_then_that_object_is_read_with_rest_and_all_are_complete(
    emulator: Any, stack: Any
) -> None:
    from urllib.parse import unquote_plus

    objects, refused = ["Account", "Lead", "Contact"], "Lead"
    # Salesforce refuses every Bulk 2.0 query job on Lead at creation (HTTP 400, e.g. compound fields)
    emulator.add_fault("bulk_query_refused", family="bulk", method="POST", object_name=refused)
    emulator.reset_counters()
    emulator.app.log.clear()

    summary = copied_objects(execution_output(run_copy(stack, objects, page=SMALL_PAGE)))
    by_family = emulator.app.counter.by_family()
    log = emulator.request_log()

    copies = CopyStore(stack.boto3_client("dynamodb"), settings_of(stack).state_table)
    refused_parts = 0
    for obj in objects:
        copied = assert_equal_to_salesforce(stack, emulator, obj, every_field=True)
        assert copied > 0, f"the seeded org has {obj} rows"
        assert summary[obj]["status"] == "done" and summary[obj]["error"] is None
        assert summary[obj]["records_copied"] == copied, obj
        doc = copies.get(obj)
        assert doc is not None and doc.status == "done"
        if obj == refused:
            assert {part.mode for part in doc.parts} == {"rest"}  # read with REST queryAll...
            assert doc.bulk_jobs == 0 and doc.bulk_failures == 0  # ...as no Bulk job was ever created
            assert sum(part.records_done for part in doc.parts) == copied
            assert any("Bulk API refused the query" in warning for warning in doc.warnings), doc.warnings
            assert any("Selecting compound data not supported in Bulk Query" in w for w in doc.warnings)
            refused_parts = len(doc.parts)
        else:
            assert {part.mode for part in doc.parts} == {"bulk"} and doc.bulk_jobs >= 1
            assert not any("Bulk API refused" in warning for warning in doc.warnings), (obj, doc.warnings)
    assert by_family.get("query", 0) >= 1, by_family  # the refused object's rows came through REST queryAll
    refusals = [e for e in log if e["method"] == "POST" and e["path"].endswith("/jobs/query") and e["status"] == 400]
    assert len(refusals) == refused_parts  # each part's job creation was refused once, then read with REST
    rest_reads = [unquote_plus(e["query"]) for e in log if e["family"] == "query" and e["status"] == 200]
    soql = [read for read in rest_reads if " FROM " in read]  # the queryMore pages carry no SOQL
    assert soql and all(f" FROM {refused} " in f"{read} " for read in soql), rest_reads
    assert len(emulator.app.faults.rules()) == 1  # the rule was active for the whole copy
