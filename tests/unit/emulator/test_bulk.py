"""Bulk API 2.0 jobs of the emulator (spec §5, §13.5, §13.6, §13.9) over a real Org."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator

import pytest
from sfsync_emulator.bulk import DELIMITERS, BulkResult, BulkService, JobTiming
from sfsync_emulator.catalogue import default_schema
from sfsync_emulator.clock import Clock
from sfsync_emulator.errors import ApiError, DmlError
from sfsync_emulator.schema import format_csv_datetime
from sfsync_emulator.store import Org

pytestmark = pytest.mark.unit

START_MS = 1_795_000_000_000  # 2026-11-18T...Z
V = "59.0"


# ------------------------------------------------------------------------------------ helpers


@pytest.fixture
def clock() -> Clock:
    return Clock(START_MS)


@pytest.fixture
def org(clock: Clock) -> Org:
    return Org(default_schema(), clock)


@pytest.fixture
def bulk(org: Org) -> BulkService:
    return BulkService(org)


def seed_leads(org: Org, n: int, **extra: object) -> list[str]:
    return [
        org.create("Lead", {"LastName": f"Last{i:05d}", "Company": f"Co {i}", **extra}, as_api=False) for i in range(n)
    ]


def body_bytes(result: BulkResult) -> bytes:
    return b"".join(result.body)


def parse(result: BulkResult, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(body_bytes(result).decode("utf-8"), newline=""), delimiter=delimiter))


def query_job(bulk: BulkService, soql: str, **body: object) -> str:
    info = bulk.create_query_job({"operation": "query", "query": soql, **body}, V)
    return str(info["id"])


def all_sets(bulk: BulkService, job_id: str, max_records: int | None) -> list[tuple[str, int, list[list[str]]]]:
    """Every result set of a job: (Sforce-Locator, Sforce-NumberOfRecords, parsed rows)."""
    out = []
    locator: str | None = None
    for _ in range(1000):  # a broken final locator must fail the test, not hang it
        result = bulk.query_results(job_id, V, locator=locator, max_records=max_records, gzip=False)
        rows = parse(result)
        out.append((result.headers["Sforce-Locator"], int(result.headers["Sforce-NumberOfRecords"]), rows))
        if result.headers["Sforce-Locator"] == "null":
            return out
        locator = result.headers["Sforce-Locator"]
    raise AssertionError("no final Sforce-Locator: null")


def ingest_job(bulk: BulkService, operation: str, csv_text: str, **body: object) -> str:
    info = bulk.create_ingest_job({"object": "Lead", "operation": operation, "contentType": "CSV", **body}, V)
    job_id = str(info["id"])
    bulk.upload_ingest_data(job_id, csv_text.encode("utf-8"), "text/csv")
    bulk.patch_ingest_job(job_id, {"state": "UploadComplete"}, V)
    return job_id


def ingest_rows(bulk: BulkService, job_id: str, kind: str) -> list[dict[str, str]]:
    result = bulk.ingest_results(job_id, kind, V)  # type: ignore[arg-type]
    return list(csv.DictReader(io.StringIO(body_bytes(result).decode("utf-8"), newline="")))


def lead_row(org: Org, lead_id: str, fields: str) -> list[str]:
    bulk = BulkService(org)
    job = query_job(bulk, f"SELECT {fields} FROM Lead WHERE Id = '{lead_id}'")
    bulk.get_query_job(job, V)
    rows = parse(bulk.query_results(job, V, locator=None, max_records=None, gzip=False))
    matches = [r for r in rows[1:] if r[0] == lead_id]
    assert len(matches) == 1, rows
    return matches[0]


# ------------------------------------------------------------------------------------ query lifecycle


def test_given_default_timing_when_job_is_created_then_it_is_upload_complete_and_complete_at_first_poll(
    bulk: BulkService, org: Org
) -> None:
    seed_leads(org, 3)
    created = bulk.create_query_job({"operation": "query", "query": "SELECT Id, LastName FROM Lead"}, V)
    assert created["state"] == "UploadComplete"
    assert created["id"].startswith("750") and len(created["id"]) == 18
    assert created["jobType"] == "V2Query" and created["apiVersion"] == 59.0 and created["object"] == "Lead"
    assert created["createdById"] == org.integration_user_id
    assert (created["columnDelimiter"], created["lineEnding"], created["contentType"]) == ("COMMA", "LF", "CSV")

    polled = bulk.get_query_job(created["id"], V)

    assert polled["state"] == "JobComplete"
    assert polled["numberRecordsProcessed"] == 3
    assert polled["createdDate"].endswith("+0000") and "errorMessage" not in polled


def test_given_job_timing_when_clock_advances_then_state_moves_through_in_progress_to_complete(
    org: Org, clock: Clock
) -> None:
    bulk = BulkService(org, job_timing=JobTiming(in_progress_after_s=2, complete_after_s=5))
    seed_leads(org, 2)
    job = query_job(bulk, "SELECT Id FROM Lead")

    assert bulk.get_query_job(job, V)["state"] == "UploadComplete"
    with pytest.raises(ApiError) as early:
        bulk.query_results(job, V, locator=None, max_records=None, gzip=False)
    assert early.value.status == 412 and early.value.error_code == "JOB_NOT_COMPLETE"
    assert early.value.message.endswith("Current status: UPLOAD_COMPLETE")

    clock.advance(2)
    assert bulk.get_query_job(job, V)["state"] == "InProgress"
    with pytest.raises(ApiError) as running:
        bulk.query_results(job, V, locator=None, max_records=None, gzip=False)
    assert running.value.message == (
        "can only download query results of successfully completed bulk job with status: JOB_COMPLETE. "
        "Current status: IN_PROGRESS"
    )

    clock.advance(3)
    info = bulk.get_query_job(job, V)
    assert info["state"] == "JobComplete" and info["totalProcessingTime"] == 3000
    assert len(parse(bulk.query_results(job, V, locator=None, max_records=None, gzip=False))) == 3


def test_given_a_job_in_progress_when_rows_change_then_results_reflect_the_snapshot_at_start(
    org: Org, clock: Clock
) -> None:
    bulk = BulkService(org, job_timing=JobTiming(in_progress_after_s=1, complete_after_s=10))
    seed_leads(org, 2)
    job = query_job(bulk, "SELECT Id FROM Lead")
    seed_leads(org, 1)  # before processing starts: included
    clock.advance(1)
    assert bulk.get_query_job(job, V)["state"] == "InProgress"
    seed_leads(org, 4)  # after the snapshot: excluded
    clock.advance(9)

    rows = parse(bulk.query_results(job, V, locator=None, max_records=None, gzip=False))

    assert len(rows) - 1 == 3
    assert bulk.get_query_job(job, V)["numberRecordsProcessed"] == 3


def test_given_unknown_job_when_read_then_404_not_found(bulk: BulkService) -> None:
    for call in (
        lambda: bulk.get_query_job("750000000000000AAA", V),
        lambda: bulk.query_results("750000000000000AAA", V, locator=None, max_records=None, gzip=False),
        lambda: bulk.get_ingest_job("750000000000000AAA", V),
    ):
        with pytest.raises(ApiError) as err:
            call()
        assert err.value.status == 404 and err.value.error_code == "NOT_FOUND"


def test_given_job_of_another_api_version_when_results_requested_then_409(bulk: BulkService, org: Org) -> None:
    seed_leads(org, 1)
    job = query_job(bulk, "SELECT Id FROM Lead")
    bulk.get_query_job(job, V)

    with pytest.raises(ApiError) as err:
        bulk.query_results(job, "60.0", locator=None, max_records=None, gzip=False)

    assert err.value.status == 409
    assert bulk.query_results(job, V, locator=None, max_records=None, gzip=False).headers["Sforce-NumberOfRecords"]


def test_given_running_job_when_aborted_then_state_is_aborted_and_results_refused(org: Org, clock: Clock) -> None:
    bulk = BulkService(org, job_timing=JobTiming(in_progress_after_s=0, complete_after_s=5))
    job = query_job(bulk, "SELECT Id FROM Lead")

    info = bulk.abort_query_job(job, {"state": "Aborted"}, V)
    clock.advance(10)

    assert info["state"] == "Aborted"
    assert bulk.get_query_job(job, V)["state"] == "Aborted"
    with pytest.raises(ApiError) as err:
        bulk.query_results(job, V, locator=None, max_records=None, gzip=False)
    assert err.value.status == 412 and err.value.message.endswith("Current status: ABORTED")
    with pytest.raises(ApiError) as again:
        bulk.abort_query_job(job, {"state": "Aborted"}, V)
    assert again.value.status == 400
    with pytest.raises(ApiError) as bad_state:
        bulk.abort_query_job(job, {"state": "JobComplete"}, V)
    assert bad_state.value.status == 400


def test_given_jobs_when_listed_and_one_deleted_then_list_and_lookups_follow(bulk: BulkService) -> None:
    first = query_job(bulk, "SELECT Id FROM Lead")
    second = query_job(bulk, "SELECT Id FROM Contact", operation="queryAll")

    listed = bulk.list_query_jobs(V)
    assert listed["done"] is True and listed["nextRecordsUrl"] is None
    assert {r["id"]: r["operation"] for r in listed["records"]} == {first: "query", second: "queryAll"}

    bulk.delete_query_job(first, V)

    assert [r["id"] for r in bulk.list_query_jobs(V)["records"]] == [second]
    with pytest.raises(ApiError) as err:
        bulk.get_query_job(first, V)
    assert err.value.status == 404


def test_given_job_in_progress_when_deleted_then_400(org: Org) -> None:
    bulk = BulkService(org, job_timing=JobTiming(in_progress_after_s=0, complete_after_s=5))
    job = query_job(bulk, "SELECT Id FROM Lead")
    with pytest.raises(ApiError) as err:
        bulk.delete_query_job(job, V)
    assert err.value.status == 400


def test_given_terminal_job_older_than_seven_days_when_read_then_it_is_gone(bulk: BulkService, clock: Clock) -> None:
    job = query_job(bulk, "SELECT Id FROM Lead")
    bulk.get_query_job(job, V)
    clock.advance(7 * 24 * 3600 + 1)
    with pytest.raises(ApiError) as err:
        bulk.get_query_job(job, V)
    assert err.value.status == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"operation": "select", "query": "SELECT Id FROM Lead"}, "operation"),
        ({"operation": "query"}, "query is required"),
        ({"operation": "query", "query": "SELECT Id FROM Lead", "columnDelimiter": "COLON"}, "columnDelimiter"),
        ({"operation": "query", "query": "SELECT Id FROM Lead", "lineEnding": "CR"}, "lineEnding"),
        ({"operation": "query", "query": "SELECT Id FROM Lead", "contentType": "JSON"}, "contentType"),
        ({"operation": "query", "query": "SELECT Id FROM Lead", "bogus": 1}, 'Unrecognized field "bogus"'),
    ],
)
def test_given_bad_job_definition_when_created_then_400(
    bulk: BulkService, body: dict[str, object], message: str
) -> None:
    with pytest.raises(ApiError) as err:
        bulk.create_query_job(body, V)
    assert err.value.status == 400 and message in err.value.message
    assert bulk.list_query_jobs(V)["records"] == []


def test_given_api_version_before_bulk_query_when_created_then_404(bulk: BulkService) -> None:
    with pytest.raises(ApiError) as err:
        bulk.create_query_job({"operation": "query", "query": "SELECT Id FROM Lead"}, "46.0")
    assert err.value.status == 404


def test_given_compound_field_when_job_created_then_rejected_with_salesforce_message(bulk: BulkService) -> None:
    with pytest.raises(ApiError) as err:
        bulk.create_query_job({"operation": "query", "query": "SELECT Id, Address FROM Lead"}, V)
    assert err.value.status == 400
    assert "Selecting compound data not supported in Bulk Query" in err.value.message


def test_given_unknown_field_when_job_created_then_400_from_the_compiler(bulk: BulkService) -> None:
    with pytest.raises(ApiError) as err:
        bulk.create_query_job({"operation": "query", "query": "SELECT Id, Nope__c FROM Lead"}, V)
    assert err.value.status == 400 and err.value.error_code == "INVALID_FIELD"


def test_given_failure_injected_when_next_jobs_run_then_they_fail_with_message_and_later_ones_succeed(
    bulk: BulkService, org: Org
) -> None:
    seed_leads(org, 1)
    bulk.fail_next_jobs(2, "InternalServerError : retry later")

    failed = [query_job(bulk, "SELECT Id FROM Lead") for _ in range(2)]
    ok = query_job(bulk, "SELECT Id FROM Lead")

    for job in failed:
        info = bulk.get_query_job(job, V)
        assert info["state"] == "Failed" and info["errorMessage"] == "InternalServerError : retry later"
        with pytest.raises(ApiError) as err:
            bulk.query_results(job, V, locator=None, max_records=None, gzip=False)
        assert err.value.message.endswith("Current status: FAILED")
    assert bulk.get_query_job(ok, V)["state"] == "JobComplete"


def test_given_deleted_rows_when_query_and_query_all_then_only_query_all_returns_them(
    bulk: BulkService, org: Org
) -> None:
    ids = seed_leads(org, 3)
    org.delete("Lead", ids[0])

    live = query_job(bulk, "SELECT Id, IsDeleted FROM Lead")
    everything = query_job(bulk, "SELECT Id, IsDeleted FROM Lead", operation="queryAll")
    bulk.get_query_job(live, V)
    bulk.get_query_job(everything, V)

    live_rows = parse(bulk.query_results(live, V, locator=None, max_records=None, gzip=False))[1:]
    all_rows = parse(bulk.query_results(everything, V, locator=None, max_records=None, gzip=False))[1:]
    assert sorted(r[0] for r in live_rows) == sorted(ids[1:])
    assert sorted(all_rows) == sorted([[ids[0], "true"], [ids[1], "false"], [ids[2], "false"]])


# ------------------------------------------------------------------------------------ results


def test_given_23_rows_when_paged_by_5_then_every_row_once_and_final_locator_null(bulk: BulkService, org: Org) -> None:
    ids = seed_leads(org, 23)
    job = query_job(bulk, "SELECT Id, LastName FROM Lead")
    bulk.get_query_job(job, V)

    sets = all_sets(bulk, job, 5)

    assert [n for _loc, n, _rows in sets] == [5, 5, 5, 5, 3]
    assert sets[-1][0] == "null" and all(loc != "null" for loc, _n, _r in sets[:-1])
    assert all(rows[0] == ["Id", "LastName"] for _l, _n, rows in sets)
    seen = [r[0] for _l, _n, rows in sets for r in rows[1:]]
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))


def test_given_a_locator_when_fetched_twice_then_same_rows(bulk: BulkService, org: Org) -> None:
    seed_leads(org, 12)
    job = query_job(bulk, "SELECT Id FROM Lead")
    bulk.get_query_job(job, V)
    locator = bulk.query_results(job, V, locator=None, max_records=4, gzip=False).headers["Sforce-Locator"]

    first = body_bytes(bulk.query_results(job, V, locator=locator, max_records=4, gzip=False))
    second = body_bytes(bulk.query_results(job, V, locator=locator, max_records=4, gzip=False))

    assert first == second and first.count(b"\n") == 5


def test_given_no_max_records_when_fetched_then_server_default_caps_sets(org: Org) -> None:
    bulk = BulkService(org, default_max_records=4)
    seed_leads(org, 9)
    job = query_job(bulk, "SELECT Id FROM Lead")
    bulk.get_query_job(job, V)

    assert [n for _l, n, _r in all_sets(bulk, job, None)] == [4, 4, 1]


def test_given_empty_result_when_fetched_then_header_only_and_zero_records(bulk: BulkService) -> None:
    job = query_job(bulk, "SELECT Id, LastName FROM Lead")
    bulk.get_query_job(job, V)
    result = bulk.query_results(job, V, locator=None, max_records=None, gzip=False)
    assert result.headers["Sforce-NumberOfRecords"] == "0" and result.headers["Sforce-Locator"] == "null"
    assert body_bytes(result) == b'"Id","LastName"\n'


@pytest.mark.parametrize("locator", ["garbage!", "MTAwMDA", "LTE"])
def test_given_foreign_locator_when_fetched_then_400(bulk: BulkService, org: Org, locator: str) -> None:
    seed_leads(org, 3)
    job = query_job(bulk, "SELECT Id FROM Lead")
    bulk.get_query_job(job, V)
    with pytest.raises(ApiError) as err:
        bulk.query_results(job, V, locator=locator, max_records=None, gzip=False)
    assert err.value.status == 400


def test_given_non_positive_max_records_when_fetched_then_400(bulk: BulkService) -> None:
    job = query_job(bulk, "SELECT Id FROM Lead")
    bulk.get_query_job(job, V)
    with pytest.raises(ApiError) as err:
        bulk.query_results(job, V, locator=None, max_records=0, gzip=False)
    assert err.value.status == 400


@pytest.mark.parametrize("delimiter", sorted(DELIMITERS))
@pytest.mark.parametrize("line_ending", ["LF", "CRLF"])
def test_given_delimiter_and_line_ending_when_results_fetched_then_csv_uses_them(
    bulk: BulkService, org: Org, delimiter: str, line_ending: str
) -> None:
    lead = org.create("Lead", {"LastName": "Pipe|Semi;Tab\tHat^Back`Comma,", "Company": "Acme"}, as_api=False)
    job = query_job(bulk, "SELECT Id, LastName, Company FROM Lead", columnDelimiter=delimiter, lineEnding=line_ending)
    info = bulk.get_query_job(job, V)
    assert (info["columnDelimiter"], info["lineEnding"]) == (delimiter, line_ending)
    char, eol = DELIMITERS[delimiter], "\r\n" if line_ending == "CRLF" else "\n"

    raw = body_bytes(bulk.query_results(job, V, locator=None, max_records=None, gzip=False)).decode()

    assert raw.startswith(f'"Id"{char}"LastName"{char}"Company"{eol}') and raw.endswith(f'"Acme"{eol}')
    assert raw.count(eol) == 2
    rows = list(csv.reader(io.StringIO(raw, newline=""), delimiter=char))
    assert rows[1] == [lead, "Pipe|Semi;Tab\tHat^Back`Comma,", "Acme"]


def test_given_nulls_quotes_newlines_and_nul_when_rendered_then_they_round_trip(bulk: BulkService, org: Org) -> None:
    tricky = 'He said "hi",\nthen\r\nleft'
    lead = org.create("Lead", {"LastName": 'O\'Neil "Q"', "Company": "A\x00B", "Description": tricky}, as_api=False)
    job = query_job(bulk, "SELECT Id, LastName, Company, Description, Email, NumberOfEmployees FROM Lead")
    bulk.get_query_job(job, V)

    raw = body_bytes(bulk.query_results(job, V, locator=None, max_records=None, gzip=False))

    assert b"\x00" not in raw
    assert b'"O\'Neil ""Q"""' in raw
    rows = list(csv.reader(io.StringIO(raw.decode(), newline="")))
    assert rows[1] == [lead, 'O\'Neil "Q"', "AB", tricky, "", ""]


