"""Bulk API 1.0 through simple-salesforce's unmodified ``bulk`` handler (``sf.bulk.<Object>``):
queries, queryAll with deleted rows, lazy result sets, ingest with per-row results, FLS,
faults, API-call counting and change-event origins."""

from __future__ import annotations

import uuid

import pytest
from sfsync_emulator.ids import to18
from sfsync_emulator.schema import parse_datetime_ms
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceMalformedRequest

pytestmark = pytest.mark.contract


def _tag() -> str:
    return uuid.uuid4().hex[:10]


def _leads(sf: Salesforce, tag: str, n: int) -> list[str]:
    return [str(sf.Lead.create({"LastName": f"{tag}-{i:03d}", "Company": f"{tag} Co"})["id"]) for i in range(n)]


def test_given_leads_when_bulk_query_then_rows_equal_rest_with_epoch_ms_datetimes(sf):
    tag = _tag()
    ids = _leads(sf, tag, 5)
    soql = (
        f"SELECT Id, LastName, Company, CreatedDate, IsDeleted, Owner.Username FROM Lead WHERE LastName LIKE '{tag}%'"
    )
    rows = sf.bulk.Lead.query(soql, wait=0)
    rest = {r["Id"]: r for r in sf.query(soql)["records"]}
    assert sorted(r["Id"] for r in rows) == sorted(ids) == sorted(rest)
    for row in rows:
        expected = rest[row["Id"]]
        assert row["attributes"] == {"type": "Lead", "url": f"/services/data/v59.0/sobjects/Lead/{row['Id']}"}
        assert row["LastName"] == expected["LastName"] and row["IsDeleted"] is False
        # Bulk 1.0 JSON renders datetimes as epoch milliseconds (REST: ISO text)
        assert isinstance(row["CreatedDate"], int)
        assert row["CreatedDate"] == parse_datetime_ms(expected["CreatedDate"])
        assert row["Owner"]["Username"] == expected["Owner"]["Username"]


def test_given_deleted_rows_when_query_all_then_they_are_included_and_query_excludes_them(sf):
    tag = _tag()
    ids = _leads(sf, tag, 6)
    for rid in ids[:2]:
        sf.Lead.delete(rid)
    soql = f"SELECT Id, IsDeleted FROM Lead WHERE LastName LIKE '{tag}%'"
    live = sf.bulk.Lead.query(soql, wait=0)
    every = sf.bulk.Lead.query_all(soql, wait=0)
    assert sorted(r["Id"] for r in live) == sorted(ids[2:])
    assert sorted(r["Id"] for r in every) == sorted(ids)
    assert {r["Id"] for r in every if r["IsDeleted"]} == set(ids[:2])


def test_given_small_result_sets_when_lazy_query_then_one_list_per_result_set_covering_every_row(sf, raw):
    tag = _tag()
    ids = _leads(sf, tag, 17)
    raw.admin("bulk_result_rows", rows=5)
    try:
        lazy = sf.bulk.Lead.query(f"SELECT Id FROM Lead WHERE LastName LIKE '{tag}%'", lazy_operation=True, wait=0)
        sets = [list(chunk) for chunk in lazy]
    finally:
        raw.admin("bulk_result_rows", rows=100_000)
    assert [len(s) for s in sets] == [5, 5, 5, 2]
    got = [r["Id"] for s in sets for r in s]
    assert len(got) == len(set(got)) and sorted(got) == sorted(ids)


def test_given_an_empty_result_when_bulk_query_then_empty_list(sf):
    assert sf.bulk.Lead.query(f"SELECT Id FROM Lead WHERE LastName = '{_tag()}'", wait=0) == []


def test_given_rows_with_a_refused_one_when_bulk_insert_then_per_row_results_in_request_order(sf):
    tag = _tag()
    results = sf.bulk.Lead.insert(
        [
            {"LastName": f"{tag}-a", "Company": "A Co", "AnnualRevenue": 1200.5},
            {"LastName": f"{tag}-b"},  # no Company: refused
            {"LastName": f"{tag}-c", "Company": "C Co", "Title": None},
        ],
        batch_size=10,
    )
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1] == {
        "id": None,
        "success": False,
        "created": False,
        "errors": [
            {
                "message": "Required fields are missing: [Company]",
                "fields": ["Company"],
                "statusCode": "REQUIRED_FIELD_MISSING",
            }
        ],
    }
    created = {r["id"] for r in results if r["success"]}
    assert all(r["created"] for r in results if r["success"])
    stored = sf.query(f"SELECT Id, LastName, AnnualRevenue FROM Lead WHERE LastName LIKE '{tag}%'")["records"]
    assert {r["Id"] for r in stored} == created
    assert {r["LastName"]: r["AnnualRevenue"] for r in stored}[f"{tag}-a"] == 1200.5


