"""Faults and bad input during incremental cycles, over the real emulator and the real local stack.

Each test injects one fault (Salesforce-side through the emulator's fault rules, DynamoDB-side
through a botocore hook or a crash in the write path), then shows the DynamoDB copy equal to what
the integration user sees once the engine has recovered: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any, Literal

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.config import Config
from sfsync.core.exceptions import ObjectUnavailable, StoreThrottled
from sfsync.inbound.cycle import CycleResult, CycleStores, run_object_cycle
from sfsync.store.copies import CopyStore
from sfsync.store.records import RecordStore

from tests.functional.test_lifecycle import (  # noqa: F401 - the fixtures are used by name
    Harness,
    assert_copy_matches,
    emulator_records,
    emulator_seed,
    harness_fixture,
    sf_now,
    stack_fixture,
)

pytestmark = pytest.mark.functional

BACKLOG = 260  # more than one 200-row page


class Killed(BaseException):
    """Stands in for the Lambda runtime killing the invocation (not an Exception: nothing catches it)."""


def seed_leads(h: Harness, n: int = BACKLOG) -> None:
    for i in range(n):
        h.emulator.org.create("Lead", {"LastName": f"Fault {i}", "Company": "Faulty"}, as_api=False)


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_kw: Any) -> Iterator[bytes]:
        yield self._data


WRITE_OPERATIONS = ("PutItem", "BatchWriteItem")  # conditional put / an exclusive writer's batched puts


def throttle_puts(client: Any, *, allow: int, times: int | None) -> dict[str, int]:
    """Let ``allow`` write calls (PutItem or BatchWriteItem) through, then answer ``times`` (None:
    every) with throttling."""
    seen = {"puts": 0, "throttled": 0}

    def hook(request: Any, **_kw: Any) -> AWSResponse | None:
        seen["puts"] += 1
        if seen["puts"] <= allow or (times is not None and seen["throttled"] >= times):
            return None
        seen["throttled"] += 1
        body = json.dumps(
            {
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "The level of configured provisioned throughput for the table was exceeded.",
            }
        ).encode()
        headers = HTTPHeaders()
        headers["x-amzn-ErrorType"] = "ProvisionedThroughputExceededException"
        return AWSResponse(request.url, 400, headers, _Body(body))

    for operation in WRITE_OPERATIONS:
        client.meta.events.register_first(f"before-send.dynamodb.{operation}", hook)
    return seen


def store_with(h: Harness, client: Any) -> RecordStore:
    return RecordStore(
        client,
        json.loads(h.env["SFSYNC_RECORD_TABLES"]),
        errors_table=h.env["SFSYNC_ERRORS_TABLE"],
        sleep=lambda _s: None,
    )


_batched_ids = itertools.count(1)


def batched_cycle(h: Harness, obj: str, records: RecordStore | None = None, /, **env: str) -> CycleResult:
    """A cycle the way ObjectSyncFunction runs it: with the copy documents, so that with no full
    copy under way its pages are written batched (the exclusive writer)."""
    return run_object_cycle(
        obj,
        f"{obj}-b{next(_batched_ids)}",
        settings=h.settings(**env),
        sf=h.sf,
        store=CycleStores(h.state, records or h.records, CopyStore(h.ddb, h.env["SFSYNC_STATE_TABLE"])),
        now=h.clock,
        reason="manual",
        sleep=lambda _s: None,
    )


Writer = Literal["conditional", "batched"]
WRITERS: tuple[Writer, ...] = ("conditional", "batched")


def run_cycle(h: Harness, writer: Writer, obj: str, records: RecordStore | None = None, /, **env: str) -> CycleResult:
    """``conditional``: the harness's cycle (no copy documents: per-item conditional puts)."""
    if writer == "batched":
        return batched_cycle(h, obj, records, **env)
    return h.cycle(obj, records, **env) if records is not None else h.cycle(obj, **env)


def die_after(
    monkeypatch: pytest.MonkeyPatch, writer: Writer, rows: int, batches: int | None = None
) -> Callable[[], None]:
    """Kill the invocation once ``rows`` rows have been written in this cycle: in the middle of a
    page for the conditional writer (before put ``rows + 1``), at a batch boundary for the batched
    one (before BatchWriteItem ``batches + 1``; by default ``rows`` is a multiple of 25 and
    ``batches = rows / 25``).  Returns the undo."""
    calls = {"n": 0}
    if writer == "conditional":
        original_put = RecordStore._put

        def dying_put(self: RecordStore, table: str, item: dict[str, Any]) -> Any:
            calls["n"] += 1
            if calls["n"] == rows + 1:
                raise Killed
            return original_put(self, table, item)

        monkeypatch.setattr(RecordStore, "_put", dying_put)
        return lambda: monkeypatch.setattr(RecordStore, "_put", original_put)
    if batches is None:
        assert rows % 25 == 0
        batches = rows // 25
    original_batch = RecordStore._batch_put

    def dying_batch(self: RecordStore, table: str, items: list[dict[str, Any]]) -> bool:
        calls["n"] += 1
        if calls["n"] == batches + 1:
            raise Killed
        return original_batch(self, table, items)

    monkeypatch.setattr(RecordStore, "_batch_put", dying_batch)
    return lambda: monkeypatch.setattr(RecordStore, "_batch_put", original_batch)


