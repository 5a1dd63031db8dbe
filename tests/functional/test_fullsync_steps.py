"""The full-copy steps against the real emulator (HTTPS) and the local stack's DynamoDB tables.

The steps are called directly, in the order the state machine calls them (``drive`` below follows
each step's ``next``; a Wait state is the emulator's virtual clock moving ``wait_seconds``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sfsync.core.config import load_settings
from sfsync.core.exceptions import InvalidExecutionInput
from sfsync.fullcopy import steps as fullsync
from sfsync.fullcopy.deps import FullSyncDeps
from sfsync.fullcopy.plan import CopyPolicy
from sfsync.inbound.cycle import CycleStores, run_object_cycle
from sfsync.salesforce import client_from_secret
from sfsync.store.records import RecordStore
from sfsync.store.state import StateStore

import tests.support.compare as support
from tests.functional.conftest import DeployStack

pytestmark = pytest.mark.functional

OBJECTS = "Account,Contact,Opportunity,Task,Campaign"
PAGE = 10  # rows per Bulk result set: several pages per object in the 300-record org


@pytest.fixture
def copy_stack(deploy_stack: DeployStack) -> Any:
    return deploy_stack({"SyncObjects": OBJECTS})


@pytest.fixture
def deps(copy_stack: Any, salesforce_secret: dict[str, Any], engine_time: Any) -> Iterator[FullSyncDeps]:
    settings = load_settings(copy_stack.function_environment("FullSyncFunction"))
    client = copy_stack.boto3_client("dynamodb")
    sf = client_from_secret(salesforce_secret)
    try:
        yield FullSyncDeps(
            settings=settings,
            sf=sf,
            state=StateStore(settings.state_table, region=copy_stack.region),
            records=RecordStore(client, settings.record_tables, errors_table=settings.errors_table),
            dynamodb=client,
            clock=engine_time,
            policy=CopyPolicy(max_records=PAGE),
        )
    finally:
        sf.close()


def drive(deps: FullSyncDeps, obj: str, emulator: Any, first: str = "start_job") -> dict[str, Any]:
    """Run one object's steps the way the state machine routes them, until ``done``."""
    step = first
    pages = 0
    for _ in range(2000):
        event = {"step": step, "object": obj, "pages_this_execution": pages}
        out = fullsync.run_step(event, deps)
        pages = out["pages_this_execution"]
        route = out["next"]
        if route == "done":
            return out
        if route == "wait":
            emulator.clock.advance(out["wait_seconds"])
            step = "poll_job"
        elif route in ("load", "continue"):
            step = "load_page"
        elif route == "start":
            step = "start_job"
        elif route == "finish":
            step = "finish"
        else:
            raise AssertionError(f"unexpected route {route!r}: {out}")
    raise AssertionError(f"{obj} did not finish")


def table_items(deps: FullSyncDeps, obj: str) -> dict[str, dict[str, Any]]:
    return support.table_items(deps.dynamodb, deps.records.table_for(deps.settings.registry.get(obj)), obj)


def assert_copy_equals_salesforce(deps: FullSyncDeps, emulator: Any, obj: str) -> int:
    view = support.salesforce_view(emulator, obj)
    support.assert_items_equal_view(table_items(deps, obj), view, obj)
    return len(view)


def plan(deps: FullSyncDeps, objects: list[str], **extra: Any) -> dict[str, Any]:
    return fullsync.run_step({"step": "plan", "objects": objects, "requested_by": "test", **extra}, deps)


# ------------------------------------------------------------------------------------------------


def test_given_a_seeded_org_when_several_objects_are_copied_then_each_table_equals_queryall(
    emulator: Any, deps: FullSyncDeps
) -> None:
    objects = OBJECTS.split(",")
    emulator.reset_counters()
    planned = plan(deps, objects)
    assert [o["object"] for o in planned["objects"]] == objects
    assert {o["mode"] for o in planned["objects"]} == {"bulk"}

    outputs = {obj: drive(deps, obj, emulator) for obj in objects}
    by_family = emulator.app.counter.by_family()
    # one describe per object at planning, then Bulk 2.0 calls only; the engine counts them all
    assert by_family == {"describe": len(objects), "bulk": by_family.get("bulk", 0)}
    assert sum(by_family.values()) == sum(out["api_calls"] for out in outputs.values())

    for obj, out in outputs.items():
        copied = assert_copy_equals_salesforce(deps, emulator, obj)
        assert out["status"] == "done"
        assert out["records_copied"] == copied == out["total"]
        watermark = deps.state.get_watermark(obj)
        assert watermark.full_copy_done
        assert watermark.value is not None and out["watermark"] is not None
        progress = deps.dynamodb.get_item(
            TableName=deps.settings.state_table, Key={"pk": {"S": f"OBJECT#{obj}"}, "sk": {"S": "FULLCOPY"}}
        )["Item"]
        assert progress["status"] == {"S": "done"}
        assert int(progress["records_copied"]["N"]) == int(progress["total"]["N"]) == copied