def test_given_datetime_and_boolean_fields_when_rendered_then_bulk_formats(
    bulk: BulkService, org: Org, clock: Clock
) -> None:
    lead = seed_leads(org, 1)[0]
    job = query_job(bulk, "SELECT Id, CreatedDate, DoNotCall FROM Lead")
    bulk.get_query_job(job, V)
    rows = parse(bulk.query_results(job, V, locator=None, max_records=None, gzip=False))
    assert rows[1] == [lead, format_csv_datetime(START_MS), "false"]
    assert rows[1][1].endswith(".000Z")


def test_given_gzip_requested_when_results_fetched_then_body_decodes_to_the_plain_csv(
    bulk: BulkService, org: Org
) -> None:
    seed_leads(org, 50)
    job = query_job(bulk, "SELECT Id, LastName, Company FROM Lead")
    bulk.get_query_job(job, V)

    plain = bulk.query_results(job, V, locator=None, max_records=20, gzip=False)
    zipped = bulk.query_results(job, V, locator=None, max_records=20, gzip=True)

    assert zipped.headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain.headers
    assert zipped.headers["Sforce-Locator"] == plain.headers["Sforce-Locator"]
    assert gzip.decompress(body_bytes(zipped)) == body_bytes(plain)
    assert plain.headers["Content-Type"] == "text/csv; charset=UTF-8"


