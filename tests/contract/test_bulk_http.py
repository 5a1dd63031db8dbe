"""§5 Bulk API 2.0 over HTTP: simple-salesforce's bulk2 helper and raw result paging."""

from __future__ import annotations

import csv
import gzip
import io

import pytest
from simple_salesforce.exceptions import SalesforceOperationError

pytestmark = pytest.mark.contract

N_MILESTONES = 120


@pytest.fixture(scope="module")
def milestones(emu):
    with emu.org.transaction():
        return [
            emu.org.create("Milestone__c", {"Name": f"BLK-{i:03d}", "Weight__c": 1.5}, as_api=False)
            for i in range(N_MILESTONES)
        ]


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_given_rows_when_bulk2_query_then_csv_with_every_row(emu, sf, milestones):
    chunks = list(sf.bulk2.Milestone__c.query("SELECT Id, Name FROM Milestone__c WHERE Name LIKE 'BLK-%'", wait=0))
    rows = [r for chunk in chunks for r in _rows(chunk)]
    assert sorted(r["Id"] for r in rows) == sorted(milestones)
    assert list(rows[0]) == ["Id", "Name"]


def test_given_max_records_when_results_paged_then_locators_and_counts(raw, milestones):
    job = raw.request(
        "POST",
        "/jobs/query",
        json={"operation": "query", "query": "SELECT Id FROM Milestone__c WHERE Name LIKE 'BLK-%'"},
    ).json()
    assert job["id"].startswith("750")
    assert raw.get(f"/jobs/query/{job['id']}").json()["state"] == "JobComplete"
    first = raw.get(f"/jobs/query/{job['id']}/results", params={"maxRecords": 100}, headers={"Accept": "text/csv"})
    assert first.status_code == 200
    assert first.headers["Content-Type"].startswith("text/csv")
    assert first.headers["Sforce-NumberOfRecords"] == "100"
    locator = first.headers["Sforce-Locator"]
    assert locator != "null"
    assert first.headers["Sforce-Limit-Info"].startswith("api-usage=")
    second = raw.get(f"/jobs/query/{job['id']}/results", params={"maxRecords": 100, "locator": locator})
    assert second.headers["Sforce-NumberOfRecords"] == str(N_MILESTONES - 100)
    assert second.headers["Sforce-Locator"] == "null"
    ids = [r["Id"] for r in _rows(first.text) + _rows(second.text)]
    assert len(ids) == len(set(ids)) == N_MILESTONES


def test_given_gzip_accepted_when_results_then_gzip_body(raw, milestones):
    job = raw.request(
        "POST",
        "/jobs/query/",
        json={"operation": "query", "query": "SELECT Id FROM Milestone__c WHERE Name LIKE 'BLK-%'"},
    ).json()
    raw.get(f"/jobs/query/{job['id']}")
    resp = raw.session.get(
        f"{raw.base}/jobs/query/{job['id']}/results",
        headers=raw.headers({"Accept-Encoding": "gzip"}),
        stream=True,
        timeout=30,
    )
    assert resp.headers["Content-Encoding"] == "gzip"
    body = gzip.decompress(resp.raw.read())
    assert len(_rows(body.decode())) == N_MILESTONES


def test_given_compound_field_when_bulk_query_then_rejected(sf, raw):
    resp = raw.request(
        "POST", "/jobs/query", json={"operation": "query", "query": "SELECT BillingAddress FROM Account"}
    )
    assert resp.status_code == 400
    assert resp.json()[0]["message"] == "Selecting compound data not supported in Bulk Query"


def test_given_bulk_job_failed_fault_when_bulk2_query_then_client_sees_failure(emu, sf):
    emu.add_fault("bulk_job_failed", family="bulk", method="POST", count=1, message="InvalidBatch : emulated")
    with pytest.raises(SalesforceOperationError, match="emulated"):
        list(sf.bulk2.Account.query("SELECT Id FROM Account", wait=0))


def test_given_slow_job_when_results_early_then_412_job_not_complete(emu, raw):
    raw.admin("bulk_timing", in_progress_after_s=30, complete_after_s=60)
    try:
        job = raw.request("POST", "/jobs/query", json={"operation": "query", "query": "SELECT Id FROM Account"}).json()
        early = raw.get(f"/jobs/query/{job['id']}/results")
        assert early.status_code == 412
        assert early.json()[0]["errorCode"] == "JOB_NOT_COMPLETE"
        emu.clock.advance(61)
        assert raw.get(f"/jobs/query/{job['id']}/results").status_code == 200
    finally:
        raw.admin("bulk_timing", in_progress_after_s=0, complete_after_s=0)