def test_given_existing_rows_when_bulk_update_upsert_delete_and_hard_delete_then_org_changes_per_row(sf):
    tag = _tag()
    ids = _leads(sf, tag, 4)
    updated = sf.bulk.Lead.update([{"Id": ids[0], "Title": "Chief"}, {"Id": to18("00Q5gZZZZZZZZZZ"), "Title": "x"}])
    assert [r["success"] for r in updated] == [True, False]
    assert updated[0] == {"id": ids[0], "success": True, "created": False, "errors": []}
    assert updated[1]["id"] == to18("00Q5gZZZZZZZZZZ")  # a refused update reports the record's id
    assert updated[1]["errors"][0]["statusCode"] == "INVALID_CROSS_REFERENCE_KEY"
    assert sf.Lead.get(ids[0])["Title"] == "Chief"

    upserted = sf.bulk.Lead.upsert(
        [
            {"Sfsync_Key__c": f"{tag}-k1", "LastName": f"{tag}-new", "Company": "U Co"},
            {"Sfsync_Key__c": f"{tag}-k1", "LastName": f"{tag}-again"},
        ],
        external_id_field="Sfsync_Key__c",
        batch_size=1,
    )
    assert [(r["success"], r["created"]) for r in upserted] == [(True, True), (True, False)]
    assert upserted[0]["id"] == upserted[1]["id"]
    assert sf.Lead.get(upserted[0]["id"])["LastName"] == f"{tag}-again"

    deleted = sf.bulk.Lead.delete([{"Id": ids[1]}])
    assert deleted == [{"id": ids[1], "success": True, "created": False, "errors": []}]
    hard = sf.bulk.Lead.hard_delete([{"Id": ids[2]}])
    assert hard[0]["success"] is True
    after = {
        r["Id"]: r["IsDeleted"]
        for r in sf.query_all(f"SELECT Id, IsDeleted FROM Lead WHERE LastName LIKE '{tag}%'", include_deleted=True)[
            "records"
        ]
    }
    assert after[ids[1]] is True  # in the recycle bin
    assert ids[2] not in after  # gone for good
    assert after[ids[3]] is False


def test_given_detailed_results_when_insert_then_request_values_merged_per_row(sf):
    tag = _tag()
    results = sf.bulk.Lead.insert([{"LastName": f"{tag}-d", "Company": "D Co"}], include_detailed_results=True)
    assert results[0]["success"] is True
    assert results[0]["LastName"] == f"{tag}-d" and results[0]["Company"] == "D Co"


def test_given_bad_soql_when_bulk_query_then_failed_batch_with_the_reason(sf):
    with pytest.raises(SalesforceGeneralError) as exc:
        sf.bulk.Lead.query("SELECT Nope__c FROM Lead", wait=0)
    assert "InvalidBatch : Failed to process query: INVALID_FIELD" in str(exc.value)


def test_given_hidden_field_or_object_then_bulk_behaves_as_if_they_did_not_exist(sf, raw):
    raw.admin("hide_field", obj="Lead", field="Title")
    try:
        with pytest.raises(SalesforceGeneralError) as exc:
            sf.bulk.Lead.query("SELECT Id, Title FROM Lead", wait=0)
        assert "INVALID_FIELD" in str(exc.value)
        before = sf.query("SELECT COUNT() FROM Lead WHERE LastName = 'Hidden FLS'")["totalSize"]
        with pytest.raises(SalesforceMalformedRequest) as failed:  # the batch failed: it has no results
            sf.bulk.Lead.insert([{"LastName": "Hidden FLS", "Company": "H Co", "Title": "x"}])
        assert failed.value.content["exceptionCode"] == "InvalidBatch"
        assert "Field name not found : Title" in failed.value.content["exceptionMessage"]
        assert sf.query("SELECT COUNT() FROM Lead WHERE LastName = 'Hidden FLS'")["totalSize"] == before
    finally:
        raw.admin("show_field", obj="Lead", field="Title")
    raw.admin("hide_object", obj="Milestone__c")
    try:
        with pytest.raises(SalesforceMalformedRequest) as refused:
            sf.bulk.Milestone__c.query("SELECT Id FROM Milestone__c", wait=0)
        assert refused.value.content == {
            "exceptionCode": "InvalidJob",
            "exceptionMessage": "Unable to find object: Milestone__c",
        }
    finally:
        raw.admin("show_object", obj="Milestone__c")