def test_given_large_result_when_fetched_then_body_is_streamed_in_several_chunks(bulk: BulkService, org: Org) -> None:
    seed_leads(org, 1500, Description="x" * 1000)
    job = query_job(bulk, "SELECT Id, Description FROM Lead")
    bulk.get_query_job(job, V)

    result = bulk.query_results(job, V, locator=None, max_records=None, gzip=False)

    assert isinstance(result.body, Iterator)
    chunks = list(result.body)
    assert len(chunks) >= 2 and max(len(c) for c in chunks) < 1_200_000
    assert b"".join(chunks).count(b"\n") == 1501


# ------------------------------------------------------------------------------------ ingest


def test_given_insert_csv_when_job_closed_then_rows_created_and_failures_reported(bulk: BulkService, org: Org) -> None:
    created = bulk.create_ingest_job({"object": "Lead", "operation": "insert", "contentType": "CSV"}, V)
    assert created["state"] == "Open" and created["jobType"] == "V2Ingest"
    assert created["contentUrl"] == f"services/data/v{V}/jobs/ingest/{created['id']}/batches"
    job = created["id"]
    bulk.upload_ingest_data(job, b'LastName,Company,Email\nSmith,Acme,s@x.io\n"Doe, ""J""",,d@x.io\n', "text/csv")
    assert bulk.patch_ingest_job(job, {"state": "UploadComplete"}, V)["state"] == "UploadComplete"

    info = bulk.get_ingest_job(job, V)

    assert info["state"] == "JobComplete"
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (2, 1)
    ok = ingest_rows(bulk, job, "successfulResults")
    assert len(ok) == 1 and ok[0]["sf__Created"] == "true" and ok[0]["LastName"] == "Smith"
    assert list(ok[0]) == ["sf__Id", "sf__Created", "LastName", "Company", "Email"]
    assert lead_row(org, ok[0]["sf__Id"], "Id, LastName, Company, Email") == [
        ok[0]["sf__Id"],
        "Smith",
        "Acme",
        "s@x.io",
    ]
    bad = ingest_rows(bulk, job, "failedResults")
    assert len(bad) == 1 and bad[0]["sf__Id"] == "" and bad[0]["LastName"] == 'Doe, "J"'
    assert bad[0]["sf__Error"].startswith("REQUIRED_FIELD_MISSING:") and bad[0]["sf__Error"].endswith("Company --")
    assert ingest_rows(bulk, job, "unprocessedrecords") == []