def test_given_a_compound_field_when_the_object_is_copied_then_only_its_components_are_stored(
    emulator: Any, deps: FullSyncDeps
) -> None:
    describe = emulator.salesforce().Account.describe()
    compound = [f["name"] for f in describe["fields"] if f["type"] == "address"]
    assert compound, "Account has address fields in the emulator's schema"
    plan(deps, ["Account"])
    drive(deps, "Account", emulator)
    items = table_items(deps, "Account")
    assert_copy_equals_salesforce(deps, emulator, "Account")
    assert not any(name in item for item in items.values() for name in compound)
    assert any("BillingCity" in item for item in items.values())


def test_given_a_failed_bulk_job_when_the_copy_runs_then_a_new_job_is_used_and_the_copy_is_complete(
    emulator: Any, deps: FullSyncDeps
) -> None:
    plan(deps, ["Account"])
    emulator.bulk.fail_next_jobs(1)
    out = drive(deps, "Account", emulator)
    assert out["bulk_failures"] == 1
    assert out["bulk_jobs"] == 2
    assert out["parts"] == 1
    assert_copy_equals_salesforce(deps, emulator, "Account")


def test_given_jobs_that_keep_failing_when_the_copy_runs_then_it_splits_then_reads_with_rest(
    emulator: Any, deps: FullSyncDeps
) -> None:
    deps = replace(deps, policy=CopyPolicy(max_records=PAGE, max_job_attempts=1, split_factor=2, max_split_depth=1))
    plan(deps, ["Contact"])
    emulator.bulk.fail_next_jobs(3)  # the whole-object job, then both halves after the split
    emulator.reset_counters()
    out = drive(deps, "Contact", emulator)
    calls = emulator.app.counter.by_family()
    assert out["bulk_failures"] == 3
    copy = deps.copies.get("Contact")
    assert copy is not None
    assert len(copy.parts) == 2 and {p.mode for p in copy.parts} == {"rest"}
    assert calls.get("query", 0) >= 2  # the split's one-row probe, then the REST pages
    copied = assert_copy_equals_salesforce(deps, emulator, "Contact")
    assert out["records_copied"] == copied


def test_given_every_row_on_one_stamp_when_the_job_fails_then_the_part_is_cut_by_id_at_once(
    emulator: Any, deps: FullSyncDeps
) -> None:
    deps = replace(deps, policy=CopyPolicy(max_records=PAGE, max_job_attempts=1, split_factor=3))
    sf = emulator.salesforce()
    contacts = [row["Id"] for row in sf.query("SELECT Id FROM Contact")["records"]]
    emulator.org.mass_update("Contact", contacts, {"Title": "Same Second"}, as_api=False)
    plan(deps, ["Contact"])
    emulator.bulk.fail_next_jobs(1)
    out = fullsync.start_job({"object": "Contact"}, deps)  # the clock stands still: now == every row's stamp
    while out["next"] == "wait":
        out = fullsync.poll_job({"object": "Contact"}, deps)
    copy = deps.copies.get("Contact")
    assert copy is not None and copy.splits == 1
    assert [p.split_by for p in copy.parts] == ["id", "id", "id"]  # no stamp range to cut
    assert all((p.lo, p.hi) == (None, None) for p in copy.parts)
    out = drive(deps, "Contact", emulator, first="start_job")
    copied = assert_copy_equals_salesforce(deps, emulator, "Contact")
    assert out["records_copied"] == copied
    done = deps.copies.get("Contact")
    assert done is not None and all(p.records_done > 0 for p in done.parts)