def test_given_records_when_bulk2_insert_then_ingest_job_completes_and_rows_exist(sf):
    results = sf.bulk2.Campaign.insert(records=[{"Name": f"BulkIns-{i}"} for i in range(3)], wait=0)
    assert results[0]["numberRecordsProcessed"] == 3
    assert results[0]["numberRecordsFailed"] == 0
    assert sf.query("SELECT Id FROM Campaign WHERE Name LIKE 'BulkIns-%'")["totalSize"] == 3


def test_given_ingest_job_when_results_downloaded_then_csv_per_kind(raw):
    job = raw.request("POST", "/jobs/ingest", json={"object": "Campaign", "operation": "insert"}).json()
    upload = raw.session.put(
        f"{raw.base}/jobs/ingest/{job['id']}/batches",
        data=b"Name\nIngest-A\n",
        headers=raw.headers({"Content-Type": "text/csv"}),
        timeout=30,
    )
    assert upload.status_code == 201
    closed = raw.request("PATCH", f"/jobs/ingest/{job['id']}", json={"state": "UploadComplete"})
    assert closed.status_code == 200
    assert raw.get(f"/jobs/ingest/{job['id']}").json()["state"] == "JobComplete"
    ok = raw.get(f"/jobs/ingest/{job['id']}/successfulResults/")
    assert ok.status_code == 200
    assert _rows(ok.text)[0]["sf__Created"] == "true"
    assert raw.get(f"/jobs/ingest/{job['id']}/failedResults").text == '"sf__Id","sf__Error","Name"\n'
    assert raw.get(f"/jobs/ingest/{job['id']}/bogus").status_code == 404


def _query_job(raw, soql="SELECT Id FROM Milestone__c", version=None):
    path = "/jobs/query" if version is None else f"/services/data/v{version}/jobs/query"
    resp = raw.request("POST", path, json={"operation": "query", "query": soql})
    assert resp.status_code == 200, resp.text
    return resp.json()["id"]


def test_given_job_of_one_version_when_results_read_at_another_then_409_api_version_mismatch(raw, milestones):
    job_id = _query_job(raw, version="58.0")

    other = raw.get(f"/jobs/query/{job_id}/results")  # v59.0
    same = raw.get(f"/services/data/v58.0/jobs/query/{job_id}/results")

    assert other.status_code == 409
    assert other.json()[0]["errorCode"] == "API_VERSION_MISMATCH"
    assert same.status_code == 200 and len(_rows(same.text)) >= N_MILESTONES


def test_given_running_job_when_aborted_then_aborted_and_results_refused(raw, milestones):
    raw.admin("bulk_timing", in_progress_after_s=30, complete_after_s=60)
    try:
        job_id = _query_job(raw)
        aborted = raw.request("PATCH", f"/jobs/query/{job_id}", json={"state": "Aborted"})
        assert aborted.status_code == 200 and aborted.json()["state"] == "Aborted"
        assert raw.get(f"/jobs/query/{job_id}").json()["state"] == "Aborted"
        again = raw.request("PATCH", f"/jobs/query/{job_id}", json={"state": "Aborted"})
        assert again.status_code == 400 and again.json()[0]["errorCode"] == "INVALIDJOBSTATE"
        results = raw.get(f"/jobs/query/{job_id}/results")
        assert results.status_code in (400, 412) and results.json()[0]["errorCode"]
        wrong = raw.request("PATCH", f"/jobs/query/{_query_job(raw)}", json={"state": "JobComplete"})
        assert wrong.status_code == 400
    finally:
        raw.admin("bulk_timing", in_progress_after_s=0, complete_after_s=0)


def test_given_completed_job_when_deleted_then_gone_and_in_progress_job_cannot_be_deleted(emu, raw, milestones):
    job_id = _query_job(raw)
    assert raw.get(f"/jobs/query/{job_id}").json()["state"] == "JobComplete"

    deleted = raw.request("DELETE", f"/jobs/query/{job_id}")

    assert deleted.status_code == 204 and deleted.content == b""
    assert raw.get(f"/jobs/query/{job_id}").status_code == 404
    assert raw.get(f"/jobs/query/{job_id}/results").status_code == 404
    assert raw.request("DELETE", f"/jobs/query/{job_id}").status_code == 404
    raw.admin("bulk_timing", in_progress_after_s=30, complete_after_s=60)
    try:
        running = _query_job(raw)
        emu.clock.advance(31)
        assert raw.get(f"/jobs/query/{running}").json()["state"] == "InProgress"
        refused = raw.request("DELETE", f"/jobs/query/{running}")
        assert refused.status_code == 400 and refused.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    finally:
        raw.admin("bulk_timing", in_progress_after_s=0, complete_after_s=0)