def test_given_update_csv_when_processed_then_empty_keeps_and_na_clears(bulk: BulkService, org: Org) -> None:
    lead = org.create("Lead", {"LastName": "Old", "Company": "Acme", "Email": "a@x.io", "Title": "CEO"}, as_api=False)
    gone = seed_leads(org, 1)[0]
    org.delete("Lead", gone)

    job = ingest_job(bulk, "update", f"Id,LastName,Email,Title\n{lead},New,,#N/A\n{gone},X,,\n")

    info = bulk.get_ingest_job(job, V)
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (2, 1)
    assert lead_row(org, lead, "Id, LastName, Email, Title") == [lead, "New", "a@x.io", ""]
    ok = ingest_rows(bulk, job, "successfulResults")
    assert [(r["sf__Id"], r["sf__Created"]) for r in ok] == [(lead, "false")]
    bad = ingest_rows(bulk, job, "failedResults")
    assert [r["sf__Id"] for r in bad] == [gone] and bad[0]["sf__Error"].endswith("--")


def test_given_upsert_csv_when_processed_then_existing_updated_and_new_created(bulk: BulkService, org: Org) -> None:
    existing = org.create("Lead", {"LastName": "Old", "Company": "Acme", "Sfsync_Key__c": "k1"}, as_api=False)

    job = ingest_job(
        bulk,
        "upsert",
        "Sfsync_Key__c;LastName;Company\r\nk1;Renamed;\r\nk2;Fresh;Beta\r\n",
        externalIdFieldName="Sfsync_Key__c",
        columnDelimiter="SEMICOLON",
        lineEnding="CRLF",
    )

    info = bulk.get_ingest_job(job, V)
    assert info["externalIdFieldName"] == "Sfsync_Key__c" and info["numberRecordsFailed"] == 0
    raw = body_bytes(bulk.ingest_results(job, "successfulResults", V)).decode()
    assert raw.startswith('"sf__Id";"sf__Created";"Sfsync_Key__c";"LastName";"Company"\r\n')
    rows = list(csv.reader(io.StringIO(raw, newline=""), delimiter=";"))[1:]
    created = {r[2]: (r[0], r[1]) for r in rows}
    assert created["k1"] == (existing, "false") and created["k2"][1] == "true"
    assert lead_row(org, existing, "Id, LastName, Company") == [existing, "Renamed", "Acme"]
    assert lead_row(org, created["k2"][0], "Id, Sfsync_Key__c, Company") == [created["k2"][0], "k2", "Beta"]