def test_given_an_object_bulk_cannot_query_when_planned_then_it_is_copied_with_rest(
    emulator: Any, deps: FullSyncDeps
) -> None:
    deps = replace(deps, bulk_unsupported=frozenset({"Campaign"}))
    planned = plan(deps, ["Campaign", "Account"])
    assert {o["object"]: o["mode"] for o in planned["objects"]} == {"Campaign": "rest", "Account": "bulk"}
    assert any("Campaign" in w for w in planned["warnings"])
    emulator.reset_counters()
    out = drive(deps, "Campaign", emulator)
    assert set(emulator.app.counter.by_family()) == {"query"}
    assert out["records_copied"] == assert_copy_equals_salesforce(deps, emulator, "Campaign")


class _KilledMidPage(Exception):
    """Stands for the Lambda being killed: raised after part of a page is persisted."""


class _DyingClient:
    """The real DynamoDB client, killed after ``batches`` BatchWriteItem calls."""

    def __init__(self, real: Any, batches: int) -> None:
        self._real = real
        self._left = batches

    def batch_write_item(self, **kwargs: Any) -> Any:
        if self._left == 0:
            raise _KilledMidPage
        self._left -= 1
        return self._real.batch_write_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.mark.parametrize("mode", ["bulk", "rest"])
def test_given_a_step_killed_mid_page_when_it_runs_again_then_nothing_is_lost_or_counted_twice(
    emulator: Any, deps: FullSyncDeps, mode: str
) -> None:
    deps = replace(deps, policy=CopyPolicy(max_records=40))  # Contact: 52 rows, pages of 40 (2 batches)
    if mode == "rest":
        deps = replace(deps, bulk_unsupported=frozenset({"Contact"}))
    plan(deps, ["Contact"])
    out = fullsync.start_job({"object": "Contact"}, deps)
    while out["next"] == "wait":
        emulator.clock.advance(out["wait_seconds"])
        out = fullsync.poll_job({"object": "Contact"}, deps)

    dying = replace(deps, dynamodb=_DyingClient(deps.dynamodb, batches=1))
    with pytest.raises(_KilledMidPage):
        fullsync.load_page({"object": "Contact"}, dying)
    after_kill = deps.copies.get("Contact")
    assert after_kill is not None and after_kill.records_copied == 0  # the half page is not checkpointed
    assert len(table_items(deps, "Contact")) == 25  # ... though its first batch is in the table

    out = drive(deps, "Contact", emulator, first="load_page")
    copied = assert_copy_equals_salesforce(deps, emulator, "Contact")
    assert out["records_copied"] == copied == 52


def test_given_changes_during_the_copy_when_it_finishes_then_they_are_after_the_watermark_and_the_first_cycle_gets_them(
    emulator: Any, deps: FullSyncDeps, engine_time: Any
) -> None:
    from sfsync_emulator.bulk import JobTiming

    emulator.bulk.timing = JobTiming(in_progress_after_s=1, complete_after_s=30)
    plan(deps, ["Account"])
    out = fullsync.start_job({"object": "Account"}, deps)
    assert out["next"] == "wait"
    emulator.clock.advance(out["wait_seconds"])  # the job is processing: its snapshot is taken
    out = fullsync.poll_job({"object": "Account"}, deps)
    sf = emulator.salesforce()
    changed = [row["Id"] for row in sf.query("SELECT Id FROM Account ORDER BY Id LIMIT 3")["records"]]
    emulator.clock.advance(2)
    for record_id in changed:
        sf.Account.update(record_id, {"Description": "changed during the copy"})
    stamps = {
        row["Id"]: row["SystemModstamp"]
        for row in sf.query(f"SELECT Id, SystemModstamp FROM Account WHERE Id IN ('{"','".join(changed)}')")["records"]
    }
    out = drive(deps, "Account", emulator, first="poll_job")
    watermark = deps.state.get_watermark("Account").value
    assert watermark is not None
    items = table_items(deps, "Account")
    for record_id in changed:
        assert items[record_id].get("Description") != "changed during the copy"  # the copy's snapshot
        assert dt.datetime.fromisoformat(stamps[record_id].replace("+0000", "+00:00")) > watermark

    emulator.clock.advance(deps.settings.safety_lag_seconds + 1)
    result = run_object_cycle(
        "Account",
        "cycle-after-copy",
        settings=deps.settings,
        sf=deps.sf,  # type: ignore[arg-type]
        store=CycleStores(deps.state, deps.records),
        now=engine_time,
    )
    assert result.status == "complete"
    assert_copy_equals_salesforce(deps, emulator, "Account")
    assert out["status"] == "done"