def mark_full_copy_running(h: Harness, obj: str) -> None:
    """A full copy of ``obj`` under way, as its copy document says (what ``_sole_writer`` reads)."""
    h.ddb.put_item(
        TableName=h.env["SFSYNC_STATE_TABLE"],
        Item={"pk": {"S": f"OBJECT#{obj}"}, "sk": {"S": "FULLCOPY"}, "status": {"S": "running"}},
    )


def ddb_client(h: Harness, attempts: int) -> Any:
    return boto3.client(
        "dynamodb", region_name=h.stack.region, config=Config(retries={"mode": "standard", "max_attempts": attempts})
    )


def wrap_write_page(h: Harness, before: Callable[[int], None]) -> None:
    original = h.records.write_page
    calls = {"n": 0}

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        before(calls["n"])
        return original(*args, **kwargs)

    h.records.write_page = wrapped  # type: ignore[method-assign]


# -- Salesforce faults -----------------------------------------------------------------------------


def test_given_the_token_expires_mid_pagination_when_cycling_then_it_reauthenticates_and_completes(
    h: Harness,
) -> None:
    seed_leads(h)
    wrap_write_page(h, lambda n: h.emulator.expire_tokens() if n == 1 else None)
    h.step()
    before = h.sf.reauth_count
    result = h.cycle("Lead", SFSYNC_PAGE_SIZE="200")
    assert result.status == "complete", result.to_dict()
    assert h.sf.reauth_count == before + 1
    assert_copy_matches(h, "Lead")


def test_given_5xx_answers_when_cycling_then_the_adapter_retries_and_completes(h: Harness) -> None:
    seed_leads(h, 20)
    h.emulator.add_fault("http_500", family="query", count=2)
    h.emulator.add_fault("http_503", family="query", count=1)
    result = h.sync("Lead")["Lead"]
    assert result.counts["RecordsCreated"] > 20
    assert not h.emulator.app.faults.rules(), "every injected failure was met (and retried)"
    assert_copy_matches(h, "Lead")


def test_given_query_timeouts_when_cycling_then_the_window_is_split_and_completes(h: Harness) -> None:
    h.emulator.add_fault("query_timeout", family="query", count=2)
    result = h.sync("Account")["Account"]
    assert result.extra["QuerySplits"] == 2
    assert_copy_matches(h, "Account")


def test_given_request_limit_exceeded_when_cycling_then_it_stops_and_backs_off_the_org(h: Harness) -> None:
    h.emulator.add_fault("request_limit", family="query", count=1)
    h.step()
    result = h.cycle("Account")
    assert result.status == "backoff", result.to_dict()
    assert h.state.get_watermark("Account").value is None, "the watermark did not move"
    until = h.state.get_org_backoff()
    assert until is not None and until > sf_now(h)

    calls = h.emulator.api_calls()
    assert h.cycle("Contact").status == "backoff", "every object honours the org back-off"
    assert h.emulator.api_calls() == calls, "a backed-off cycle makes no Salesforce call"

    h.emulator.clock.advance((until - sf_now(h)).total_seconds() + 1)
    assert h.cycle("Account").status == "complete"
    assert_copy_matches(h, "Account")


# -- DynamoDB faults and crashes -------------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
def test_given_transient_dynamodb_throttling_when_cycling_then_botocore_retries_and_completes(
    h: Harness, writer: Writer
) -> None:
    client = ddb_client(h, 10)
    seen = throttle_puts(client, allow=3 if writer == "conditional" else 0, times=2)  # 5 Accounts: 1 batch
    h.step()
    result = run_cycle(h, writer, "Account", store_with(h, client))
    assert result.status == "complete", result.to_dict()
    assert seen["throttled"] == 2
    assert_copy_matches(h, "Account")