def test_given_delete_and_hard_delete_jobs_when_processed_then_query_all_sees_only_soft_deleted(
    bulk: BulkService, org: Org
) -> None:
    soft, hard, keep = seed_leads(org, 3)

    ingest_job(bulk, "delete", f"Id\n{soft}\n")
    ingest_job(bulk, "hardDelete", f"Id\n{hard}\n")
    for job in [r["id"] for r in bulk.list_ingest_jobs(V)["records"]]:
        assert bulk.get_ingest_job(job, V)["numberRecordsFailed"] == 0

    everything = query_job(bulk, "SELECT Id, IsDeleted FROM Lead", operation="queryAll")
    bulk.get_query_job(everything, V)
    rows = parse(bulk.query_results(everything, V, locator=None, max_records=None, gzip=False))[1:]
    assert sorted(rows) == sorted([[soft, "true"], [keep, "false"]])


def test_given_ingest_timing_when_clock_advances_then_states_follow_and_results_wait(org: Org, clock: Clock) -> None:
    bulk = BulkService(org, job_timing=JobTiming(in_progress_after_s=1, complete_after_s=3))
    job = ingest_job(bulk, "insert", "LastName,Company\nA,B\n")
    assert bulk.get_ingest_job(job, V)["state"] == "UploadComplete"
    with pytest.raises(ApiError) as err:
        bulk.ingest_results(job, "successfulResults", V)
    assert err.value.status == 412
    clock.advance(1)
    assert bulk.get_ingest_job(job, V)["state"] == "InProgress"
    clock.advance(2)
    info = bulk.get_ingest_job(job, V)
    assert info["state"] == "JobComplete" and info["numberRecordsProcessed"] == 1