def test_given_a_late_commit_stamped_before_the_job_start_then_the_watermark_is_the_job_start_less_the_overlap_exactly(
    emulator: Any, deps: FullSyncDeps, engine_time: Any
) -> None:
    """Issue #11 finding 10: no test held the exact watermark of ``finish``, nor a late commit stamped
    before the Bulk job's start that the job's snapshot missed."""
    from sfsync.core.clock import parse_instant
    from sfsync_emulator.bulk import JobTiming

    overlap = dt.timedelta(seconds=deps.settings.overlap_seconds)
    emulator.bulk.timing = JobTiming(in_progress_after_s=1, complete_after_s=30)
    sf = emulator.salesforce()
    target = sf.query("SELECT Id FROM Account ORDER BY Id LIMIT 1")["records"][0]["Id"]
    # a long transaction: its row is stamped before the copy's job starts (further back than one
    # overlap), and it commits only after the job took its snapshot
    emulator.org.late_commit(
        "Account",
        {"Description": "committed late"},
        record_id=target,
        stamp_ago_s=overlap.total_seconds() + 30,
        visible_after_s=120,
    )
    plan(deps, ["Account"])
    out = fullsync.start_job({"object": "Account"}, deps)
    job = sf.restful(f"jobs/query/{out['job_id']}", method="GET")
    out = drive(deps, "Account", emulator, first="poll_job" if out["next"] == "wait" else "load_page")
    assert out["status"] == "done"

    copy = deps.copies.get("Account")
    assert copy is not None and copy.copy_started_at is not None
    started = parse_instant(copy.copy_started_at)
    assert started == parse_instant(job["createdDate"].replace("+0000", "Z"))  # the job's own start
    watermark = deps.state.get_watermark("Account").value
    assert watermark == started - overlap  # exactly: the earliest job start less the overlap
    assert out["watermark"] == copy.watermark
    assert table_items(deps, "Account")[target].get("Description") != "committed late"  # the snapshot missed it

    emulator.clock.advance(120 + deps.settings.safety_lag_seconds + 1)
    stamp = sf.query(f"SELECT SystemModstamp FROM Account WHERE Id = '{target}'")["records"][0]["SystemModstamp"]
    assert (
        parse_instant(stamp.replace("+0000", "Z"))
        < started - overlap
        < parse_instant(stamp.replace("+0000", "Z")) + overlap
    )
    result = run_object_cycle(
        "Account",
        "cycle-after-late-commit",
        settings=deps.settings,
        sf=deps.sf,  # type: ignore[arg-type]
        store=CycleStores(deps.state, deps.records),
        now=engine_time,
    )
    assert result.status == "complete"
    assert table_items(deps, "Account")[target]["Description"] == "committed late"
    assert_copy_equals_salesforce(deps, emulator, "Account")


def test_given_a_copy_under_way_when_a_new_execution_plans_again_then_it_resumes_and_a_done_copy_is_skipped(
    emulator: Any, deps: FullSyncDeps
) -> None:
    plan(deps, ["Account"])
    out = fullsync.start_job({"object": "Account"}, deps)
    job_id = out["job_id"]
    while out["next"] == "wait":
        emulator.clock.advance(out["wait_seconds"])
        out = fullsync.poll_job({"object": "Account"}, deps)
    fullsync.load_page({"object": "Account"}, deps)
    emulator.reset_counters()

    again = plan(deps, ["Account"])
    assert again["objects"] == [{"object": "Account", "mode": "bulk", "resumed": True}]
    out = fullsync.start_job({"object": "Account"}, deps)
    assert out["job_id"] == job_id and out["records_copied"] == PAGE  # same job, same checkpoint
    out = drive(deps, "Account", emulator, first="load_page")
    # one status check of the recorded job, then the remaining result sets; no new job
    assert emulator.app.counter.by_family() == {"bulk": 1 + out["pages"] - 1}
    assert out["records_copied"] == assert_copy_equals_salesforce(deps, emulator, "Account")

    third = plan(deps, ["Account"])
    assert third["objects"] == [] and third["skipped"][0]["object"] == "Account"


