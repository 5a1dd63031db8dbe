"""Bulk API 1.0 jobs and batches of the emulator (``BulkV1Service``) over a real Org: the batch
state machine on the virtual clock, PK chunking, result sets, ingest, limits and error mapping."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sfsync_emulator.asyncapi import async_shape
from sfsync_emulator.bulk import BulkService, JobTiming
from sfsync_emulator.bulk1 import BulkV1Service, PkChunking, ResultData, ResultList, parse_pk_chunking
from sfsync_emulator.catalogue import default_schema
from sfsync_emulator.clock import Clock
from sfsync_emulator.errors import ApiError, invalid_session, request_limit_exceeded
from sfsync_emulator.soql import compile_query
from sfsync_emulator.store import Org

pytestmark = pytest.mark.unit

START_MS = 1_795_000_000_000
V = "59.0"


@pytest.fixture
def clock() -> Clock:
    return Clock(START_MS)


@pytest.fixture
def org(clock: Clock) -> Org:
    return Org(default_schema(), clock)


@pytest.fixture
def v2(org: Org) -> BulkService:
    return BulkService(org)


@pytest.fixture
def bulk(org: Org, v2: BulkService) -> BulkV1Service:
    return BulkV1Service(org, v2)


def seed_leads(org: Org, n: int) -> list[str]:
    return [org.create("Lead", {"LastName": f"L{i:04d}", "Company": "Co"}, as_api=False) for i in range(n)]


def job(bulk: BulkV1Service, operation: str = "query", obj: str = "Lead", content: str = "CSV", **kw: object) -> str:
    pk = kw.pop("pk", None)
    info = bulk.create_job(
        {"operation": operation, "object": obj, "contentType": content, **kw}, V, pk_chunking_header=pk
    )
    return str(info["id"])


def csv_result_ids(bulk: BulkV1Service, job_id: str, batch_id: str) -> list[str]:
    ids: list[str] = []
    result = bulk.batch_result(job_id, batch_id, V)
    assert isinstance(result, ResultList)
    for rid in result.ids:
        data = bulk.query_result(job_id, batch_id, rid, V, gzip=False)
        text = b"".join(data.body).decode()
        if text != "Records not found for this query":
            ids.extend(r["Id"] for r in csv.DictReader(io.StringIO(text)))
    return ids


# ------------------------------------------------------------------------------ PK chunking header


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("TRUE", PkChunking()),
        ("false", None),
        ("chunkSize=5000", PkChunking(5000)),
        ("chunkSize=50000; startRow=00Q5g0000000001", PkChunking(50000, "00Q5g0000000001EAA")),
        ("true;chunkSize=7", PkChunking(7)),
    ],
)
def test_given_pk_chunking_header_then_options(header: str | None, expected: PkChunking | None) -> None:
    assert parse_pk_chunking(header) == expected


@pytest.mark.parametrize("header", ["chunkSize=0", "chunkSize=250001", "chunkSize=x", "startRow=nope", "parent=X", "a"])
def test_given_bad_pk_chunking_header_then_invalid_job(header: str) -> None:
    with pytest.raises(ApiError) as exc:
        parse_pk_chunking(header)
    assert (exc.value.status, exc.value.error_code) == (400, "InvalidJob")


# ------------------------------------------------------------------------------ SOQL Id ranges


@pytest.mark.parametrize(
    ("soql", "expected"),
    [
        ("SELECT Id FROM Lead", "SELECT Id FROM Lead WHERE Id >= 'A1' AND Id < 'B2'"),
        ("SELECT Id FROM Lead l", "SELECT Id FROM Lead l WHERE Id >= 'A1' AND Id < 'B2'"),
        (
            "SELECT Id FROM Lead WHERE LastName = 'x' OR Company = 'y'",
            "SELECT Id FROM Lead WHERE (LastName = 'x' OR Company = 'y') AND Id >= 'A1' AND Id < 'B2'",
        ),
        (
            "select Id from Lead where IsDeleted = false  ",
            "select Id from Lead where (IsDeleted = false) AND Id >= 'A1' AND Id < 'B2'  ",
        ),
    ],
)
def test_given_a_query_when_restricted_to_an_id_range_then_the_condition_keeps_its_precedence(
    org: Org, soql: str, expected: str
) -> None:
    compiled = compile_query(soql, org.schema, include_deleted=False, bulk=True)
    assert compiled.with_id_range("A1", "B2") == expected
    assert compiled.with_id_range(None, None) == soql
    assert compiled.with_id_range(None, "B2").endswith("Id < 'B2'" + soql[len(soql.rstrip()) :])
    with pytest.raises(ValueError):
        compiled.with_id_range("A1' OR Id != '", None)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 40, 1000])
def test_given_pk_chunking_then_chunks_partition_the_query_rows_whatever_the_chunk_size(
    org: Org, bulk: BulkV1Service, chunk_size: int
) -> None:
    ids = seed_leads(org, 40)
    for rid in ids[::5]:
        org.delete("Lead", rid, as_api=False)  # counted when chunking, not returned by query
    org.set_hidden("Lead", ids[1], True)
    expected = sorted(set(ids) - set(ids[::5]) - {ids[1]})
    job_id = job(bulk, pk=f"chunkSize={chunk_size}")
    original = bulk.add_batch(job_id, V, b"SELECT Id FROM Lead", "text/csv")
    batches = bulk.list_batches(job_id, V)
    assert batches[0]["id"] == original["id"] and batches[0]["state"] == "NotProcessed"
    chunks = batches[1:]
    assert len(chunks) == -(-40 // chunk_size)
    got = [rid for c in chunks for rid in csv_result_ids(bulk, job_id, c["id"])]
    assert sorted(got) == expected and len(got) == len(set(got))


def test_given_a_start_row_then_chunks_start_there_and_rows_below_are_left_out(org: Org, bulk: BulkV1Service) -> None:
    ids = sorted(seed_leads(org, 10))
    job_id = job(bulk, pk=f"chunkSize=3; startRow={ids[4]}")
    bulk.add_batch(job_id, V, b"SELECT Id FROM Lead", "text/csv")
    chunks = bulk.list_batches(job_id, V)[1:]
    assert len(chunks) == 2
    assert sorted(rid for c in chunks for rid in csv_result_ids(bulk, job_id, c["id"])) == ids[4:]


def test_given_changes_after_chunking_then_every_chunk_still_reads_the_chunking_instant(
    org: Org, bulk: BulkV1Service, v2: BulkService, clock: Clock
) -> None:
    ids = seed_leads(org, 9)
    v2.timing = JobTiming(10, 20)
    job_id = job(bulk, pk="chunkSize=4")
    bulk.add_batch(job_id, V, b"SELECT Id FROM Lead", "text/csv")
    clock.advance(10)  # the query batch starts: it is split, every chunk's snapshot taken now
    assert [b["state"] for b in bulk.list_batches(job_id, V)] == ["NotProcessed", "Queued", "Queued", "Queued"]
    org.delete("Lead", ids[0], as_api=False)
    added = seed_leads(org, 2)
    clock.advance(20)
    chunks = bulk.list_batches(job_id, V)[1:]
    assert {c["state"] for c in chunks} == {"Completed"}
    got = sorted(rid for c in chunks for rid in csv_result_ids(bulk, job_id, c["id"]))
    assert got == sorted(ids) and not set(added) & set(got)


# ------------------------------------------------------------------------------ state machine


def test_given_timing_then_batches_go_queued_in_progress_completed_and_job_counters_follow(
    org: Org, bulk: BulkV1Service, v2: BulkService, clock: Clock
) -> None:
    v2.timing = JobTiming(5, 15)
    job_id = job(bulk, "insert")
    batch = bulk.add_batch(job_id, V, b"LastName,Company\nA,Co\nB,\n", "text/csv")
    assert batch["state"] == "Queued"
    assert "A" not in _lead_names(org)
    info = bulk.get_job(job_id, V)
    assert (info["numberBatchesQueued"], info["numberRecordsProcessed"]) == (1, 0)
    clock.advance(5)  # processing starts: the rows are applied now
    info = bulk.get_job(job_id, V)
    assert (info["numberBatchesInProgress"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (1, 2, 1)
    clock.advance(10)
    info = bulk.get_job(job_id, V)
    assert (info["numberBatchesCompleted"], info["numberBatchesTotal"]) == (1, 1)
    assert bulk.get_batch(job_id, batch["id"], V)["totalProcessingTime"] == 10_000


def test_given_rows_then_they_are_applied_only_when_processing_starts(
    org: Org, bulk: BulkV1Service, v2: BulkService, clock: Clock
) -> None:
    v2.timing = JobTiming(30, 60)
    job_id = job(bulk, "insert", content="JSON")
    bulk.add_batch(job_id, V, b'[{"LastName": "Later", "Company": "Co"}]', "application/json")
    assert "Later" not in _lead_names(org)
    clock.advance(30)
    bulk.get_job(job_id, V)
    assert "Later" in _lead_names(org)


def _lead_names(org: Org) -> set[str]:
    compiled = compile_query("SELECT LastName FROM Lead", org.schema, include_deleted=False)
    cursor = org.open_cursor(compiled.sql, compiled.params)
    try:
        return {str(r[0]) for r in org.fetch_cursor(cursor.id, 0, max(cursor.total, 1))}
    finally:
        org.close_cursor(cursor.id)


def test_given_abort_then_queued_batches_are_not_processed_and_started_ones_finish(
    org: Org, bulk: BulkV1Service, v2: BulkService, clock: Clock
) -> None:
    v2.timing = JobTiming(5, 10)
    job_id = job(bulk, "insert")
    first = bulk.add_batch(job_id, V, b"LastName,Company\nFirst,Co\n", "text/csv")
    clock.advance(5)
    second = bulk.add_batch(job_id, V, b"LastName,Company\nSecond,Co\n", "text/csv")
    assert bulk.update_job(job_id, {"state": "Aborted"}, V)["state"] == "Aborted"
    clock.advance(10)
    states = {b["id"]: b["state"] for b in bulk.list_batches(job_id, V)}
    assert states == {first["id"]: "Completed", second["id"]: "NotProcessed"}
    assert "First" in _lead_names(org) and "Second" not in _lead_names(org)
    with pytest.raises(ApiError) as exc:
        bulk.update_job(job_id, {"state": "Aborted"}, V)
    assert exc.value.error_code == "InvalidJobState"


def test_given_close_twice_then_idempotent_and_closing_an_aborted_job_refused(bulk: BulkV1Service) -> None:
    job_id = job(bulk)
    assert bulk.update_job(job_id, {"state": "Closed"}, V)["state"] == "Closed"
    assert bulk.update_job(job_id, {"state": "Closed"}, V)["state"] == "Closed"
    assert bulk.update_job(job_id, {"state": "Aborted"}, V)["state"] == "Aborted"
    for body in ({"state": "Closed"}, {"state": "Open"}, {"state": "Closed", "object": "Lead"}):
        with pytest.raises(ApiError) as exc:
            bulk.update_job(job_id, body, V)
        assert exc.value.error_code in {"InvalidJobState", "InvalidJob"}


# ------------------------------------------------------------------------------ results


def test_given_result_rows_then_result_sets_split_the_rows_in_order(org: Org, bulk: BulkV1Service) -> None:
    ids = seed_leads(org, 11)
    bulk.result_rows = 4
    job_id = job(bulk)
    batch = bulk.add_batch(job_id, V, b"SELECT Id FROM Lead ORDER BY Id", "text/csv")
    result = bulk.batch_result(job_id, batch["id"], V)
    assert isinstance(result, ResultList) and len(result.ids) == 3
    assert csv_result_ids(bulk, job_id, batch["id"]) == sorted(ids)
    with pytest.raises(ApiError) as exc:
        bulk.query_result(job_id, batch["id"], "752000000000000AAA", V, gzip=False)
    assert exc.value.error_code == "InvalidBatch"


def test_given_json_query_then_dates_and_datetimes_are_epoch_ms(org: Org, bulk: BulkV1Service) -> None:
    account = org.create("Account", {"Name": "Acme"}, as_api=False)
    org.create("Opportunity", {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2026-12-01",
                               "AccountId": account}, as_api=False)  # fmt: skip
    job_id = job(bulk, obj="Opportunity", content="JSON")
    batch = bulk.add_batch(
        job_id, V, b"SELECT Id, CloseDate, CreatedDate, Account.Name, Account.CreatedDate FROM Opportunity",
        "application/json",
    )  # fmt: skip
    result = bulk.batch_result(job_id, batch["id"], V)
    assert isinstance(result, ResultList)
    data = bulk.query_result(job_id, batch["id"], result.ids[0], V, gzip=False)
    [record] = json.loads(b"".join(data.body))
    assert record["CloseDate"] == 1_796_083_200_000  # 2026-12-01T00:00:00Z
    assert record["CreatedDate"] == START_MS
    assert record["Account"]["Name"] == "Acme" and record["Account"]["CreatedDate"] == START_MS


def test_given_a_failed_or_unfinished_batch_then_its_results_are_refused(
    bulk: BulkV1Service, v2: BulkService, clock: Clock
) -> None:
    job_id = job(bulk)
    failed = bulk.add_batch(job_id, V, b"SELECT Nope FROM Lead", "text/csv")
    info = bulk.get_batch(job_id, failed["id"], V)
    assert info["state"] == "Failed" and info["stateMessage"].startswith("InvalidBatch : Failed to process query: ")
    v2.timing = JobTiming(5, 10)
    queued = bulk.add_batch(job_id, V, b"SELECT Id FROM Lead", "text/csv")
    for batch_id in (failed["id"], queued["id"]):
        with pytest.raises(ApiError) as exc:
            bulk.batch_result(job_id, batch_id, V)
        assert exc.value.error_code == "InvalidBatch" and "Batch not completed" in exc.value.message


def test_given_json_ingest_then_per_row_results_with_status_codes(org: Org, bulk: BulkV1Service) -> None:
    [lead] = seed_leads(org, 1)
    job_id = job(bulk, "update", content="JSON")
    body = json.dumps([{"Id": lead, "Title": "T"}, {"Id": lead, "NumberOfEmployees": "many"}, {"Title": "no id"}])
    batch = bulk.add_batch(job_id, V, body.encode(), "application/json")
    result = bulk.batch_result(job_id, batch["id"], V)
    assert isinstance(result, ResultData)
    rows = json.loads(b"".join(result.body))
    assert rows[0] == {"id": lead, "success": True, "created": False, "errors": []}
    assert rows[1]["success"] is False and rows[1]["id"] == lead and rows[1]["errors"][0]["statusCode"]
    assert rows[2]["errors"][0]["statusCode"] == "MISSING_ARGUMENT" and rows[2]["id"] is None


def test_given_unknown_or_hidden_columns_then_the_batch_fails_and_nothing_is_written(
    org: Org, bulk: BulkV1Service
) -> None:
    org.hide_field("Lead", "Title")
    job_id = job(bulk, "insert")
    for data in (b"LastName,Company,Nope__c\nX,Co,1\n", b"LastName,Company,Title\nX,Co,T\n"):
        batch = bulk.add_batch(job_id, V, data, "text/csv")
        info = bulk.get_batch(job_id, batch["id"], V)
        assert info["state"] == "Failed" and "Field name not found" in info["stateMessage"]
    assert "X" not in _lead_names(org)


# ------------------------------------------------------------------------------ limits, lifespan, errors


def test_given_the_daily_batch_limit_then_exceeded_quota_until_a_day_passed(
    org: Org, v2: BulkService, clock: Clock
) -> None:
    bulk = BulkV1Service(org, v2, daily_batch_limit=2)
    job_id = job(bulk)
    for _ in range(2):
        bulk.add_batch(job_id, V, b"SELECT Id FROM Lead", "text/csv")
    with pytest.raises(ApiError) as exc:
        bulk.add_batch(job_id, V, b"SELECT Id FROM Lead", "text/csv")
    assert exc.value.error_code == "ExceededQuota" and len(bulk.list_batches(job_id, V)) == 2
    assert bulk.batches_used() == 2
    clock.advance(86_401)
    assert bulk.batches_used() == 0
    bulk.add_batch(job_id, V, b"SELECT Id FROM Lead", "text/csv")


def test_given_a_closed_job_a_week_old_then_it_is_gone_with_its_snapshots(
    org: Org, bulk: BulkV1Service, clock: Clock
) -> None:
    seed_leads(org, 2)
    job_id = job(bulk)
    bulk.add_batch(job_id, V, b"SELECT Id FROM Lead", "text/csv")
    bulk.update_job(job_id, {"state": "Closed"}, V)
    clock.advance(7 * 86_400 + 1)
    with pytest.raises(ApiError) as exc:
        bulk.get_job(job_id, V)
    assert exc.value.error_code == "InvalidJob"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"operation": "query", "object": "Lead"}, "contentType XML is not supported"),
        ({"operation": "query", "object": "Lead", "contentType": "ZIP_CSV"}, "not supported"),
        ({"operation": "query", "object": "Lead", "contentType": "TSV"}, "Invalid contentType"),
        ({"operation": "query", "object": "Lead", "contentType": "CSV", "concurrencyMode": 2}, "concurrencyMode"),
        ({"operation": "insert", "object": "Lead", "contentType": "CSV", "externalIdFieldName": "Id"}, "upsert"),
        ({"operation": "upsert", "object": "Lead", "contentType": "CSV"}, "External ID was blank"),
        ({"operation": "query", "object": "Lead", "contentType": "CSV", "state": "Closed"}, "Open"),
    ],
)
def test_given_bad_job_definitions_then_invalid_job_and_no_job(bulk: BulkV1Service, body: dict, message: str) -> None:
    with pytest.raises(ApiError) as exc:
        bulk.create_job(body, V)
    assert exc.value.error_code == "InvalidJob" and message in exc.value.message
    assert bulk._jobs == {}


def test_given_concurrency_mode_ordinals_then_named_modes(bulk: BulkV1Service) -> None:
    for value, name in ((0, "Parallel"), (1, "Serial"), ("Serial", "Serial"), (None, "Parallel")):
        info = bulk.create_job(
            {"operation": "query", "object": "Lead", "contentType": "JSON", "concurrencyMode": value}, V
        )
        assert info["concurrencyMode"] == name


def test_given_pipeline_errors_then_bulk1_codes_and_statuses() -> None:
    assert async_shape(invalid_session()) == (400, "InvalidSessionId", "Invalid session id")
    assert async_shape(request_limit_exceeded()) == (403, "ExceededQuota", "TotalRequests Limit exceeded.")
    assert async_shape(ApiError(400, "InvalidBatch", "x")) == (400, "InvalidBatch", "x")
    assert async_shape(ApiError(500, "UNKNOWN_EXCEPTION", "boom")) == (500, "Unknown", "boom")
    assert async_shape(ApiError(400, "JSON_PARSER_ERROR", "bad")) == (400, "ClientInputError", "JSON_PARSER_ERROR: bad")