def test_given_open_job_with_data_when_aborted_then_rows_unprocessed_and_not_applied(
    bulk: BulkService, org: Org
) -> None:
    info = bulk.create_ingest_job({"object": "Lead", "operation": "insert"}, V)
    bulk.upload_ingest_data(info["id"], b"LastName,Company\nA,B\nC,D\n", "text/csv; charset=UTF-8")

    aborted = bulk.patch_ingest_job(info["id"], {"state": "Aborted"}, V)

    assert aborted["state"] == "Aborted" and aborted["numberRecordsProcessed"] == 0
    assert ingest_rows(bulk, info["id"], "unprocessedRecords") == [  # simple-salesforce's spelling
        {"LastName": "A", "Company": "B"},
        {"LastName": "C", "Company": "D"},
    ]
    assert ingest_rows(bulk, info["id"], "successfulResults") == []
    with pytest.raises(ApiError) as unknown_kind:
        bulk.ingest_results(info["id"], "allResults", V)
    assert unknown_kind.value.status == 404
    job = query_job(bulk, "SELECT Id FROM Lead")
    bulk.get_query_job(job, V)
    assert (
        bulk.query_results(job, V, locator=None, max_records=None, gzip=False).headers["Sforce-NumberOfRecords"] == "0"
    )


@pytest.mark.parametrize(
    ("csv_text", "line_ending", "message"),
    [
        ("LastName,Nope__c\nA,B\n", "LF", "Field name not found : Nope__c"),
        ("LastName,Company\r\nA,B\r\n", "LF", "LineEnding is invalid on user data"),
        ("LastName,Company\nA,B\n", "CRLF", "LineEnding is invalid on user data"),
    ],
)
def test_given_unusable_upload_when_closed_then_job_fails_with_message(
    bulk: BulkService, csv_text: str, line_ending: str, message: str
) -> None:
    job = ingest_job(bulk, "insert", csv_text, lineEnding=line_ending)
    info = bulk.get_ingest_job(job, V)
    assert info["state"] == "Failed" and message in info["errorMessage"]