def test_given_a_failed_copy_when_a_new_execution_plans_again_then_it_resumes_the_checkpoint_not_from_zero(
    emulator: Any, deps: FullSyncDeps
) -> None:
    """Issue #11 finding 10: a failed copy planned again from zero was caught only by an e2e test."""
    plan(deps, ["Account"])
    out = fullsync.start_job({"object": "Account", "execution_id": "exec-1"}, deps)
    job_id = out["job_id"]
    while out["next"] == "wait":
        emulator.clock.advance(out["wait_seconds"])
        out = fullsync.poll_job({"object": "Account", "execution_id": "exec-1"}, deps)
    fullsync.load_page({"object": "Account", "execution_id": "exec-1"}, deps)
    failed = fullsync.mark_failed(
        {"object": "Account", "execution_id": "exec-1", "error": {"Error": "SalesforceUnavailable", "Cause": "503"}},
        deps,
    )
    assert (failed["status"], failed["records_copied"]) == ("failed", PAGE)
    emulator.reset_counters()

    again = plan(deps, ["Account"], execution_id="exec-2")
    assert again["objects"] == [{"object": "Account", "mode": "bulk", "resumed": True}]
    resumed = deps.copies.get("Account")
    assert resumed is not None and resumed.status == "running" and resumed.execution_arn == "exec-2"
    assert resumed.records_copied == PAGE and resumed.parts[0].job_id == job_id and resumed.failures == 1
    assert emulator.app.counter.by_family() == {}, "planning a resume calls nothing (no describe, no job)"
    stale = fullsync.load_page({"object": "Account", "execution_id": "exec-1"}, deps)
    assert stale["next"] == "superseded", "the failed execution's steps no longer touch the copy"
    out = drive_as(deps, "Account", emulator, "exec-2")
    assert out["records_copied"] == assert_copy_equals_salesforce(deps, emulator, "Account")
    done = deps.copies.get("Account")
    assert done is not None and done.bulk_jobs == 1 and done.failures == 0, "the same job, no page read twice"


def drive_as(deps: FullSyncDeps, obj: str, emulator: Any, execution: str) -> dict[str, Any]:
    """:func:`drive` for the steps of one execution (its ``execution_id`` on every step)."""
    step, pages = "start_job", 0
    for _ in range(2000):
        out = fullsync.run_step(
            {"step": step, "object": obj, "pages_this_execution": pages, "execution_id": execution}, deps
        )
        pages, route = out["pages_this_execution"], out["next"]
        if route == "done":
            return out
        if route == "wait":
            emulator.clock.advance(out["wait_seconds"])
        step = {
            "wait": "poll_job",
            "load": "load_page",
            "continue": "load_page",
            "start": "start_job",
            "finish": "finish",
        }[route]
    raise AssertionError(f"{obj} did not finish")


def test_given_a_failed_object_when_marked_failed_then_the_reason_is_kept_and_others_still_copy(
    emulator: Any, deps: FullSyncDeps
) -> None:
    plan(deps, ["Account", "Contact"])
    out = fullsync.mark_failed(
        {"object": "Account", "error": {"Error": "SalesforceUnavailable", "Cause": "503 after 5 attempts"}}, deps
    )
    assert out["status"] == "failed" and out["error"]["Error"] == "SalesforceUnavailable"
    drive(deps, "Contact", emulator)
    assert_copy_equals_salesforce(deps, emulator, "Contact")
    copy = deps.copies.get("Account")
    assert copy is not None and copy.status == "failed"
    assert not deps.state.get_watermark("Account").full_copy_done


def test_given_invalid_input_when_a_step_runs_then_it_is_rejected_before_any_work(
    emulator: Any, deps: FullSyncDeps
) -> None:
    emulator.reset_counters()
    with pytest.raises(InvalidExecutionInput, match="Nope"):
        plan(deps, ["Account", "Nope"])
    with pytest.raises(InvalidExecutionInput, match="objects"):
        fullsync.run_step({"step": "plan", "objects": "Account"}, deps)
    with pytest.raises(InvalidExecutionInput, match="no planned full copy"):
        fullsync.run_step({"step": "load_page", "object": "Account"}, deps)
    with pytest.raises(InvalidExecutionInput, match="unknown full-sync step"):
        fullsync.run_step({"step": "explode", "object": "Account"}, deps)
    assert emulator.app.counter.by_family() == {}
    assert deps.copies.get("Account") is None
