"""Bulk API 1.0 over plain ``requests`` (``/services/async/<ver>/job...``, ``X-SFDC-Session``):
XML and JSON job bodies, CSV and JSON content, PK chunking, job close/abort, batch status and
results, and Bulk 1.0's own error bodies."""

from __future__ import annotations

import csv
import io
import math
import re
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.contract

NS = "http://www.force.com/2009/06/asyncapi/dataload"
XML = "application/xml; charset=UTF-8"
JSON = "application/json"


class Async:
    """A plain Bulk 1.0 client: the URL, the session header, nothing else."""

    def __init__(self, emu: Any, version: str = "59.0") -> None:
        self.emu = emu
        self.session = emu.session()
        self.base = f"{emu.instance_url}/services/async/{version}"

    def request(
        self,
        method: str,
        path: str,
        *,
        data: str | bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> requests.Response:
        sent = {"X-SFDC-Session": token if token is not None else self.emu.access_token()}
        if content_type:
            sent["Content-Type"] = content_type
        sent.update(headers or {})
        return self.session.request(method, self.base + path, data=data, headers=sent, timeout=30)

    def xml_job(self, operation: str, obj: str, content_type: str = "CSV", **headers: str) -> dict[str, str]:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><jobInfo xmlns="{NS}"><operation>{operation}</operation>'
            f"<object>{obj}</object><contentType>{content_type}</contentType></jobInfo>"
        )
        resp = self.request("POST", "/job", data=body, content_type=XML, headers=headers)
        assert resp.status_code == 201, resp.text
        return xml_fields(resp)

    def add_csv_batch(self, job_id: str, text: str) -> dict[str, str]:
        resp = self.request("POST", f"/job/{job_id}/batch", data=text.encode(), content_type="text/csv; charset=UTF-8")
        assert resp.status_code == 201, resp.text
        return xml_fields(resp)

    def batches(self, job_id: str) -> list[dict[str, str]]:
        resp = self.request("GET", f"/job/{job_id}/batch")
        assert resp.status_code == 200, resp.text
        root = ET.fromstring(resp.content)
        assert root.tag == f"{{{NS}}}batchInfoList"
        return [{child.tag.split("}")[1]: child.text or "" for child in info} for info in root]

    def result_ids(self, job_id: str, batch_id: str) -> list[str]:
        resp = self.request("GET", f"/job/{job_id}/batch/{batch_id}/result")
        assert resp.status_code == 200, resp.text
        root = ET.fromstring(resp.content)
        assert root.tag == f"{{{NS}}}result-list"
        return [r.text or "" for r in root]

    def csv_rows(self, job_id: str, batch_id: str) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        for rid in self.result_ids(job_id, batch_id):
            resp = self.request("GET", f"/job/{job_id}/batch/{batch_id}/result/{rid}")
            assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/csv"), resp.text
            if resp.text != "Records not found for this query":
                rows.extend(csv.DictReader(io.StringIO(resp.text)))
        return rows


def xml_fields(resp: requests.Response) -> dict[str, str]:
    assert resp.headers["Content-Type"].startswith("application/xml"), resp.headers["Content-Type"]
    root = ET.fromstring(resp.content)
    assert root.tag.startswith(f"{{{NS}}}"), root.tag
    return {child.tag.split("}")[1]: child.text or "" for child in root}


def xml_error(resp: requests.Response) -> tuple[int, str, str]:
    fields = xml_fields(resp)
    assert ET.fromstring(resp.content).tag == f"{{{NS}}}error"
    return resp.status_code, fields["exceptionCode"], fields["exceptionMessage"]


@pytest.fixture
def bulk1(emu: Any) -> Async:
    return Async(emu)


def _tag() -> str:
    return uuid.uuid4().hex[:10]


def _leads(sf: Any, tag: str, n: int) -> list[str]:
    return [str(sf.Lead.create({"LastName": f"{tag}-{i:03d}", "Company": "Co"})["id"]) for i in range(n)]


# ------------------------------------------------------------------------------ XML + CSV query