def test_given_ingest_job_misuse_when_called_then_request_errors(bulk: BulkService) -> None:
    job = bulk.create_ingest_job({"object": "Lead", "operation": "insert"}, V)["id"]
    with pytest.raises(ApiError) as wrong_type:
        bulk.upload_ingest_data(job, b"LastName\nA\n", "application/json")
    assert wrong_type.value.status == 400
    bulk.upload_ingest_data(job, b"LastName,Company\nA,B\n", "text/csv")
    with pytest.raises(ApiError) as twice:
        bulk.upload_ingest_data(job, b"LastName,Company\nA,B\n", "text/csv")
    assert twice.value.status == 400
    with pytest.raises(ApiError) as open_delete:
        bulk.delete_ingest_job(job, V)
    assert open_delete.value.status == 400
    bulk.patch_ingest_job(job, {"state": "UploadComplete"}, V)
    with pytest.raises(ApiError) as closed:
        bulk.patch_ingest_job(job, {"state": "UploadComplete"}, V)
    assert closed.value.status == 400
    bulk.delete_ingest_job(job, V)
    with pytest.raises(ApiError) as gone:
        bulk.get_ingest_job(job, V)
    assert gone.value.status == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"object": "Nope__c", "operation": "insert"}, "Unable to find object"),
        ({"object": "Lead", "operation": "merge"}, "operation"),
        ({"object": "Lead", "operation": "upsert"}, "External ID was blank"),
        ({"object": "Lead", "operation": "upsert", "externalIdFieldName": "Email"}, "does not match an External ID"),
    ],
)
def test_given_bad_ingest_definition_when_created_then_400(
    bulk: BulkService, body: dict[str, object], message: str
) -> None:
    with pytest.raises(ApiError) as err:
        bulk.create_ingest_job(body, V)
    assert err.value.status == 400 and message in err.value.message