def test_given_bulk1_calls_then_each_counts_one_api_call_with_limit_info(emu, sf):
    before = emu.api_calls("bulk")
    sf.bulk.Lead.query(f"SELECT Id FROM Lead WHERE LastName = '{_tag()}'", wait=0)
    # create job, add batch, close job, batch status, result list, one result set
    assert emu.api_calls("bulk") - before == 6
    last = [e for e in emu.request_log() if e["path"].startswith("/services/async/")][-1]
    assert last["family"] == "bulk" and last["status"] == 200


def test_given_client_call_options_when_bulk_insert_then_change_events_carry_the_bulk_origin(emu, sf):
    seen = len(emu.org.cdc.since(0))
    bulk = sf.bulk
    bulk.headers["Sforce-Call-Options"] = "client=etl-tool"
    results = bulk.Lead.insert([{"LastName": f"{_tag()}-cdc", "Company": "CDC Co"}])
    events = [e.cometd()["data"]["payload"]["ChangeEventHeader"] for e in emu.org.cdc.since(0)[seen:]]
    created = [h for h in events if h["changeType"] == "CREATE" and results[0]["id"] in h["recordIds"]]
    assert created and created[0]["changeOrigin"] == "com/salesforce/api/bulkapi/59.0;client=etl-tool"


def test_given_bulk_faults_then_bulk1_answers_in_its_own_error_shape_or_fails_the_batch(emu, sf):
    emu.add_fault("http_503", family="bulk", count=1)
    with pytest.raises(SalesforceGeneralError) as unavailable:
        sf.bulk.Lead.query("SELECT Id FROM Lead LIMIT 1", wait=0)
    assert unavailable.value.status == 503
    assert unavailable.value.content["exceptionCode"] == "Unknown"

    emu.add_fault("bulk_job_failed", family="bulk", method="POST", count=1, message="InvalidBatch : emulated")
    with pytest.raises(SalesforceGeneralError) as failed:
        sf.bulk.Lead.query("SELECT Id FROM Lead LIMIT 1", wait=0)
    assert "InvalidBatch : emulated" in str(failed.value)

    emu.add_fault("bulk_query_refused", family="bulk", count=1, object_name="Lead")
    with pytest.raises(SalesforceGeneralError) as refused:
        sf.bulk.Lead.query("SELECT Id FROM Lead LIMIT 1", wait=0)
    assert "Selecting compound data not supported in Bulk Query" in str(refused.value)
    assert len(sf.bulk.Lead.query("SELECT Id FROM Lead LIMIT 1", wait=0)) == 1  # the rules are used up


def test_given_an_expired_session_then_bulk1_answers_invalid_session_id(emu):
    sf = Salesforce(instance_url=emu.instance_url, session_id=emu.new_token(), session=emu.session(), version="59.0")
    emu.expire_tokens()
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.bulk.Lead.query("SELECT Id FROM Lead LIMIT 1", wait=0)
    assert exc.value.status == 400
    assert exc.value.content == {"exceptionCode": "InvalidSessionId", "exceptionMessage": "Invalid session id"}


def test_given_an_archived_task_when_query_all_then_included_and_query_leaves_it_out(sf, raw):
    tag = _tag()
    live = sf.Task.create({"Subject": f"{tag}-live"})["id"]
    archived = sf.Task.create({"Subject": f"{tag}-old"})["id"]
    raw.admin("archive", obj="Task", id=archived)
    soql = f"SELECT Id, IsArchived FROM Task WHERE Subject LIKE '{tag}%'"
    assert [r["Id"] for r in sf.bulk.Task.query(soql, wait=0)] == [live]
    every = {r["Id"]: r["IsArchived"] for r in sf.bulk.Task.query_all(soql, wait=0)}
    assert every == {live: False, archived: True}