def test_given_xml_job_and_csv_query_batch_then_jobinfo_batchinfo_result_list_and_csv_rows(bulk1, sf):
    tag = _tag()
    ids = _leads(sf, tag, 3)
    job = bulk1.xml_job("query", "Lead")
    assert job["id"].startswith("750") and len(job["id"]) == 18
    assert (job["operation"], job["object"], job["state"], job["contentType"]) == ("query", "Lead", "Open", "CSV")
    assert job["concurrencyMode"] == "Parallel" and job["apiVersion"] == "59.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", job["createdDate"])
    batch = bulk1.add_csv_batch(job["id"], f"SELECT Id, LastName, Email FROM Lead WHERE LastName LIKE '{tag}%'")
    assert batch["id"].startswith("751") and batch["jobId"] == job["id"] and batch["state"] == "Queued"
    status = xml_fields(bulk1.request("GET", f"/job/{job['id']}/batch/{batch['id']}"))
    assert status["state"] == "Completed" and status["numberRecordsProcessed"] == "3"
    [result_id] = bulk1.result_ids(job["id"], batch["id"])
    assert result_id.startswith("752")
    raw = bulk1.request("GET", f"/job/{job['id']}/batch/{batch['id']}/result/{result_id}")
    assert raw.text.splitlines()[0] == '"Id","LastName","Email"'
    rows = list(csv.DictReader(io.StringIO(raw.text)))
    assert sorted(r["Id"] for r in rows) == sorted(ids) and {r["Email"] for r in rows} == {""}
    request = bulk1.request("GET", f"/job/{job['id']}/batch/{batch['id']}/request")
    assert request.text.startswith("SELECT Id, LastName, Email FROM Lead")
    closed = xml_fields(
        bulk1.request("POST", f"/job/{job['id']}", data=f'<jobInfo xmlns="{NS}"><state>Closed</state></jobInfo>',
                      content_type=XML)
    )  # fmt: skip
    assert closed["state"] == "Closed"
    assert (closed["numberBatchesCompleted"], closed["numberBatchesTotal"], closed["numberRecordsProcessed"]) == (
        "1",
        "1",
        "3",
    )
    assert [b["id"] for b in bulk1.batches(job["id"])] == [batch["id"]]


def test_given_no_matching_rows_when_csv_query_then_records_not_found_text(bulk1):
    job = bulk1.xml_job("query", "Lead")
    batch = bulk1.add_csv_batch(job["id"], f"SELECT Id FROM Lead WHERE LastName = '{_tag()}'")
    [rid] = bulk1.result_ids(job["id"], batch["id"])
    resp = bulk1.request("GET", f"/job/{job['id']}/batch/{batch['id']}/result/{rid}")
    assert resp.text == "Records not found for this query"


def test_given_gzip_accepted_when_result_read_then_gzip_encoded(bulk1, sf):
    tag = _tag()
    _leads(sf, tag, 2)
    job = bulk1.xml_job("query", "Lead")
    batch = bulk1.add_csv_batch(job["id"], f"SELECT Id FROM Lead WHERE LastName LIKE '{tag}%'")
    [rid] = bulk1.result_ids(job["id"], batch["id"])
    resp = bulk1.request(
        "GET", f"/job/{job['id']}/batch/{batch['id']}/result/{rid}", headers={"Accept-Encoding": "gzip"}
    )
    assert resp.headers["Content-Encoding"] == "gzip"
    assert len(list(csv.DictReader(io.StringIO(resp.text)))) == 2  # requests decoded it


# ------------------------------------------------------------------------------ ingest, JSON


def test_given_csv_insert_batch_with_a_refused_row_then_csv_results_and_request_echo(bulk1, sf):
    tag = _tag()
    job = bulk1.xml_job("insert", "Lead")
    data = f"LastName,Company,Title\n{tag}-1,A Co,#N/A\n{tag}-2,,CEO\n"
    batch = bulk1.add_csv_batch(job["id"], data)
    info = xml_fields(bulk1.request("GET", f"/job/{job['id']}/batch/{batch['id']}"))
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == ("Completed", "2", "1")
    resp = bulk1.request("GET", f"/job/{job['id']}/batch/{batch['id']}/result")
    assert resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(resp.text)))
    assert rows[0] == ["Id", "Success", "Created", "Error"]
    assert rows[1][1:] == ["true", "true", ""] and rows[1][0].startswith("00Q")
    assert rows[2] == ["", "false", "false", "REQUIRED_FIELD_MISSING:Required fields are missing: [Company]:Company --"]
    assert sf.Lead.get(rows[1][0])["LastName"] == f"{tag}-1"
    echoed = bulk1.request("GET", f"/job/{job['id']}/batch/{batch['id']}/request")
    assert echoed.text == data and echoed.headers["Content-Type"].startswith("text/csv")
    job_info = xml_fields(bulk1.request("GET", f"/job/{job['id']}"))
    assert (job_info["numberRecordsProcessed"], job_info["numberRecordsFailed"]) == ("2", "1")