@pytest.mark.parametrize("writer", WRITERS)
def test_given_persistent_throttling_when_a_page_fails_then_it_is_not_acknowledged_and_the_next_cycle_resumes(
    h: Harness, writer: Writer
) -> None:
    seed_leads(h)
    client = ddb_client(h, 2)
    throttle_puts(client, allow=200 if writer == "conditional" else 200 // 25, times=None)
    h.step()
    with pytest.raises(StoreThrottled):
        run_cycle(h, writer, "Lead", store_with(h, client), SFSYNC_PAGE_SIZE="200")
    checkpoint = h.state.get_checkpoint("Lead")
    assert checkpoint is not None and checkpoint.records_done == 200, "only the first page was acknowledged"
    assert h.state.get_watermark("Lead").value is None

    result = run_cycle(h, writer, "Lead", SFSYNC_PAGE_SIZE="200")
    assert result.status == "complete", result.to_dict()
    total = len(h.items("Lead"))
    assert result.counts["RecordsRead"] == total - 200, "resumed after the acknowledged page"
    assert_copy_matches(h, "Lead")


@pytest.mark.parametrize(("writer", "written"), [("conditional", 29), ("batched", 50)])
def test_given_a_lambda_killed_mid_page_when_the_next_cycle_runs_then_nothing_is_lost_or_duplicated(
    h: Harness, monkeypatch: pytest.MonkeyPatch, writer: Writer, written: int
) -> None:
    seed_leads(h)
    undo = die_after(monkeypatch, writer, 200 + written)  # ``written`` rows into the second page
    h.step()
    with pytest.raises(Killed):
        run_cycle(h, writer, "Lead", SFSYNC_PAGE_SIZE="200")
    assert h.state.get_checkpoint("Lead").records_done == 200  # type: ignore[union-attr]
    assert len(h.items("Lead")) == 200 + written, "the rows written before the crash are stored"
    undo()

    result = run_cycle(h, writer, "Lead", SFSYNC_PAGE_SIZE="200")
    assert result.status == "complete"
    items = h.items("Lead")
    assert result.counts["RecordsSkipped"] >= written, "rows written before the crash are replayed as no-ops"
    assert result.counts["RecordsCreated"] == len(items) - 200 - written
    assert_copy_matches(h, "Lead")


def test_given_a_full_copy_under_way_when_a_cycle_is_killed_mid_page_then_it_wrote_conditionally_and_resumes(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_leads(h)
    mark_full_copy_running(h, "Lead")
    undo = die_after(monkeypatch, "conditional", 229)  # only the conditional per-item put can die here
    h.step()
    with pytest.raises(Killed):
        batched_cycle(h, "Lead", SFSYNC_PAGE_SIZE="200")
    assert h.state.get_checkpoint("Lead").records_done == 200  # type: ignore[union-attr]
    undo()

    result = batched_cycle(h, "Lead", SFSYNC_PAGE_SIZE="200")
    assert result.status == "complete"
    items = h.items("Lead")
    assert result.counts["RecordsSkipped"] >= 29
    assert result.counts["RecordsCreated"] == len(items) - 229
    assert_copy_matches(h, "Lead")


@pytest.mark.parametrize("writer", WRITERS)
def test_given_a_lambda_killed_during_a_bulk_read_when_the_next_cycle_runs_then_it_resumes_at_the_locator(
    h: Harness, monkeypatch: pytest.MonkeyPatch, writer: Writer
) -> None:
    from sfsync.inbound import cycle

    seed_leads(h)
    monkeypatch.setattr(cycle, "BULK_MAX_RECORDS", 30)
    # persisted: the REST page (200 rows, 8 batches) and the first Bulk set (30 rows, 2 batches);
    # killed 10 rows into the second set (conditional) or before its first batch (batched)
    undo = die_after(monkeypatch, writer, 240 if writer == "conditional" else 230, batches=10)
    env = {"SFSYNC_PAGE_SIZE": "200", "SFSYNC_BULK_THRESHOLD": "220"}
    h.step()
    with pytest.raises(Killed):
        run_cycle(h, writer, "Lead", **env)
    checkpoint = h.state.get_checkpoint("Lead")
    assert checkpoint is not None and checkpoint.bulk_job_id and checkpoint.bulk_locator
    assert checkpoint.records_done == 230
    undo()

    calls = h.emulator.api_calls()
    result = run_cycle(h, writer, "Lead", **env)
    assert result.status == "complete", result.to_dict()
    total = len(h.items("Lead"))
    assert result.counts["RecordsRead"] == total - 230, "resumed at the checkpointed locator"
    assert h.emulator.api_calls() - calls <= 6, "no new Bulk job"
    assert_copy_matches(h, "Lead")


def test_given_the_lambda_time_running_out_between_bulk_result_sets_then_the_cycle_is_partial_and_resumes_there(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #11 finding 10: nothing tested a time-out during a Bulk read (only REST pages and a kill)."""
    from sfsync.inbound import cycle

    seed_leads(h)
    monkeypatch.setattr(cycle, "BULK_MAX_RECORDS", 30)
    env = {"SFSYNC_PAGE_SIZE": "200", "SFSYNC_BULK_THRESHOLD": "220"}
    h.step()
    persisted: list[int] = []
    real_persist = cycle._persist

    def counting_persist(run: Any, *args: Any, **kwargs: Any) -> None:
        real_persist(run, *args, **kwargs)
        persisted.append(run.done)

    monkeypatch.setattr(cycle, "_persist", counting_persist)

    def time_left() -> int:
        # plenty of time for the REST page and the first Bulk set; then short
        return 600_000 if len(persisted) < 2 else cycle.STOP_MARGIN_MS - 1

    watermark_before = h.state.get_watermark("Lead").value
    first = run_object_cycle(
        "Lead",
        "Lead-timeout-1",
        settings=h.settings(**env),
        sf=h.sf,
        store=CycleStores(h.state, h.records),
        now=h.clock,
        reason="manual",
        time_left_ms=time_left,
        sleep=lambda _s: None,
    )
    assert first.status == "partial", first.to_dict()
    assert persisted == [200, 230], "stopped right after the first Bulk result set"
    checkpoint = h.state.get_checkpoint("Lead")
    assert checkpoint is not None and checkpoint.bulk_job_id and checkpoint.bulk_locator
    assert checkpoint.records_done == 230
    assert h.state.get_watermark("Lead").value == watermark_before, "a partial window never moves the watermark"
    assert h.state.lease_status("Lead").resume_pending

    monkeypatch.setattr(cycle, "_persist", real_persist)
    second = h.cycle("Lead", **env)
    assert second.status == "complete", second.to_dict()
    assert second.counts["RecordsRead"] == len(h.items("Lead")) - 230
    assert_copy_matches(h, "Lead")


def test_given_a_concurrent_invocation_when_the_lease_is_held_then_the_second_is_a_clean_no_op(h: Harness) -> None:
    h.step()
    h.state.acquire_lease("Account", "the-other-cycle", now=sf_now(h), ttl_seconds=900)
    calls = h.emulator.api_calls()
    result = h.cycle("Account")
    assert (result.status, result.held_by) == ("lease-held", "the-other-cycle")
    assert h.emulator.api_calls() == calls
    assert h.items("Account") == {}

    h.emulator.clock.advance(901)  # the holder died: its lease expires
    assert h.cycle("Account").status == "complete"
    assert_copy_matches(h, "Account")


# -- bad input -------------------------------------------------------------------------------------


def test_given_an_object_missing_from_the_org_when_cycling_then_a_clear_error_and_others_keep_syncing(
    h: Harness,
) -> None:
    env = {"SFSYNC_CUSTOM_OBJECTS": "Project__c,Milestone__c,Nope__c"}
    h.step()
    with pytest.raises(ObjectUnavailable, match="Nope__c"):
        h.cycle("Nope__c", **env)
    assert h.state.recent_cycles("Nope__c")[0].status == "failed"
    assert h.state.lease_status("Nope__c").holder is None
    assert any("Nope__c" in e["reason"] for e in h.errors("Nope__c"))
    assert h.cycle("Project__c", **env).status == "complete"
    assert_copy_matches(h, "Project__c")


def test_given_an_object_hidden_from_the_integration_user_when_cycling_then_a_clear_error(h: Harness) -> None:
    h.emulator.org.hide_object("Milestone__c")
    h.step()
    with pytest.raises(ObjectUnavailable, match="Milestone__c"):
        h.cycle("Milestone__c")
    assert h.errors("Milestone__c")
    assert h.cycle("Project__c").status == "complete"


def test_given_an_unreadable_include_field_when_cycling_then_a_warning_names_it_and_the_rest_syncs(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.options = {"Contact": {"include_fields": ["LastName", "Email", "Secret__c"]}}
    result = h.sync("Contact")["Contact"]
    assert result.counts["RecordsCreated"] > 0
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert any("Secret__c" in getattr(r, "fields", []) for r in warnings), [r.__dict__ for r in warnings]
    assert_copy_matches(h, "Contact", fields=["LastName", "Email"])


def test_given_a_record_that_cannot_be_stored_when_cycling_then_an_error_row_and_the_watermark_advances(
    h: Harness,
) -> None:
    bad = h.emulator.org.create("Lead", {"LastName": "Huge", "Company": "Y", "AnnualRevenue": 1e130}, as_api=False)
    result = h.sync("Lead")["Lead"]
    assert result.counts["RecordsFailed"] == 1
    assert result.watermark is not None and h.state.get_watermark("Lead").value == result.watermark
    (error,) = [e for e in h.errors("Lead") if e["record_id"] == bad]
    assert "AnnualRevenue" in error["reason"]
    assert_copy_matches(h, "Lead", unstorable=[bad])
    assert dt.datetime.fromisoformat(error["created_at"].replace("Z", "+00:00")) <= sf_now(h)