def test_given_upsert_on_id_when_processed_then_blank_id_inserts_and_known_id_updates(
    bulk: BulkService, org: Org
) -> None:
    existing = seed_leads(org, 1)[0]

    job = ingest_job(
        bulk, "upsert", f"Id,LastName,Company\n{existing},Changed,\n,Brand,New Co\n", externalIdFieldName="Id"
    )

    ok = ingest_rows(bulk, job, "successfulResults")
    assert [(r["sf__Id"] == existing, r["sf__Created"]) for r in ok] == [(True, "false"), (False, "true")]
    assert lead_row(org, existing, "Id, LastName") == [existing, "Changed"]
    assert lead_row(org, ok[1]["sf__Id"], "Id, LastName, Company") == [ok[1]["sf__Id"], "Brand", "New Co"]


def test_given_lock_row_fault_when_ingest_processes_then_that_row_fails_and_others_succeed(
    bulk: BulkService, org: Org
) -> None:
    calls: list[str | None] = []

    def lock_first(obj: str, record_id: str | None) -> DmlError | None:
        calls.append(record_id)
        if len(calls) == 1:
            return DmlError("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", [])
        return None

    org.dml_fault = lock_first
    job = ingest_job(bulk, "insert", "LastName,Company\nA,B\nC,D\n")

    bad = ingest_rows(bulk, job, "failedResults")
    assert [(r["sf__Error"], r["LastName"]) for r in bad] == [
        ("UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--", "A")
    ]
    assert [r["LastName"] for r in ingest_rows(bulk, job, "successfulResults")] == ["C"]


def test_given_hidden_field_in_header_when_processed_then_job_fails(bulk: BulkService, org: Org) -> None:
    org.hide_field("Lead", "Title")
    job = ingest_job(bulk, "insert", "LastName,Company,Title\nA,B,CEO\n")
    info = bulk.get_ingest_job(job, V)
    assert info["state"] == "Failed" and info["errorMessage"] == "InvalidBatch : Field name not found : Title"


def test_given_results_older_than_a_rest_cursor_lifetime_when_requested_then_still_served(
    bulk: BulkService, org: Org, clock: Clock
) -> None:
    seed_leads(org, 3)
    job = query_job(bulk, "SELECT Id FROM Lead")
    bulk.get_query_job(job, V)
    clock.advance(org.config.cursor_ttl_s + 1)  # REST cursors are gone after 2 days; Bulk results live 7

    result = bulk.query_results(job, V, locator=None, max_records=None, gzip=False)

    assert result.headers["Sforce-NumberOfRecords"] == "3"


def test_given_snapshot_dropped_in_the_store_when_results_requested_then_400_before_streaming(
    bulk: BulkService, org: Org
) -> None:
    seed_leads(org, 1)
    job = query_job(bulk, "SELECT Id FROM Lead")
    bulk.get_query_job(job, V)
    cursor = bulk._query_jobs[job].cursor
    assert cursor is not None
    org.close_cursor(cursor.id)

    with pytest.raises(ApiError) as err:
        bulk.query_results(job, V, locator=None, max_records=None, gzip=False)

    assert err.value.status == 400 and err.value.error_code == "INVALID_QUERY_LOCATOR"


@pytest.mark.parametrize("level", [0, 1, 9])
def test_given_gzip_level_when_results_gzipped_then_valid_gzip_and_only_real_levels_shrink(
    org: Org, level: int
) -> None:
    seed_leads(org, 200, Description="same words again " * 10)
    service = BulkService(org, gzip_level=level)
    job = query_job(service, "SELECT Id, Description FROM Lead")
    service.get_query_job(job, V)

    plain = body_bytes(service.query_results(job, V, locator=None, max_records=None, gzip=False))
    zipped = body_bytes(service.query_results(job, V, locator=None, max_records=None, gzip=True))

    assert gzip.decompress(zipped) == plain
    assert (len(zipped) < len(plain) // 4) == (level > 0)


def test_given_bad_gzip_level_when_service_built_then_value_error(org: Org) -> None:
    with pytest.raises(ValueError, match="gzip_level"):
        BulkService(org, gzip_level=10)