def test_given_json_job_then_json_jobinfo_batch_list_and_results(bulk1, sf):
    tag = _tag()
    created = bulk1.request(
        "POST", "/job", data='{"operation":"insert","object":"Lead","contentType":"JSON"}', content_type=JSON
    )
    assert created.status_code == 201 and created.headers["Content-Type"].startswith("application/json")
    job = created.json()
    assert job["state"] == "Open" and job["apiVersion"] == 59.0 and job["numberBatchesTotal"] == 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", job["createdDate"])
    batch = bulk1.request(
        "POST", f"/job/{job['id']}/batch", data=f'[{{"LastName":"{tag}","Company":"J Co"}}]', content_type=JSON
    ).json()
    listed = bulk1.request("GET", f"/job/{job['id']}/batch", content_type=JSON).json()
    assert [b["id"] for b in listed["batchInfo"]] == [batch["id"]]
    assert listed["batchInfo"][0]["state"] == "Completed"
    [result] = bulk1.request("GET", f"/job/{job['id']}/batch/{batch['id']}/result", content_type=JSON).json()
    assert result["success"] is True and result["created"] is True and result["errors"] == []
    assert sf.Lead.get(result["id"])["Company"] == "J Co"
    job_now = bulk1.request("GET", f"/job/{job['id']}").json()  # a JSON job answers JSON
    assert job_now["numberBatchesCompleted"] == 1 and job_now["numberRecordsProcessed"] == 1


def test_given_json_query_job_then_result_list_is_json_and_records_carry_attributes(bulk1, sf):
    tag = _tag()
    [lead] = _leads(sf, tag, 1)
    job = bulk1.request(
        "POST", "/job", data='{"operation":"queryAll","object":"Lead","contentType":"JSON"}', content_type=JSON
    ).json()
    batch = bulk1.request(
        "POST", f"/job/{job['id']}/batch", data=f"SELECT Id, CreatedDate FROM Lead WHERE Id = '{lead}'",
        content_type=JSON,
    ).json()  # fmt: skip
    ids = bulk1.request("GET", f"/job/{job['id']}/batch/{batch['id']}/result").json()
    [record] = bulk1.request("GET", f"/job/{job['id']}/batch/{batch['id']}/result/{ids[0]}").json()
    assert record["Id"] == lead and record["attributes"]["type"] == "Lead" and isinstance(record["CreatedDate"], int)


# ------------------------------------------------------------------------------ PK chunking


def _chunks(bulk1: Async, job_id: str, original: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    batches = bulk1.batches(job_id)
    first = next(b for b in batches if b["id"] == original)
    return first, [b for b in batches if b["id"] != original]


def _bounds(text: str) -> tuple[str | None, str | None]:
    low = re.search(r"Id >= '([0-9A-Za-z]+)'", text)
    high = re.search(r"Id < '([0-9A-Za-z]+)'", text)
    return (low.group(1) if low else None, high.group(1) if high else None)


def test_given_pk_chunking_when_query_batch_added_then_chunks_cover_every_row_exactly_once(bulk1, sf):
    tag = _tag()
    ids = _leads(sf, tag, 12)
    sf.Lead.delete(ids[0])  # counted when chunking, absent from a query's results
    soql = f"SELECT Id, LastName FROM Lead WHERE LastName LIKE '{tag}%' OR Company = 'none'"
    expected = sorted(r["Id"] for r in sf.query_all(soql)["records"])
    stored = sf.query_all("SELECT Id FROM Lead", include_deleted=True)["totalSize"]
    job = bulk1.xml_job("query", "Lead", **{"Sforce-Enable-PKChunking": "chunkSize=10"})
    batch = bulk1.add_csv_batch(job["id"], soql)
    original, chunks = _chunks(bulk1, job["id"], batch["id"])
    assert original["state"] == "NotProcessed"
    assert len(chunks) == math.ceil(stored / 10)
    assert {c["state"] for c in chunks} == {"Completed"}
    texts = [bulk1.request("GET", f"/job/{job['id']}/batch/{c['id']}/request").text for c in chunks]
    bounds = [_bounds(t) for t in texts]
    assert bounds[0][0] is None and bounds[-1][1] is None  # the first and last chunks are open-ended
    assert all(bounds[i][1] == bounds[i + 1][0] for i in range(len(bounds) - 1))  # adjacent, no gap
    assert all(f"WHERE (LastName LIKE '{tag}%' OR Company = 'none') AND Id" in t for t in texts[1:])
    got: list[str] = []
    for chunk, (low, high) in zip(chunks, bounds, strict=True):
        rows = [r["Id"] for r in bulk1.csv_rows(job["id"], chunk["id"])]
        assert all((low is None or r >= low) and (high is None or r < high) for r in rows)
        got.extend(rows)
    assert sorted(got) == expected and len(got) == len(set(got))
    info = xml_fields(bulk1.request("GET", f"/job/{job['id']}"))
    assert info["numberBatchesTotal"] == str(len(chunks) + 1)
    assert info["numberBatchesCompleted"] == str(len(chunks))
    assert info["numberRecordsProcessed"] == str(len(expected))


def test_given_pk_chunking_start_row_then_chunks_begin_there(bulk1, sf):
    tag = _tag()
    ids = sorted(_leads(sf, tag, 6))
    soql = f"SELECT Id FROM Lead WHERE LastName LIKE '{tag}%'"
    job = bulk1.xml_job("query", "Lead", **{"Sforce-Enable-PKChunking": f"chunkSize=2; startRow={ids[2][:15]}"})
    batch = bulk1.add_csv_batch(job["id"], soql)
    _, chunks = _chunks(bulk1, job["id"], batch["id"])
    first = bulk1.request("GET", f"/job/{job['id']}/batch/{chunks[0]['id']}/request").text
    assert _bounds(first)[0] == ids[2]
    got = sorted(r["Id"] for c in chunks for r in bulk1.csv_rows(job["id"], c["id"]))
    assert got == ids[2:]


def test_given_pk_chunking_refusals_then_clear_errors(bulk1):
    job_xml = f'<jobInfo xmlns="{NS}"><operation>query</operation><object>Lead</object>'
    job_xml += "<contentType>CSV</contentType></jobInfo>"
    for header in ("chunkSize=0", "chunkSize=250001", "startRow=nope", "parent=Account", "sizes=3"):
        bad = bulk1.request(
            "POST", "/job", data=job_xml, content_type=XML, headers={"Sforce-Enable-PKChunking": header}
        )
        status, code, message = xml_error(bad)
        assert (status, code) == (400, "InvalidJob"), message
        assert "PK chunking" in message or "PKChunking" in message, message
    unsupported = bulk1.xml_job("query", "CampaignMemberStatus", **{"Sforce-Enable-PKChunking": "TRUE"})
    failed = bulk1.add_csv_batch(unsupported["id"], "SELECT Id FROM CampaignMemberStatus")
    status = xml_fields(bulk1.request("GET", f"/job/{unsupported['id']}/batch/{failed['id']}"))
    assert (
        status["state"] == "Failed"
        and "PK chunking is not supported for CampaignMemberStatus" in status["stateMessage"]
    )
    ordered = bulk1.xml_job("query", "Lead", **{"Sforce-Enable-PKChunking": "true"})
    batch = bulk1.add_csv_batch(ordered["id"], "SELECT Id FROM Lead ORDER BY Id")
    status = xml_fields(bulk1.request("GET", f"/job/{ordered['id']}/batch/{batch['id']}"))
    assert status["state"] == "Failed" and "ORDER BY" in status["stateMessage"]
    assert len(bulk1.batches(ordered["id"])) == 1  # nothing was split


# ------------------------------------------------------------------------------ close, abort, states


def test_given_slow_batches_when_job_aborted_then_queued_batches_not_processed(emu, bulk1, raw, sf):
    raw.admin("bulk_timing", in_progress_after_s=30, complete_after_s=60)
    try:
        tag = _tag()
        job = bulk1.xml_job("insert", "Lead")
        batch = bulk1.add_csv_batch(job["id"], f"LastName,Company\n{tag},Abort Co\n")
        assert xml_fields(bulk1.request("GET", f"/job/{job['id']}/batch/{batch['id']}"))["state"] == "Queued"
        not_done = bulk1.request("GET", f"/job/{job['id']}/batch/{batch['id']}/result")
        assert xml_error(not_done)[:2] == (400, "InvalidBatch")
        aborted = xml_fields(
            bulk1.request("POST", f"/job/{job['id']}", data=f'<jobInfo xmlns="{NS}"><state>Aborted</state></jobInfo>',
                          content_type=XML)
        )  # fmt: skip
        assert aborted["state"] == "Aborted"
        emu.clock.advance(120)
        assert xml_fields(bulk1.request("GET", f"/job/{job['id']}/batch/{batch['id']}"))["state"] == "NotProcessed"
        assert sf.query(f"SELECT COUNT() FROM Lead WHERE LastName = '{tag}'")["totalSize"] == 0
        late = bulk1.request("POST", f"/job/{job['id']}/batch", data=b"LastName\nx\n", content_type="text/csv")
        assert xml_error(late)[:2] == (400, "InvalidJobState")
    finally:
        raw.admin("bulk_timing", in_progress_after_s=0, complete_after_s=0)


def test_given_slow_batches_when_job_closed_then_batches_still_run_queued_in_progress_completed(emu, bulk1, raw, sf):
    raw.admin("bulk_timing", in_progress_after_s=30, complete_after_s=60)
    try:
        tag = _tag()
        job = bulk1.xml_job("insert", "Lead")
        bulk1.add_csv_batch(job["id"], f"LastName,Company\n{tag},Close Co\n")
        closed = xml_fields(
            bulk1.request("POST", f"/job/{job['id']}", data=f'<jobInfo xmlns="{NS}"><state>Closed</state></jobInfo>',
                          content_type=XML)
        )  # fmt: skip
        assert (closed["state"], closed["numberBatchesQueued"]) == ("Closed", "1")
        emu.clock.advance(31)
        info = xml_fields(bulk1.request("GET", f"/job/{job['id']}"))
        assert (info["numberBatchesInProgress"], info["numberBatchesCompleted"]) == ("1", "0")
        emu.clock.advance(30)
        info = xml_fields(bulk1.request("GET", f"/job/{job['id']}"))
        assert (info["numberBatchesCompleted"], info["numberRecordsProcessed"]) == ("1", "1")
        assert sf.query(f"SELECT COUNT() FROM Lead WHERE LastName = '{tag}'")["totalSize"] == 1
        late = bulk1.request("POST", f"/job/{job['id']}/batch", data=b"LastName\nx\n", content_type="text/csv")
        assert xml_error(late)[:2] == (400, "InvalidJobState")
    finally:
        raw.admin("bulk_timing", in_progress_after_s=0, complete_after_s=0)


# ------------------------------------------------------------------------------ errors


def test_given_bad_sessions_then_invalid_session_id_in_xml_or_json(bulk1):
    for token in ("00D000000000000!nope", ""):
        xml = bulk1.request("GET", "/job/750000000000000AAA", token=token)
        assert xml_error(xml) == (400, "InvalidSessionId", "Invalid session id")
    as_json = bulk1.request("POST", "/job", data="{}", content_type=JSON, token="bogus")
    assert as_json.status_code == 400
    assert as_json.json() == {"exceptionCode": "InvalidSessionId", "exceptionMessage": "Invalid session id"}


def test_given_unknown_ids_urls_and_methods_then_bulk1_errors(bulk1):
    job = bulk1.xml_job("query", "Lead")
    assert xml_error(bulk1.request("GET", "/job/750xx0000000000AAA"))[:2] == (400, "InvalidJob")
    assert xml_error(bulk1.request("GET", f"/job/{job['id']}/batch/751xx0000000000AAA"))[:2] == (400, "InvalidBatch")
    assert xml_error(bulk1.request("GET", "/jobs"))[:2] == (404, "InvalidUrl")
    assert xml_error(bulk1.request("DELETE", f"/job/{job['id']}"))[:2] == (405, "InvalidUrl")
    other_version = Async(bulk1.emu, "58.0").request("GET", f"/job/{job['id']}")
    assert xml_error(other_version)[:2] == (400, "InvalidJob")


def test_given_malformed_job_definitions_then_one_clear_error_and_no_job(bulk1, emu):
    before = len(emu.bulk1._jobs)
    cases = [
        ("<jobInfo><operation>query</operation", XML, "InvalidXML"),
        (f'<jobInfo xmlns="{NS}"><operation>INSERT</operation><object>Lead</object></jobInfo>', XML, "InvalidJob"),
        (f'<jobInfo xmlns="{NS}"><operation>insert</operation><object>Nope__c</object></jobInfo>', XML, "InvalidJob"),
        (f'<jobInfo xmlns="{NS}"><operation>insert</operation><object>Lead</object></jobInfo>', XML, "InvalidJob"),
        ('{"operation":"insert","object":"Lead","contentType":"CSV","bogus":1}', JSON, "InvalidJob"),
        (
            '{"operation":"upsert","object":"Lead","contentType":"CSV","externalIdFieldName":"LastName"}',
            JSON,
            "InvalidJob",
        ),
        ("[1]", JSON, "ClientInputError"),
        ("operation=insert", "application/x-www-form-urlencoded", "ClientInputError"),
    ]
    for body, content_type, code in cases:
        resp = bulk1.request("POST", "/job", data=body, content_type=content_type)
        assert resp.status_code == 400, body
        got = resp.json()["exceptionCode"] if content_type == JSON else xml_error(resp)[1]
        assert got == code, (body, resp.text)
    assert len(emu.bulk1._jobs) == before


def test_given_malformed_batches_then_one_clear_error_and_no_batch(bulk1):
    csv_job = bulk1.xml_job("insert", "Lead")
    wrong_type = bulk1.request("POST", f"/job/{csv_job['id']}/batch", data=b'[{"LastName":"x"}]', content_type=JSON)
    assert wrong_type.status_code == 400 and wrong_type.json()["exceptionCode"] == "InvalidBatch"
    ragged = bulk1.request(
        "POST", f"/job/{csv_job['id']}/batch", data=b"LastName,Company\nx\n", content_type="text/csv"
    )
    assert xml_error(ragged)[:2] == (400, "InvalidBatch")
    empty = bulk1.request("POST", f"/job/{csv_job['id']}/batch", data=b"", content_type="text/csv")
    assert xml_error(empty)[:2] == (400, "InvalidBatch")
    assert bulk1.batches(csv_job["id"]) == []
    json_job = bulk1.request(
        "POST", "/job", data='{"operation":"insert","object":"Lead","contentType":"JSON"}', content_type=JSON
    ).json()
    for body in (b"[{", b'{"LastName":"x"}', b"[1, 2]"):
        resp = bulk1.request("POST", f"/job/{json_job['id']}/batch", data=body, content_type=JSON)
        assert resp.status_code == 400 and resp.json()["exceptionCode"] == "InvalidBatch", body
    listed = bulk1.request("GET", f"/job/{json_job['id']}/batch", content_type=JSON).json()
    assert listed == {"batchInfo": []}


def test_given_batches_then_daily_bulk_api_batches_in_limits_go_down(bulk1, raw):
    before = raw.get("/limits").json()["DailyBulkApiBatches"]
    job = bulk1.xml_job("query", "Lead")
    bulk1.add_csv_batch(job["id"], "SELECT Id FROM Lead LIMIT 1")
    after = raw.get("/limits").json()["DailyBulkApiBatches"]
    assert after["Max"] == 15000 and after["Remaining"] == before["Remaining"] - 1
